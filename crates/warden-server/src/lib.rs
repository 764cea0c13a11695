//! The Warden PDP server: any policy decision point behind the AuthZEN Authorization API 1.0 and
//! the OPA Data API.
//!
//! `warden serve --policy <dir>` runs it; this crate is the library behind that command, for a
//! service that wants to embed the server or test against it.
//!
//! | endpoint | |
//! |---|---|
//! | `POST /access/v1/evaluation` | one AuthZEN access evaluation |
//! | `POST /access/v1/evaluations` | a batch, with `options.evaluations_semantic` = `execute_all`, `deny_on_first_deny` or `permit_on_first_permit`; an item that is not a request is that item's deny, `{"decision": false, "context": {"error": …}}` |
//! | `POST /access/v1/search/subject`, `/resource`, `/action` | AuthZEN search over the package's entity source, paginated (see below) |
//! | `GET /.well-known/authzen-configuration` | AuthZEN metadata, with `capabilities`, `supported_obligations` (Obligations Profile) and, if configured, `signed_metadata` |
//! | `POST`, `GET /v1/data/<path>`, `/v1/data` | OPA's Data API as OPA serves it: the Rego document as the policy produced it (see the `opa` module docs) |
//! | `/ext_authz/<path>` | Envoy's external authorization, HTTP variant ([`EXT_AUTHZ_PREFIX`]); the gRPC variant is the crate `warden-ext-authz` |
//! | `GET /health` | `200` with the policy revision once policies are loaded, else `503`; says whether the last reload failed (the log says why) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /status` | readiness, the revision in force, the last load error, and the bundle agent's status (see [`ServerBuilder::external`]) |
//!
//! The decision's obligations, reasons and revision travel in the AuthZEN response `context`
//! (see [`warden_decision::authzen`]). The AuthZEN endpoints take `Content-Type:
//! application/json` only (anything else is a `400`) and ignore unknown members. Malformed input
//! is a `400` problem+json naming what is wrong; a body over the limit is a `413`; an unknown
//! path a `404`. An unavailable PDP is a `503`; a policy that fails to evaluate is a deny whose
//! diagnostics say `policy_error`. Error bodies never quote policy source or engine messages:
//! those go to the log. Every answer echoes the request's `X-Request-ID`.
//!
//! Obligations are Obligations Profile objects (`{"id", "type", "properties"}`, see
//! [`warden_decision::authzen::obligation_to_profile`]). Callers are authenticated when
//! [`ServerBuilder::bearer_token`] or [`ServerBuilder::accept_client_certificates`] says so
//! (`/health` stays open); [`Server::serve_tls`] serves over TLS with certificates reloaded
//! from their files ([`TlsFiles`]).
//!
//! # Search
//!
//! The search endpoints decide every candidate of the package's entity source, declared in its
//! `warden.toml` as `[search] entities = "<file>"` with `{"subjects": […], "resources": […],
//! "actions": […]}`, or, in a Cedar package, `cedar_entities = true` (its stored entities) with
//! `actions = […]`. Pages hold at most `page.limit` (and at most [`MAX_PAGE`]) results; a
//! `page.next_token` continues, `""` ends; a follow-up must repeat the request, and one that
//! arrives after the policies or the entities changed is a `409`, never a mix of revisions.
//!
//! # Hot reload
//!
//! With [`ServerBuilder::watch`], the server checks the policy directory for changes and
//! reloads it. The new policies replace the old ones atomically; when they fail to load, the old
//! revision keeps answering, the error is logged and `/health` says a reload failed (never why)
//! until a later load succeeds.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! use warden_server::Server;
//!
//! let server = Server::builder()
//!     .policy_dir("policies/clinic")
//!     .watch(Duration::from_secs(1))
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8181").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod auth;
mod entities;
mod ext_authz;
mod metrics;
mod opa;
mod policy;
mod revision;
mod rollback;
mod routes;
mod search;
mod source;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use warden_decision::{Pdp, PolicyRevision};

pub use auth::VerifiedClientCertificate;
pub use ext_authz::{DEFAULT_PAYLOAD_HEADER, DEFAULT_PRINCIPAL_HEADER, EXT_AUTHZ_PREFIX};
pub use policy::{PolicyDir, PolicyError, PolicyKind};
pub use revision::{MAX_WAIT, POLICY_ID_HEADER, REVISION_HEADER};
pub use rollback::{DEFAULT_KEPT_REVISIONS, KeptRevision, Rollback, RollbackError};
pub use search::MAX_PAGE;
pub use tls::TlsFiles;

/// The default limit on request bodies.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// The default limit on the number of evaluations in one batch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// The OPA Data API path served when the policies do not name one (Cedar, or a bare [`Pdp`]).
pub const DEFAULT_OPA_PATH: &str = "warden/decision";

enum Source {
    Dir(PathBuf),
    Pdp,
    /// Put in force by [`Server::activate_dirs`] (see [`ServerBuilder::external`]).
    External,
}

/// What answers decisions right now.
pub(crate) struct Loaded {
    pub(crate) pdp: Arc<dyn Pdp>,
    pub(crate) dir: Option<PolicyDir>,
    pub(crate) opa_path: String,
    /// The candidates of the search endpoints.
    pub(crate) entities: Arc<entities::Entities>,
}

pub(crate) struct State {
    source: Source,
    pub(crate) current: ArcSwapOption<Loaded>,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) body_limit: usize,
    pub(crate) max_batch: usize,
    pub(crate) public_url: Option<String>,
    pub(crate) signed_metadata: Option<String>,
    pub(crate) callers: auth::Callers,
    pub(crate) ext_authz: ext_authz::ExtAuthz,
    /// Served over TLS: URLs built from `Host` are `https`.
    pub(crate) tls: std::sync::atomic::AtomicBool,
    opa_path: Option<String>,
    watch: Option<Duration>,
    /// The bundle agent's status document, for `/status`.
    pub(crate) fleet_status: Mutex<Option<serde_json::Value>>,
    /// The last good revisions, for rollback.
    pub(crate) kept: rollback::Kept,
}

/// Checks that `jwt` can be served as the metadata's `signed_metadata`: a compact JWS whose
/// header names a signing algorithm (not `none`) and whose claims carry a string `iss`, as
/// AuthZEN requires; returns the issuer. The signature itself is the verifier's to check.
///
/// ```
/// // {"alg":"ES256"} . {"iss":"https://pdp.example"} . signature
/// let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL3BkcC5leGFtcGxlIn0.c2ln";
/// assert_eq!(warden_server::signed_metadata_issuer(jwt).unwrap(), "https://pdp.example");
/// assert!(warden_server::signed_metadata_issuer("eyJhbGciOiJub25lIn0.e30.").is_err());
/// ```
pub fn signed_metadata_issuer(jwt: &str) -> Result<String, String> {
    use base64::Engine as _;
    let decode = |part: &str, what: &str| -> Result<serde_json::Value, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("the signed metadata's {what} is not base64url"))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| format!("the signed metadata's {what} is not JSON"))
    };
    let parts: Vec<&str> = jwt.trim().split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("the signed metadata is not a compact JWS (three parts)".into());
    };
    let header = decode(header, "header")?;
    match header.get("alg").and_then(serde_json::Value::as_str) {
        Some(alg) if !alg.eq_ignore_ascii_case("none") && !signature.is_empty() => {}
        _ => return Err("the signed metadata is not signed (`alg` missing or `none`)".into()),
    }
    decode(claims, "claims")?
        .get("iss")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the signed metadata has no `iss` claim".into())
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    dir: Option<PathBuf>,
    pdp: Option<Arc<dyn Pdp>>,
    body_limit: usize,
    max_batch: usize,
    public_url: Option<String>,
    signed_metadata: Option<String>,
    callers: auth::Callers,
    ext_authz: ext_authz::ExtAuthz,
    opa_path: Option<String>,
    watch: Option<Duration>,
    external: bool,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("dir", &self.dir)
            .field("pdp", &self.pdp.is_some())
            .field("body_limit", &self.body_limit)
            .field("max_batch", &self.max_batch)
            .field("public_url", &self.public_url)
            .field("opa_path", &self.opa_path)
            .field("watch", &self.watch)
            .field("external", &self.external)
            .finish()
    }
}

impl ServerBuilder {
    /// Serve the policies of a directory (Rego or Cedar, see [`PolicyKind::detect`]). They are
    /// loaded when the server starts; `/health` says `503` until they are.
    #[must_use]
    pub fn policy_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Serve this decision point (a remote PDP, a combination, a wrapped one).
    #[must_use]
    pub fn pdp(mut self, pdp: Arc<dyn Pdp>) -> Self {
        self.pdp = Some(pdp);
        self
    }

    /// Check the policy directory for changes this often and reload it when it changed.
    #[must_use]
    pub fn watch(mut self, every: Duration) -> Self {
        self.watch = Some(every);
        self
    }

    /// The largest request body accepted (default [`DEFAULT_BODY_LIMIT`]).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The most evaluations one batch may hold (default [`DEFAULT_MAX_BATCH`]).
    #[must_use]
    pub fn max_batch(mut self, evaluations: usize) -> Self {
        self.max_batch = evaluations;
        self
    }

    /// The URL clients reach the server at, for the metadata document. Without it the metadata
    /// names `http://<Host header>`.
    #[must_use]
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// A signed JWT of the metadata, served as the metadata document's `signed_metadata`. The
    /// server does not sign: the operator signs the metadata with the PDP's key.
    #[must_use]
    pub fn signed_metadata(mut self, jwt: impl Into<String>) -> Self {
        self.signed_metadata = Some(jwt.into());
        self
    }

    /// Require callers to present this bearer token (`Authorization: Bearer <token>`); may be
    /// given several times, any of the tokens is accepted. `/health` stays open.
    #[must_use]
    pub fn bearer_token(mut self, token: impl AsRef<str>) -> Self {
        self.callers.add_token(token.as_ref());
        self
    }

    /// Accept callers whose TLS connection presented a client certificate the listener
    /// verified (see [`VerifiedClientCertificate`]), as well as any bearer token. `/health`
    /// stays open.
    #[must_use]
    pub fn accept_client_certificates(mut self) -> Self {
        self.callers.client_certificates = true;
        self
    }

    /// The headers Envoy's `ext_authz` checks name the principal in (see
    /// [`EXT_AUTHZ_PREFIX`]): its id (default [`DEFAULT_PRINCIPAL_HEADER`]) and the verified
    /// JWT payload (default [`DEFAULT_PAYLOAD_HEADER`]).
    #[must_use]
    pub fn ext_authz_headers(mut self, principal: &str, payload: &str) -> Self {
        self.ext_authz = ext_authz::ExtAuthz {
            principal_header: principal.to_ascii_lowercase(),
            payload_header: payload.to_ascii_lowercase(),
        };
        self
    }

    /// The OPA Data API path of the decision document (default: the Rego entrypoint's path,
    /// else [`DEFAULT_OPA_PATH`]).
    #[must_use]
    pub fn opa_path(mut self, path: impl Into<String>) -> Self {
        self.opa_path = Some(path.into().trim_matches('/').to_owned());
        self
    }

    /// Builds the server. A [`pdp`](Self::pdp) is in force at once; a
    /// [`policy_dir`](Self::policy_dir) is loaded by [`Server::serve`] (or
    /// [`Server::load`]). Without either, the server is never ready.
    pub fn build(self) -> Server {
        let opa_path = self.opa_path.clone();
        let (source, current) = match (self.pdp, self.dir) {
            (Some(pdp), _) => (
                Source::Pdp,
                Some(Arc::new(Loaded {
                    pdp,
                    dir: None,
                    opa_path: opa_path.unwrap_or_else(|| DEFAULT_OPA_PATH.to_owned()),
                    entities: Arc::default(),
                })),
            ),
            (None, _) if self.external => (Source::External, None),
            (None, Some(dir)) => (Source::Dir(dir), None),
            (None, None) => (Source::Dir(PathBuf::new()), None),
        };
        Server {
            state: Arc::new(State {
                source,
                current: ArcSwapOption::new(current),
                last_error: Mutex::new(None),
                metrics: metrics::Metrics::default(),
                body_limit: self.body_limit,
                max_batch: self.max_batch,
                public_url: self.public_url,
                signed_metadata: self.signed_metadata,
                callers: self.callers,
                ext_authz: self.ext_authz,
                tls: std::sync::atomic::AtomicBool::new(false),
                opa_path: self.opa_path,
                watch: self.watch,
                fleet_status: Mutex::new(None),
                kept: rollback::Kept::default(),
            }),
        }
    }
}

/// The PDP server. Cloning is cheap; clones share the policies and counters.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            dir: None,
            pdp: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_batch: DEFAULT_MAX_BATCH,
            public_url: None,
            signed_metadata: None,
            callers: auth::Callers::default(),
            ext_authz: ext_authz::ExtAuthz::default(),
            opa_path: None,
            watch: None,
            external: false,
        }
    }

    /// The axum router with every endpoint, for serving it yourself or testing with
    /// `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// The revision of the policies in force, if any are loaded.
    pub fn revision(&self) -> Option<PolicyRevision> {
        self.state
            .current
            .load()
            .as_ref()
            .and_then(|l| l.pdp.revision())
    }

    /// Whether policies are loaded.
    pub fn is_ready(&self) -> bool {
        self.state.current.load().is_some()
    }

    /// The error of the last load or reload, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.state.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Loads the policy directory, or reloads it when it is already loaded. On failure the
    /// policies in force (if any) stay, and [`Server::last_error`] and `/health` say why.
    pub fn load(&self) -> Result<PolicyRevision, PolicyError> {
        let Source::Dir(dir) = &self.state.source else {
            return self.revision().ok_or_else(|| PolicyError {
                path: PathBuf::new(),
                message: "the PDP names no revision".into(),
            });
        };
        let current = self.state.current.load_full();
        // The entity source first: when it fails, neither it nor the policies change.
        let result = entities::load(dir).and_then(|entities| {
            let entities = Arc::new(entities);
            // After a rollback the policies in force were loaded from a kept copy: a change of
            // the directory is loaded from the directory.
            let in_force = current
                .as_ref()
                .and_then(|l| l.dir.clone().map(|d| (l, d)))
                .filter(|(_, d)| d.path() == dir.as_path());
            match in_force {
                Some((loaded, policies)) => {
                    let revision = policies.reload()?;
                    self.state.current.store(Some(Arc::new(Loaded {
                        pdp: loaded.pdp.clone(),
                        dir: Some(policies),
                        opa_path: loaded.opa_path.clone(),
                        entities,
                    })));
                    Ok(revision)
                }
                None => {
                    let loaded = PolicyDir::open(dir)?;
                    let revision = loaded.revision().ok_or_else(|| PolicyError {
                        path: dir.clone(),
                        message: "the policies name no revision".into(),
                    })?;
                    let opa_path = self
                        .state
                        .opa_path
                        .clone()
                        .or_else(|| loaded.opa_path())
                        .unwrap_or_else(|| DEFAULT_OPA_PATH.to_owned());
                    self.state.current.store(Some(Arc::new(Loaded {
                        pdp: loaded.pdp(),
                        dir: Some(loaded),
                        opa_path,
                        entities,
                    })));
                    Ok(revision)
                }
            }
        });
        self.state.metrics.reload(result.is_ok());
        let mut last_error = self
            .state
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(revision) => {
                tracing::info!(policy = %revision.id, revision = %revision.revision, "policies loaded");
                self.state.kept.remember(dir, revision);
                *last_error = None;
            }
            Err(error) => {
                tracing::warn!(%error, "policies failed to load; the previous revision stays in force");
                *last_error = Some(error.to_string());
            }
        }
        result
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting connections and
    /// finishes the requests in flight. Loads the policy directory first thing (the server
    /// answers `503` until it is loaded) and, with [`ServerBuilder::watch`], reloads it when
    /// it changes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let watcher = tokio::spawn(self.clone().watch_loop());
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        watcher.abort();
        result
    }

    async fn watch_loop(self) {
        let Source::Dir(dir) = &self.state.source else {
            return;
        };
        let dir = dir.clone();
        let mut seen = None;
        // Policies loaded before serving (as `warden serve` does) are not loaded again.
        let mut attempted = self.is_ready();
        if attempted {
            let dir = dir.clone();
            seen = tokio::task::spawn_blocking(move || policy::fingerprint(&dir))
                .await
                .ok()
                .and_then(Result::ok);
        }
        loop {
            let print = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || policy::fingerprint(&dir))
                    .await
                    .ok()
                    .and_then(Result::ok)
            };
            // Load at start, then whenever the files change. A failed load is retried only
            // once the files change again, so a broken policy is reported once, not every tick.
            if !attempted || (print.is_some() && print != seen) {
                attempted = true;
                seen = print;
                let server = self.clone();
                let _ = tokio::task::spawn_blocking(move || server.load()).await;
            }
            match self.state.watch {
                Some(every) => tokio::time::sleep(every).await,
                None if self.is_ready() => return,
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests;
