//! A circuit breaker: stop asking a PDP that keeps failing, and probe until it recovers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decision::PolicyRevision;
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

/// When a [`CircuitBreaker`] opens and how it recovers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Opens after this many consecutive failures (default 5).
    pub consecutive_failures: u32,
    /// Also opens when at least this share of the calls in `window` failed (default none)...
    pub failure_rate: Option<f64>,
    /// ...over this window (default 10 s)...
    pub window: Duration,
    /// ...and the window holds at least this many calls (default 20).
    pub min_calls: u32,
    /// How long it stays open before letting probes through (default 5 s).
    pub open_for: Duration,
    /// How many probes must succeed, half-open, before it closes (default 1).
    pub probes: u32,
    /// After it closes, the share of calls let through grows from 5 % to all of them over this
    /// time, so a PDP that just recovered is not hit by the whole backlog at once (default none:
    /// all at once). Calls held back fail at once as unavailable, like calls while open.
    pub ramp_up: Duration,
    /// Where the state and openings are counted (default none).
    pub metrics: Option<Arc<super::metrics::PdpMetrics>>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: None,
            window: Duration::from_secs(10),
            min_calls: 20,
            open_for: Duration::from_secs(5),
            probes: 1,
            ramp_up: Duration::ZERO,
            metrics: None,
        }
    }
}

impl BreakerConfig {
    /// Opens after `n` consecutive failures.
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n.max(1);
        self
    }

    /// Opens when `rate` (0–1) of at least `min_calls` calls within `window` failed.
    #[must_use]
    pub fn failure_rate(mut self, rate: f64, window: Duration, min_calls: u32) -> Self {
        self.failure_rate = Some(rate.clamp(0.0, 1.0));
        self.window = window;
        self.min_calls = min_calls.max(1);
        self
    }

    /// Stays open this long before probing.
    #[must_use]
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }

    /// Reports the state and each opening into `metrics`.
    #[must_use]
    pub fn metrics(mut self, metrics: Arc<super::metrics::PdpMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Ramps traffic up over `d` after closing.
    #[must_use]
    pub fn ramp_up(mut self, d: Duration) -> Self {
        self.ramp_up = d;
        self
    }

    /// Closes after `n` successful probes.
    #[must_use]
    pub fn probes(mut self, n: u32) -> Self {
        self.probes = n.max(1);
        self
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once with [`PdpError::Unavailable`].
    Open,
    /// A limited number of probe calls go through.
    HalfOpen,
}

#[derive(Debug)]
struct State {
    state: BreakerState,
    consecutive: u32,
    calls: VecDeque<(Instant, bool)>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    /// Since when traffic ramps up, and the credit of calls to let through: each call adds
    /// the share of the moment, a call let through spends one.
    ramping: Option<(Instant, f64)>,
    opened: u64,
}

/// A PDP that stops calling an inner PDP that keeps being unavailable.
///
/// Only *unavailable* errors (transport, timeout, overload) and malformed answers
/// ([`PdpError::Malformed`]) count as failures: a policy error or a deny is an answer. While open, every call fails at once with [`PdpError::Unavailable`], so a
/// fallback can take over without waiting for timeouts.
#[derive(Debug)]
pub struct CircuitBreaker<P> {
    inner: P,
    config: BreakerConfig,
    state: Mutex<State>,
}

enum Admission {
    Call { probe: bool },
    Reject,
}

impl<P: Pdp> CircuitBreaker<P> {
    /// Guards `inner`.
    pub fn new(inner: P, config: BreakerConfig) -> Self {
        Self {
            inner,
            config,
            state: Mutex::new(State {
                state: BreakerState::Closed,
                consecutive: 0,
                calls: VecDeque::new(),
                opened_at: None,
                probes_in_flight: 0,
                probe_successes: 0,
                ramping: None,
                opened: 0,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let now = Instant::now();
        self.state.lock().map_or(BreakerState::Open, |mut s| {
            self.advance(&mut s, now);
            s.state
        })
    }

    /// Open → half-open once `open_for` has passed.
    fn advance(&self, s: &mut State, now: Instant) {
        if s.state == BreakerState::Open
            && s.opened_at
                .is_some_and(|at| now.duration_since(at) >= self.config.open_for)
        {
            s.state = BreakerState::HalfOpen;
            s.probes_in_flight = 0;
            s.probe_successes = 0;
            if let Some(metrics) = &self.config.metrics {
                metrics.breaker(BreakerState::HalfOpen);
            }
        }
    }

    fn admit(&self) -> Admission {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return Admission::Reject;
        };
        self.advance(&mut s, now);
        match s.state {
            BreakerState::Closed => self.ramp(&mut s, now),
            BreakerState::Open => Admission::Reject,
            BreakerState::HalfOpen => {
                if s.probes_in_flight + s.probe_successes < self.config.probes {
                    s.probes_in_flight += 1;
                    Admission::Call { probe: true }
                } else {
                    Admission::Reject
                }
            }
        }
    }

    /// How many times the breaker opened.
    pub fn opened(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.opened)
    }

    /// Closed: all calls, or during the ramp-up a share growing with the time since closing.
    fn ramp(&self, s: &mut State, now: Instant) -> Admission {
        let Some((since, credit)) = s.ramping.as_mut() else {
            return Admission::Call { probe: false };
        };
        let elapsed = now.duration_since(*since);
        if elapsed >= self.config.ramp_up {
            s.ramping = None;
            return Admission::Call { probe: false };
        }
        let share = (elapsed.as_secs_f64() / self.config.ramp_up.as_secs_f64()).max(0.05);
        *credit += share;
        if *credit >= 1.0 {
            *credit -= 1.0;
            Admission::Call { probe: false }
        } else {
            Admission::Reject
        }
    }

    fn record(&self, failed: bool, probe: bool) {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if probe {
            s.probes_in_flight = s.probes_in_flight.saturating_sub(1);
            if s.state != BreakerState::HalfOpen {
                return;
            }
            if failed {
                self.open(&mut s, now);
            } else {
                s.probe_successes += 1;
                if s.probe_successes >= self.config.probes {
                    s.state = BreakerState::Closed;
                    s.consecutive = 0;
                    s.calls.clear();
                    s.ramping = (!self.config.ramp_up.is_zero()).then_some((now, 0.0));
                    if let Some(metrics) = &self.config.metrics {
                        metrics.breaker(BreakerState::Closed);
                    }
                    tracing::info!(target: "warden::breaker", "circuit closed: the PDP answers again");
                }
            }
            return;
        }
        if s.state != BreakerState::Closed {
            return;
        }
        s.consecutive = if failed { s.consecutive + 1 } else { 0 };
        s.calls.push_back((now, failed));
        while s
            .calls
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > self.config.window)
        {
            s.calls.pop_front();
        }
        let rate_exceeded = self.config.failure_rate.is_some_and(|rate| {
            let total = s.calls.len();
            let failures = s.calls.iter().filter(|(_, f)| *f).count();
            total >= self.config.min_calls as usize && failures as f64 >= rate * total as f64
        });
        if s.consecutive >= self.config.consecutive_failures || rate_exceeded {
            self.open(&mut s, now);
        }
    }

    fn open(&self, s: &mut State, now: Instant) {
        s.state = BreakerState::Open;
        s.opened += 1;
        s.ramping = None;
        if let Some(metrics) = &self.config.metrics {
            metrics.breaker_opened();
        }
        s.opened_at = Some(now);
        s.probes_in_flight = 0;
        s.probe_successes = 0;
        tracing::warn!(
            target: "warden::breaker",
            open_for_ms = self.config.open_for.as_millis() as u64,
            "circuit opened: the PDP keeps failing"
        );
    }
}

struct Pending<'a, P: Pdp> {
    breaker: &'a CircuitBreaker<P>,
    probe: bool,
    done: bool,
}

impl<P: Pdp> Drop for Pending<'_, P> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.record(true, true);
        }
    }
}

impl<P: Pdp> Pdp for CircuitBreaker<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let Admission::Call { probe } = self.admit() else {
                return Err(PdpError::unavailable("circuit open or ramping up"));
            };
            // A call dropped before it answers (its request went away) counts as a failure,
            // so that a cancelled probe cannot leave the breaker half-open for ever.
            let mut guard = Pending {
                breaker: self,
                probe,
                done: false,
            };
            let result = self.inner.decide(request).await;
            guard.done = true;
            let failed = matches!(&result, Err(e) if e.is_pdp_failure());
            self.record(failed, probe);
            result
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
