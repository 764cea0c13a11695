//! Envoy's ext_authz, HTTP variant: the checks Envoy sends, as Envoy sends them.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use serde_json::json;
use tower::ServiceExt;

use crate::Server;

const POLICY: &str = r#"package warden
import rego.v1

default decision := {"allow": false}

decision := {"allow": true} if {
	input.action.name == "GET"
	input.resource.id == "/public"
}

decision := {"allow": true, "obligations": [{"type": "audit", "level": "high"}]} if {
	input.action.name == "GET"
	input.resource.id == "/docs"
	input.subject.id == "alice"
	input.subject.properties.role == "editor"
	input.resource.properties.query.page == "2"
}

decision := {"allow": true, "obligations": [{"type": "step_up", "acr_values": "urn:example:mfa"}]} if {
	input.resource.id == "/secret"
}

decision := {"allow": true, "obligations": [{"type": "redact", "paths": ["$.ssn"]}]} if {
	input.resource.id == "/patients"
}

decision := {"allow": true} if {
	input.resource.id == "/leak"
	input.resource.properties.headers.authorization
}

decision := {"allow": true} if {
	input.resource.id == "/by-header"
	input.subject.id == "bob"
}
"#;

struct Package(PathBuf, Server);

impl Drop for Package {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn package() -> Package {
    let dir = std::env::temp_dir().join(format!(
        "warden-ext-authz-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), POLICY).unwrap();
    let server = Server::builder().policy_dir(&dir).build();
    server.load().unwrap();
    Package(dir, server)
}

fn payload(claims: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
}

async fn check(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/ext_authz{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = server
        .router()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[tokio::test]
async fn allows_with_decision_headers_and_denies_with_problem_json() {
    let package = package();
    let server = &package.1;
    let (status, headers, _) = check(server, "GET", "/public", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("x-warden-decision-id"));
    assert!(
        headers["x-warden-policy-revision"]
            .to_str()
            .unwrap()
            .starts_with("sha256.")
    );
    for (method, path) in [("POST", "/public"), ("GET", "/other"), ("GET", "/public/x")] {
        let (status, headers, body) = check(server, method, path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body["status"], 403);
        assert!(headers.contains_key("x-warden-decision-id"));
    }
}

#[tokio::test]
async fn the_principal_comes_from_the_verified_jwt_payload_or_the_principal_header() {
    let package = package();
    let server = &package.1;
    let alice = payload(&json!({"sub": "alice", "role": "editor"}));
    let (status, _, _) = check(server, "GET", "/docs?page=2", &[("x-jwt-payload", &alice)]).await;
    assert_eq!(status, StatusCode::OK, "claims and query reach the policy");
    let (status, _, _) = check(server, "GET", "/docs?page=3", &[("x-jwt-payload", &alice)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let viewer = payload(&json!({"sub": "alice", "role": "viewer"}));
    let (status, _, _) = check(server, "GET", "/docs?page=2", &[("x-jwt-payload", &viewer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not base64 JSON: no claims, so anonymous.
    let (status, _, _) = check(
        server,
        "GET",
        "/docs?page=2",
        &[("x-jwt-payload", "{\"sub\":\"alice\"}")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = check(server, "GET", "/by-header", &[("x-warden-subject", "bob")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = check(server, "GET", "/by-header", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another header, when configured so.
    let other = Server::builder()
        .policy_dir(&package.0)
        .ext_authz_headers("X-Forwarded-User", "x-claims")
        .build();
    other.load().unwrap();
    let (status, _, _) = check(&other, "GET", "/by-header", &[("x-forwarded-user", "bob")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = check(&other, "GET", "/by-header", &[("x-warden-subject", "bob")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn step_up_is_a_401_challenge_until_the_claims_meet_it() {
    let package = package();
    let server = &package.1;
    let weak = payload(&json!({"sub": "alice", "acr": "urn:example:pwd"}));
    let (status, headers, _) = check(server, "GET", "/secret", &[("x-jwt-payload", &weak)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"urn:example:mfa\""),
        "{challenge}"
    );
    let strong = payload(&json!({"sub": "alice", "acr": "urn:example:mfa"}));
    let (status, _, _) = check(server, "GET", "/secret", &[("x-jwt-payload", &strong)]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_permit_a_gateway_cannot_carry_out_is_a_deny_and_credentials_stay_out() {
    let package = package();
    let server = &package.1;
    let (status, _, _) = check(server, "GET", "/patients", &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a redaction Envoy would not do"
    );
    let (status, _, _) = check(
        server,
        "GET",
        "/leak",
        &[
            ("authorization", "Bearer user-token"),
            ("cookie", "session=1"),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the policy never sees the credentials"
    );
}

#[tokio::test]
async fn not_ready_is_a_503() {
    let server = Server::builder().policy_dir("/nonexistent").build();
    let (status, _, _) = check(&server, "GET", "/public", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
