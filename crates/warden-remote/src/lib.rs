//! A Warden [`Pdp`] that asks a policy decision point over HTTP.
//!
//! [`RemotePdp`] speaks two protocols:
//!
//! * **AuthZEN Authorization API 1.0**: `POST <base>/access/v1/evaluation` for one request and
//!   `POST <base>/access/v1/evaluations` for a batch, with the endpoints optionally discovered
//!   from `GET <base>/.well-known/authzen-configuration` ([`RemotePdp::discover`]). This is what
//!   the Warden PDP server (`warden serve`) and other AuthZEN PDPs answer.
//! * **OPA Data API**: `POST <base>/v1/data/<path>` with `{"input": <access request>}`. The
//!   document at `<path>` is a boolean or a decision object
//!   `{"allow": bool, "obligations": [...], "reasons": [...], "advice": [...]}`.
//!
//! # Where obligations travel
//!
//! AuthZEN's response is `{"decision": bool, "context": {...}}`; the spec leaves `context` to the
//! PDP. Warden puts the rest of its decision there, and this client reads it back:
//!
//! | member of `context` | meaning |
//! |---|---|
//! | `obligations` | array of obligation objects (`{"type": "redact", ...}`), enforced by the PEP |
//! | `advice` | array of advice objects |
//! | `reasons` | array of `{"message": ...}` objects (plain strings are read too) |
//! | `policy` | `{"id": ..., "revision": ...}` of the policy that decided |
//! | `decision_id` | the PDP's id for the decision (a UUID), kept for correlation |
//! | `diagnostics` | `[{"error": "policy_error", "message": ...}]` when the policy failed |
//!
//! Every member is optional; a PDP that sends none of them gives plain permits and denies. Other
//! members are ignored.
//!
//! # Failing closed
//!
//! A transport failure, a timeout, an HTTP 5xx, a body that is not the JSON the protocol
//! prescribes (HTML, truncated JSON, a missing `decision`) and an oversized body are all
//! [`PdpError::Unavailable`] (or [`PdpError::Timeout`]), which every Warden PEP enforces as a
//! deny (or a configured fallback). A malformed obligation or a decision document of the wrong
//! shape is a [`PdpError::Malformed`]: a deny no fallback covers, but a failure for a circuit
//! breaker. Only a well-formed answer becomes a [`Decision`], and a well-formed deny is a deny.
//!
//! # Revisions
//!
//! Answers name their revision (`context.policy`, or the `Warden-Policy-Revision` and
//! `Warden-Policy-Id` headers) and when they were made (`context.decided_at`, clamped between
//! sending and receiving). With the revision watch (on by default for AuthZEN, see
//! [`RemotePdpBuilder::watch_revision`]) the client follows the server's switches as they
//! happen; an answer under a revision older than the one in force, or one that misses the
//! request's consistency token (`context.min_revision`, sent as `Warden-Min-Revision`), is
//! refused as unavailable (`revision_unavailable`).
//!
//! # Several replicas
//!
//! [`Replicas`] makes several replicas of a PDP one [`Pdp`]: health checks, outlier ejection,
//! retries within a budget and the decision's deadline, optional hedging, and a per-replica
//! concurrency limit that refuses at once instead of queuing (see the [`Replicas`] docs).
//!
//! # Tracing
//!
//! Each call sends `X-Request-ID` (the caller's request id when the PEP set one, else a new
//! UUID) and, when the decision runs inside a [`TraceContext`], a `traceparent` naming a new child
//! span of the caller's trace.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
//! use warden_remote::RemotePdp;
//!
//! let pdp = RemotePdp::authzen("http://127.0.0.1:8181")
//!     .timeout(Duration::from_millis(250))
//!     .build()?;
//! let request = AccessRequest::new(
//!     Subject::user("alice"),
//!     Action::new("GET"),
//!     Resource::new("route", "/health"),
//! );
//! let decision = pdp.decide(&request).await?;
//! println!("allowed: {}", decision.allowed);
//! # Ok(())
//! # }
//! ```

mod replicas;
mod watch;
mod wire;

use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use warden_decision::{
    AccessRequest, BatchFuture, Decision, Pdp, PdpError, PdpFuture, PolicyRevision, TraceContext,
};

pub use warden_decision::authzen::EvaluationsSemantic;
use wire::Metadata;

pub use replicas::{EndpointStats, Replicas, ReplicasBuilder, ReplicasStats};
pub use watch::{DEFAULT_REVALIDATE, REVISION_PATH};

/// The default time a call may take, from sending the request to reading the whole answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default limit on the size of an answer.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Building a [`RemotePdp`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("invalid PDP URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A header name or value is not valid HTTP.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Discovery failed: the metadata could not be fetched or did not name the endpoints.
    #[error("AuthZEN discovery at {url} failed: {reason}")]
    Discovery {
        /// The metadata URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Debug, Clone)]
enum Protocol {
    AuthZen {
        evaluation: String,
        evaluations: Option<String>,
    },
    Opa {
        data: String,
    },
}

/// Builds a [`RemotePdp`].
#[derive(Debug)]
pub struct RemotePdpBuilder {
    base: String,
    protocol: Protocol,
    timeout: Duration,
    connect_timeout: Duration,
    max_response_bytes: usize,
    headers: Vec<(String, String)>,
    client: Option<reqwest::Client>,
    semantic: EvaluationsSemantic,
    revalidate: Duration,
    watch: Option<bool>,
    supported_obligations: Option<Vec<String>>,
}

impl RemotePdpBuilder {
    fn new(base: &str, protocol: Protocol) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            protocol,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            headers: Vec::new(),
            client: None,
            semantic: EvaluationsSemantic::ExecuteAll,
            revalidate: DEFAULT_REVALIDATE,
            watch: None,
            supported_obligations: None,
        }
    }

    /// Declares with every AuthZEN request the obligation types of the AuthZEN Obligations
    /// Profile that the PEP behind this client carries out, as `context.supported_obligations`
    /// (for Warden's PEPs `["step-up", "custom"]`): a PDP that speaks the profile then answers
    /// no permit the PEP could not enforce, but a deny that says which type was missing. A
    /// request that names its own list keeps it. Not sent over OPA's Data API.
    #[must_use]
    pub fn supported_obligations<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.supported_obligations = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Whether to keep a revision watch open on the PDP (`GET <base>/v1/revision`, see
    /// [`REVISION_PATH`]); on by default for AuthZEN, off for the OPA Data API. With the watch,
    /// [`Pdp::revision`] reports a revision only while it is confirmed, so a decision cache
    /// serves an old revision for at most [`revalidate_every`](Self::revalidate_every) after
    /// a switch, whatever its TTL. Without it, the revision is the last one an answer named.
    #[must_use]
    pub fn watch_revision(mut self, on: bool) -> Self {
        self.watch = Some(on);
        self
    }

    /// How long a revision counts as confirmed without the watch (default
    /// [`DEFAULT_REVALIDATE`]); also the long poll's wait, so a lost watch is noticed within it.
    #[must_use]
    pub fn revalidate_every(mut self, interval: Duration) -> Self {
        self.revalidate = interval.max(Duration::from_millis(10));
        self
    }

    /// The time one call may take, connection, request and the whole answer included
    /// (default [`DEFAULT_TIMEOUT`]). A call that takes longer is [`PdpError::Timeout`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time establishing a connection may take (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest answer accepted (default [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger one is
    /// [`PdpError::Unavailable`].
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// A header sent with every call (an API key, a tenant).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// An `Authorization: Bearer <token>` header sent with every call.
    #[must_use]
    pub fn bearer_token(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header(AUTHORIZATION.as_str(), value)
    }

    /// The `evaluations_semantic` sent with batches (AuthZEN only; default `execute_all`).
    /// With the short-circuit semantics the PDP stops early; requests it did not evaluate are
    /// answered with a deny carrying the reason.
    #[must_use]
    pub fn evaluations_semantic(mut self, semantic: EvaluationsSemantic) -> Self {
        self.semantic = semantic;
        self
    }

    /// Uses this HTTP client (its own TLS roots, proxies, pool) instead of building one. The
    /// builder's connect timeout is then the client's business; the per-call timeout still holds.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the client. Fails on an invalid URL or header.
    pub fn build(self) -> Result<RemotePdp, RemoteError> {
        check_url(&self.base)?;
        let mut headers = http::HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            let invalid = |reason: String| RemoteError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let header_name =
                HeaderName::try_from(name.as_str()).map_err(|e| invalid(e.to_string()))?;
            let mut header_value =
                HeaderValue::try_from(value.as_str()).map_err(|e| invalid(e.to_string()))?;
            header_value.set_sensitive(header_name == AUTHORIZATION);
            headers.append(header_name, header_value);
        }
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .build()
                .map_err(|e| RemoteError::Client(e.to_string()))?,
        };
        let protocol = match self.protocol {
            Protocol::AuthZen {
                evaluation,
                evaluations,
            } => Protocol::AuthZen {
                evaluation: absolute(&self.base, &evaluation),
                evaluations: evaluations.map(|e| absolute(&self.base, &e)),
            },
            Protocol::Opa { data } => Protocol::Opa {
                data: absolute(&self.base, &data),
            },
        };
        let watched = self
            .watch
            .unwrap_or(matches!(protocol, Protocol::AuthZen { .. }));
        let inner = Arc::new(Inner {
            client,
            protocol,
            headers,
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
            semantic: self.semantic,
            revisions: watch::Revisions::new(self.revalidate, watched),
            supported_obligations: self.supported_obligations,
        });
        if watched {
            watch::spawn(Arc::downgrade(&inner), absolute(&self.base, REVISION_PATH));
        }
        Ok(RemotePdp { inner })
    }
}

/// A PDP on the network, reached over AuthZEN 1.0 or the OPA Data API. See the
/// [crate documentation](crate).
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct RemotePdp {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    protocol: Protocol,
    headers: http::HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
    semantic: EvaluationsSemantic,
    /// The revisions answers and the watch named.
    revisions: watch::Revisions,
    /// The profile's obligation types to declare in each AuthZEN request's context.
    supported_obligations: Option<Vec<String>>,
}

/// An answer's body and what came with it.
struct Answer {
    body: bytes::Bytes,
    /// The `Warden-Policy-Revision` and `Warden-Policy-Id` headers.
    revision: Option<PolicyRevision>,
    sent: SystemTime,
    received: SystemTime,
}

impl RemotePdp {
    /// An AuthZEN 1.0 client for the PDP at `base` (e.g. `http://127.0.0.1:8181`), using the
    /// spec's default endpoint paths.
    pub fn authzen(base: impl AsRef<str>) -> RemotePdpBuilder {
        RemotePdpBuilder::new(
            base.as_ref(),
            Protocol::AuthZen {
                evaluation: wire::EVALUATION_PATH.to_owned(),
                evaluations: Some(wire::EVALUATIONS_PATH.to_owned()),
            },
        )
    }

    /// An AuthZEN 1.0 client whose endpoints come from the PDP's metadata at
    /// `<base>/.well-known/authzen-configuration`.
    pub async fn discover(base: impl AsRef<str>) -> Result<RemotePdpBuilder, RemoteError> {
        let base = base.as_ref().trim_end_matches('/');
        check_url(base)?;
        let url = format!("{base}{}", wire::METADATA_PATH);
        let failed = |reason: String| RemoteError::Discovery {
            url: url.clone(),
            reason,
        };
        let client = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(|e| RemoteError::Client(e.to_string()))?;
        let response = client
            .get(&url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        let metadata = Metadata::parse(&body).map_err(failed)?;
        let mut builder = RemotePdpBuilder::new(
            base,
            Protocol::AuthZen {
                evaluation: metadata.access_evaluation_endpoint,
                evaluations: metadata.access_evaluations_endpoint,
            },
        );
        builder.client = Some(client_without_timeout()?);
        Ok(builder)
    }

    /// An OPA Data API client for the document at `path` (e.g. `clinic/decision` for
    /// `data.clinic.decision`) of the PDP at `base`.
    pub fn opa(base: impl AsRef<str>, path: impl AsRef<str>) -> RemotePdpBuilder {
        let path = path
            .as_ref()
            .trim_start_matches("data.")
            .replace('.', "/")
            .trim_matches('/')
            .to_owned();
        RemotePdpBuilder::new(
            base.as_ref(),
            Protocol::Opa {
                data: format!("/v1/data/{path}"),
            },
        )
    }

    /// The URL single decisions are posted to.
    pub fn endpoint(&self) -> &str {
        match &self.inner.protocol {
            Protocol::AuthZen { evaluation, .. } => evaluation,
            Protocol::Opa { data } => data,
        }
    }

    async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> Result<Answer, PdpError> {
        let inner = &*self.inner;
        let trace = TraceContext::current();
        let request_id = trace
            .as_ref()
            .and_then(|t| t.request_id().map(str::to_owned))
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut request = inner
            .client
            .post(url)
            .headers(inner.headers.clone())
            .header("x-request-id", request_id)
            .body(body);
        if let Some(trace) = &trace {
            request = request.header("traceparent", trace.child().traceparent());
        }
        if let Some(token) = token {
            request = request.header(warden_decision::MIN_REVISION_HEADER, token);
        }
        let sent = SystemTime::now();
        let call = async {
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let revision = match (header("warden-policy-id"), header("warden-policy-revision")) {
                (Some(id), Some(revision)) => Some(PolicyRevision::new(id, revision)),
                _ => None,
            };
            let body = read_limited(response, inner.max_response_bytes).await?;
            if status == http::StatusCode::SERVICE_UNAVAILABLE {
                // Say why: not ready, overloaded, or a revision it cannot meet.
                return Err(PdpError::unavailable(format!(
                    "the PDP answered HTTP {status}: {}",
                    excerpt(&body)
                )));
            }
            if status.is_server_error() {
                return Err(PdpError::unavailable(format!(
                    "the PDP answered HTTP {status}"
                )));
            }
            if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(PdpError::unavailable(format!(
                    "the PDP answered HTTP {status}"
                )));
            }
            if !status.is_success() {
                // A 4xx is this client's configuration (a wrong path, a missing credential, a
                // request the PDP does not take), not an outage: retrying or opening the
                // breaker would not mend it, and a fallback must not hide it.
                return Err(PdpError::policy(format!(
                    "the PDP refused the request with HTTP {status} (check the PDP's URL, path and credentials): {}",
                    excerpt(&body)
                )));
            }
            Ok(Answer {
                body,
                revision,
                sent,
                received: SystemTime::now(),
            })
        };
        match tokio::time::timeout(inner.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(PdpError::Timeout {
                after: inner.timeout,
            }),
        }
    }

    /// Completes a decision with what its answer said around it, and refuses one made under a
    /// revision older than the one known to be in force, or that misses the caller's token.
    fn remember(
        &self,
        decision: &mut Decision,
        answer: &Answer,
        token: Option<&str>,
    ) -> Result<(), PdpError> {
        let unnamed = decision.policy.id.is_empty() && decision.policy.revision.is_empty();
        if unnamed && let Some(revision) = &answer.revision {
            decision.policy = revision.clone();
        }
        // The PDP made the decision between sending and receiving, whatever its clock says.
        let made = decision
            .decided_at
            .unwrap_or(answer.sent)
            .clamp(answer.sent, answer.received.max(answer.sent));
        decision.decided_at = Some(made.max(UNIX_EPOCH));
        if decision.policy.id.is_empty() && decision.policy.revision.is_empty() {
            return match token {
                Some(token) => Err(revision_unavailable(&decision.policy, token)),
                None => Ok(()),
            };
        }
        if self.inner.revisions.answered(&decision.policy) == warden_decision::Observed::Older {
            return Err(PdpError::unavailable(format!(
                "revision_unavailable: the PDP answered under revision `{}`, older than the one in force",
                decision.policy.revision
            )));
        }
        match token {
            Some(token) if !self.inner.revisions.meets(&decision.policy.revision, token) => {
                Err(revision_unavailable(&decision.policy, token))
            }
            _ => Ok(()),
        }
    }

    /// `request`, with the configured `supported_obligations` in its context unless it names
    /// its own.
    fn declaring<'r>(&self, request: &'r AccessRequest) -> std::borrow::Cow<'r, AccessRequest> {
        match &self.inner.supported_obligations {
            Some(types) if !request.context.contains_key("supported_obligations") => {
                let mut declared = request.clone();
                declared.context.insert(
                    "supported_obligations".into(),
                    types
                        .iter()
                        .cloned()
                        .map(serde_json::Value::String)
                        .collect(),
                );
                std::borrow::Cow::Owned(declared)
            }
            _ => std::borrow::Cow::Borrowed(request),
        }
    }

    async fn decide_one(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        let token = warden_decision::min_revision(request);
        let (mut decision, answer) = match &self.inner.protocol {
            Protocol::AuthZen { evaluation, .. } => {
                let body = serde_json::to_vec(&self.declaring(request)).map_err(encode)?;
                let answer = self.post(evaluation, body, token).await?;
                (
                    wire::parse_evaluation(&answer.body).map_err(malformed)?,
                    answer,
                )
            }
            Protocol::Opa { data } => {
                let body =
                    serde_json::to_vec(&wire::OpaInput { input: request }).map_err(encode)?;
                let answer = self.post(data, body, token).await?;
                (wire::parse_opa(&answer.body).map_err(malformed)?, answer)
            }
        };
        self.remember(&mut decision, &answer, token)?;
        Ok(decision)
    }

    async fn decide_many(&self, requests: &[AccessRequest]) -> Vec<Result<Decision, PdpError>> {
        let Protocol::AuthZen {
            evaluations: Some(url),
            ..
        } = &self.inner.protocol
        else {
            let mut out = Vec::with_capacity(requests.len());
            for request in requests {
                out.push(self.decide_one(request).await);
            }
            return out;
        };
        let all_failed = |error: PdpError| requests.iter().map(|_| Err(error.clone())).collect();
        let declared: Option<Vec<AccessRequest>> =
            self.inner.supported_obligations.as_ref().map(|_| {
                requests
                    .iter()
                    .map(|r| self.declaring(r).into_owned())
                    .collect()
            });
        let body = match serde_json::to_vec(&wire::EvaluationsRequest::new(
            declared.as_deref().unwrap_or(requests),
            self.inner.semantic,
        )) {
            Ok(body) => body,
            Err(e) => return all_failed(encode(e)),
        };
        // One token for the batch: the first request's (a PEP's batch shares its context).
        let token = requests.iter().find_map(warden_decision::min_revision);
        let answer = match self.post(url, body, token).await {
            Ok(answer) => answer,
            Err(error) => return all_failed(error),
        };
        match wire::parse_evaluations(&answer.body, requests.len(), self.inner.semantic) {
            Ok(decisions) => decisions
                .into_iter()
                .zip(requests)
                .map(|(decision, request)| {
                    let mut decision = decision.map_err(malformed)?;
                    self.remember(
                        &mut decision,
                        &answer,
                        warden_decision::min_revision(request),
                    )?;
                    Ok(decision)
                })
                .collect(),
            Err(error) => all_failed(error),
        }
    }
}

impl Pdp for RemotePdp {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.decide_one(request))
    }

    fn decide_batch<'a>(&'a self, requests: &'a [AccessRequest]) -> BatchFuture<'a> {
        Box::pin(self.decide_many(requests))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revisions.current()
    }
}

/// A decision the PDP sent that cannot be enforced (malformed obligations, a document of the
/// wrong shape) is a malformed answer, which a circuit breaker counts as a failure; an OPA
/// document that is undefined stays a policy error (no policy at that path).
fn malformed(error: PdpError) -> PdpError {
    match error {
        PdpError::Policy { message } if !message.starts_with("the document is undefined") => {
            PdpError::malformed(message)
        }
        other => other,
    }
}

fn revision_unavailable(have: &PolicyRevision, token: &str) -> PdpError {
    PdpError::unavailable(format!(
        "revision_unavailable: the PDP answered under revision `{}`, which does not meet `{token}`",
        have.revision
    ))
}

fn client_without_timeout() -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .connect_timeout(DEFAULT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| RemoteError::Client(e.to_string()))
}

fn check_url(base: &str) -> Result<(), RemoteError> {
    let invalid = |reason: &str| RemoteError::InvalidUrl {
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = base
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("there is no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("a base URL has no query"));
    }
    Ok(())
}

/// `path` as given when it is already absolute, else joined to the base URL.
fn absolute(base: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else {
        format!("{base}/{}", path.trim_start_matches('/'))
    }
}

fn transport(error: reqwest::Error) -> PdpError {
    if error.is_timeout() {
        PdpError::unavailable(format!("the PDP timed out: {error}"))
    } else {
        PdpError::unavailable(format!("cannot reach the PDP: {error}"))
    }
}

fn encode(error: serde_json::Error) -> PdpError {
    PdpError::policy(format!("cannot encode the access request: {error}"))
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<bytes::Bytes, PdpError> {
    let too_large = || PdpError::unavailable(format!("the PDP's answer exceeds {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
