//! The policy enforcement point for HTTP and gRPC requests: [`PolicyLayer`] and its service.

mod future;
pub(crate) mod layer;
mod service;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::PolicyLayer;
pub use service::PolicyService;

use std::sync::Arc;

use warden_decision::{AccessRequest, Decision};

/// The decision that let a request through, put into its extensions for the service to read.
///
/// With the `axum` feature it is also an extractor:
///
/// ```
/// use warden_http::Authorized;
///
/// async fn handler(authorized: Authorized) -> String {
///     format!("{} may {}", authorized.request().subject.id, authorized.request().action.name)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(handler);
/// ```
#[derive(Debug, Clone)]
pub struct Authorized {
    decision: Arc<Decision>,
    request: Arc<AccessRequest>,
}

impl Authorized {
    pub(crate) fn new(decision: Arc<Decision>, request: Arc<AccessRequest>) -> Self {
        Self { decision, request }
    }

    /// The decision (a permit, with the obligations the PEP carried out).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The access request the decision answered.
    pub fn request(&self) -> &AccessRequest {
        &self.request
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Authorized {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Authorized>().cloned().ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "the route is not behind a PolicyLayer",
        ))
    }
}
