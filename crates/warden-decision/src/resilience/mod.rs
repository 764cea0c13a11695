//! Resilience wrappers: each wraps a [`Pdp`] and is a [`Pdp`], so they stack like Tower layers.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use warden_decision::{BreakerConfig, CacheConfig, FallbackMode, Pdp, PdpExt};
//! # use warden_decision::{AccessRequest, Decision, PdpFuture};
//! # struct Remote;
//! # impl Pdp for Remote {
//! #     fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
//! #         Box::pin(async { Ok(Decision::permit()) })
//! #     }
//! # }
//!
//! // Read from the inside out: remote → timeout → breaker → cache → fallback.
//! let pdp = Remote
//!     .with_timeout(Duration::from_millis(250))
//!     .with_breaker(BreakerConfig::default().consecutive_failures(5))
//!     .with_cache(CacheConfig::default().ttl(Duration::from_secs(30)))
//!     .with_fallback(FallbackMode::Stale { max_age: Duration::from_secs(300) });
//! # let _ = pdp;
//! # });
//! ```

pub(crate) mod age;
mod breaker;
mod cache;
mod canonical;
mod fallback;
mod metrics;
mod revision;
mod rollout;
mod timeout;

#[cfg(test)]
mod age_tests;
#[cfg(test)]
mod breaker_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use cache::{CacheConfig, CacheStats, DecisionCache};
pub use fallback::{Fallback, FallbackMode, FallbackUse, RouteFallback};
pub use metrics::{Measured, PDP_LATENCY_BUCKETS_US, PdpMetrics};
pub use revision::{
    MIN_REVISION_CONTEXT, MIN_REVISION_HEADER, Observed, RevisionHistory, min_revision,
};
pub use rollout::{Canary, Shadow, ShadowStats};
pub use timeout::Timeout;

use crate::pdp::Pdp;

/// Builder methods that wrap a PDP in the resilience wrappers.
pub trait PdpExt: Pdp + Sized {
    /// Fails with [`PdpError::Timeout`](crate::PdpError::Timeout) past `after`.
    fn with_timeout(self, after: Duration) -> Timeout<Self> {
        Timeout::new(self, after)
    }

    /// Stops calling the PDP while it keeps being unavailable.
    fn with_breaker(self, config: BreakerConfig) -> CircuitBreaker<Self> {
        CircuitBreaker::new(self, config)
    }

    /// Remembers decisions per request and policy revision.
    fn with_cache(self, config: CacheConfig) -> DecisionCache<Self> {
        DecisionCache::new(self, config)
    }

    /// Times the calls into `metrics` (latency, failures).
    fn measured(self, metrics: std::sync::Arc<PdpMetrics>) -> Measured<Self> {
        Measured::new(self, metrics)
    }

    /// Answers with `mode` when the PDP is unavailable.
    fn with_fallback(self, mode: FallbackMode) -> Fallback<Self> {
        Fallback::new(self, mode)
    }

    /// Enforces this PDP's decisions and compares `candidate`'s on `share` (0–1) of the
    /// requests, off the request path.
    fn shadowed_by<B: Pdp + 'static>(self, candidate: B, share: f64) -> Shadow<Self, B> {
        Shadow::new(self, candidate, share)
    }

    /// Lets `candidate` decide for a sticky `share` (0–1) of the subjects.
    fn with_canary<B: Pdp>(self, candidate: B, share: f64) -> Canary<Self, B> {
        Canary::new(self, candidate, share)
    }
}

impl<P: Pdp + Sized> PdpExt for P {}
