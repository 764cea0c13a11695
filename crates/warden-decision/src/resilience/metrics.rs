//! Metrics of the PDP calls and the circuit breaker: latency, failures, breaker state.
//!
//! A [`PdpMetrics`] is shared (`Arc`) between a [`Measured`] wrapper (around the PDP whose calls
//! it times) and a [`CircuitBreaker`](crate::CircuitBreaker) (configured with
//! [`BreakerConfig::metrics`](crate::BreakerConfig::metrics)). It renders itself in the
//! Prometheus text format; `warden-telemetry` exports the same atomics over OpenTelemetry.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use warden_decision::{BreakerConfig, Decision, Pdp, PdpExt, PdpMetrics};
//! # use warden_decision::{AccessRequest, PdpFuture};
//! # struct Remote;
//! # impl Pdp for Remote {
//! #     fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
//! #         Box::pin(async { Ok(Decision::permit()) })
//! #     }
//! # }
//! let metrics = PdpMetrics::new();
//! let pdp = Remote
//!     .measured(metrics.clone())
//!     .with_breaker(BreakerConfig::default().metrics(metrics.clone()));
//! # let request = AccessRequest::new(warden_decision::Subject::user("a"), warden_decision::Action::new("GET"), warden_decision::Resource::new("route", "/"));
//! pdp.decide(&request).await.unwrap();
//! let text = metrics.render_prometheus();
//! assert!(text.contains("warden_pdp_duration_seconds_count 1"));
//! assert!(text.contains("warden_breaker_state 0"));
//! # });
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::decision::PolicyRevision;
use crate::pdp::{Pdp, PdpFuture};
use crate::request::AccessRequest;

use super::breaker::BreakerState;

/// Upper bounds of the PDP latency buckets, in microseconds.
pub const PDP_LATENCY_BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Counters of PDP calls and of a breaker (never blocks, never allocates on the request path).
#[derive(Debug, Default)]
pub struct PdpMetrics {
    calls: AtomicU64,
    failures: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; PDP_LATENCY_BUCKETS_US.len()],
    breaker_state: AtomicU8,
    breaker_opened: AtomicU64,
}

impl PdpMetrics {
    /// New, shared metrics.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn call(&self, took: Duration, failed: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bucket) = PDP_LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .and_then(|i| self.buckets.get(i))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn breaker(&self, state: BreakerState) {
        self.breaker_state
            .store(state_code(state), Ordering::Relaxed);
    }

    pub(crate) fn breaker_opened(&self) {
        self.breaker_opened.fetch_add(1, Ordering::Relaxed);
        self.breaker(BreakerState::Open);
    }

    /// PDP calls timed.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Of those, how many failed (unavailable or malformed).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The sum of the calls' latencies.
    pub fn latency_sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// Calls per latency bucket (not cumulative), by [`PDP_LATENCY_BUCKETS_US`]; slower calls
    /// are only in [`calls`](Self::calls).
    pub fn latency_buckets(&self) -> [u64; PDP_LATENCY_BUCKETS_US.len()] {
        std::array::from_fn(|i| self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed)))
    }

    /// The breaker's state: 0 closed, 1 half-open, 2 open.
    pub fn breaker_state(&self) -> u8 {
        self.breaker_state.load(Ordering::Relaxed)
    }

    /// How often the breaker opened.
    pub fn breaker_opened_total(&self) -> u64 {
        self.breaker_opened.load(Ordering::Relaxed)
    }

    /// The Prometheus text format: `warden_pdp_duration_seconds` (histogram),
    /// `warden_pdp_failures_total`, `warden_breaker_state` (0 closed, 1 half-open, 2 open) and
    /// `warden_breaker_opened_total`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP warden_pdp_duration_seconds Time the PDP took to answer.\n# TYPE warden_pdp_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in PDP_LATENCY_BUCKETS_US.iter().zip(self.latency_buckets()) {
            cumulative += count;
            let _ = writeln!(
                out,
                "warden_pdp_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        let calls = self.calls();
        let _ = writeln!(
            out,
            "warden_pdp_duration_seconds_bucket{{le=\"+Inf\"}} {calls}\nwarden_pdp_duration_seconds_sum {}\nwarden_pdp_duration_seconds_count {calls}",
            self.latency_sum().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP warden_pdp_failures_total PDP calls that failed (unavailable or malformed).\n# TYPE warden_pdp_failures_total counter\nwarden_pdp_failures_total {}",
            self.failures()
        );
        let _ = writeln!(
            out,
            "# HELP warden_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open.\n# TYPE warden_breaker_state gauge\nwarden_breaker_state {}",
            self.breaker_state()
        );
        let _ = writeln!(
            out,
            "# HELP warden_breaker_opened_total How often the circuit breaker opened.\n# TYPE warden_breaker_opened_total counter\nwarden_breaker_opened_total {}",
            self.breaker_opened_total()
        );
        out
    }
}

fn state_code(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// A PDP whose calls are timed into a [`PdpMetrics`].
#[derive(Debug)]
pub struct Measured<P> {
    inner: P,
    metrics: Arc<PdpMetrics>,
}

impl<P> Measured<P> {
    /// Times the calls of `inner`.
    pub fn new(inner: P, metrics: Arc<PdpMetrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<P: Pdp> Pdp for Measured<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.decide(request).await;
            let failed = matches!(&result, Err(e) if e.is_pdp_failure());
            self.metrics.call(started.elapsed(), failed);
            result
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
