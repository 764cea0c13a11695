//! The HTTP endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use warden_decision::authzen::{
    EVALUATION_PATH, EVALUATIONS_PATH, EvaluationResponse, EvaluationsRequest, EvaluationsResponse,
    METADATA_PATH, Metadata,
};
use warden_decision::{AccessRequest, Decision, ErrorClass, PdpError, TraceContext};

use crate::{Loaded, State};

type Shared = Extract<Arc<State>>;

pub(crate) fn router(state: Arc<State>) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route(EVALUATION_PATH, post(evaluation))
        .route(EVALUATIONS_PATH, post(evaluations))
        .route(METADATA_PATH, get(metadata))
        .route("/v1/data/{*path}", post(opa_data))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An `application/problem+json` answer.
#[derive(Debug)]
struct Problem {
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

fn problem(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
    Problem {
        status,
        title,
        detail: detail.into(),
    }
}

fn malformed(detail: impl Into<String>) -> Problem {
    problem(StatusCode::BAD_REQUEST, "Malformed request", detail)
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot encode the answer",
            e.to_string(),
        )
        .into_response(),
    }
}

/// The body, or the answer to give when it could not be read (too large: 413).
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
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

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("the body is not a valid request: {e}")))
}

fn unavailable(state: &State) -> Problem {
    let detail = match state.last_error.lock().ok().and_then(|e| e.clone()) {
        Some(error) => format!("no policies are loaded: {error}"),
        None => "the policies are loading".to_owned(),
    };
    problem(StatusCode::SERVICE_UNAVAILABLE, "Not ready", detail)
}

/// Runs the decision in the caller's trace, when it sent one.
async fn decide(
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
    // A broken policy is a deny that says so; only an unreachable PDP is an error.
    let outcome = match outcome {
        Err(PdpError::Policy { message }) => {
            Ok(Decision::deny().with_error(ErrorClass::PolicyError, message))
        }
        other => other,
    };
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

fn pdp_failed(error: &PdpError) -> Problem {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Policy decision point unavailable",
        error.to_string(),
    )
}

fn echo_request_id(headers: &HeaderMap, mut response: Response) -> Response {
    if let Some(id) = headers.get("x-request-id") {
        response.headers_mut().insert("x-request-id", id.clone());
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
    echo_request_id(&headers, response)
}

async fn evaluation_inner(
    state: &State,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = body(bytes)?;
    let request: AccessRequest = parse(&bytes)?;
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let decision = decide(state, &loaded, headers, &request)
        .await
        .map_err(|e| pdp_failed(&e))?;
    Ok(json_response(
        StatusCode::OK,
        &EvaluationResponse::from_decision(&decision),
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
    echo_request_id(&headers, response)
}

async fn evaluations_inner(
    state: &State,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = body(bytes)?;
    let batch: EvaluationsRequest = parse(&bytes)?;
    let requests = batch.requests().map_err(malformed)?;
    if requests.len() > state.max_batch {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Too many evaluations",
            format!(
                "the batch holds {} evaluations; the limit is {}",
                requests.len(),
                state.max_batch
            ),
        ));
    }
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let semantic = batch.semantic();
    let mut answers = Vec::with_capacity(requests.len());
    for request in &requests {
        match decide(state, &loaded, headers, request).await {
            Ok(decision) => {
                let stop = semantic.stops_after(decision.allowed);
                answers.push(EvaluationResponse::from_decision(&decision));
                if stop {
                    break;
                }
            }
            Err(error) => return Err(pdp_failed(&error)),
        }
    }
    if batch.is_single() {
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

async fn metadata(Extract(state): Shared, headers: HeaderMap) -> Response {
    let base = match &state.public_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                });
            match host {
                Some(host) => format!("http://{host}"),
                None => {
                    state.metrics.request("metadata", 400);
                    return malformed("no valid Host header, and no public URL is configured")
                        .into_response();
                }
            }
        }
    };
    state.metrics.request("metadata", 200);
    json_response(StatusCode::OK, &Metadata::for_base(&base))
}

async fn opa_data(
    Extract(state): Shared,
    Path(path): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let response = opa_inner(&state, &path, &headers, bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .request("opa_data", response.status().as_u16());
    echo_request_id(&headers, response)
}

async fn opa_inner(
    state: &State,
    path: &str,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = body(bytes)?;
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let path = path.trim_matches('/');
    if path != loaded.opa_path {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "Unknown document",
            format!(
                "this server decides at /v1/data/{}, not /v1/data/{path}",
                loaded.opa_path
            ),
        ));
    }
    let mut envelope: serde_json::Map<String, Value> = parse(&bytes)?;
    let input = envelope
        .remove("input")
        .ok_or_else(|| malformed("the body has no `input`"))?;
    let request: AccessRequest = serde_json::from_value(input)
        .map_err(|e| malformed(format!("`input` is not an access request: {e}")))?;
    match decide(state, &loaded, headers, &request).await {
        Ok(decision) => {
            let mut result = serde_json::Map::new();
            result.insert("allow".into(), Value::Bool(decision.allowed));
            for (key, value) in [
                ("obligations", serde_json::to_value(&decision.obligations)),
                ("reasons", serde_json::to_value(&decision.reasons)),
                ("advice", serde_json::to_value(&decision.advice)),
            ] {
                if let Ok(value) = value
                    && value.as_array().is_some_and(|a| !a.is_empty())
                {
                    result.insert(key.into(), value);
                }
            }
            let mut answer = json!({
                "result": result,
                "decision_id": decision.id.to_string(),
            });
            if !decision.policy.id.is_empty()
                && let Some(object) = answer.as_object_mut()
            {
                object.insert(
                    "provenance".into(),
                    json!({"bundles": {decision.policy.id.clone(): {"revision": decision.policy.revision}}}),
                );
            }
            Ok(json_response(StatusCode::OK, &answer))
        }
        Err(error) => Err(pdp_failed(&error)),
    }
}

async fn health(Extract(state): Shared) -> Response {
    let loaded = state.current.load_full();
    let last_error = state.last_error.lock().ok().and_then(|e| e.clone());
    let revision = loaded.as_ref().and_then(|l| l.pdp.revision());
    let mut body = json!({
        "status": if loaded.is_some() { "ready" } else { "loading" },
        "last_reload_error": last_error,
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
    let text = state.metrics.render(
        loaded.is_some(),
        revision
            .as_ref()
            .map(|r| (r.id.as_str(), r.revision.as_str())),
    );
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
