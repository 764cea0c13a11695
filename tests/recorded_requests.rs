//! The HTTP PEP records each decided request in its event, pseudonymised, when the telemetry
//! asks for it — and the recorded request decides as the original did (what `warden replay`
//! relies on).
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;
use warden_decision::Pdp;
use warden_http::{JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_telemetry::{DecisionEvent, Pseudonymizer, Telemetry, recorded_request};
use warden_test::TestTokens;

fn app(record: bool) -> (Router, Telemetry, Arc<Mutex<Vec<DecisionEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut builder =
        Telemetry::builder().writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()));
    if record {
        builder = builder.record_requests(
            Pseudonymizer::new(b"the recording key of this test, 32+ bytes")
                .unwrap()
                .path("subject.properties.clinics")
                .path("resource.properties.params.*"),
        );
    }
    let telemetry = builder.build().unwrap();
    let pdp = RegoPdp::from_dir(warden_tests::clinic_policy_dir()).unwrap();
    let app = Router::new()
        .route(
            "/clinics/{clinic_id}/patients/{patient_id}",
            get(|| async {
                axum::Json(json!({"name": "Ann", "ssn": "123-45-6789", "notes": "n"}))
            }),
        )
        .layer(
            PolicyLayer::new(pdp)
                .jwt(JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap())
                .telemetry(telemetry.clone()),
        );
    (app, telemetry, seen)
}

async fn get_patient(app: &Router, clinic: &str) -> StatusCode {
    let token = TestTokens::hs256(&TestTokens::claims(
        "nina",
        json!({"role": "nurse", "clinics": ["c1"]}),
    ));
    let request = Request::get(format!("/clinics/{clinic}/patients/p9"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn recorded_requests_hold_no_raw_identifier_and_replay_identically() {
    let (app, telemetry, seen) = app(true);
    assert_eq!(get_patient(&app, "c1").await, StatusCode::OK);
    assert_eq!(get_patient(&app, "c2").await, StatusCode::FORBIDDEN);
    telemetry.flush().await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    let pdp = RegoPdp::from_dir(warden_tests::clinic_policy_dir()).unwrap();
    for (event, permitted) in events.iter().zip([true, false]) {
        let recorded = &event.attributes["request"];
        let text = recorded.to_string();
        for raw in ["\"nina\"", "\"c1\"", "\"c2\"", "\"p9\""] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
        assert_eq!(recorded["subject"]["properties"]["role"], "nurse");
        assert_eq!(
            recorded["resource"]["id"],
            "/clinics/{clinic_id}/patients/{patient_id}"
        );
        let request = recorded_request(event).unwrap().unwrap();
        let again = pdp.decide(&request).await.unwrap();
        assert_eq!(again.allowed, permitted, "{event:?}");
        let kinds: Vec<&str> = again.obligations.iter().map(|o| o.type_name()).collect();
        let recorded_kinds: Vec<&str> = event.obligations.iter().map(String::as_str).collect();
        assert_eq!(kinds, recorded_kinds, "the same obligations");
    }
}

#[tokio::test]
async fn requests_are_recorded_only_when_asked() {
    let (app, telemetry, seen) = app(false);
    assert_eq!(get_patient(&app, "c1").await, StatusCode::OK);
    telemetry.flush().await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert!(events[0].attributes.get("request").is_none());
}
