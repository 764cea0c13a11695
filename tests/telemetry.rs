//! Decision events and metrics of the `PolicyLayer`: one event per request, the right outcome
//! and error class, sensitive attributes redacted, counts that add up.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;
use warden_decision::{Decision, ErrorClass, Obligation, PdpError};
use warden_http::{JwtVerifier, PolicyLayer};
use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};
use warden_test::{Answer, ScriptedPdp, StaticPdp, TestTokens};

fn telemetry() -> (Telemetry, Arc<Mutex<Vec<DecisionEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let telemetry = Telemetry::builder()
        .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    (telemetry, seen)
}

fn obligation(v: serde_json::Value) -> Obligation {
    Obligation::from_json(v).unwrap()
}

#[tokio::test]
async fn every_request_reports_one_event_with_its_outcome_and_class() {
    let (telemetry, seen) = telemetry();
    // The subject id picks the PDP's answer.
    let pdp = ScriptedPdp::new(|r| match r.subject.id.as_str() {
        "permit" => Answer::Decision(
            Decision::permit().with_obligation(obligation(json!({"type": "audit"}))),
        ),
        "deny" => Answer::Decision(Decision::deny()),
        "down" => Answer::Error(PdpError::unavailable("refused")),
        "broken" => Answer::Decision(Decision::deny().with_error(ErrorClass::PolicyError, "bad")),
        "custom" => Answer::Decision(
            Decision::permit().with_obligation(obligation(json!({"type": "x-unknown"}))),
        ),
        "stepup" => Answer::Decision(
            Decision::permit()
                .with_obligation(obligation(json!({"type": "step_up", "acr_values": "mfa"}))),
        ),
        _ => Answer::Decision(
            Decision::permit()
                .with_obligation(obligation(json!({"type": "redact", "paths": ["$.ssn"]}))),
        ),
    });
    let app = Router::new()
        .route("/r/{id}", get(|| async { "text, not JSON" }))
        .layer(
            PolicyLayer::new(pdp)
                .jwt(JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap())
                .telemetry(telemetry.clone()),
        );
    let cases = [
        ("permit", StatusCode::OK, Outcome::Permit, None),
        (
            "deny",
            StatusCode::FORBIDDEN,
            Outcome::Deny,
            Some("violation"),
        ),
        (
            "down",
            StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Unavailable,
            Some("pdp_unavailable"),
        ),
        (
            "broken",
            StatusCode::FORBIDDEN,
            Outcome::Deny,
            Some("policy_error"),
        ),
        (
            "custom",
            StatusCode::FORBIDDEN,
            Outcome::Deny,
            Some("obligation_unsupported"),
        ),
        ("stepup", StatusCode::UNAUTHORIZED, Outcome::StepUp, None),
    ];
    for (sub, status, _, _) in &cases {
        let token = TestTokens::hs256(&TestTokens::claims(
            sub,
            json!({"role": "nurse", "password": "hunter2"}),
        ));
        let request = Request::get("/r/7")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(request).await.unwrap().status(),
            *status,
            "{sub}"
        );
    }
    // A text body with a redaction due: a permit, then withheld.
    let token = TestTokens::hs256(&TestTokens::claims("redact", json!({})));
    let request = Request::get("/r/7")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // No token at all.
    let request = Request::get("/r/7").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    telemetry.flush().await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), cases.len() + 3, "{events:#?}");
    for (event, (sub, _, outcome, class)) in events.iter().zip(&cases) {
        assert_eq!(event.subject.as_deref(), Some(*sub));
        assert_eq!(event.outcome, *outcome, "{sub}");
        assert_eq!(event.error_class.as_deref(), *class, "{sub}");
        assert_eq!(event.pep, Pep::Http);
        assert_eq!(event.resource, "/r/{id}");
        assert_eq!(
            event.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(event.span_id.as_deref(), Some("b7ad6b7169203331"));
        let attributes = serde_json::to_string(&event.attributes).unwrap();
        assert!(
            attributes.contains("nurse") && !attributes.contains("hunter2"),
            "{attributes}"
        );
    }
    assert_eq!(events[0].obligations, ["audit"]);
    assert!(events[0].decision_id.is_some());
    let (permit, withheld) = (&events[cases.len()], &events[cases.len() + 1]);
    assert_eq!(permit.outcome, Outcome::Permit);
    assert_eq!(withheld.outcome, Outcome::Withheld);
    assert_eq!(withheld.decision_id, permit.decision_id);
    assert_eq!(
        withheld.error_class.as_deref(),
        Some("obligation_unsupported")
    );
    let anonymous = &events[cases.len() + 2];
    assert_eq!(anonymous.outcome, Outcome::Unauthenticated);
    assert_eq!(anonymous.subject, None);

    let metrics = telemetry.metrics();
    let total: u64 = Outcome::ALL
        .iter()
        .map(|o| metrics.decisions(Pep::Http, *o))
        .sum();
    assert_eq!(total, events.len() as u64, "the counts add up");
    assert_eq!(metrics.dropped(), 0);
    let text = metrics.render_prometheus();
    assert!(
        text.contains(r#"warden_decisions_total{pep="http",outcome="deny"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"warden_pdp_errors_total{class="pdp_unavailable"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(&format!("warden_decision_duration_seconds_count {total}")),
        "{text}"
    );
}

#[tokio::test]
async fn events_flag_cache_hits_and_hide_what_the_decision_redacts() {
    use warden_decision::{CacheConfig, PdpExt, PolicyRevision, Subject};

    let (telemetry, seen) = telemetry();
    let pdp = StaticPdp::new(
        Decision::permit()
            .with_obligation(obligation(
                json!({"type": "redact", "paths": ["$.patients[*].diagnosis", "$['mrn']"]}),
            ))
            .with_policy(PolicyRevision::new("p", "1")),
    )
    .with_cache(CacheConfig::default());
    let app = Router::new()
        .route("/r", get(|| async { axum::Json(json!({"ok": true})) }))
        .layer(PolicyLayer::new(pdp).telemetry(telemetry.clone()));
    for _ in 0..3 {
        let mut request = Request::get("/r").body(Body::empty()).unwrap();
        request.extensions_mut().insert(
            Subject::user("dora")
                .with_property("diagnosis", "flu")
                .with_property("profile", json!({"MRN": "12345", "ward": "b"})),
        );
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    telemetry.flush().await;
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    assert!(!events[0].cache_hit, "the first decision is the PDP's");
    assert!(events[1].cache_hit && events[2].cache_hit);
    let metrics = telemetry.metrics();
    assert_eq!((metrics.cache_hits(), metrics.cache_misses()), (2, 1));
    assert!(
        metrics
            .render_prometheus()
            .contains("warden_cache_hits_total 2")
    );
    for event in &events {
        let subject = &event.attributes["subject"];
        assert_eq!(subject["diagnosis"], "[REDACTED]", "{subject}");
        assert_eq!(subject["profile"]["MRN"], "[REDACTED]", "{subject}");
        assert_eq!(subject["profile"]["ward"], "b", "only what is redacted");
        let text = serde_json::to_string(event).unwrap();
        assert!(!text.contains("flu") && !text.contains("12345"), "{text}");
    }
}

#[tokio::test]
async fn the_sql_pep_reports_one_event_per_table_and_one_per_refusal() {
    use std::convert::Infallible;
    use tower::{Layer, Service, service_fn};
    use warden_decision::Subject;
    use warden_sql::{Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlResponse};

    let (telemetry, seen) = telemetry();
    let db = service_fn(|_: SqlRequest| async {
        Ok::<_, Infallible>(SqlResponse {
            columns: Vec::new(),
            rows: Vec::new(),
            rows_affected: 0,
        })
    });
    let pdp = ScriptedPdp::new(|r| match r.subject.id.as_str() {
        "down" => Answer::Error(PdpError::unavailable("refused")),
        _ if r.resource.id == "main.audit_log" => {
            Answer::Decision(Decision::deny().with_reason("staff only"))
        }
        _ => Answer::Decision(Decision::permit()),
    });
    let policy = SqlPolicy::builder(Dialect::Sqlite).build().unwrap();
    let mut service = SqlPolicyLayer::new(std::sync::Arc::new(pdp), policy)
        .telemetry(telemetry.clone())
        .layer(db);
    let mut run = async |sql: &str, who: &str| {
        let request = SqlRequest::new(sql, Subject::user(who).with_property("password", "hunter2"));
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .unwrap();
        service.call(request).await.is_ok()
    };
    assert!(
        run(
            "SELECT v.id FROM visits v JOIN patients p ON p.id = v.patient_id",
            "nina"
        )
        .await
    );
    assert!(!run("SELECT * FROM audit_log", "nina").await);
    assert!(!run("SELECT 1; DELETE FROM visits", "nina").await);
    assert!(!run("SELECT id FROM visits", "down").await);
    telemetry.flush().await;

    let events = seen.lock().unwrap().clone();
    let summary: Vec<(Pep, &str, &str, Outcome, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.pep,
                e.resource_type.as_str(),
                e.resource.as_str(),
                e.outcome,
                e.error_class.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Pep::Sql, "table", "main.visits", Outcome::Permit, None),
            (Pep::Sql, "table", "main.patients", Outcome::Permit, None),
            (
                Pep::Sql,
                "table",
                "main.audit_log",
                Outcome::Deny,
                Some("violation")
            ),
            (
                Pep::Sql,
                "statement",
                "<refused>",
                Outcome::Deny,
                Some("violation")
            ),
            (
                Pep::Sql,
                "statement",
                "<refused>",
                Outcome::Unavailable,
                Some("pdp_unavailable")
            ),
        ]
    );
    assert_eq!(events[3].attributes["code"], "multiple_statements");
    for event in &events {
        let text = serde_json::to_string(event).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            !text.contains("DELETE"),
            "no statement text in events: {text}"
        );
    }
    assert_eq!(telemetry.metrics().decisions(Pep::Sql, Outcome::Permit), 2);
}
