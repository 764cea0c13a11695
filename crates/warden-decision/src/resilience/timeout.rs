//! A bound on how long a PDP may take.

use std::time::Duration;

use crate::decision::PolicyRevision;
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

/// A PDP that fails with [`PdpError::Timeout`] when the inner one takes longer than `after`.
/// Needs a Tokio runtime with its time driver.
#[derive(Debug, Clone)]
pub struct Timeout<P> {
    inner: P,
    after: Duration,
}

impl<P> Timeout<P> {
    /// Bounds `inner` by `after`.
    pub fn new(inner: P, after: Duration) -> Self {
        Self { inner, after }
    }
}

impl<P: Pdp> Pdp for Timeout<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.after, self.inner.decide(request)).await {
                Ok(result) => result,
                Err(_) => Err(PdpError::Timeout { after: self.after }),
            }
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
