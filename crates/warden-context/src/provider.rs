//! The provider trait, the declaration of an attribute, and why a fetch failed.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use warden_decision::AccessRequest;

/// The future a [`Provider`] returns: the attribute's value (`null` when the store has none).
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, FetchError>> + Send + 'a>>;

/// Why an attribute could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The store could not be reached or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something that is not a value of the attribute.
    #[error("store answered garbage: {0}")]
    Garbage(String),
    /// The store did not answer in time.
    #[error("store did not answer within {}ms", .0.as_millis())]
    Timeout(Duration),
}

/// A store of attributes (a policy information point).
pub trait Provider: Send + Sync + 'static {
    /// Fetches the value stored under `key`.
    fn fetch<'a>(&'a self, key: &'a str) -> FetchFuture<'a>;
}

/// What an attribute is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    /// The subject's id.
    Subject,
    /// The resource's id.
    Resource,
    /// Both: `<subject id>|<resource id>`.
    Both,
}

impl KeyBy {
    /// The key of a request.
    pub fn key(self, request: &AccessRequest) -> String {
        match self {
            Self::Subject => request.subject.id.clone(),
            Self::Resource => request.resource.id.clone(),
            Self::Both => format!("{}|{}", request.subject.id, request.resource.id),
        }
    }
}

/// What happens to a decision when its attribute cannot be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The decision fails as *unavailable*: the PEP denies (HTTP 503). The default.
    #[default]
    Deny,
    /// The attribute is left out of the context (the policy sees it absent, never a value
    /// the client sent: a member of that name from the client is removed too).
    Omit,
}

/// One attribute of a package's context: its name in `context`, where it comes from, what it
/// is keyed by, how long it may be cached, and what happens when the store fails.
#[derive(Clone)]
pub struct Attribute {
    pub(crate) name: String,
    pub(crate) key: KeyBy,
    pub(crate) ttl: Duration,
    pub(crate) on_error: OnError,
    pub(crate) provider: std::sync::Arc<dyn Provider>,
}

impl std::fmt::Debug for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribute")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl Attribute {
    /// `context.<name>`, fetched from `provider` by `key`; not cached, denied on error.
    pub fn new(name: impl Into<String>, key: KeyBy, provider: impl Provider) -> Self {
        Self {
            name: name.into(),
            key,
            ttl: Duration::ZERO,
            on_error: OnError::Deny,
            provider: std::sync::Arc::new(provider),
        }
    }

    /// How long a fetched value may be reused (default: not at all).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// What happens when the store fails (default [`OnError::Deny`]).
    #[must_use]
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// The attribute's name in `context`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A JSON value from a store's text: garbage when it is not JSON.
pub(crate) fn parse_json(text: &str) -> Result<Value, FetchError> {
    serde_json::from_str(text).map_err(|e| {
        let shown: String = text.chars().take(40).collect();
        FetchError::Garbage(format!("`{shown}` is not JSON: {e}"))
    })
}
