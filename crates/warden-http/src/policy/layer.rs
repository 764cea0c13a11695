use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use warden_decision::{Masker, Pdp};
use warden_telemetry::Telemetry;

use super::service::PolicyService;
use crate::access::SubjectSource;
use crate::jwt::JwtVerifier;
use crate::obligations::{Handlers, ObligationHandler};
use crate::redact::PathCache;

/// How long the PEP waits for a decision by default before it answers 503.
pub const DEFAULT_DECISION_TIMEOUT: Duration = Duration::from_secs(1);

/// The configuration a [`PolicyService`] shares with its clones.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) pdp: Arc<dyn Pdp>,
    pub(crate) subjects: SubjectSource,
    pub(crate) timeout: Duration,
    pub(crate) handlers: Handlers,
    pub(crate) masker: Masker,
    pub(crate) redaction_limit: usize,
    pub(crate) redaction_blocking_threshold: usize,
    pub(crate) paths: Arc<PathCache>,
    pub(crate) telemetry: Option<Telemetry>,
    pub(crate) head_as_get: bool,
}

/// The largest body the PEP buffers to redact by default (4 MiB); a larger one is withheld.
pub const DEFAULT_REDACTION_LIMIT: usize = 4 * 1024 * 1024;

/// The Tower layer that puts a policy enforcement point in front of a service.
///
/// Every request becomes an access request (see the [crate docs](crate) for its shape) that the
/// PDP decides before the service sees the request. Permit ⇒ the request goes on, with the
/// [`Authorized`](crate::Authorized) decision in its extensions; deny ⇒ 403; a `step_up`
/// obligation the caller's authentication does not meet ⇒ 401 with an RFC 9470 challenge; no
/// decision within the timeout ⇒ 503. gRPC requests get the matching gRPC statuses.
///
/// ```
/// use axum::{Router, routing::get};
/// use warden_http::{JwtVerifier, PolicyLayer};
///
/// let pdp = warden_test::StaticPdp::permit();
/// let verifier = JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap();
/// let app: Router = Router::new()
///     .route("/patients/{id}", get(|| async { "patient" }))
///     .layer(PolicyLayer::new(pdp).jwt(verifier));
/// ```
#[derive(Clone)]
#[must_use]
pub struct PolicyLayer {
    config: Arc<Config>,
}

impl std::fmt::Debug for PolicyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyLayer")
            .field("subjects", &self.config.subjects)
            .field("timeout", &self.config.timeout)
            .field("handlers", &self.config.handlers)
            .finish_non_exhaustive()
    }
}

impl PolicyLayer {
    /// A layer that asks `pdp`; subjects come from a [`Subject`](warden_decision::Subject) request
    /// extension until [`jwt`](Self::jwt) is configured.
    pub fn new(pdp: impl Pdp + 'static) -> Self {
        Self::from_arc(Arc::new(pdp))
    }

    /// A layer that asks a shared `pdp`.
    pub fn from_arc(pdp: Arc<dyn Pdp>) -> Self {
        Self {
            config: Arc::new(Config {
                pdp,
                subjects: SubjectSource::default(),
                timeout: DEFAULT_DECISION_TIMEOUT,
                handlers: Handlers::default(),
                masker: Masker::new(),
                redaction_limit: DEFAULT_REDACTION_LIMIT,
                redaction_blocking_threshold: crate::DEFAULT_REDACTION_BLOCKING_THRESHOLD,
                paths: Arc::new(PathCache::default()),
                telemetry: None,
                head_as_get: true,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// What each route answers when the PDP is unavailable: deny, the last decision within a
    /// bound (`stale`), or an opt-in, counted permit (`allow`), chosen per route template by a
    /// [`RouteFallback`](warden_decision::RouteFallback), so one layer serves a router whose
    /// routes need different modes. It wraps the layer's PDP in a
    /// [`Fallback`](warden_decision::Fallback); fallback decisions say so in their events.
    pub fn fallback(mut self, routes: warden_decision::RouteFallback) -> Self {
        let config = self.config();
        config.pdp = Arc::new(routes.wrap(config.pdp.clone()));
        self
    }

    /// Verifies bearer JWTs with `verifier` when no [`Subject`](warden_decision::Subject) extension
    /// is present; the subject is `{type: "user", id: <sub>, properties: <claims>}`.
    pub fn jwt(mut self, verifier: JwtVerifier) -> Self {
        self.config().subjects.jwt = Some(verifier);
        self
    }

    /// Lets requests without credentials through to the PDP as the subject
    /// `{type: "anonymous", id: "anonymous"}` (default: they are refused with 401).
    pub fn allow_anonymous(mut self) -> Self {
        self.config().subjects.anonymous = true;
        self
    }

    /// How long to wait for a decision (default [`DEFAULT_DECISION_TIMEOUT`]); past it the
    /// request is refused with 503. The timer is Tokio's: the layer runs on a Tokio runtime with
    /// its time driver enabled (`#[tokio::main]` and axum's and tonic's servers have it).
    pub fn decision_timeout(mut self, timeout: Duration) -> Self {
        self.config().timeout = timeout;
        self
    }

    /// Registers the handler for a custom obligation type; without one, a decision carrying
    /// that type is a deny.
    pub fn obligation_handler(
        mut self,
        kind: impl Into<String>,
        handler: impl ObligationHandler,
    ) -> Self {
        self.config()
            .handlers
            .insert(kind.into(), Arc::new(handler));
        self
    }
}

impl PolicyLayer {
    /// How `redact` obligations mask values (default: [`Masker::new`], which has no hash key, so
    /// a decision asking for `hash` is a deny until a keyed masker is configured).
    pub fn masker(mut self, masker: Masker) -> Self {
        self.config().masker = masker;
        self
    }

    /// Emits one decision event per request to `telemetry` (its metrics count every one; the
    /// writer gets them off the request path). A response withheld by a redaction adds a
    /// `withheld` event after its `permit`.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.config().telemetry = Some(telemetry);
        self
    }

    /// The largest response body the PEP buffers to redact (default
    /// [`DEFAULT_REDACTION_LIMIT`]); a larger one is withheld, never sent unredacted.
    pub fn redaction_limit(mut self, bytes: usize) -> Self {
        self.config().redaction_limit = bytes;
        self
    }

    /// The body size above which a response is redacted on Tokio's blocking pool
    /// (`spawn_blocking`) instead of the worker thread that runs the request (default
    /// [`DEFAULT_REDACTION_BLOCKING_THRESHOLD`](crate::DEFAULT_REDACTION_BLOCKING_THRESHOLD));
    /// a gzip body counts at its encoded size. Outside a Tokio runtime every body is redacted
    /// inline.
    pub fn redaction_blocking_threshold(mut self, bytes: usize) -> Self {
        self.config().redaction_blocking_threshold = bytes;
        self
    }
}

impl PolicyLayer {
    /// Whether a `HEAD` request is decided as the `GET` it is (default `true`): axum, like most
    /// servers, answers `HEAD` with the route's `GET` handler, so a policy that denies `GET`
    /// denies `HEAD` too. The access request's `context.method` then says `HEAD`. With `false`
    /// the action is `HEAD` and the policy must name it wherever it names `GET`.
    pub fn head_as_get(mut self, yes: bool) -> Self {
        self.config().head_as_get = yes;
        self
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService::new(inner, self.config.clone())
    }
}
