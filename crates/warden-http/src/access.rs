//! Building the access request of an HTTP or gRPC request (the contract policies are written
//! against; see the crate docs).

use std::time::SystemTime;

use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use http::request::Parts;
use serde_json::{Map, Value};
use warden_decision::{AccessRequest, Action, Properties, Resource, Subject};

use crate::jwt::{JwtVerifier, TokenError};
use crate::respond::Refusal;

/// The route id of a request the router matched to no route (it reached a fallback).
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// The W3C Trace Context header (a static: looking it up by its name as a string would parse the name).
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The request id header.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
                    kind: token.kind,
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
    head_as_get: bool,
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
    context.insert("time".into(), now_rfc3339().into());
    if let Some(acr) = &strength.acr {
        context.insert("acr".into(), acr.clone().into());
    }
    if let Some(auth_time) = strength.auth_time {
        context.insert("auth_time".into(), auth_time.into());
    }
    if let Some(id) = parts
        .headers
        .get(&X_REQUEST_ID)
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
    // axum answers `HEAD` with the `GET` handler: decided as the `GET` it is, unless opted out.
    let action = if head_as_get && parts.method == Method::HEAD {
        context.insert("method".into(), "HEAD".into());
        Action::new(Method::GET.as_str())
    } else {
        Action::new(parts.method.as_str())
    };
    let request = AccessRequest {
        subject,
        action,
        resource,
        context,
    };
    Ok((request, strength))
}

/// The present time in RFC 3339 to the second, formatted once per second and thread.
fn now_rfc3339() -> String {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let Ok(since) = now.duration_since(SystemTime::UNIX_EPOCH) else {
        return humantime::format_rfc3339_seconds(now).to_string();
    };
    let second = since.as_secs();
    LAST.with_borrow_mut(|(at, text)| {
        if *at != second {
            *text = humantime::format_rfc3339_seconds(now).to_string();
            *at = second;
        }
        text.clone()
    })
}

fn resource(parts: &mut Parts) -> Result<Resource, Refusal> {
    let matched = matched_route(parts).map(str::to_owned);
    // gRPC: tonic dispatches on the exact path `/package.Service/Method`, so that path names the
    // method, but only where a gRPC server routes it: outside of any axum router (a tonic
    // `Server::layer`), or on the `/package.Service/{*rest}` route tonic's services get inside
    // an axum router. The content type alone never names a request: inside a router, a request
    // that matched no route is `<unmatched>` whatever its headers say, and a path that is not a
    // plain `/service/method` (`/pkg.Service/../../admin`) names no method.
    if is_grpc(parts) {
        let grpc_routed = match &matched {
            None => !inside_router(parts),
            Some(route) => route.ends_with("/{*rest}"),
        };
        if grpc_routed && let Some((service, method)) = grpc_method(parts.uri.path()) {
            let (service, method) = (service.to_owned(), method.to_owned());
            return Ok(Resource::new("rpc", parts.uri.path())
                .with_property("service", service)
                .with_property("method", method));
        }
    }
    #[cfg(feature = "axum")]
    {
        let route = matched.or_else(|| nested_service_route(parts));
        if let Some(route) = route {
            let mut resource = Resource::new("route", route);
            resource
                .properties
                .insert("params".into(), Value::Object(path_params(parts)?));
            resource
                .properties
                .insert("query".into(), Value::Object(query(parts.uri.query())));
            return Ok(resource);
        }
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

/// `("package.Service", "Method")` for a plain gRPC method path, `None` for anything else.
pub(crate) fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let ident = |s: &str, dots: bool| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (dots && b == b'.'))
            && !s.contains("..")
            && !s.ends_with('.')
    };
    (ident(service, true) && ident(method, false)).then_some((service, method))
}

/// Whether an axum router routed the request to this layer (as a route or as its fallback).
fn inside_router(parts: &Parts) -> bool {
    #[cfg(feature = "axum")]
    if parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .is_some()
    {
        return true;
    }
    let _ = parts;
    false
}

/// The template of a service nested with `Router::nest_service` (`/files/{*rest}`): axum keeps
/// it in a private extension and names no `MatchedPath`, so a probe router with a single
/// `/{*rest}` route is asked to append its route to it, as axum does for nested routers. The
/// tail itself is not a path parameter (axum hides it from them too).
#[cfg(feature = "axum")]
fn nested_service_route(parts: &mut Parts) -> Option<String> {
    use std::sync::LazyLock;
    use std::task::{Context, Poll, Waker};

    use axum::extract::MatchedPath;
    use tower_service::Service;

    static PROBE: LazyLock<axum::Router> = LazyLock::new(|| {
        axum::Router::new().route(
            "/{*rest}",
            axum::routing::any(|matched: MatchedPath| async move { axum::Extension(matched) }),
        )
    });

    // Only inside a router: a fallback gets the probe's own route back, a nested service the
    // template axum keeps for it.
    if !inside_router(parts) {
        return None;
    }
    let mut request = http::Request::new(axum::body::Body::empty());
    *request.uri_mut() = parts.uri.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
        .extensions_mut()
        .remove::<axum::extract::OriginalUri>();
    let mut router = PROBE.clone();
    let mut future = std::pin::pin!(router.call(request));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        return None;
    };
    let route = response.extensions().get::<MatchedPath>()?.as_str();
    // Without a nested prefix the probe names its own route: not a nested service.
    (route != "/{*rest}").then(|| route.to_owned())
}

/// axum's raw path parameters of the request; `Err` when one is not valid UTF-8.
#[cfg(feature = "axum")]
fn raw_params(parts: &mut Parts) -> Option<Result<axum::extract::RawPathParams, ()>> {
    use axum::extract::{FromRequestParts, RawPathParams};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    // The extractor is ready at once: it only reads request extensions.
    let future = RawPathParams::from_request_parts(parts, &());
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(params)) => Some(Ok(params)),
        Poll::Ready(Err(_)) => Some(Err(())),
        Poll::Pending => None,
    }
}

#[cfg(feature = "axum")]
fn path_params(parts: &mut Parts) -> Result<Map<String, Value>, Refusal> {
    match raw_params(parts) {
        Some(Ok(params)) => Ok(params
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect()),
        Some(Err(())) => Err(Refusal::BadRequest(
            "a path parameter is not valid UTF-8 once percent-decoded",
        )),
        None => Ok(Map::new()),
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
    fn only_plain_grpc_method_paths_name_a_method() {
        assert_eq!(
            grpc_method("/clinic.v1.Patients/Get"),
            Some(("clinic.v1.Patients", "Get"))
        );
        assert_eq!(grpc_method("/_pkg.S/_m1"), Some(("_pkg.S", "_m1")));
        for path in [
            "/pkg.Service/../../admin",
            "/pkg.Service/%2e%2e",
            "/pkg.Service//Get",
            "/pkg.Service/Get/",
            "/pkg..Service/Get",
            "/pkg.Service./Get",
            "/.pkg/Get",
            "/pkg.Service/Get.x",
            "/1pkg/Get",
            "pkg.Service/Get",
            "/pkg.Service",
            "/",
            "",
        ] {
            assert_eq!(grpc_method(path), None, "{path}");
        }
    }

    #[test]
    fn the_time_is_the_present_second() {
        let before = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let now = now_rfc3339();
        let after = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        assert!(before <= now && now <= after, "{before} {now} {after}");
        assert_eq!(now.len(), "2026-12-01T16:00:00Z".len());
    }

    #[test]
    fn repeated_query_keys_become_arrays() {
        let q = query(Some("clinic=c1&clinic=c2&x=%41&clinic=c3&flag"));
        assert_eq!(q["clinic"], serde_json::json!(["c1", "c2", "c3"]));
        assert_eq!(q["x"], "A");
        assert_eq!(q["flag"], "");
        assert!(query(None).is_empty());
    }
}
