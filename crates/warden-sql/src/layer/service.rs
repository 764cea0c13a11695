//! The layer and its service.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use warden_decision::{Pdp, TraceContext};
use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};

use crate::catalog::Catalog;
use crate::error::{DenyReason, SqlError};
use crate::policy::SqlPolicy;
use crate::request::{Enforcement, SqlRequest};

/// Wraps a SQL service so that every statement is decided and rewritten first.
///
/// `P` is the PDP (any [`Pdp`] that is `Clone`, such as an `Arc<dyn Pdp>` or an
/// `Arc<RegoPdp>`); the [`SqlPolicy`] carries the dialect, catalog and caches.
///
/// Every statement runs in a `warden.decide` tracing span (`warden.pep = "sql"`), and with
/// [`telemetry`](Self::telemetry) every decision is reported as a decision event: one per
/// (relation, operation) of a permitted statement, one for a refused statement.
#[derive(Clone)]
pub struct SqlPolicyLayer<P> {
    pdp: P,
    policy: SqlPolicy,
    telemetry: Option<Telemetry>,
    refresh: Option<Refresh>,
}

/// Reads the catalog afresh.
type Loader =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Catalog, String>> + Send>> + Send + Sync>;

/// The catalog refresh of a layer: the loader, and when it last ran.
#[derive(Clone)]
struct Refresh {
    loader: Loader,
    interval: Duration,
    last: Arc<Mutex<Option<Instant>>>,
}

impl Refresh {
    /// Reloads the catalog into `policy` unless it was reloaded within the interval; whether
    /// it did.
    async fn run(&self, policy: &SqlPolicy) -> bool {
        {
            let Ok(mut last) = self.last.lock() else {
                return false;
            };
            if last.is_some_and(|at| at.elapsed() < self.interval) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match (self.loader)().await {
            Ok(catalog) => {
                policy.set_catalog(catalog);
                tracing::info!(target: "warden_sql", "catalog reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(target: "warden_sql", %error, "the catalog could not be reloaded");
                false
            }
        }
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for SqlPolicyLayer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPolicyLayer")
            .field("pdp", &self.pdp)
            .field("policy", &self.policy)
            .field("refreshes_catalog", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}

impl<P> SqlPolicyLayer<P> {
    /// A layer deciding with `pdp` and rewriting with `policy`.
    pub fn new(pdp: P, policy: SqlPolicy) -> Self {
        Self {
            pdp,
            policy,
            telemetry: None,
            refresh: None,
        }
    }

    /// Reloads the catalog with `loader` when a statement is refused because the catalog
    /// lacks a guarded relation or a column the policy names (`unknown_columns`,
    /// `unknown_column`: a migration the catalog has not seen), then enforces the statement
    /// once more. At most one reload per `interval`, so callers cannot make the service query
    /// its database's catalog at will; a loader that fails leaves the catalog and the refusal
    /// as they are.
    ///
    /// ```ignore
    /// let db = SqlxSqlite::new(pool);
    /// let layer = SqlPolicyLayer::new(pdp, policy).catalog_loader(Duration::from_secs(10), {
    ///     let db = db.clone();
    ///     move || {
    ///         let db = db.clone();
    ///         async move { db.load_catalog().await.map_err(|e| e.to_string()) }
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn catalog_loader<F, Fut>(mut self, interval: Duration, loader: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Catalog, String>> + Send + 'static,
    {
        let loader: Loader = Arc::new(move || Box::pin(loader()));
        self.refresh = Some(Refresh {
            loader,
            interval,
            last: Arc::new(Mutex::new(None)),
        });
        self
    }

    /// Reports every decision to `telemetry` (events with `pep: "sql"`, resource type
    /// `table`). A refused statement is one event whose resource type is `statement` and whose
    /// `attributes.code` is the refusal's code; the statement's text is never in an event, since
    /// its literals may be the very values the policy protects.
    #[must_use]
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }
}

impl<S, P: Clone> Layer<S> for SqlPolicyLayer<P> {
    type Service = SqlPolicyService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        SqlPolicyService {
            inner,
            pdp: self.pdp.clone(),
            policy: self.policy.clone(),
            telemetry: self.telemetry.clone(),
            refresh: self.refresh.clone(),
        }
    }
}

/// The service of [`SqlPolicyLayer`].
#[derive(Clone)]
pub struct SqlPolicyService<S, P> {
    inner: S,
    pdp: P,
    policy: SqlPolicy,
    telemetry: Option<Telemetry>,
    refresh: Option<Refresh>,
}

impl<S: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for SqlPolicyService<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlPolicyService")
            .field("inner", &self.inner)
            .field("pdp", &self.pdp)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The error of [`SqlPolicyService`]: the statement was refused, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlServiceError<E> {
    /// The PEP refused the statement; the database never saw it.
    #[error(transparent)]
    Denied(SqlError),
    /// The database failed the guarded statement. Its message, `DETAIL` and `HINT` can quote
    /// stored values, so the caller gets none of it: they went to the operators' log target
    /// [`DATABASE_LOG_TARGET`] under `error_id`.
    #[error("the database could not run the statement (error id {error_id})")]
    Database {
        /// The id of the log event that has the database's error.
        error_id: String,
    },
    /// The wrapped service was not ready (before any statement was sent).
    #[error("{0}")]
    Service(E),
}

/// The `tracing` target of the database errors of guarded statements, for operators only:
/// the server's text may quote stored values the caller must not see.
pub const DATABASE_LOG_TARGET: &str = "warden_sql::database";

impl<S, P> Service<SqlRequest> for SqlPolicyService<S, P>
where
    S: Service<SqlRequest> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display,
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
        let telemetry = self.telemetry.clone();
        let refresh = self.refresh.clone();
        let span = tracing::info_span!(
            "warden.decide",
            warden.pep = "sql",
            warden.subject = %request.subject.id,
            warden.allowed = tracing::field::Empty,
            warden.error = tracing::field::Empty,
        );
        Box::pin(async move {
            let started = Instant::now();
            let mut outcome = policy
                .enforce(&pdp, &request)
                .instrument(span.clone())
                .await;
            if let (Some(refresh), Err(e)) = (&refresh, &outcome)
                && matches!(
                    e.reason(),
                    Some(DenyReason::UnknownColumns(_) | DenyReason::UnknownColumn { .. })
                )
                && refresh.run(&policy).await
            {
                outcome = policy
                    .enforce(&pdp, &request)
                    .instrument(span.clone())
                    .await;
            }
            match &outcome {
                Ok(_) => span.record("warden.allowed", true),
                Err(e) => span
                    .record("warden.allowed", false)
                    .record("warden.error", e.code()),
            };
            if let Some(telemetry) = &telemetry {
                report(telemetry, &request, &outcome, started);
            }
            let enforced = match outcome {
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
            request.params = enforced.params;
            let subject = request.subject.id.clone();
            inner.call(request).await.map_err(|e| {
                let error_id = uuid::Uuid::now_v7().to_string();
                tracing::warn!(
                    target: DATABASE_LOG_TARGET,
                    error_id = %error_id,
                    subject = %subject,
                    error = %e,
                    "the database failed a guarded statement"
                );
                SqlServiceError::Database { error_id }
            })
        })
    }
}

/// The decision events of one statement.
fn report(
    telemetry: &Telemetry,
    request: &SqlRequest,
    outcome: &Result<Enforcement, SqlError>,
    started: Instant,
) {
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let trace = TraceContext::current();
    let base = |action: &str, kind: &str, resource: &str, outcome: Outcome| {
        let mut event = DecisionEvent::new(Pep::Sql, action, kind, resource, outcome);
        event.subject = Some(request.subject.id.clone());
        event.latency_us = latency_us;
        if let Some(trace) = &trace {
            event.trace_id = Some(trace.trace_id().to_owned());
            event.span_id = Some(trace.span_id().to_owned());
        }
        event.attributes.insert(
            "subject".into(),
            serde_json::Value::Object(request.subject.properties.clone()),
        );
        event
    };
    match outcome {
        Ok(enforced) => {
            for (access, decision) in enforced.requests.iter().zip(&enforced.decisions) {
                let mut event = base(
                    &access.action.name,
                    &access.resource.kind,
                    &access.resource.id,
                    Outcome::Permit,
                );
                event.decision_id = Some(decision.id.to_string());
                event.policy = Some(decision.policy.clone());
                event.cache_hit = decision.cache_hit;
                event.fallback = decision.fallback.map(|f| f.as_str().to_owned());
                event.obligations = decision
                    .obligations
                    .iter()
                    .map(|o| o.type_name().to_owned())
                    .collect();
                telemetry.emit(event);
            }
        }
        Err(error) => {
            let (action, kind, resource) = match error.reason() {
                Some(DenyReason::NotPermitted { action, table, .. }) => {
                    (action.as_str(), "table", table.as_str())
                }
                _ => ("execute", "statement", "<refused>"),
            };
            let (outcome, class) = match error {
                SqlError::Pdp(pdp) if pdp.is_unavailable() => {
                    (Outcome::Unavailable, pdp.class().as_str())
                }
                SqlError::Pdp(pdp) => (Outcome::Deny, pdp.class().as_str()),
                _ => (Outcome::Deny, "violation"),
            };
            let mut event = base(action, kind, resource, outcome);
            event.error_class = Some(class.to_owned());
            event.attributes.insert(
                "code".into(),
                serde_json::Value::String(error.code().to_owned()),
            );
            telemetry.emit(event);
        }
    }
}
