//! The code of the book's "Adding Warden to your service" chapter, run: a service whose callers
//! are people with bearer tokens and machines with API keys, one `PolicyLayer` deciding both.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use warden_decision::Subject;
use warden_http::{Authorized, JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_test::TestTokens;

// ANCHOR: policy
const POLICY: &str = r#"
package warden

import rego.v1

default decision := {"allow": false, "reasons": ["no rule permits this"]}

# People: a reader of the tenant reads its invoices.
decision := {"allow": true} if {
    input.subject.type == "user"
    input.action.name == "GET"
    input.resource.id == "/tenants/{tenant}/invoices"
    input.resource.properties.params.tenant in input.subject.properties.tenants
}

# Machines: the billing service may read every tenant's invoices, and nothing else.
decision := {"allow": true} if {
    input.subject.type == "service"
    input.subject.id == "billing"
    input.action.name == "GET"
    input.resource.id == "/tenants/{tenant}/invoices"
}
"#;
// ANCHOR_END: policy

// ANCHOR: api_key
/// Machine callers present an `x-api-key`; this layer, in front of the `PolicyLayer`, makes
/// the subject the policy sees. A request without a key goes on to the `PolicyLayer`, which
/// verifies its bearer token instead.
async fn api_keys(mut request: Request, next: Next) -> Response {
    let service = match request.headers().get("x-api-key").map(|v| v.as_bytes()) {
        Some(b"key-of-billing") => Some("billing"),
        Some(b"key-of-reports") => Some("reports"),
        // An unknown key is no identity at all: never fall back to the bearer token.
        Some(_) => {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
        }
        None => None,
    };
    if let Some(id) = service {
        request.extensions_mut().insert(Subject::new("service", id));
    }
    next.run(request).await
}
// ANCHOR_END: api_key

// ANCHOR: app
fn app(pdp: RegoPdp, jwt: JwtVerifier) -> Router {
    Router::new()
        .route("/tenants/{tenant}/invoices", get(invoices))
        // Inner to outer: the PolicyLayer sees the route the router matched …
        .layer(PolicyLayer::new(pdp).jwt(jwt))
        // … and, outside it, whatever authenticates callers another way.
        .layer(middleware::from_fn(api_keys))
}

/// The handler runs only when permitted; `Authorized` says by which decision.
async fn invoices(authorized: Authorized) -> String {
    format!(
        "invoices for {} (decision {})",
        authorized.request().subject.id,
        authorized.decision().id
    )
}
// ANCHOR_END: app

fn service() -> Router {
    let pdp = RegoPdp::builder()
        .policy("service.rego", POLICY)
        .build()
        .unwrap();
    let jwt = JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap();
    app(pdp, jwt)
}

async fn get_invoices(tenant: &str, header: Option<(&str, String)>) -> (StatusCode, String) {
    let mut request = http::Request::get(format!("/tenants/{tenant}/invoices"));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = service()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn bearer(sub: &str, tenants: &[&str]) -> Option<(&'static str, String)> {
    let claims = TestTokens::claims(sub, serde_json::json!({"tenants": tenants}));
    Some((
        "authorization",
        format!("Bearer {}", TestTokens::hs256(&claims)),
    ))
}

#[tokio::test]
async fn a_person_reads_the_invoices_of_a_tenant_of_theirs_only() {
    let (status, body) = get_invoices("acme", bearer("ada", &["acme"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("invoices for ada (decision "), "{body}");

    let (status, body) = get_invoices("globex", bearer("ada", &["acme"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert!(problem["decision_id"].is_string(), "{problem}");
    assert!(
        !body.contains("no rule permits"),
        "reasons stay in the log: {body}"
    );
}

#[tokio::test]
async fn a_machine_is_a_service_subject_decided_by_its_own_rule() {
    let (status, body) = get_invoices("globex", Some(("x-api-key", "key-of-billing".into()))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("invoices for billing"), "{body}");

    // A known machine the policy does not name is denied, like any caller.
    let (status, _) = get_invoices("globex", Some(("x-api-key", "key-of-reports".into()))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_unknown_key_or_no_credential_at_all_is_unauthenticated() {
    let (status, _) = get_invoices("acme", Some(("x-api-key", "guess".into()))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Not even with a valid bearer token beside it: the unknown key is refused first.
    let mut request = http::Request::get("/tenants/acme/invoices").header("x-api-key", "guess");
    if let Some((name, value)) = bearer("ada", &["acme"]) {
        request = request.header(name, value);
    }
    let response = service()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (status, _) = get_invoices("acme", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_machine_cannot_pose_as_a_person_with_a_token_subject_of_type_service() {
    // The subject type of a bearer token is `user`, whatever its claims say about itself.
    let claims = TestTokens::claims("billing", serde_json::json!({"type": "service"}));
    let token = format!("Bearer {}", TestTokens::hs256(&claims));
    let (status, _) = get_invoices("globex", Some(("authorization", token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
