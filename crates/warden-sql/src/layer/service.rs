//! The layer and its service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;
use warden_core::Pdp;

use crate::error::SqlError;
use crate::policy::SqlPolicy;
use crate::request::SqlRequest;

/// Wraps a SQL service so that every statement is decided and rewritten first.
///
/// `P` is the PDP (any [`Pdp`] that is `Clone`, such as an `Arc<dyn Pdp>` or an
/// `Arc<RegoPdp>`); the [`SqlPolicy`] carries the dialect, catalog and caches.
#[derive(Debug, Clone)]
pub struct SqlPolicyLayer<P> {
    pdp: P,
    policy: SqlPolicy,
}

impl<P> SqlPolicyLayer<P> {
    /// A layer deciding with `pdp` and rewriting with `policy`.
    pub fn new(pdp: P, policy: SqlPolicy) -> Self {
        Self { pdp, policy }
    }
}

impl<S, P: Clone> Layer<S> for SqlPolicyLayer<P> {
    type Service = SqlPolicyService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        SqlPolicyService {
            inner,
            pdp: self.pdp.clone(),
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`SqlPolicyLayer`].
#[derive(Debug, Clone)]
pub struct SqlPolicyService<S, P> {
    inner: S,
    pdp: P,
    policy: SqlPolicy,
}

/// The error of [`SqlPolicyService`]: the statement was refused, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlServiceError<E> {
    /// The PEP refused the statement; the database never saw it.
    #[error(transparent)]
    Denied(SqlError),
    /// The wrapped service failed.
    #[error("{0}")]
    Service(E),
}

impl<S, P> Service<SqlRequest> for SqlPolicyService<S, P>
where
    S: Service<SqlRequest> + Clone + Send + 'static,
    S::Future: Send,
    P: Pdp + Clone + 'static,
{
    type Response = S::Response;
    type Error = SqlServiceError<S::Error>;
    // The PDP's future is boxed already (`PdpFuture`); one more box for the whole call is
    // cheaper than the decision and keeps the type nameable.
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(SqlServiceError::Service)
    }

    fn call(&mut self, mut request: SqlRequest) -> Self::Future {
        // Move the ready service into the future; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pdp = self.pdp.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let enforced = match policy.enforce(&pdp, &request).await {
                Ok(e) => e,
                Err(e) => {
                    let policy_reasons = match e.reason() {
                        Some(crate::DenyReason::NotPermitted { reasons, .. }) => reasons.join("; "),
                        _ => String::new(),
                    };
                    tracing::info!(
                        target: "warden_sql",
                        subject = %request.subject.id,
                        code = e.code(),
                        reason = %e,
                        policy_reasons = %policy_reasons,
                        "statement denied"
                    );
                    return Err(SqlServiceError::Denied(e));
                }
            };
            tracing::debug!(
                target: "warden_sql",
                subject = %request.subject.id,
                requests = enforced.requests.len(),
                cache_hit = enforced.cache_hit,
                "statement permitted"
            );
            request.statement = enforced.statement.to_string();
            inner.call(request).await.map_err(SqlServiceError::Service)
        })
    }
}
