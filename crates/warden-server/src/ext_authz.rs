//! Envoy's external authorization, HTTP variant: `warden serve` as the `http_service` of
//! Envoy's `ext_authz` filter (and of gateways that speak it).
//!
//! Envoy sends the request it is about to forward to `/ext_authz<original path>`, with the
//! original method and headers. The access request is
//!
//! | member | from |
//! |---|---|
//! | `subject` | `{"type": "user", "id": <sub>, "properties": <claims>}` from the JWT payload Envoy's `jwt_authn` filter verified and forwarded (`forward_payload_header`, default `x-jwt-payload`); else the id in the principal header (default `x-warden-subject`); else `anonymous` |
//! | `action` | `{"name": <method>}` |
//! | `resource` | `{"type": "route", "id": <path>, "properties": {"query": {…}, "headers": {…}}}` (credentials and cookies left out) |
//! | `context` | `acr` and `auth_time` from the claims |
//!
//! The answer: `200` to allow, with `x-warden-decision-id` and `x-warden-policy-revision` for
//! Envoy to pass upstream; `403` problem+json to deny; `401` with the RFC 9470 challenge for a
//! `step_up` the claims do not meet; `503` when the policies are not loaded. A permit whose
//! obligations a gateway cannot carry out (redactions, row filters, masks, custom types) is a
//! `403`: Envoy would forward the request without them. `audit` is carried out here, as a log
//! event.
//!
//! The principal and payload headers are trusted: Envoy must set them itself (`jwt_authn`
//! replaces a payload header a client sent; strip a principal header at the edge).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value};
use warden_decision::{AccessRequest, Action, Obligation, Properties, Resource, Subject};

use crate::routes::{Shared, decide, problem, unavailable};

/// Where Envoy's `http_service` sends its checks: `path_prefix: /ext_authz`.
pub const EXT_AUTHZ_PREFIX: &str = "/ext_authz";
/// The default header of the principal's id.
pub const DEFAULT_PRINCIPAL_HEADER: &str = "x-warden-subject";
/// The default header of the verified JWT payload (base64url JSON).
pub const DEFAULT_PAYLOAD_HEADER: &str = "x-jwt-payload";

/// Headers never copied into the access request.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-jwt-payload",
];

/// Which headers carry the principal.
#[derive(Debug, Clone)]
pub(crate) struct ExtAuthz {
    pub(crate) principal_header: String,
    pub(crate) payload_header: String,
}

impl Default for ExtAuthz {
    fn default() -> Self {
        Self {
            principal_header: DEFAULT_PRINCIPAL_HEADER.to_owned(),
            payload_header: DEFAULT_PAYLOAD_HEADER.to_owned(),
        }
    }
}

fn claims(headers: &HeaderMap, config: &ExtAuthz) -> Option<Map<String, Value>> {
    let text = headers.get(config.payload_header.as_str())?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The access request for the request Envoy asks about.
fn access_request(
    method: &str,
    path: &str,
    query_text: Option<&str>,
    headers: &HeaderMap,
    config: &ExtAuthz,
) -> AccessRequest {
    let mut query = Map::new();
    for pair in query_text
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    let mut copied = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if SECRET_HEADERS.contains(&name)
            || name == config.principal_header
            || name == config.payload_header
        {
            continue;
        }
        if let Ok(value) = value.to_str() {
            copied.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    let mut context = Properties::new();
    let subject = match claims(headers, config) {
        Some(claims) => {
            for key in ["acr", "auth_time"] {
                if let Some(value) = claims.get(key) {
                    context.insert(key.to_owned(), value.clone());
                }
            }
            let id = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("anonymous")
                .to_owned();
            Subject {
                kind: "user".into(),
                id,
                properties: claims,
            }
        }
        None => match headers
            .get(config.principal_header.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        {
            Some(id) => Subject::user(id),
            None => Subject::new("anonymous", "anonymous"),
        },
    };
    let mut resource = Resource::new("route", path);
    resource
        .properties
        .insert("query".into(), Value::Object(query));
    resource
        .properties
        .insert("headers".into(), Value::Object(copied));
    let mut request = AccessRequest::new(subject, Action::new(method), resource);
    request.context = context;
    request
}

fn denied(status: StatusCode, title: &'static str, detail: &str, id: &str) -> Response {
    let mut response = problem(status, title, detail).into_response();
    if let Ok(id) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-warden-decision-id", id);
    }
    response
}

pub(crate) async fn check(Extract(state): Shared, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let path = parts
        .uri
        .path()
        .strip_prefix(EXT_AUTHZ_PREFIX)
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let response = verdict(
        &state,
        parts.method.as_str(),
        path,
        parts.uri.query(),
        &parts.headers,
    )
    .await;
    state
        .metrics
        .request("ext_authz", response.status().as_u16());
    response
}

impl crate::Server {
    /// The answer to an external authorization check of the request `method` `path_and_query`
    /// with `headers`, as the HTTP variant at [`EXT_AUTHZ_PREFIX`] gives it: for the gRPC
    /// service of `warden-ext-authz`, which turns it into a `CheckResponse`.
    pub async fn ext_authz(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Response {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        let response = verdict(&self.state, method, path, query, headers).await;
        self.state
            .metrics
            .request("ext_authz_grpc", response.status().as_u16());
        response
    }
}

async fn verdict(
    state: &crate::State,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let Some(loaded) = state.current.load_full() else {
        return unavailable(state).into_response();
    };
    let request = access_request(method, path, query, headers, &state.ext_authz);
    let decision = match decide(state, &loaded, headers, &request).await {
        Ok(decision) => decision,
        Err(error) => return crate::routes::pdp_failed(&error).into_response(),
    };
    let id = decision.id.to_string();
    if !decision.allowed {
        return denied(StatusCode::FORBIDDEN, "Forbidden", "access denied", &id);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let acr = request.context.get("acr").and_then(Value::as_str);
    let auth_time = request.context.get("auth_time").and_then(Value::as_u64);
    for obligation in &decision.obligations {
        match obligation {
            Obligation::Audit(audit) => {
                tracing::info!(decision_id = %id, level = ?audit.level, tags = ?audit.tags, subject = %request.subject.id, route = %request.resource.id, "audit");
            }
            Obligation::StepUp(step_up) if !step_up.is_satisfied_by(acr, auth_time, now) => {
                let mut response = denied(
                    StatusCode::UNAUTHORIZED,
                    "Step-up authentication required",
                    "a different authentication level is required",
                    &id,
                );
                let mut challenge = format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"{}\"",
                    step_up.acr_values
                );
                if let Some(max_age) = step_up.max_age {
                    challenge.push_str(&format!(", max_age=\"{max_age}\""));
                }
                if let Ok(challenge) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                }
                return response;
            }
            Obligation::StepUp(_) => {}
            other => {
                tracing::warn!(decision_id = %id, obligation = other.type_name(), "a permit with an obligation a gateway cannot carry out is a deny");
                return denied(StatusCode::FORBIDDEN, "Forbidden", "access denied", &id);
            }
        }
    }
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-warden-decision-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&decision.policy.revision) {
        headers.insert("x-warden-policy-revision", value);
    }
    response
}
