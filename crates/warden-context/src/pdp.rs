//! The PDP wrapper that adds a package's context attributes to each request before deciding.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;
use warden_decision::{
    AccessRequest, BatchFuture, Decision, Pdp, PdpError, PdpFuture, PolicyRevision,
};

use crate::provider::{Attribute, FetchError, OnError};

/// Most values the cache keeps.
const CACHE_ENTRIES: usize = 10_000;

type Cache = Mutex<HashMap<(usize, String), (Value, Instant)>>;

/// Wraps a PDP: before each decision it fetches the declared attributes — concurrently, all
/// within the decision timeout — and puts them into the request's `context` under their names,
/// replacing anything the caller put there under those names.
///
/// A store that is down, slow or answers garbage ends, per attribute, in its [`OnError`]: by
/// default the decision fails as *unavailable* (the PEP denies; HTTP 503), never in a permit
/// made without the attribute. The attributes are in the request the wrapped PDP sees, so a
/// [`DecisionCache`](warden_decision::DecisionCache) *inside* this wrapper keys its entries by
/// their values: when a value changes, the cached decision is not reused.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use warden_context::{Attribute, ContextPdp, FetchFuture, KeyBy, Provider};
/// use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
///
/// /// A store in memory: the sensitivity of each resource.
/// struct Inventory;
/// impl Provider for Inventory {
///     fn fetch<'a>(&'a self, key: &'a str) -> FetchFuture<'a> {
///         Box::pin(async move { Ok(serde_json::json!(if key == "/vault" { "high" } else { "low" })) })
///     }
/// }
///
/// let pdp = ContextPdp::new(warden_test::StaticPdp::permit())
///     .attribute(Attribute::new("sensitivity", KeyBy::Resource, Inventory));
/// let request = AccessRequest::new(Subject::new("user", "alice"), Action::new("GET"), Resource::new("route", "/vault"))
///     .with_context("sensitivity", "low"); // what a caller sends is replaced
/// let enriched = pdp.enrich(&request).await.unwrap();
/// assert_eq!(enriched.context["sensitivity"], "high");
/// # });
/// ```
pub struct ContextPdp<P> {
    inner: P,
    attributes: Vec<Attribute>,
    timeout: Duration,
    cache: Arc<Cache>,
}

impl<P> fmt::Debug for ContextPdp<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextPdp")
            .field("attributes", &self.attributes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<P: Pdp> ContextPdp<P> {
    /// No attributes yet; a 1 s budget for fetching them.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            attributes: Vec::new(),
            timeout: Duration::from_secs(1),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Adds an attribute.
    #[must_use]
    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Adds several attributes (e.g. a package's declaration, [`crate::ContextConfig`]).
    #[must_use]
    pub fn attributes(mut self, attributes: impl IntoIterator<Item = Attribute>) -> Self {
        self.attributes.extend(attributes);
        self
    }

    /// The budget for fetching all attributes of one request (default 1 s): a store that has
    /// not answered by then has failed.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The request with the attributes in its context, or why the decision must fail.
    pub async fn enrich(&self, request: &AccessRequest) -> Result<AccessRequest, PdpError> {
        let mut request = request.clone();
        let now = Instant::now();
        let mut fetches = JoinSet::new();
        for (index, attribute) in self.attributes.iter().enumerate() {
            // Whatever the caller sent under this name is never what the policy sees.
            request.context.remove(&attribute.name);
            let key = attribute.key.key(&request);
            if !attribute.ttl.is_zero()
                && let Some(value) = self.cached(index, &key, attribute.ttl, now)
            {
                request.context.insert(attribute.name.clone(), value);
                continue;
            }
            let provider = attribute.provider.clone();
            let timeout = self.timeout;
            fetches.spawn(async move {
                let result = match tokio::time::timeout(timeout, provider.fetch(&key)).await {
                    Ok(result) => result,
                    Err(_) => Err(FetchError::Timeout(timeout)),
                };
                (index, key, result)
            });
        }
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_millis(50);
        let mut failure = None;
        let mut done = vec![false; self.attributes.len()];
        while !fetches.is_empty() {
            let joined = match tokio::time::timeout_at(deadline, fetches.join_next()).await {
                Ok(Some(joined)) => joined,
                Ok(None) | Err(_) => break,
            };
            let Ok((index, key, result)) = joined else {
                continue;
            };
            let Some(attribute) = self.attributes.get(index) else {
                continue;
            };
            if let Some(slot) = done.get_mut(index) {
                *slot = true;
            }
            match result {
                Ok(value) => {
                    if !attribute.ttl.is_zero() {
                        self.store(index, key, value.clone());
                    }
                    request.context.insert(attribute.name.clone(), value);
                }
                Err(error) => {
                    tracing::warn!(attribute = %attribute.name, %error, "context attribute not fetched");
                    if attribute.on_error == OnError::Deny && failure.is_none() {
                        failure = Some(format!("context `{}`: {error}", attribute.name));
                    }
                }
            }
        }
        fetches.abort_all();
        // An attribute whose fetch never finished (a panicking provider) fails like a timeout.
        for (index, attribute) in self.attributes.iter().enumerate() {
            let cached = request.context.contains_key(&attribute.name);
            if !done.get(index).copied().unwrap_or(true)
                && !cached
                && attribute.on_error == OnError::Deny
                && failure.is_none()
            {
                failure = Some(format!("context `{}`: no answer", attribute.name));
            }
        }
        match failure {
            Some(message) => Err(PdpError::unavailable(message)),
            None => Ok(request),
        }
    }

    fn cached(&self, index: usize, key: &str, ttl: Duration, now: Instant) -> Option<Value> {
        let cache = self.cache.lock().ok()?;
        let (value, at) = cache.get(&(index, key.to_owned()))?;
        (now.duration_since(*at) < ttl).then(|| value.clone())
    }

    fn store(&self, index: usize, key: String, value: Value) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                let oldest_allowed = self
                    .attributes
                    .iter()
                    .map(|a| a.ttl)
                    .max()
                    .unwrap_or_default();
                cache.retain(|_, (_, at)| at.elapsed() < oldest_allowed);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert((index, key), (value, Instant::now()));
        }
    }
}

impl<P: Pdp> Pdp for ContextPdp<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let request = self.enrich(request).await?;
            self.inner.decide(&request).await
        })
    }

    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        Box::pin(async move {
            let mut enriched = Vec::with_capacity(requests.len());
            let mut failed: Vec<Option<PdpError>> = Vec::with_capacity(requests.len());
            for request in requests {
                match self.enrich(request).await {
                    Ok(r) => {
                        enriched.push(r);
                        failed.push(None);
                    }
                    Err(e) => failed.push(Some(e)),
                }
            }
            let mut decided = self.inner.decide_batch(&enriched).await.into_iter();
            failed
                .into_iter()
                .map(|f| match f {
                    Some(error) => Err(error),
                    None => decided.next().unwrap_or_else(|| {
                        Err(PdpError::unavailable("the PDP answered fewer decisions"))
                    }),
                })
                .collect::<Vec<Result<Decision, PdpError>>>()
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
