//! The OPA Data API as OPA serves it.

use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{PATIENT, call, clinic, nurse};
use crate::Server;

/// A Rego package of its own, removed on drop.
struct Package(PathBuf);

impl Drop for Package {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn package(rego: &str) -> (Package, Server) {
    let dir = std::env::temp_dir().join(format!("warden-opa-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), rego).unwrap();
    let server = Server::builder().policy_dir(&dir).build();
    server.load().unwrap();
    (Package(dir), server)
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_boolean_document_is_returned_as_it_is() {
    let (_dir, server) = package(
        "package warden\nimport rego.v1\ndefault decision := false\ndecision if input.subject.id == \"alice\"\n",
    );
    let alice = json!({"input": {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"}, "resource": {"type": "doc", "id": "1"}}});
    let (status, content_type, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision",
        &alice.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(body["result"], true, "{body}");
    assert!(body["decision_id"].is_string());
    let mut bob = alice.clone();
    bob["input"]["subject"]["id"] = json!("bob");
    let (_, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision",
        &bob.to_string(),
    )
    .await;
    assert_eq!(body["result"], false);
    // The same by GET with ?input=, and above the document.
    let uri = format!(
        "/v1/data/warden/decision?input={}",
        encode(&alice["input"].to_string())
    );
    let (status, _, body) = call(&server, "GET", &uri, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], true);
    let (_, _, body) = call(&server, "POST", "/v1/data/warden", &alice.to_string()).await;
    assert_eq!(body["result"], json!({"decision": true}));
    let (_, _, body) = call(&server, "POST", "/v1/data", &alice.to_string()).await;
    assert_eq!(body["result"], json!({"warden": {"decision": true}}));
}

#[tokio::test]
async fn an_undefined_document_is_200_without_a_result() {
    let (_dir, server) = package(
        "package warden\nimport rego.v1\ndecision := {\"allow\": true} if input.subject.id == \"alice\"\n",
    );
    let bob = json!({"input": {"subject": {"type": "user", "id": "bob"}, "action": {"name": "read"}, "resource": {"type": "doc", "id": "1"}}});
    let (status, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision",
        &bob.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("result").is_none(), "{body}");
    let mut alice = bob.clone();
    alice["input"]["subject"]["id"] = json!("alice");
    let (_, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision/allow",
        &alice.to_string(),
    )
    .await;
    assert_eq!(body["result"], true);
    let (_, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision/missing",
        &alice.to_string(),
    )
    .await;
    assert!(body.get("result").is_none(), "{body}");
}

#[tokio::test]
async fn the_rego_document_is_not_rebuilt_from_the_decision() {
    // Members Warden's decision has no place for come back as the policy wrote them.
    let (_dir, server) = package(
        "package warden\nimport rego.v1\ndecision := {\"allow\": true, \"ticket\": 42, \"reasons\": [\"because\"]}\n",
    );
    let request = json!({"input": {"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "doc", "id": "1"}}});
    let (_, _, body) = call(
        &server,
        "POST",
        "/v1/data/warden/decision",
        &request.to_string(),
    )
    .await;
    assert_eq!(
        body["result"],
        json!({"allow": true, "ticket": 42, "reasons": ["because"]})
    );
}

#[tokio::test]
async fn pretty_metrics_and_provenance_as_opa_has_them() {
    let server = clinic();
    let body = json!({"input": nurse(PATIENT, "c1")}).to_string();
    let (_, _, plain) = call(&server, "POST", "/v1/data/clinic/decision", &body).await;
    assert!(plain.get("metrics").is_none());
    assert!(plain["provenance"].get("version").is_none());
    let (status, _, answer) = call(
        &server,
        "POST",
        "/v1/data/clinic/decision?metrics=true&provenance=true",
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["metrics"]["timer_rego_query_eval_ns"].is_u64());
    assert!(answer["metrics"]["timer_server_handler_ns"].is_u64());
    assert!(answer["provenance"]["version"].is_string());
    assert_eq!(
        answer["provenance"]["bundles"]["clinic"]["revision"],
        server.revision().unwrap().revision
    );
    // ?pretty indents; the document is the same.
    let request = axum::http::Request::post("/v1/data/clinic/decision?pretty")
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    let response = tower::ServiceExt::oneshot(server.router(), request)
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("\n  \"result\": {"), "{text}");
    let pretty: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pretty["result"], plain["result"]);
}

#[tokio::test]
async fn errors_have_opas_shape_and_never_quote_the_policy() {
    let server = clinic();
    for (method, uri, body, status, code) in [
        (
            "POST",
            "/v1/data/clinic/decision",
            "{not json",
            400,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/data/clinic/decision",
            "[1]",
            400,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/data/clinic/decision",
            "{}",
            400,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/data/clinic/decision",
            r#"{"input": {"subject": 1}}"#,
            400,
            "invalid_parameter",
        ),
        (
            "GET",
            "/v1/data/clinic/decision?input=%7Bnope",
            "",
            400,
            "invalid_parameter",
        ),
        (
            "POST",
            "/v1/data/clinic/config",
            r#"{"input": {}}"#,
            404,
            "resource_not_found",
        ),
    ] {
        let (got, content_type, answer) = call(&server, method, uri, body).await;
        assert_eq!(got.as_u16(), status, "{method} {uri} {body}: {answer}");
        assert_eq!(content_type, "application/json");
        assert_eq!(answer["code"], code, "{answer}");
        assert!(answer["message"].is_string());
    }
    // A policy that fails to evaluate is OPA's internal_error, without the engine's message.
    let (_dir, broken) =
        package("package warden\nimport rego.v1\ndecision := x if { x := 1 / 0 }\n");
    let request = json!({"input": {"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "doc", "id": "1"}}});
    let (status, _, answer) = call(
        &broken,
        "POST",
        "/v1/data/warden/decision",
        &request.to_string(),
    )
    .await;
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        assert_eq!(answer["code"], "internal_error");
        assert!(!answer.to_string().contains("1 / 0"), "{answer}");
    } else {
        // regorus may answer undefined for a failed division, as OPA does for some builtins.
        assert_eq!(status, StatusCode::OK);
        assert!(answer.get("result").is_none(), "{answer}");
    }
}

#[tokio::test]
async fn cedar_and_other_decision_points_answer_warden_decision_documents() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic-cedar");
    let server = Server::builder().policy_dir(dir).build();
    server.load().unwrap();
    let body = json!({"input": nurse(PATIENT, "c1")}).to_string();
    let (status, _, answer) = call(&server, "POST", "/v1/data/warden/decision", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"]["allow"], true);
    assert_eq!(answer["result"]["obligations"][0]["type"], "redact");
}
