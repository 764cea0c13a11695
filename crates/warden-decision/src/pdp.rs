//! The policy decision point trait and its error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::decision::{Decision, ErrorClass, PolicyRevision};
use crate::request::AccessRequest;

/// The future [`Pdp::decide`] returns.
pub type PdpFuture<'a> = Pin<Box<dyn Future<Output = Result<Decision, PdpError>> + Send + 'a>>;

/// The future [`Pdp::decide_batch`] returns.
pub type BatchFuture<'a> =
    Pin<Box<dyn Future<Output = Vec<Result<Decision, PdpError>>> + Send + 'a>>;

/// A policy decision point: it answers access requests with decisions.
///
/// Implementations know nothing of HTTP or SQL. An embedded engine answers at once; a remote
/// one over the network. A PDP that cannot reach a decision returns a [`PdpError`]; a PEP treats
/// every error as a deny.
///
/// ```
/// use warden_decision::{AccessRequest, Decision, Pdp, PdpFuture};
///
/// /// Permits reads, denies everything else.
/// struct ReadOnly;
///
/// impl Pdp for ReadOnly {
///     fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
///         let allowed = request.action.name == "GET";
///         Box::pin(async move {
///             Ok(if allowed { Decision::permit() } else { Decision::deny() })
///         })
///     }
/// }
/// ```
pub trait Pdp: Send + Sync {
    /// Decides one access request.
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a>;

    /// Decides several access requests (AuthZEN *evaluations*); one result per request, in
    /// order. The default decides them one after another.
    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(requests.len());
            for request in requests {
                out.push(self.decide(request).await);
            }
            out
        })
    }

    /// The policy revision the PDP currently decides with, if it knows it.
    fn revision(&self) -> Option<PolicyRevision> {
        None
    }
}

impl<P: Pdp + ?Sized> Pdp for Arc<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        (**self).decide(request)
    }

    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        (**self).decide_batch(requests)
    }

    fn revision(&self) -> Option<PolicyRevision> {
        (**self).revision()
    }
}

impl<P: Pdp + ?Sized> Pdp for Box<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        (**self).decide(request)
    }

    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        (**self).decide_batch(requests)
    }

    fn revision(&self) -> Option<PolicyRevision> {
        (**self).revision()
    }
}

/// Why a PDP could not decide.
///
/// The two classes matter to operators: *unavailable* is an outage (alert the on-call, maybe
/// serve a fallback), *policy* is a misconfiguration (alert the policy owner). Both deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdpError {
    /// The PDP could not be reached, was overloaded or answered something unusable.
    #[error("policy decision point unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The PDP did not answer in time.
    #[error("policy decision point did not answer within {}ms", after.as_millis())]
    Timeout {
        /// How long the PEP waited.
        after: Duration,
    },
    /// The policy could not be loaded or evaluated.
    #[error("policy error: {message}")]
    Policy {
        /// What went wrong.
        message: String,
    },
    /// The PDP answered, but not with a decision that can be enforced: a wrong shape,
    /// malformed obligations. Enforced as a deny like a policy error, never covered by a
    /// fallback, but a [`CircuitBreaker`](crate::CircuitBreaker) counts it as a failure: a PDP
    /// that keeps answering garbage is failing.
    #[error("malformed answer from the policy decision point: {message}")]
    Malformed {
        /// What was wrong with the answer.
        message: String,
    },
}

impl PdpError {
    /// An unavailable PDP.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
        }
    }

    /// A broken policy.
    pub fn policy(message: impl Into<String>) -> Self {
        Self::Policy {
            message: message.into(),
        }
    }

    /// A malformed answer.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::Malformed {
            message: message.into(),
        }
    }

    /// The class of the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } => ErrorClass::PdpUnavailable,
            Self::Policy { .. } | Self::Malformed { .. } => ErrorClass::PolicyError,
        }
    }

    /// Whether a circuit breaker counts the error as a failure of the PDP: unavailable, or a
    /// malformed answer.
    pub fn is_pdp_failure(&self) -> bool {
        self.is_unavailable() || matches!(self, Self::Malformed { .. })
    }

    /// Whether the error means the PDP is unavailable (as opposed to a broken policy).
    pub fn is_unavailable(&self) -> bool {
        self.class() == ErrorClass::PdpUnavailable
    }
}
