use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::{Decision, ErrorClass, PdpError, PolicyRevision};
use warden_test::{Answer, ScriptedPdp};

use crate::Server;

mod auth;
mod ext_authz;
mod obligations;
mod opa;
mod search;
mod tls;
mod transport;

fn clinic_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic")
}

fn clinic() -> Server {
    let server = Server::builder().policy_dir(clinic_dir()).build();
    server.load().unwrap();
    server
}

async fn call(server: &Server, method: &str, uri: &str, body: &str) -> (StatusCode, String, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "pdp.test:8181")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, content_type, value)
}

fn nurse(route: &str, clinic: &str) -> Value {
    json!({
        "subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": route, "properties": {"params": {"clinic_id": clinic, "patient_id": "p1"}, "query": {}}}
    })
}

const PATIENT: &str = "/clinics/{clinic_id}/patients/{patient_id}";

#[tokio::test]
async fn evaluation_answers_permits_with_obligations_and_denies_with_reasons() {
    let server = clinic();
    let (status, content_type, body) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(body["decision"], true);
    // Obligations Profile objects: Warden's redact is a `custom` obligation of vendor `warden`.
    let obligation = &body["context"]["obligations"][0];
    assert_eq!(obligation["type"], "custom");
    assert!(obligation["id"].is_string());
    assert_eq!(obligation["properties"]["vendor"], "warden");
    assert_eq!(obligation["properties"]["type"], "redact");
    assert_eq!(body["context"]["policy"]["id"], "clinic");
    assert!(body["context"]["decision_id"].is_string());

    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c2").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["decision"], false);
    assert!(body["context"].get("obligations").is_none());
}

#[tokio::test]
async fn evaluations_follow_the_three_semantics() {
    let server = clinic();
    let batch = |semantic: &str| {
        json!({
            "subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
            "action": {"name": "GET"},
            "evaluations": [
                {"resource": {"type": "route", "id": PATIENT, "properties": {"params": {"clinic_id": "c1", "patient_id": "p1"}}}},
                {"resource": {"type": "route", "id": PATIENT, "properties": {"params": {"clinic_id": "c2", "patient_id": "p3"}}}},
                {"resource": {"type": "route", "id": "/health"}}
            ],
            "options": {"evaluations_semantic": semantic}
        })
        .to_string()
    };
    let decisions = |body: &Value| -> Vec<bool> {
        body["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect()
    };
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &batch("execute_all"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decisions(&body), [true, false, true]);
    let (_, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &batch("deny_on_first_deny"),
    )
    .await;
    assert_eq!(decisions(&body), [true, false]);
    let (_, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &batch("permit_on_first_permit"),
    )
    .await;
    assert_eq!(decisions(&body), [true]);

    // Without an evaluations list the defaults are one request, answered like an evaluation.
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["decision"], true);
}

#[tokio::test]
async fn malformed_input_is_a_400_that_names_the_problem() {
    let server = clinic();
    let cases = [
        ("/access/v1/evaluation", "{not json", "not a valid request"),
        ("/access/v1/evaluation", "[]", "not a valid request"),
        (
            "/access/v1/evaluation",
            r#"{"action": {"name": "GET"}, "resource": {"type": "route", "id": "/health"}}"#,
            "missing field `subject`",
        ),
        (
            "/access/v1/evaluation",
            r#"{"subject": {"type": "user"}, "action": {"name": "GET"}, "resource": {"type": "route", "id": "/health"}}"#,
            "missing field `id`",
        ),
        (
            "/access/v1/evaluations",
            r#"{"subject": {"type": "user", "id": "a"}, "action": {"name": "GET"}}"#,
            "the request has no `resource`",
        ),
        (
            "/access/v1/evaluations",
            r#"{"subject": "a", "evaluations": [{}]}"#,
            "`subject` is malformed",
        ),
    ];
    for (uri, body, expected) in cases {
        let (status, content_type, answer) = call(&server, "POST", uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body}");
        assert_eq!(content_type, "application/problem+json");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{detail:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn limits_unknown_paths_and_methods() {
    let server = Server::builder()
        .policy_dir(clinic_dir())
        .body_limit(1024)
        .max_batch(2)
        .build();
    server.load().unwrap();
    let big = json!({"subject": {"type": "user", "id": "x".repeat(4096)}, "action": {"name": "GET"}, "resource": {"type": "route", "id": "/health"}});
    let (status, _, _) = call(&server, "POST", "/access/v1/evaluation", &big.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let three = json!({
        "subject": {"type": "user", "id": "a"}, "action": {"name": "GET"},
        "evaluations": [{"resource": {"type": "route", "id": "/a"}}, {"resource": {"type": "route", "id": "/b"}}, {"resource": {"type": "route", "id": "/c"}}]
    });
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &three.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("limit is 2"));

    let (status, content_type, _) = call(&server, "POST", "/access/v2/evaluation", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    let (status, _, _) = call(&server, "GET", "/access/v1/evaluation", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, body) = call(&server, "POST", "/v1/data/other/doc", r#"{"input": {}}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "resource_not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("data.clinic.decision")
    );
}

#[tokio::test]
async fn opa_data_api_answers_the_decision_document() {
    let server = clinic();
    let body = json!({"input": nurse(PATIENT, "c1")}).to_string();
    let (status, _, answer) = call(&server, "POST", "/v1/data/clinic/decision", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"]["allow"], true);
    assert_eq!(answer["result"]["obligations"][0]["type"], "redact");
    let revision = server.revision().unwrap();
    assert_eq!(
        answer["provenance"]["bundles"]["clinic"]["revision"],
        revision.revision
    );
}

#[tokio::test]
async fn metadata_names_the_endpoints() {
    let server = clinic();
    let (status, _, body) = call(&server, "GET", "/.well-known/authzen-configuration", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["policy_decision_point"], "http://pdp.test:8181");
    assert_eq!(
        body["access_evaluations_endpoint"],
        "http://pdp.test:8181/access/v1/evaluations"
    );
    let server = Server::builder()
        .policy_dir(clinic_dir())
        .public_url("https://pdp.example/")
        .build();
    let (_, _, body) = call(&server, "GET", "/.well-known/authzen-configuration", "").await;
    assert_eq!(
        body["access_evaluation_endpoint"],
        "https://pdp.example/access/v1/evaluation"
    );
}

#[tokio::test]
async fn health_is_ready_only_once_policies_load_and_metrics_count() {
    let server = Server::builder().policy_dir(clinic_dir()).build();
    let (status, _, body) = call(&server, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "loading");
    let (status, _, _) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    server.load().unwrap();
    let (status, _, body) = call(&server, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["policy"]["id"], "clinic");
    assert_eq!(body["engine"], "rego");
    for clinic in ["c1", "c2"] {
        call(
            &server,
            "POST",
            "/access/v1/evaluation",
            &nurse(PATIENT, clinic).to_string(),
        )
        .await;
    }
    let (status, _, Value::String(text)) = call(&server, "GET", "/metrics", "").await else {
        panic!("metrics are text");
    };
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("warden_server_decisions_total{outcome=\"permit\"} 1"),
        "{text}"
    );
    assert!(text.contains("warden_server_decisions_total{outcome=\"deny\"} 1"));
    assert!(
        text.contains("warden_server_requests_total{endpoint=\"evaluation\",status=\"503\"} 1")
    );
    assert!(
        text.contains("warden_server_requests_total{endpoint=\"evaluation\",status=\"200\"} 2")
    );
    assert!(text.contains("warden_server_decision_duration_seconds_count 2"));
    assert!(text.contains("warden_server_ready 1"));
    assert!(text.contains("warden_server_policy_info{id=\"clinic\""));
}

#[tokio::test]
async fn a_policy_error_is_a_deny_and_an_unavailable_pdp_a_503() {
    let pdp = ScriptedPdp::new(|request| match request.subject.id.as_str() {
        "broken" => Answer::Error(PdpError::policy("rule conflict")),
        "down" => Answer::Error(PdpError::unavailable("upstream gone")),
        _ => Answer::Decision(Decision::permit().with_policy(PolicyRevision::new("p", "1"))),
    });
    let server = Server::builder().pdp(Arc::new(pdp)).build();
    let request = |id: &str| {
        json!({"subject": {"type": "user", "id": id}, "action": {"name": "GET"}, "resource": {"type": "route", "id": "/"}}).to_string()
    };
    let (status, _, body) =
        call(&server, "POST", "/access/v1/evaluation", &request("broken")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["decision"], false);
    assert_eq!(
        body["context"]["diagnostics"][0]["error"],
        ErrorClass::PolicyError.as_str()
    );
    let (status, _, _) = call(&server, "POST", "/access/v1/evaluation", &request("down")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision",
        &json!({"input": serde_json::from_str::<Value>(&request("ok")).unwrap()}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["allow"], true);
}

/// A copy of the clinic policy in a directory of its own, removed on drop.
struct TempPolicy(PathBuf);

impl TempPolicy {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "warden-server-test-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(clinic_dir()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        Self(dir)
    }
}

impl Drop for TempPolicy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn hot_reload_keeps_the_last_good_revision() {
    let policy = TempPolicy::new();
    let server = Server::builder()
        .policy_dir(&policy.0)
        .watch(Duration::from_millis(20))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    wait_for("the first load", || server.is_ready()).await;
    let first = server.revision().unwrap();

    // A broken policy: the old revision keeps answering, and health says why.
    let rego = policy.0.join("clinic.rego");
    let good = std::fs::read_to_string(&rego).unwrap();
    std::fs::write(&rego, format!("{good}\nallow if {{ this is not rego")).unwrap();
    wait_for("the failed reload", || server.last_error().is_some()).await;
    assert_eq!(server.revision().unwrap(), first);
    let (status, _, body) = call(&server, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["last_reload_failed"], true);
    assert!(
        !body.to_string().contains("clinic.rego"),
        "health does not quote the load error: {body}"
    );
    let (_, _, answer) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(answer["decision"], true);
    assert_eq!(answer["context"]["policy"]["revision"], first.revision);

    // A good change: the new revision answers and the error is gone.
    let stricter = good.replace("role in config.care_roles", "role == \"doctor\"");
    assert_ne!(stricter, good);
    std::fs::write(&rego, stricter).unwrap();
    wait_for("the reload", || {
        server.revision().is_some_and(|r| r != first)
    })
    .await;
    assert!(server.last_error().is_none());
    let (_, _, answer) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(
        answer["decision"], false,
        "nurses lost access in the new revision"
    );

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_directory_that_fails_at_start_is_not_ready_and_says_why() {
    let dir = std::env::temp_dir().join(format!(
        "warden-server-empty-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::builder().policy_dir(&dir).build();
    let error = server.load().unwrap_err();
    assert!(
        error.message.contains("no .rego or .cedar files"),
        "{error}"
    );
    let (status, _, body) = call(&server, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["last_reload_failed"], true);
    assert!(!body.to_string().contains("no .rego"), "{body}");
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &nurse(PATIENT, "c1").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.to_string().contains("no .rego"), "{body}");
    std::fs::remove_dir_all(&dir).unwrap();
}
