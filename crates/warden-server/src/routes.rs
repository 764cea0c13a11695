//! The HTTP endpoints: routing, the AuthZEN evaluation endpoints, health and metrics. The OPA
//! Data API is in [`crate::opa`], the search endpoints in [`crate::search`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use warden_decision::authzen::{
    Batch, EVALUATION_PATH, EVALUATIONS_PATH, EvaluationResponse, EvaluationsResponse,
    METADATA_PATH, Metadata, SEARCH_ACTION_PATH, SEARCH_RESOURCE_PATH, SEARCH_SUBJECT_PATH,
    SUPPORTED_OBLIGATIONS, profile_type,
};
use warden_decision::{AccessRequest, Decision, ErrorClass, PdpError, TraceContext};

use crate::{Loaded, State};

pub(crate) type Shared = Extract<Arc<State>>;

pub(crate) fn router(state: Arc<State>) -> Router {
    let limit = state.body_limit;
    let revisions = state.clone();
    let router = Router::new()
        .route(EVALUATION_PATH, post(evaluation))
        .route(EVALUATIONS_PATH, post(evaluations))
        .route(SEARCH_SUBJECT_PATH, post(crate::search::subject))
        .route(SEARCH_RESOURCE_PATH, post(crate::search::resource))
        .route(SEARCH_ACTION_PATH, post(crate::search::action))
        .route(METADATA_PATH, get(metadata))
        .route("/v1/data", post(crate::opa::root).get(crate::opa::root_get))
        .route(
            "/v1/data/{*path}",
            post(crate::opa::data).get(crate::opa::data_get),
        )
        .route(
            crate::ext_authz::EXT_AUTHZ_PREFIX,
            any(crate::ext_authz::check),
        )
        .route("/ext_authz/{*path}", any(crate::ext_authz::check))
        .route("/health", get(health))
        .route("/status", get(crate::source::status))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone())
        .merge(crate::rollback::routes(state.clone()));
    // Authentication and the request id wrap everything, the endpoints added to the router
    // after it was built included.
    crate::revision::wrap(revisions, router)
        .layer(middleware::from_fn_with_state(
            state,
            crate::auth::authenticate,
        ))
        .layer(middleware::from_fn(echo_request_id))
}

/// An `application/problem+json` answer.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

pub(crate) fn problem(
    status: StatusCode,
    title: &'static str,
    detail: impl Into<String>,
) -> Problem {
    Problem {
        status,
        title,
        detail: detail.into(),
    }
}

pub(crate) fn malformed(detail: impl Into<String>) -> Problem {
    problem(StatusCode::BAD_REQUEST, "Malformed request", detail)
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an answer");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot encode the answer",
                "the answer could not be encoded",
            )
            .into_response()
        }
    }
}

/// The body, or the answer to give when it could not be read (too large: 413).
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let title = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "Request body too large"
        } else {
            "Cannot read the request body"
        };
        problem(status, title, rejection.body_text())
    })
}

/// AuthZEN requests are JSON: a `Content-Type` other than `application/json` (parameters such as
/// `charset` aside), or none, is a `400`, as the AuthZEN certification scenario requires.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(problem(
            StatusCode::BAD_REQUEST,
            "Unsupported media type",
            "the request must have Content-Type: application/json",
        ))
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // A number the parser would round into another value is refused, never decided.
    warden_decision::numbers::check(bytes)
        .map_err(|e| malformed(format!("the body is not a valid request: {e}")))?;
    serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("the body is not a valid request: {e}")))
}

/// No policies in force. The reason stays in the server's log: a load error quotes policy
/// source, which callers are not to see.
pub(crate) fn unavailable(state: &State) -> Problem {
    let failed = state.last_error.lock().ok().is_some_and(|e| e.is_some());
    let detail = if failed {
        "no policies are loaded: the last load failed (the server log says why)"
    } else {
        "the policies are loading"
    };
    problem(StatusCode::SERVICE_UNAVAILABLE, "Not ready", detail)
}

/// Runs the decision in the caller's trace, when it sent one.
pub(crate) async fn decide(
    state: &State,
    loaded: &Loaded,
    headers: &HeaderMap,
    request: &AccessRequest,
) -> Result<Decision, PdpError> {
    let started = Instant::now();
    let trace = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let outcome = match trace {
        Some(trace) => {
            let trace = match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                Some(id) => trace.with_request_id(id),
                None => trace,
            };
            trace.scope(loaded.pdp.decide(request)).await
        }
        None => loaded.pdp.decide(request).await,
    };
    // A broken policy is a deny that says so; only an unreachable PDP is an error. The
    // engine's message can quote the policy: it goes to the log, not to the caller.
    let outcome = match outcome {
        Err(PdpError::Policy { message }) => {
            let decision = Decision::deny().with_error(
                ErrorClass::PolicyError,
                "the policy failed to evaluate; the server log has the error",
            );
            tracing::warn!(decision_id = %decision.id, error = %message, "the policy failed to evaluate");
            Ok(decision)
        }
        other => other,
    };
    let outcome = outcome.map(|decision| negotiate(request, decision));
    state
        .metrics
        .decision(outcome.as_ref().ok().map(|d| d.allowed), started.elapsed());
    if let Ok(decision) = &outcome {
        tracing::debug!(
            decision_id = %decision.id,
            subject = %request.subject.id,
            action = %request.action.name,
            resource = %request.resource.id,
            allowed = decision.allowed,
            "decided"
        );
    }
    outcome
}

/// The Obligations Profile's negotiation. A request whose `context.supported_obligations`
/// names the obligation types its PEP carries out (values this server does not advertise are
/// ignored) gets no permit it cannot enforce: a permit with an obligation of another type
/// becomes a deny that says which. Without the member, the decision stands.
pub(crate) fn negotiate(request: &AccessRequest, decision: Decision) -> Decision {
    let Some(Value::Array(declared)) = request.context.get("supported_obligations") else {
        return decision;
    };
    let declared: Vec<&str> = declared
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| SUPPORTED_OBLIGATIONS.contains(t))
        .collect();
    if !decision.allowed {
        return decision;
    }
    let Some(missing) = decision
        .obligations
        .iter()
        .map(profile_type)
        .find(|t| !declared.contains(t))
    else {
        return decision;
    };
    let mut deny = Decision::deny().with_reason(format!(
        "the permit needs a `{missing}` obligation, which the PEP does not support"
    ));
    deny.id = decision.id;
    deny.policy = decision.policy;
    deny
}

pub(crate) fn pdp_failed(error: &PdpError) -> Problem {
    tracing::warn!(%error, "the decision point is unavailable");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Policy decision point unavailable",
        "the policy decision point is unavailable",
    )
}

/// Every answer carries the caller's `X-Request-ID`, whatever the endpoint or outcome.
async fn echo_request_id(request: Request, next: Next) -> Response {
    let id = request.headers().get("x-request-id").cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

async fn evaluation(
    Extract(state): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let response = evaluation_inner(&state, &headers, bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .request("evaluation", response.status().as_u16());
    response
}

async fn evaluation_inner(
    state: &State,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    require_json(headers)?;
    let bytes = body(bytes)?;
    let request: AccessRequest = parse(&bytes)?;
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let decision = decide(state, &loaded, headers, &request)
        .await
        .map_err(|e| pdp_failed(&e))?;
    // Written straight from the decision: the JSON `EvaluationResponse::from_decision` gives.
    Ok(json_response(
        StatusCode::OK,
        &warden_decision::authzen::DecisionAnswer(&decision),
    ))
}

async fn evaluations(
    Extract(state): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let response = evaluations_inner(&state, &headers, bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .request("evaluations", response.status().as_u16());
    response
}

/// The answer for a batch item that is not a request: a deny that says why, in its `context`.
fn item_error(message: &str) -> EvaluationResponse {
    let mut context = Map::new();
    context.insert("error".into(), json!({"status": 400, "message": message}));
    EvaluationResponse {
        decision: false,
        context,
    }
}

async fn evaluations_inner(
    state: &State,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    require_json(headers)?;
    let bytes = body(bytes)?;
    let batch = Batch::parse(&bytes).map_err(malformed)?;
    if batch.items.len() > state.max_batch {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Too many evaluations",
            format!(
                "the batch holds {} evaluations; the limit is {}",
                batch.items.len(),
                state.max_batch
            ),
        ));
    }
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let mut answers = Vec::with_capacity(batch.items.len());
    for item in &batch.items {
        let answer = match item {
            Ok(request) => EvaluationResponse::from_decision(
                &decide(state, &loaded, headers, request)
                    .await
                    .map_err(|e| pdp_failed(&e))?,
            ),
            // A single request that is incomplete is a malformed request, as at the
            // evaluation endpoint.
            Err(message) if batch.single => return Err(malformed(message.clone())),
            // In a batch it is that item's deny; a failed item counts as a deny for the
            // short-circuit semantics too.
            Err(message) => item_error(message),
        };
        let stop = batch.semantic.stops_after(answer.decision);
        answers.push(answer);
        if stop {
            break;
        }
    }
    if batch.single {
        let answer = answers.pop().ok_or_else(|| malformed("no request"))?;
        return Ok(json_response(StatusCode::OK, &answer));
    }
    Ok(json_response(
        StatusCode::OK,
        &EvaluationsResponse {
            evaluations: answers,
        },
    ))
}

/// The base URL for documents that name endpoints: the configured public URL, else
/// `http://<Host>` (a Host of anything but host name characters is refused).
pub(crate) fn base_url(state: &State, headers: &HeaderMap) -> Result<String, Problem> {
    if let Some(url) = &state.public_url {
        return Ok(url.clone());
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(|host| {
            let scheme = if state.tls.load(std::sync::atomic::Ordering::Relaxed) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}")
        })
        .ok_or_else(|| malformed("no valid Host header, and no public URL is configured"))
}

async fn metadata(Extract(state): Shared, headers: HeaderMap) -> Response {
    let base = match base_url(&state, &headers) {
        Ok(base) => base,
        Err(problem) => {
            state.metrics.request("metadata", 400);
            return problem.into_response();
        }
    };
    let mut metadata = Metadata::for_base(&base);
    metadata.search_subject_endpoint = Some(format!("{base}{SEARCH_SUBJECT_PATH}"));
    metadata.search_resource_endpoint = Some(format!("{base}{SEARCH_RESOURCE_PATH}"));
    metadata.search_action_endpoint = Some(format!("{base}{SEARCH_ACTION_PATH}"));
    metadata.capabilities = Some(Vec::new());
    metadata.supported_obligations = Some(
        SUPPORTED_OBLIGATIONS
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
    );
    metadata.signed_metadata.clone_from(&state.signed_metadata);
    state.metrics.request("metadata", 200);
    json_response(StatusCode::OK, &metadata)
}

async fn health(Extract(state): Shared) -> Response {
    let loaded = state.current.load_full();
    let failed = state.last_error.lock().ok().is_some_and(|e| e.is_some());
    let revision = loaded.as_ref().and_then(|l| l.pdp.revision());
    // Open to every caller: whether the last load failed, never the error, which quotes the
    // policy source (the server log has it).
    let mut body = json!({
        "status": if loaded.is_some() { "ready" } else { "loading" },
        "last_reload_failed": failed,
    });
    if let (Some(object), Some(revision)) = (body.as_object_mut(), revision) {
        object.insert(
            "policy".into(),
            json!({"id": revision.id, "revision": revision.revision}),
        );
    }
    if let (Some(object), Some(kind)) = (
        body.as_object_mut(),
        loaded
            .as_ref()
            .and_then(|l| l.dir.as_ref())
            .map(|d| d.kind()),
    ) {
        object.insert("engine".into(), Value::String(kind.to_string()));
    }
    let status = if loaded.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    state.metrics.request("health", status.as_u16());
    json_response(status, &body)
}

async fn metrics(Extract(state): Shared) -> Response {
    let loaded = state.current.load_full();
    let revision = loaded.as_ref().and_then(|l| l.pdp.revision());
    let mut text = state.metrics.render(
        loaded.is_some(),
        revision
            .as_ref()
            .map(|r| (r.id.as_str(), r.revision.as_str())),
    );
    text.push_str(&crate::source::metrics(&state));
    state.metrics.request("metrics", 200);
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        format!("no endpoint at {}", uri.path()),
    )
    .into_response()
}
