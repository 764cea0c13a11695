//! OPA's Data API, as OPA serves it.
//!
//! * `POST /v1/data/<path>` with `{"input": …}`, `GET /v1/data/<path>?input=<JSON>`, and the
//!   same at `/v1/data` (the root document).
//! * The answer is `{"result": <document>}` with the document as the policy produced it — for a
//!   Rego package, the entrypoint's value exactly (a boolean rule is `{"result": true}`); for
//!   Cedar or another decision point, Warden's decision document
//!   `{"allow": …, "obligations": […], "reasons": […]}`. An undefined document is `200` with
//!   no `result`.
//! * `decision_id` on every answer; `?pretty` indents; `?metrics` adds `metrics` with
//!   `timer_rego_query_eval_ns` and `timer_server_handler_ns`; `?provenance` adds `version`
//!   and the policy's revision under `bundles`.
//! * Errors are OPA's shape, `{"code": "invalid_parameter" | "internal_error" |
//!   "unavailable", "message": …}`.
//!
//! The server evaluates the decision document only: a path inside it (`clinic/decision/allow`)
//! is that part of it, a path above it (`clinic`, the root) holds it alone, and a path beside it
//! is a `404` `resource_not_found`, since it is not evaluated here. The input must be an access
//! request, which is what Warden's policies are written for.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use warden_decision::{AccessRequest, Decision};

use crate::routes::{Shared, decide};
use crate::{Loaded, State};

type Params = Query<HashMap<String, String>>;

/// An error in OPA's shape.
struct OpaError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn opa_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> OpaError {
    OpaError {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for OpaError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message});
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Whether a query flag is on: present without a value, or `true`.
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.is_empty() || v.eq_ignore_ascii_case("true"))
}

pub(crate) async fn data(
    axum::extract::State(state): Shared,
    Path(path): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let input = bytes
        .map_err(|r| opa_error(r.status(), "invalid_parameter", r.body_text()))
        .and_then(|b| body_input(&b));
    respond(&state, &path, &params, &headers, input).await
}

pub(crate) async fn data_get(
    axum::extract::State(state): Shared,
    Path(path): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let input = query_input(&params);
    respond(&state, &path, &params, &headers, input).await
}

pub(crate) async fn root(
    axum::extract::State(state): Shared,
    Query(params): Params,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let input = bytes
        .map_err(|r| opa_error(r.status(), "invalid_parameter", r.body_text()))
        .and_then(|b| body_input(&b));
    respond(&state, "", &params, &headers, input).await
}

pub(crate) async fn root_get(
    axum::extract::State(state): Shared,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let input = query_input(&params);
    respond(&state, "", &params, &headers, input).await
}

/// The `input` of a POST body: `{"input": …}`; an empty body has none.
fn body_input(bytes: &[u8]) -> Result<Option<Value>, OpaError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    warden_decision::numbers::check(bytes).map_err(|e| {
        opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("body contains malformed input document: {e}"),
        )
    })?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("body contains malformed input document: {e}"),
        )
    })?;
    match value {
        Value::Object(mut object) => Ok(object.remove("input")),
        _ => Err(opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "body must be a JSON object",
        )),
    }
}

fn query_input(params: &HashMap<String, String>) -> Result<Option<Value>, OpaError> {
    params
        .get("input")
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                opa_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_parameter",
                    format!("input parameter is not JSON: {e}"),
                )
            })
        })
        .transpose()
}

async fn respond(
    state: &State,
    path: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    input: Result<Option<Value>, OpaError>,
) -> Response {
    let started = Instant::now();
    let response = match answer(state, path, params, headers, input, started).await {
        Ok(body) => {
            let text = if flag(params, "pretty") {
                serde_json::to_string_pretty(&body)
            } else {
                serde_json::to_string(&body)
            };
            let mut response = (StatusCode::OK, text.unwrap_or_default()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => error.into_response(),
    };
    state
        .metrics
        .request("opa_data", response.status().as_u16());
    response
}

/// The document at `path` below the root, given the decision document at `entry`: a part of it,
/// or it nested under the rest of its path, or nothing (`Err`) for a path beside it.
fn locate(entry: &str, path: &str, document: Option<Value>) -> Result<Option<Value>, ()> {
    let entry: Vec<&str> = entry.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let common = entry.len().min(path.len());
    if entry.get(..common) != path.get(..common) {
        return Err(());
    }
    if path.len() >= entry.len() {
        // Inside the document: descend.
        let mut current = document;
        for key in path.get(entry.len()..).unwrap_or_default() {
            current = match current {
                Some(Value::Object(mut object)) => object.remove(*key),
                Some(Value::Array(items)) => key
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.into_iter().nth(i)),
                _ => None,
            };
        }
        return Ok(current);
    }
    // Above it: the document nested under the rest of the entrypoint's path.
    let Some(mut current) = document else {
        return Ok(Some(Value::Object(Map::new())));
    };
    for key in entry.get(path.len()..).unwrap_or_default().iter().rev() {
        let mut object = Map::new();
        object.insert((*key).to_owned(), current);
        current = Value::Object(object);
    }
    Ok(Some(current))
}

async fn answer(
    state: &State,
    path: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    input: Result<Option<Value>, OpaError>,
    started: Instant,
) -> Result<Value, OpaError> {
    let input = input?;
    let loaded = state.current.load_full().ok_or_else(|| {
        opa_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no policies are loaded",
        )
    })?;
    let path = path.trim_matches('/');
    let beside = || {
        opa_error(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            format!(
                "this server evaluates the document data.{} only",
                loaded.opa_path.replace('/', ".")
            ),
        )
    };
    // A path beside the decision document is refused before anything is evaluated.
    locate(&loaded.opa_path, path, None).map_err(|()| beside())?;
    let Some(input) = input else {
        return Err(opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "the decision document needs an input (an access request)",
        ));
    };
    let request: AccessRequest = serde_json::from_value(input).map_err(|e| {
        opa_error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("input is not an access request: {e}"),
        )
    })?;
    let evaluating = Instant::now();
    let (document, decision) = evaluate(state, &loaded, headers, &request).await?;
    let eval_ns = evaluating.elapsed().as_nanos();
    let mut body = Map::new();
    if let Some(result) = locate(&loaded.opa_path, path, document).map_err(|()| beside())? {
        body.insert("result".into(), result);
    }
    body.insert("decision_id".into(), Value::String(decision.id.to_string()));
    // The policy's revision is always named, so a Warden client can tell which revision
    // decided; `?provenance` adds OPA's other members.
    let bundles = (!decision.policy.id.is_empty())
        .then(|| json!({decision.policy.id.clone(): {"revision": decision.policy.revision}}));
    let mut provenance = Map::new();
    if let Some(bundles) = bundles {
        provenance.insert("bundles".into(), bundles);
    }
    if flag(params, "provenance") {
        provenance.insert(
            "version".into(),
            Value::String(format!("warden-server {}", env!("CARGO_PKG_VERSION"))),
        );
    }
    if !provenance.is_empty() {
        body.insert("provenance".into(), Value::Object(provenance));
    }
    if flag(params, "metrics") {
        body.insert(
            "metrics".into(),
            json!({
                "timer_rego_query_eval_ns": u64::try_from(eval_ns).unwrap_or(u64::MAX),
                "timer_server_handler_ns": u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            }),
        );
    }
    Ok(Value::Object(body))
}

/// The decision document and the decision. For Rego, the entrypoint's value as it is, and the
/// decision Warden's PDP makes of it (its id and revision name the answer); otherwise Warden's
/// decision document.
async fn evaluate(
    state: &State,
    loaded: &Loaded,
    headers: &HeaderMap,
    request: &AccessRequest,
) -> Result<(Option<Value>, Decision), OpaError> {
    let decision = decide(state, loaded, headers, request)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the decision point is unavailable");
            opa_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the policy decision point is unavailable",
            )
        })?;
    if let Some(document) = loaded.dir.as_ref().and_then(|d| d.document(request)) {
        let document = document.map_err(|error| {
            tracing::warn!(decision_id = %decision.id, %error, "the policy failed to evaluate");
            opa_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the policy failed to evaluate; the server log has the error",
            )
        })?;
        return Ok((document, decision));
    }
    let mut result = Map::new();
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
    Ok((Some(Value::Object(result)), decision))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::locate;

    #[test]
    fn paths_inside_above_and_beside_the_decision_document() {
        let doc = Some(json!({"allow": true, "obligations": [{"type": "audit"}]}));
        let entry = "clinic/decision";
        assert_eq!(
            locate(entry, "clinic/decision", doc.clone()),
            Ok(doc.clone())
        );
        assert_eq!(
            locate(entry, "clinic/decision/allow", doc.clone()),
            Ok(Some(json!(true)))
        );
        assert_eq!(
            locate(entry, "clinic/decision/obligations/0/type", doc.clone()),
            Ok(Some(json!("audit")))
        );
        assert_eq!(locate(entry, "clinic/decision/nope", doc.clone()), Ok(None));
        assert_eq!(
            locate(entry, "clinic", doc.clone()),
            Ok(Some(
                json!({"decision": {"allow": true, "obligations": [{"type": "audit"}]}})
            ))
        );
        assert_eq!(
            locate(entry, "", Some(json!(false))),
            Ok(Some(json!({"clinic": {"decision": false}})))
        );
        assert_eq!(locate(entry, "clinic/config", doc.clone()), Err(()));
        assert_eq!(locate(entry, "other", doc), Err(()));
    }
}
