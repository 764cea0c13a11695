//! The clinic service end to end: the real router, the real policy, an in-memory database.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_test::TestTokens;

async fn app() -> Router {
    let pool = example_clinic::db::open("sqlite::memory:").await.unwrap();
    let db = example_clinic::Data::open(pool).await.unwrap();
    let (pdp, jwt) = example_clinic::policy_and_verifier().unwrap();
    let telemetry = tower_warden::telemetry::Telemetry::builder()
        .writer(|_: &tower_warden::telemetry::DecisionEvent| {})
        .build()
        .unwrap();
    example_clinic::app(db, pdp, jwt, example_clinic::masker().unwrap(), telemetry)
}

fn token(sub: &str, claims: Value) -> String {
    TestTokens::hs256(&TestTokens::claims(sub, claims))
}

fn nurse() -> String {
    token("nina", json!({"role": "nurse", "clinics": ["c1"]}))
}

fn doctor() -> String {
    token("alice", json!({"role": "doctor", "clinics": ["c1"]}))
}

fn doctor_with_mfa() -> String {
    token(
        "alice",
        json!({"role": "doctor", "clinics": ["c1"], "acr": "urn:warden:mfa", "auth_time": TestTokens::now()}),
    )
}

fn admin() -> String {
    token("adam", json!({"role": "admin", "clinics": []}))
}

fn auditor() -> String {
    token("aude", json!({"role": "auditor", "clinics": []}))
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn health_is_public() {
    let app = app().await;
    let (status, _, body) = call(&app, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_nurse_lists_and_reads_patients_of_her_clinic_only() {
    let app = app().await;
    let (status, _, body) = call(&app, "GET", "/clinics/c1/patients", Some(&nurse()), None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    // The SQL PEP hands the handler the SSN's last four (`*******6789`), the birth year and no
    // notes; the HTTP policy's `last4` leaves the masked text as it is (the SSN is masked once,
    // as the curl line says). No notes member at all: the HTTP policy removes it.
    assert_eq!(body[0]["ssn"], "*******6789");
    assert_eq!(body[1]["ssn"], "*******4321");
    assert_eq!(body[0]["birth_date"], "1985");
    assert!(body[0].get("notes").is_none());
    assert_eq!(body[0]["name"], "Ada Lovelace");
    let text = body.to_string();
    assert!(
        !text.contains("123-45-6789") && !text.contains("penicillin"),
        "{text}"
    );
    let (_, _, one) = call(&app, "GET", "/clinics/c1/patients/p1", Some(&nurse()), None).await;
    assert_eq!(one["ssn"], "*******6789");
    assert!(one.get("notes").is_none());

    let (status, _, body) = call(&app, "GET", "/clinics/c2/patients", Some(&nurse()), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["decision_id"].is_string());
    // p3 belongs to c2: asking for it under c1 finds nothing rather than leaking it.
    let (status, _, _) = call(&app, "GET", "/clinics/c1/patients/p3", Some(&nurse()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A nurse may not record visits or read full records.
    let visit = Some(json!({"summary": "x"}));
    assert_eq!(
        call(
            &app,
            "POST",
            "/clinics/c1/patients/p1/visits",
            Some(&nurse()),
            visit
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/clinics/c1/patients/p1/record",
            Some(&nurse()),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_full_record_demands_a_recent_mfa_and_is_audited() {
    let app = app().await;
    let (status, headers, body) = call(
        &app,
        "GET",
        "/clinics/c1/patients/p1/record",
        Some(&doctor()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("acr_values=\"urn:warden:mfa\""),
        "{challenge}"
    );
    assert!(challenge.contains("max_age=\"300\""), "{challenge}");
    assert!(!body.to_string().contains("123-45-6789"));

    let (status, _, record) = call(
        &app,
        "GET",
        "/clinics/c1/patients/p1/record",
        Some(&doctor_with_mfa()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["ssn"], "123-45-6789");

    let (status, _, log) = call(&app, "GET", "/audit-log", Some(&auditor()), None).await;
    assert_eq!(status, StatusCode::OK);
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["subject"], "alice");
    assert_eq!(entries[0]["resource"], "patient:p1");
    assert_eq!(entries[0]["decision_id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn doctors_record_visits_in_their_clinic_and_admins_delete() {
    let app = app().await;
    let (status, _, visit) = call(
        &app,
        "POST",
        "/clinics/c1/patients/p2/visits",
        Some(&doctor()),
        Some(json!({"summary": "Flu shot"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{visit}");
    assert_eq!(visit["doctor"], "alice");
    let (_, _, visits) = call(
        &app,
        "GET",
        "/clinics/c1/patients/p2/visits",
        Some(&nurse()),
        None,
    )
    .await;
    assert_eq!(visits.as_array().unwrap().len(), 2);
    // Not in another clinic, and not for a patient of another clinic under her own.
    assert_eq!(
        call(
            &app,
            "POST",
            "/clinics/c2/patients/p3/visits",
            Some(&doctor()),
            Some(json!({"summary": "x"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            "POST",
            "/clinics/c1/patients/p3/visits",
            Some(&doctor()),
            Some(json!({"summary": "x"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        call(
            &app,
            "DELETE",
            "/clinics/c1/patients/p2",
            Some(&doctor()),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            "DELETE",
            "/clinics/c1/patients/p2",
            Some(&admin()),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, "GET", "/clinics/c1/patients/p2", Some(&admin()), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn each_role_sees_what_the_policy_lets_it_see_of_a_patient() {
    let app = app().await;
    let (status, _, doc) = call(
        &app,
        "GET",
        "/clinics/c1/patients/p1",
        Some(&doctor()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["ssn"], "***-**-6789",
        "the full SSN only through the step-up record"
    );
    assert_eq!(doc["notes"], "Allergic to penicillin");
    let (_, _, adm) = call(&app, "GET", "/clinics/c2/patients/p3", Some(&admin()), None).await;
    assert!(
        adm.get("ssn").is_none() && adm.get("notes").is_none(),
        "{adm}"
    );
    assert_eq!(adm["name"], "Grace Hopper");
    // The route lets auditors in (the HTTP policy), but the data policy gives them the audit
    // log only: the SQL PEP refuses the statement, with the reason, before the database sees it.
    let (status, _, refused) =
        call(&app, "GET", "/clinics/c2/patients", Some(&auditor()), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A problem, as the HTTP PEP's refusals are, with an id to quote and nothing of the
    // statement: no table, no column, no value.
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(
        refused["detail"], "the request was denied by policy",
        "{refused}"
    );
    assert!(
        refused["decision_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{refused}"
    );
    let text = refused.to_string();
    for secret in ["patients", "main.", "select", "Grace", "555-12-3456"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test]
async fn a_refused_statement_is_a_problem_json_and_both_peps_report_their_decisions() {
    use std::sync::{Arc, Mutex};
    use tower_warden::telemetry::{DecisionEvent, Telemetry};

    let events: Arc<Mutex<Vec<DecisionEvent>>> = Arc::default();
    let seen = events.clone();
    let telemetry = Telemetry::builder()
        .writer(move |e: &DecisionEvent| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let pool = example_clinic::db::open("sqlite::memory:").await.unwrap();
    let db = example_clinic::Data::open_with_telemetry(pool, telemetry.clone())
        .await
        .unwrap();
    let (pdp, jwt) = example_clinic::policy_and_verifier().unwrap();
    let app = example_clinic::app(
        db,
        pdp,
        jwt,
        example_clinic::masker().unwrap(),
        telemetry.clone(),
    );

    let (status, headers, _) =
        call(&app, "GET", "/clinics/c2/patients", Some(&auditor()), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    let (status, _, _) = call(&app, "GET", "/clinics/c1/patients", Some(&nurse()), None).await;
    assert_eq!(status, StatusCode::OK);
    telemetry.flush().await;

    let metrics = telemetry.metrics().render_prometheus();
    assert!(
        metrics.contains(r#"warden_decisions_total{pep="sql",outcome="deny"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"warden_decisions_total{pep="sql",outcome="permit"}"#),
        "{metrics}"
    );
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| e.pep.as_str() == "sql"), "{events:?}");
    assert!(
        events.iter().any(|e| e.pep.as_str() == "http"),
        "{events:?}"
    );
}

#[tokio::test]
async fn only_auditors_and_admins_read_the_audit_log() {
    let app = app().await;
    assert_eq!(
        call(&app, "GET", "/audit-log", Some(&auditor()), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/audit-log", Some(&admin()), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/audit-log", Some(&doctor()), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Auditors may not read a patient (the HTTP policy refuses the route).
    assert_eq!(
        call(
            &app,
            "GET",
            "/clinics/c1/patients/p1",
            Some(&auditor()),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn callers_without_a_token_are_asked_to_authenticate() {
    let app = app().await;
    let (status, headers, _) = call(&app, "GET", "/clinics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = call(&app, "GET", "/clinics", Some("garbage"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, clinics) = call(&app, "GET", "/clinics", Some(&auditor()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(clinics.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_routes_are_denied_not_404_leaks() {
    let app = app().await;
    for path in [
        "/clinics/c1/patients/p1/record/",
        "/CLINICS",
        "/clinics/c1/../c2/patients",
        "/nothing",
    ] {
        let (status, _, _) = call(&app, "GET", path, Some(&admin()), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn admins_read_the_decision_metrics() {
    let app = app().await;
    call(&app, "GET", "/clinics/c1/patients", Some(&nurse()), None).await;
    call(&app, "GET", "/clinics/c2/patients", Some(&nurse()), None).await;
    assert_eq!(
        call(&app, "GET", "/metrics", Some(&auditor()), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let response = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(header::AUTHORIZATION, format!("Bearer {}", admin()))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    // The nurse's list and this very request.
    assert!(
        text.contains(r#"warden_decisions_total{pep="http",outcome="permit"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_decisions_total{pep="http",outcome="deny"} 2"#),
        "{text}"
    );
}
