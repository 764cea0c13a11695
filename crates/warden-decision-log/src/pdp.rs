//! A PDP wrapper that writes the decision log of every decision, synchronously where marked.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use warden_decision::{
    AccessRequest, BatchFuture, Decision, ErrorClass, Pdp, PdpError, PdpFuture, PolicyRevision,
};
use warden_telemetry::{DecisionEvent, Outcome, Pep};

use crate::log::DecisionLog;

type Marker = Arc<dyn Fn(&AccessRequest) -> bool + Send + Sync>;

/// Wraps a PDP so that each of its decisions is logged — the decision log of `warden serve`,
/// or of an embedded PDP.
///
/// Requests the operator marks (by default none) are logged *synchronously*: the decision is
/// returned only once the sink acknowledged its event, and when the sink fails or does not
/// answer within the log's sync timeout, the decision becomes
/// [`PdpError::Unavailable`] — the PEP denies (fail closed).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
/// use warden_decision_log::{DecisionLog, HttpBatchSink, LoggedPdp};
///
/// // Nothing listens on this port: the synchronous log fails, so the decision fails closed.
/// let log = DecisionLog::builder(HttpBatchSink::new("http://127.0.0.1:9/logs").unwrap())
///     .sync_timeout(std::time::Duration::from_millis(500))
///     .build()
///     .unwrap();
/// let pdp = LoggedPdp::new(warden_test::StaticPdp::permit(), log)
///     .synchronous_when(|request| request.resource.kind == "route");
/// let request = AccessRequest::new(Subject::new("user", "alice"), Action::new("GET"), Resource::new("route", "/patients"));
/// assert!(pdp.decide(&request).await.is_err());
/// # });
/// ```
#[derive(Clone)]
pub struct LoggedPdp<P> {
    inner: P,
    log: DecisionLog,
    synchronous: Option<Marker>,
    pep: Pep,
}

impl<P> fmt::Debug for LoggedPdp<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedPdp")
            .field("log", &self.log)
            .field("synchronous", &self.synchronous.is_some())
            .finish_non_exhaustive()
    }
}

impl<P: Pdp> LoggedPdp<P> {
    /// Logs every decision of `inner` to `log`, without waiting.
    pub fn new(inner: P, log: DecisionLog) -> Self {
        Self {
            inner,
            log,
            synchronous: None,
            pep: Pep::Http,
        }
    }

    /// Logs every decision synchronously.
    #[must_use]
    pub fn synchronous(self) -> Self {
        self.synchronous_when(|_| true)
    }

    /// Logs the decisions of the requests `mark` selects synchronously (e.g. the routes an
    /// operator names).
    #[must_use]
    pub fn synchronous_when(
        mut self,
        mark: impl Fn(&AccessRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.synchronous = Some(Arc::new(mark));
        self
    }

    /// The PEP kind the events name (default `http`).
    #[must_use]
    pub fn pep(mut self, pep: Pep) -> Self {
        self.pep = pep;
        self
    }

    async fn finish(
        &self,
        request: &AccessRequest,
        result: Result<Decision, PdpError>,
        started: Instant,
    ) -> Result<Decision, PdpError> {
        let event = event_of(self.pep, request, &result, started, self.inner.revision());
        let sync = self.synchronous.as_ref().is_some_and(|mark| mark(request));
        if sync {
            if let Err(error) = self.log.log_sync(&event).await {
                tracing::warn!(%error, "synchronous decision log failed: denying");
                return Err(PdpError::unavailable(format!(
                    "the decision could not be logged: {error}"
                )));
            }
        } else {
            self.log.log(&event);
        }
        result
    }
}

fn event_of(
    pep: Pep,
    request: &AccessRequest,
    result: &Result<Decision, PdpError>,
    started: Instant,
    revision: Option<PolicyRevision>,
) -> DecisionEvent {
    let outcome = match result {
        Ok(d) if d.allowed => Outcome::Permit,
        Ok(_) => Outcome::Deny,
        Err(_) => Outcome::Unavailable,
    };
    let mut event = DecisionEvent::new(
        pep,
        request.action.name.clone(),
        request.resource.kind.clone(),
        request.resource.id.clone(),
        outcome,
    );
    event.subject = Some(request.subject.id.clone());
    event.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Some(trace) = request
        .context
        .get("traceparent")
        .and_then(|v| v.as_str())
        .and_then(|t| t.split('-').nth(1))
    {
        event.trace_id = Some(trace.to_owned());
    }
    match result {
        Ok(decision) => {
            event.decision_id = Some(decision.id.to_string());
            event.obligations = decision
                .obligations
                .iter()
                .map(|o| o.type_name().to_owned())
                .collect();
            event.policy = if decision.policy.id.is_empty() {
                revision
            } else {
                Some(decision.policy.clone())
            };
            if !decision.allowed {
                event.error_class = Some("violation".to_owned());
            }
        }
        Err(error) => {
            event.policy = revision;
            event.error_class = Some(
                match error {
                    PdpError::Policy { .. } => ErrorClass::PolicyError,
                    _ => ErrorClass::PdpUnavailable,
                }
                .as_str()
                .to_owned(),
            );
        }
    }
    event
}

impl<P: Pdp> Pdp for LoggedPdp<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.decide(request).await;
            self.finish(request, result, started).await
        })
    }

    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let results = self.inner.decide_batch(requests).await;
            let mut out = Vec::with_capacity(results.len());
            for (request, result) in requests.iter().zip(results) {
                out.push(self.finish(request, result, started).await);
            }
            out
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
