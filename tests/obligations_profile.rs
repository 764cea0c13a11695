//! The AuthZEN Obligations Profile, the PEP's side: Warden's HTTP PEP deciding through
//! `RemotePdp` against a PDP that speaks the profile (a real HTTP server on 127.0.0.1 answering
//! profile objects, as another vendor's PDP would). One test per MUST and MUST NOT that binds a
//! PEP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::Subject;
use warden_http::PolicyLayer;
use warden_remote::RemotePdp;

/// The PDP: its answer is chosen by the subject's id.
fn answer_for(subject: &str) -> Value {
    let obligations = match subject {
        "notified" => json!([{"id": "o1", "type": "notification",
                              "properties": {"to": "sec@example.com", "body": "read"}}]),
        "terminated" => {
            json!([{"id": "o1", "type": "session_termination", "properties": {"subject": "x"}}])
        }
        "other-vendor" => json!([{"id": "o1", "type": "custom",
                                  "properties": {"vendor": "example-dlp", "action": "watermark"}}]),
        "redacted" => json!([{"id": "o1", "type": "custom",
                              "properties": {"vendor": "warden", "type": "redact", "paths": ["$.ssn"]}}]),
        "stepped" => {
            json!([{"id": "o1", "type": "step-up", "properties": {"acr_value": "urn:example:mfa"}}])
        }
        "methods" => json!([{"id": "o1", "type": "step-up",
                             "properties": {"acr_value": "urn:example:mfa", "amr_values": ["hwk"]}}]),
        "no-id" => json!([{"type": "custom", "properties": {"vendor": "warden", "type": "audit"}}]),
        "malformed" => json!([{"id": "o1", "type": "step-up", "properties": {}}]),
        _ => json!([]),
    };
    if subject == "denied" {
        return json!({"decision": false, "context": {"obligations": [
            {"id": "o1", "type": "custom", "properties": {"vendor": "warden", "type": "audit", "level": "high"}}
        ]}});
    }
    json!({"decision": true, "context": {"obligations": obligations}})
}

async fn pdp() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        "/access/v1/evaluation",
        post(|axum::Json(request): axum::Json<Value>| async move {
            axum::Json(answer_for(
                request["subject"]["id"].as_str().unwrap_or_default(),
            ))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

struct App {
    router: Router,
    calls: Arc<AtomicUsize>,
}

async fn app(url: &str) -> App {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let remote = RemotePdp::authzen(url).build().unwrap();
    let router = Router::new()
        .route(
            "/record",
            get(move || {
                let calls = counted.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"name": "Ann", "ssn": "123-45-6789"}))
                }
            }),
        )
        .layer(PolicyLayer::new(remote));
    App { router, calls }
}

async fn as_subject(app: &App, id: &str) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = Request::get("/record").body(Body::empty()).unwrap();
    request.extensions_mut().insert(Subject::user(id));
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// "A PEP that receives obligations it cannot or does not understand MUST treat the overall
/// response as a DENY" and, on a permit, "MUST NOT grant access".
#[tokio::test]
async fn a_permit_with_an_obligation_the_pep_cannot_carry_out_is_refused() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    for subject in ["notified", "terminated", "methods"] {
        let (status, _, body) = as_subject(&app, subject).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{subject}: {body}");
    }
    assert_eq!(app.calls.load(Ordering::SeqCst), 0, "the handler never ran");
}

/// "A PEP that does not recognize the specific semantics intended for a given `custom`
/// Obligation instance MUST treat it as an Obligation it cannot comply with."
#[tokio::test]
async fn a_custom_obligation_of_another_vendor_is_refused() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    let (status, _, _) = as_subject(&app, "other-vendor").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.calls.load(Ordering::SeqCst), 0);
}

/// "If the PEP executes all returned obligations successfully, it MUST honor the decision":
/// Warden's own obligations, carried as `custom` of vendor `warden`, are carried out.
#[tokio::test]
async fn obligations_the_pep_carries_out_are_carried_out_and_access_granted() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    let (status, _, body) = as_subject(&app, "redacted").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Ann");
    assert_ne!(body["ssn"], "123-45-6789", "redacted: {body}");
}

/// `step-up` is the RFC 9470 challenge: until the subject authenticates at the class, a 401.
#[tokio::test]
async fn step_up_is_an_rfc_9470_challenge() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    let (status, headers, _) = as_subject(&app, "stepped").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
    assert!(challenge.contains("urn:example:mfa"), "{challenge}");
}

/// "When a PDP returns `"decision": false` together with one or more Obligation objects, the
/// PEP MUST still deny access": the obligations never turn a deny into a permit.
#[tokio::test]
async fn a_deny_with_obligations_stays_a_deny() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    let (status, _, _) = as_subject(&app, "denied").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.calls.load(Ordering::SeqCst), 0);
    // The client keeps a deny's obligations for the PEP to carry out.
    let remote = RemotePdp::authzen(&url).build().unwrap();
    let request = warden_decision::AccessRequest::new(
        Subject::user("denied"),
        warden_decision::Action::new("GET"),
        warden_decision::Resource::new("route", "/record"),
    );
    let decision = warden_decision::Pdp::decide(&remote, &request)
        .await
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.obligations[0].type_name(), "audit");
}

/// A malformed obligation object (a `step-up` without its REQUIRED `acr_value`, or one that
/// is not a Warden obligation at all) is never dropped: the answer is refused.
#[tokio::test]
async fn a_malformed_obligation_is_refused_never_dropped() {
    let (url, _pdp) = pdp().await;
    let app = app(&url).await;
    for subject in ["malformed", "no-id"] {
        let (status, _, body) = as_subject(&app, subject).await;
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::SERVICE_UNAVAILABLE,
            "{subject}: {status} {body}"
        );
    }
    assert_eq!(app.calls.load(Ordering::SeqCst), 0);
}
