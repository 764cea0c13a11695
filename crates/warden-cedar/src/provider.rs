//! Entities an application supplies per request from its own store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use warden_decision::AccessRequest;

/// The future [`EntityProvider::entities`] returns: Cedar entity JSON (an array of
/// `{"uid", "attrs", "parents"}` objects, the format of `entities.json`).
pub type EntityFuture<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, ProviderError>> + Send + 'a>>;

/// Supplies the entities a decision needs from the application's own store: the principal
/// with its groups, the resource with its owner, whatever the policies look at.
///
/// The entities are in Cedar's entity JSON format and are checked against the schema (when
/// there is one) on every request. They are added to the package's `entities.json` entities,
/// replacing stored entities with the same uid. The request's subject and resource
/// properties are then merged into the principal and resource entities (see the crate docs).
///
/// A provider that fails makes [`Pdp::decide`](warden_decision::Pdp::decide) return
/// [`PdpError::Unavailable`](warden_decision::PdpError::Unavailable): an outage of the store, not
/// a violation. Entities that do not parse or do not conform to the schema are a policy error
/// and the decision is a deny.
///
/// A closure `Fn(&AccessRequest) -> Result<serde_json::Value, ProviderError>` is a provider:
///
/// ```
/// use serde_json::json;
/// use warden_cedar::{EntityProvider, ProviderError};
/// use warden_decision::AccessRequest;
///
/// fn groups(request: &AccessRequest) -> Result<serde_json::Value, ProviderError> {
///     Ok(json!([{
///         "uid": {"type": "User", "id": request.subject.id},
///         "attrs": {},
///         "parents": [{"type": "Group", "id": "staff"}]
///     }]))
/// }
/// fn assert_provider(_: impl EntityProvider) {}
/// assert_provider(groups);
/// ```
pub trait EntityProvider: Send + Sync {
    /// The entities for `request`.
    fn entities<'a>(&'a self, request: &'a AccessRequest) -> EntityFuture<'a>;
}

impl<F> EntityProvider for F
where
    F: Fn(&AccessRequest) -> Result<serde_json::Value, ProviderError> + Send + Sync,
{
    fn entities<'a>(&'a self, request: &'a AccessRequest) -> EntityFuture<'a> {
        Box::pin(std::future::ready(self(request)))
    }
}

/// Why an [`EntityProvider`] could not supply entities (its store is down, timed out, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    message: String,
}

impl ProviderError {
    /// A provider error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A provider behind an `Arc`, for the builder's `Debug`.
pub(crate) struct SharedProvider(pub(crate) std::sync::Arc<dyn EntityProvider>);

impl Clone for SharedProvider {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl fmt::Debug for SharedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EntityProvider")
    }
}
