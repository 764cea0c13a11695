//! Several PDP replicas behind one [`Pdp`]: health checks, outlier ejection, a retry budget,
//! optional hedging and a concurrency limit that sheds load at once.
//!
//! ```no_run
//! # fn run() -> Result<(), warden_remote::RemoteError> {
//! use std::time::Duration;
//! use warden_remote::Replicas;
//!
//! let pdp = Replicas::authzen(["http://10.0.0.1:8181", "http://10.0.0.2:8181"])
//!     .configure(|endpoint| endpoint.timeout(Duration::from_millis(250)))
//!     .deadline(Duration::from_millis(500))
//!     .retry_budget(0.2)
//!     .hedge_after(0.95)
//!     .max_in_flight(64)
//!     .build()?;
//! # let _ = pdp;
//! # Ok(())
//! # }
//! ```
//!
//! * **Health**: every `health_every` each replica's `GET /health` is asked; one that does not
//!   answer `2xx` in time is not chosen until it does.
//! * **Outlier ejection**: a replica that fails `eject_after` decisions in a row is left out for
//!   `eject_for`, then tried again.
//! * **Retries**: a decision that failed in a way that is safe to try elsewhere (unavailable,
//!   timed out, malformed, answered under an older revision) is tried on another replica, if
//!   the *deadline* leaves time and the *budget* allows: retries are at most `retry_budget` of
//!   the decisions (plus a small reserve), so an outage never doubles the load on the rest. A
//!   policy error is never retried.
//! * **Hedging** (off by default): when a replica has not answered after the given percentile
//!   of recent latencies, the same decision is asked of another one and the first answer wins;
//!   hedges are paid from the retry budget.
//! * **Concurrency limit**: each replica has at most `max_in_flight` decisions in flight; a
//!   decision that finds every replica full fails at once as unavailable (a fast 503), instead
//!   of queuing behind a stopped server.
//! * **Revisions**: the set follows the newest revision any replica reports. An answer under an
//!   older one (a replica that has not reloaded yet) is refused and tried elsewhere; the set's
//!   [`revision`](Pdp::revision) is reported only while a replica confirms it, so a cache above
//!   stops serving an old revision as soon as one replica switched.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use warden_decision::{AccessRequest, Decision, Pdp, PdpError, PdpFuture, PolicyRevision};

use crate::{RemoteError, RemotePdp, RemotePdpBuilder};

/// How many recent latencies hedging looks at.
const SAMPLES: usize = 256;

type Configure = Box<dyn Fn(RemotePdpBuilder) -> RemotePdpBuilder + Send + Sync>;

/// Builds a [`Replicas`].
pub struct ReplicasBuilder {
    urls: Vec<String>,
    configure: Configure,
    deadline: Duration,
    health_every: Option<Duration>,
    eject_after: u32,
    eject_for: Duration,
    retry_budget: f64,
    hedge_after: Option<f64>,
    max_in_flight: usize,
}

impl std::fmt::Debug for ReplicasBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicasBuilder")
            .field("urls", &self.urls)
            .field("deadline", &self.deadline)
            .field("health_every", &self.health_every)
            .field("eject_after", &self.eject_after)
            .field("eject_for", &self.eject_for)
            .field("retry_budget", &self.retry_budget)
            .field("hedge_after", &self.hedge_after)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl ReplicasBuilder {
    /// How each replica's client is configured (timeout, headers, revision watch).
    #[must_use]
    pub fn configure(
        mut self,
        f: impl Fn(RemotePdpBuilder) -> RemotePdpBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// The time one decision may take, retries and hedges included (default 1 s).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How often each replica's health is checked (default 1 s); `None` turns it off.
    #[must_use]
    pub fn health_every(mut self, every: Option<Duration>) -> Self {
        self.health_every = every;
        self
    }

    /// Ejects a replica for `duration` after `failures` failed decisions in a row (default 3
    /// and 2 s).
    #[must_use]
    pub fn eject_after(mut self, failures: u32, duration: Duration) -> Self {
        self.eject_after = failures.max(1);
        self.eject_for = duration;
        self
    }

    /// The share of decisions that may be retried or hedged (default 0.2; 0 turns both off).
    #[must_use]
    pub fn retry_budget(mut self, share: f64) -> Self {
        self.retry_budget = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Hedges after this percentile (0–1) of recent latencies (default off).
    #[must_use]
    pub fn hedge_after(mut self, percentile: f64) -> Self {
        self.hedge_after = percentile.is_finite().then(|| percentile.clamp(0.5, 0.999));
        self
    }

    /// The most decisions in flight per replica (default 256).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Builds the clients. Fails when there is no URL or one is invalid.
    pub fn build(self) -> Result<Replicas, RemoteError> {
        if self.urls.is_empty() {
            return Err(RemoteError::InvalidUrl {
                url: String::new(),
                reason: "a replica set needs at least one URL".into(),
            });
        }
        let mut endpoints = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let pdp = (self.configure)(RemotePdp::authzen(url)).build()?;
            endpoints.push(Endpoint {
                base: url.trim_end_matches('/').to_owned(),
                pdp,
                in_flight: AtomicUsize::new(0),
                consecutive_failures: AtomicU32::new(0),
                state: Mutex::new(EndpointState::default()),
                decisions: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                ejections: AtomicU64::new(0),
            });
        }
        let inner = Arc::new(Shared {
            endpoints,
            next: AtomicUsize::new(0),
            config: Config {
                deadline: self.deadline,
                eject_after: self.eject_after,
                eject_for: self.eject_for,
                retry_budget: self.retry_budget,
                hedge_after: self.hedge_after,
                max_in_flight: self.max_in_flight,
            },
            budget: Mutex::new(BUDGET_RESERVE),
            latencies: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            history: Mutex::new(warden_decision::RevisionHistory::default()),
            shed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
        });
        if let Some(every) = self.health_every
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(health_loop(Arc::downgrade(&inner), every));
        }
        Ok(Replicas { inner })
    }
}

/// Retries always allowed before the budget has been earned (so one failure early on can
/// still be retried).
const BUDGET_RESERVE: f64 = 3.0;
/// The most retry credit saved up.
const BUDGET_CAP: f64 = 20.0;

#[derive(Debug)]
struct Config {
    deadline: Duration,
    eject_after: u32,
    eject_for: Duration,
    retry_budget: f64,
    hedge_after: Option<f64>,
    max_in_flight: usize,
}

#[derive(Debug, Default)]
struct EndpointState {
    unhealthy: bool,
    ejected_until: Option<Instant>,
}

#[derive(Debug)]
struct Endpoint {
    base: String,
    pdp: RemotePdp,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    state: Mutex<EndpointState>,
    decisions: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU64,
}

impl Endpoint {
    fn eligible(&self, now: Instant, max_in_flight: usize) -> bool {
        let Ok(state) = self.state.lock() else {
            return false;
        };
        !state.unhealthy
            && state.ejected_until.is_none_or(|until| now >= until)
            && self.in_flight.load(Ordering::Relaxed) < max_in_flight
    }
}

#[derive(Debug)]
struct Shared {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    config: Config,
    budget: Mutex<f64>,
    latencies: Mutex<VecDeque<Duration>>,
    history: Mutex<warden_decision::RevisionHistory>,
    shed: AtomicU64,
    retries: AtomicU64,
    hedges: AtomicU64,
}

/// Counts of one replica, from [`Replicas::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The replica's base URL.
    pub url: String,
    /// Decisions asked of it.
    pub decisions: u64,
    /// Of those, how many failed.
    pub failures: u64,
    /// How often it was ejected.
    pub ejections: u64,
    /// Whether its last health check failed.
    pub unhealthy: bool,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// Decisions in flight now.
    pub in_flight: usize,
}

/// Counts of a [`Replicas`] set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicasStats {
    /// Per replica.
    pub endpoints: Vec<EndpointStats>,
    /// Decisions refused at once because every replica was full, ejected or unhealthy.
    pub shed: u64,
    /// Retries made.
    pub retries: u64,
    /// Hedges sent.
    pub hedges: u64,
}

/// Several replicas of one PDP as one [`Pdp`].
///
/// * **Health**: every `health_every` each replica's `GET /health` is asked; one that does not
///   answer `2xx` in time is not chosen until it does.
/// * **Outlier ejection**: a replica that fails `eject_after` decisions in a row is left out for
///   `eject_for`, then tried again.
/// * **Retries**: a decision that failed in a way that is safe to try elsewhere (unavailable,
///   timed out, malformed, answered under an older revision) is tried on another replica, if
///   the *deadline* leaves time and the *budget* allows: retries are at most `retry_budget` of
///   the decisions (plus a small reserve), so an outage never doubles the load on the rest. A
///   policy error is never retried.
/// * **Hedging** (off by default): when a replica has not answered after the given percentile
///   of recent latencies, the same decision is asked of another one and the first answer wins;
///   hedges are paid from the retry budget.
/// * **Concurrency limit**: each replica has at most `max_in_flight` decisions in flight; a
///   decision that finds every replica full fails at once as unavailable (a fast 503), instead
///   of queuing behind a stopped server.
/// * **Revisions**: the set follows the newest revision any replica reports. An answer under an
///   older one (a replica that has not reloaded yet) is refused and tried elsewhere; the set's
///   [`revision`](Pdp::revision) is reported only while a replica confirms it, so a cache above
///   stops serving an old revision as soon as one replica switched.
#[derive(Debug, Clone)]
pub struct Replicas {
    inner: Arc<Shared>,
}

impl Replicas {
    /// A set of AuthZEN replicas.
    pub fn authzen<I, S>(urls: I) -> ReplicasBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ReplicasBuilder {
            urls: urls.into_iter().map(Into::into).collect(),
            configure: Box::new(|b| b),
            deadline: Duration::from_secs(1),
            health_every: Some(Duration::from_secs(1)),
            eject_after: 3,
            eject_for: Duration::from_secs(2),
            retry_budget: 0.2,
            hedge_after: None,
            max_in_flight: 256,
        }
    }

    /// What each replica did so far.
    pub fn stats(&self) -> ReplicasStats {
        let now = Instant::now();
        ReplicasStats {
            endpoints: self
                .inner
                .endpoints
                .iter()
                .map(|e| {
                    let (unhealthy, ejected) = e.state.lock().map_or((true, true), |s| {
                        (s.unhealthy, s.ejected_until.is_some_and(|u| now < u))
                    });
                    EndpointStats {
                        url: e.base.clone(),
                        decisions: e.decisions.load(Ordering::Relaxed),
                        failures: e.failures.load(Ordering::Relaxed),
                        ejections: e.ejections.load(Ordering::Relaxed),
                        unhealthy,
                        ejected,
                        in_flight: e.in_flight.load(Ordering::Relaxed),
                    }
                })
                .collect(),
            shed: self.inner.shed.load(Ordering::Relaxed),
            retries: self.inner.retries.load(Ordering::Relaxed),
            hedges: self.inner.hedges.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// The next eligible replica after round-robin, other than `except`.
    fn pick(&self, except: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !except.contains(i))
            .find(|&i| {
                self.endpoints
                    .get(i)
                    .is_some_and(|e| e.eligible(now, self.config.max_in_flight))
            })
    }

    fn earn(&self) {
        if let Ok(mut budget) = self.budget.lock() {
            *budget = (*budget + self.config.retry_budget).min(BUDGET_CAP);
        }
    }

    fn spend(&self) -> bool {
        if self.config.retry_budget <= 0.0 {
            return false;
        }
        self.budget.lock().is_ok_and(|mut budget| {
            if *budget >= 1.0 {
                *budget -= 1.0;
                true
            } else {
                false
            }
        })
    }

    fn hedge_delay(&self) -> Option<Duration> {
        let percentile = self.config.hedge_after?;
        let samples = self.latencies.lock().ok()?;
        if samples.len() < 20 {
            return None;
        }
        let mut sorted: Vec<Duration> = samples.iter().copied().collect();
        sorted.sort();
        let index = ((sorted.len() - 1) as f64 * percentile).round() as usize;
        sorted.get(index).copied()
    }

    fn note_latency(&self, latency: Duration) {
        if let Ok(mut samples) = self.latencies.lock() {
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(latency);
        }
    }

    /// One decision from replica `index`, counted, with its outcome fed to ejection.
    async fn ask(&self, index: usize, request: &AccessRequest) -> Result<Decision, PdpError> {
        let Some(endpoint) = self.endpoints.get(index) else {
            return Err(PdpError::unavailable("no such replica"));
        };
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let _release = Release(&endpoint.in_flight);
        endpoint.decisions.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut result = endpoint.pdp.decide(request).await;
        if let Ok(decision) = &result
            && !decision.policy.revision.is_empty()
        {
            let older = self
                .history
                .lock()
                .is_ok_and(|mut h| h.observe(&decision.policy) == warden_decision::Observed::Older);
            if older {
                result = Err(PdpError::unavailable(format!(
                    "revision_unavailable: replica {} answered under revision `{}`, older than the one in force",
                    endpoint.base, decision.policy.revision
                )));
            }
        }
        match &result {
            Ok(_) => {
                self.note_latency(started.elapsed());
                endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Err(error) if error.is_pdp_failure() => {
                endpoint.failures.fetch_add(1, Ordering::Relaxed);
                let failures = endpoint
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if failures >= self.config.eject_after
                    && let Ok(mut state) = endpoint.state.lock()
                {
                    state.ejected_until = Some(Instant::now() + self.config.eject_for);
                    endpoint.consecutive_failures.store(0, Ordering::Relaxed);
                    endpoint.ejections.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "warden::remote",
                        replica = %endpoint.base,
                        %error,
                        eject_ms = self.config.eject_for.as_millis() as u64,
                        "replica ejected"
                    );
                }
            }
            Err(_) => {}
        }
        result
    }

    async fn decide(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        self.earn();
        let deadline = tokio::time::Instant::now() + self.config.deadline;
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error = None;
        loop {
            let Some(first) = self.pick(&tried) else {
                if tried.is_empty() {
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(PdpError::unavailable(
                        "no replica can take the decision: all are full, ejected or unhealthy",
                    ));
                }
                return Err(last_error.unwrap_or_else(|| PdpError::unavailable("no replica left")));
            };
            tried.push(first);
            let attempt = self.attempt(first, request, &mut tried);
            let result = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(PdpError::Timeout {
                        after: self.config.deadline,
                    });
                }
            };
            match result {
                Ok(decision) => return Ok(decision),
                Err(error) if !error.is_pdp_failure() => return Err(error),
                Err(error) => {
                    let time_left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if time_left < Duration::from_millis(5) || !self.spend() {
                        return Err(error);
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    last_error = Some(error);
                }
            }
        }
    }

    /// One attempt on `first`, hedged on another replica when it is slow.
    async fn attempt(
        &self,
        first: usize,
        request: &AccessRequest,
        tried: &mut Vec<usize>,
    ) -> Result<Decision, PdpError> {
        let primary = self.ask(first, request);
        let Some(delay) = self.hedge_delay() else {
            return primary.await;
        };
        tokio::pin!(primary);
        tokio::select! {
            result = &mut primary => return result,
            () = tokio::time::sleep(delay) => {}
        }
        let Some(second) = self.pick(tried) else {
            return primary.await;
        };
        if !self.spend() {
            return primary.await;
        }
        tried.push(second);
        self.hedges.fetch_add(1, Ordering::Relaxed);
        let hedge = self.ask(second, request);
        tokio::pin!(hedge);
        // The first good answer wins; a failure waits for the other.
        tokio::select! {
            result = &mut primary => match result {
                Ok(decision) => Ok(decision),
                Err(_) => hedge.await,
            },
            result = &mut hedge => match result {
                Ok(decision) => Ok(decision),
                Err(_) => primary.await,
            },
        }
    }

    /// The newest revision a replica confirms now.
    fn revision(&self) -> Option<PolicyRevision> {
        let reported: Vec<PolicyRevision> = self
            .endpoints
            .iter()
            .filter_map(|e| e.pdp.revision())
            .collect();
        let mut history = self.history.lock().ok()?;
        for revision in &reported {
            history.observe(revision);
        }
        let current = history.current()?.clone();
        reported
            .iter()
            .any(|r| r.id == current.id && r.revision == current.revision)
            .then_some(current)
    }
}

struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn health_loop(shared: Weak<Shared>, every: Duration) {
    let Ok(client) = reqwest::Client::builder()
        .timeout(every.min(Duration::from_secs(2)))
        .build()
    else {
        return;
    };
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let urls: Vec<String> = strong
            .endpoints
            .iter()
            .map(|e| format!("{}/health", e.base))
            .collect();
        drop(strong);
        let mut results = Vec::with_capacity(urls.len());
        for url in &urls {
            let healthy = client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            results.push(healthy);
        }
        let Some(strong) = shared.upgrade() else {
            return;
        };
        for (endpoint, healthy) in strong.endpoints.iter().zip(results) {
            if let Ok(mut state) = endpoint.state.lock() {
                if state.unhealthy == healthy {
                    tracing::info!(target: "warden::remote", replica = %endpoint.base, healthy, "replica health changed");
                }
                state.unhealthy = !healthy;
            }
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

impl Pdp for Replicas {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.inner.decide(request))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
