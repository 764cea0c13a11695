//! The clinic service deciding through the real Warden PDP server on 127.0.0.1.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_warden::server::Server;
use warden_test::TestTokens;

/// A Warden PDP server on a free port, and a way to stop it.
async fn pdp_server() -> (String, tokio::sync::oneshot::Sender<()>) {
    let server = Server::builder()
        .policy_dir(example_clinic::policy_dir())
        .build();
    server.load().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    (url, stop)
}

async fn app(url: &str) -> Router {
    let pool = example_clinic::db::open("sqlite::memory:").await.unwrap();
    let db = example_clinic::Data::open(pool).await.unwrap();
    let (_, jwt) = example_clinic::policy_and_verifier().unwrap();
    let telemetry = tower_warden::telemetry::Telemetry::builder()
        .writer(|_: &tower_warden::telemetry::DecisionEvent| {})
        .build()
        .unwrap();
    let pdp = example_remote_pdp::remote_pdp(url).unwrap();
    example_clinic::app(db, pdp, jwt, example_clinic::masker().unwrap(), telemetry)
}

/// A nurse's token, minted once per test: its `iat` and `exp` claims are part of the access
/// request, so a token minted a second later is a different request to the decision cache.
fn token(claims: Value) -> String {
    TestTokens::hs256(&TestTokens::claims("nina", claims))
}

async fn get(app: &Router, path: &str, token: &str) -> (StatusCode, Value) {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_remote_pdp_decides_and_its_obligations_are_enforced() {
    let (url, stop) = pdp_server().await;
    let app = app(&url).await;
    let nurse = token(json!({"role": "nurse", "clinics": ["c1"]}));
    let (status, body) = get(&app, "/clinics/c1/patients", &nurse).await;
    assert_eq!(status, StatusCode::OK);
    let patients = body.as_array().unwrap();
    assert!(!patients.is_empty());
    for patient in patients {
        // The nurse sees the last four digits of the SSN only: the redact obligation came back
        // from the PDP over AuthZEN and the layer applied it.
        let ssn = patient["ssn"].as_str().unwrap();
        assert!(ssn.starts_with("***"), "{ssn}");
    }
    let (status, body) = get(&app, "/clinics/c2/patients", &nurse).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["decision_id"].is_string(), "{body}");
    let _ = stop.send(());
}

#[tokio::test]
async fn a_pdp_that_is_gone_fails_closed_except_for_recent_decisions() {
    let (url, stop) = pdp_server().await;
    let app = app(&url).await;
    let nurse = token(json!({"role": "nurse", "clinics": ["c1"]}));
    let (status, _) = get(&app, "/clinics/c1/patients", &nurse).await;
    assert_eq!(status, StatusCode::OK);
    let _ = stop.send(());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The same request is answered from the cache (same policy revision).
    let (status, _) = get(&app, "/clinics/c1/patients", &nurse).await;
    assert_eq!(status, StatusCode::OK);
    // A request never decided before is refused: no PDP, no decision, no access.
    let (status, _) = get(&app, "/clinics/c1/patients/p2", &nurse).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
