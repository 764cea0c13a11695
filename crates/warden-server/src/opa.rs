//! The OPA Data API: `POST /v1/data/<path>` with `{"input": <access request>}`.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_decision::AccessRequest;

use crate::State;
use crate::routes::{
    Problem, Shared, body, decide, json_response, malformed, parse, pdp_failed, problem,
    unavailable,
};

pub(crate) async fn data(
    axum::extract::State(state): Shared,
    Path(path): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let response = data_inner(&state, &path, &headers, bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .request("opa_data", response.status().as_u16());
    response
}

async fn data_inner(
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
