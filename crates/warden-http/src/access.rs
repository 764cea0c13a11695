//! Building the access request of an HTTP or gRPC request (the contract policies are written
//! against; see the crate docs).

use std::time::SystemTime;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use serde_json::{Map, Value};
use warden_decision::{AccessRequest, Action, Properties, Resource, Subject};

use crate::jwt::{JwtVerifier, TokenError};
use crate::respond::Refusal;

/// The route id of a request the router matched to no route (it reached a fallback).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Where the subject of a request comes from.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubjectSource {
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) anonymous: bool,
}

/// What the PEP keeps of a request's authentication for enforcing `step_up`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthStrength {
    pub(crate) acr: Option<String>,
    pub(crate) auth_time: Option<u64>,
    /// The request carried no credentials (and anonymous access is allowed).
    pub(crate) anonymous: bool,
}

impl SubjectSource {
    /// The subject: a [`Subject`] extension put there by an authentication layer, else a verified
    /// bearer JWT, else the anonymous subject when allowed.
    fn resolve(&self, parts: &Parts) -> Result<(Subject, bool), Refusal> {
        if let Some(subject) = parts.extensions.get::<Subject>() {
            return Ok((subject.clone(), false));
        }
        let bearer = bearer_token(parts)?;
        match (&self.jwt, bearer) {
            (Some(verifier), Some(token)) => {
                let token = verifier.verify(token).map_err(Refusal::InvalidToken)?;
                let subject = Subject {
                    kind: "user".into(),
                    id: token.subject,
                    properties: token.claims,
                };
                Ok((subject, false))
            }
            (None, Some(_)) => Err(Refusal::InvalidToken(TokenError::UnacceptedAlgorithm)),
            (_, None) if self.anonymous => Ok((Subject::new("anonymous", "anonymous"), true)),
            (_, None) => Err(Refusal::Unauthenticated),
        }
    }
}

fn bearer_token(parts: &Parts) -> Result<Option<&str>, Refusal> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two Authorization headers: which one would the handler read? Refuse both.
        return Err(Refusal::InvalidToken(TokenError::Malformed));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::InvalidToken(TokenError::Malformed))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(Refusal::InvalidToken(TokenError::Malformed))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Unauthenticated);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::InvalidToken(TokenError::Malformed));
    }
    Ok(Some(token))
}

/// Whether the request speaks gRPC.
pub(crate) fn is_grpc(parts: &Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Builds the access request; refuses when there is no acceptable subject.
pub(crate) fn build(
    parts: &mut Parts,
    subjects: &SubjectSource,
) -> Result<(AccessRequest, AuthStrength), Refusal> {
    let (subject, anonymous) = subjects.resolve(parts)?;
    let strength = AuthStrength {
        anonymous,
        acr: subject
            .properties
            .get("acr")
            .and_then(Value::as_str)
            .map(str::to_owned),
        auth_time: subject.properties.get("auth_time").and_then(Value::as_u64),
    };
    let resource = resource(parts)?;
    let mut context = Properties::new();
    context.insert(
        "time".into(),
        humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .into(),
    );
    if let Some(acr) = &strength.acr {
        context.insert("acr".into(), acr.clone().into());
    }
    if let Some(auth_time) = strength.auth_time {
        context.insert("auth_time".into(), auth_time.into());
    }
    if let Some(id) = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        context.insert("request_id".into(), id.into());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        context.insert("client_ip".into(), addr.ip().to_string().into());
    }
    let request = AccessRequest {
        subject,
        action: Action::new(parts.method.as_str()),
        resource,
        context,
    };
    Ok((request, strength))
}

fn resource(parts: &mut Parts) -> Result<Resource, Refusal> {
    // gRPC: tonic dispatches on the exact path `/package.Service/Method`, so the path names the
    // method. Inside an axum router tonic's services are routed as `/package.Service/{*rest}`;
    // a gRPC content type on any other matched route is not a gRPC call and is named as a route.
    if is_grpc(parts) && matched_route(parts).is_none_or(|route| route.ends_with("/{*rest}")) {
        let path = parts.uri.path();
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("", ""));
        return Ok(Resource::new("rpc", path)
            .with_property("service", service)
            .with_property("method", method));
    }
    #[cfg(feature = "axum")]
    if let Some(route) = parts.extensions.get::<axum::extract::MatchedPath>() {
        let mut resource = Resource::new("route", route.as_str());
        resource
            .properties
            .insert("params".into(), Value::Object(path_params(parts)?));
        resource
            .properties
            .insert("query".into(), Value::Object(query(parts.uri.query())));
        return Ok(resource);
    }
    Ok(Resource::new("route", UNMATCHED_ROUTE))
}

pub(crate) fn matched_route(parts: &Parts) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(route) = parts.extensions.get::<axum::extract::MatchedPath>() {
        return Some(route.as_str());
    }
    let _ = parts;
    None
}

#[cfg(feature = "axum")]
fn path_params(parts: &mut Parts) -> Result<Map<String, Value>, Refusal> {
    use axum::extract::{FromRequestParts, RawPathParams};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    // The extractor is ready at once: it only reads request extensions.
    let future = RawPathParams::from_request_parts(parts, &());
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(params)) => Ok(params
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect()),
        Poll::Ready(Err(_)) => Err(Refusal::BadRequest(
            "a path parameter is not valid UTF-8 once percent-decoded",
        )),
        Poll::Pending => Ok(Map::new()),
    }
}

#[cfg_attr(
    not(feature = "axum"),
    expect(dead_code, reason = "route properties come from axum's matched route")
)]
/// The query string as an object; a key given more than once maps to an array of its values,
/// so a policy sees every value the handler might read.
fn query(query: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = Value::String(value.into_owned());
        match out.get_mut(key.as_ref()) {
            None => {
                out.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_keys_become_arrays() {
        let q = query(Some("clinic=c1&clinic=c2&x=%41&clinic=c3&flag"));
        assert_eq!(q["clinic"], serde_json::json!(["c1", "c2", "c3"]));
        assert_eq!(q["x"], "A");
        assert_eq!(q["flag"], "");
        assert!(query(None).is_empty());
    }
}
