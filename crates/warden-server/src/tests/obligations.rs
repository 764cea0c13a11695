//! The AuthZEN Obligations Profile, the server's side: one test per MUST and MUST NOT of the
//! profile that binds a PDP (the PEP's are tested where the answers are read, in
//! `warden_decision::authzen`).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use warden_decision::authzen::EvaluationResponse;
use warden_decision::{Decision, Obligation, PolicyRevision};
use warden_test::{Answer, ScriptedPdp};

use super::call;
use crate::Server;

fn obligation(value: Value) -> Obligation {
    Obligation::from_json(value).unwrap()
}

/// A PDP that permits with a redaction and a step-up, and denies `mallory` with an audit.
fn server() -> Server {
    let pdp = ScriptedPdp::new(|request| {
        let decision = if request.subject.id == "mallory" {
            Decision::deny().with_obligation(obligation(json!({"type": "audit", "level": "high"})))
        } else {
            Decision::permit()
                .with_obligation(obligation(json!({"type": "redact", "paths": ["$.ssn"]})))
                .with_obligation(obligation(
                    json!({"type": "step_up", "acr_values": "urn:example:mfa", "max_age": 300}),
                ))
        };
        Answer::Decision(decision.with_policy(PolicyRevision::new("p", "1")))
    });
    Server::builder().pdp(Arc::new(pdp)).build()
}

fn request(subject: &str, context: Value) -> String {
    json!({"subject": {"type": "user", "id": subject}, "action": {"name": "read"},
           "resource": {"type": "doc", "id": "d1"}, "context": context})
    .to_string()
}

async fn evaluate(server: &Server, subject: &str, context: Value) -> Value {
    let (status, _, body) = call(
        server,
        "POST",
        "/access/v1/evaluation",
        &request(subject, context),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Section "The Obligation Object": each element has a string `id` unique within the
/// response, a string `type` (registered, or `custom`) and an object `properties`.
#[tokio::test]
async fn obligations_are_id_type_properties_objects_with_unique_ids() {
    let body = evaluate(&server(), "alice", json!({})).await;
    let obligations = body["context"]["obligations"].as_array().unwrap();
    assert_eq!(obligations.len(), 2);
    let mut ids = std::collections::BTreeSet::new();
    for o in obligations {
        assert!(
            ids.insert(o["id"].as_str().unwrap().to_owned()),
            "unique ids"
        );
        assert!(["step-up", "custom"].contains(&o["type"].as_str().unwrap()));
        assert!(o["properties"].is_object());
    }
    let step_up = obligations.iter().find(|o| o["type"] == "step-up").unwrap();
    // step-up: `acr_value` is REQUIRED.
    assert_eq!(step_up["properties"]["acr_value"], "urn:example:mfa");
    let custom = obligations.iter().find(|o| o["type"] == "custom").unwrap();
    assert_eq!(custom["properties"]["vendor"], "warden");
    // The client reads back exactly what the policy decided.
    let back = EvaluationResponse::parse(body.to_string().as_bytes())
        .unwrap()
        .into_decision()
        .unwrap();
    assert_eq!(back.obligations.len(), 2);
    assert_eq!(back.obligations[1].type_name(), "step_up");
}

/// Obligations MAY come with a deny, and are mandatory there too: the server sends them.
#[tokio::test]
async fn obligations_of_a_deny_are_sent() {
    let body = evaluate(&server(), "mallory", json!({})).await;
    assert_eq!(body["decision"], false);
    assert_eq!(
        body["context"]["obligations"][0]["properties"]["type"],
        "audit"
    );
    let back = EvaluationResponse::parse(body.to_string().as_bytes())
        .unwrap()
        .into_decision()
        .unwrap();
    assert!(!back.allowed, "a deny with obligations stays a deny");
    assert_eq!(back.obligations[0].type_name(), "audit");
}

/// "A PDP that implements this profile MUST include `supported_obligations` in its metadata",
/// each value registered or `custom`.
#[tokio::test]
async fn metadata_names_the_supported_obligation_types() {
    let (_, _, body) = call(&server(), "GET", "/.well-known/authzen-configuration", "").await;
    assert_eq!(body["supported_obligations"], json!(["step-up", "custom"]));
}

/// "A PDP MUST ignore any value in a request that it did not itself advertise."
#[tokio::test]
async fn values_the_server_does_not_advertise_are_ignored() {
    let server = server();
    // `notification` is not advertised: the request is as if it said ["step-up", "custom"].
    let body = evaluate(
        &server,
        "alice",
        json!({"supported_obligations": ["step-up", "custom", "notification"]}),
    )
    .await;
    assert_eq!(body["decision"], true);
    // Unadvertised values cannot make up for a missing one.
    let body = evaluate(
        &server,
        "alice",
        json!({"supported_obligations": ["step-up", "notification", "redact"]}),
    )
    .await;
    assert_eq!(body["decision"], false, "{body}");
}

/// "A PDP MUST treat the absence of `supported_obligations` in a request as no information
/// about PEP capability": the decision and its obligations stand.
#[tokio::test]
async fn without_a_declaration_the_obligations_stand() {
    let body = evaluate(&server(), "alice", json!({})).await;
    assert_eq!(body["decision"], true);
    assert_eq!(body["context"]["obligations"].as_array().unwrap().len(), 2);
}

/// A PEP that declares what it supports gets no permit it could not enforce (the profile
/// lets a PDP deny outright): a deny that says which type was missing, never a permit
/// without the obligation.
#[tokio::test]
async fn a_permit_the_pep_cannot_enforce_is_a_deny() {
    let body = evaluate(
        &server(),
        "alice",
        json!({"supported_obligations": ["step-up"]}),
    )
    .await;
    assert_eq!(body["decision"], false);
    assert!(body["context"].get("obligations").is_none());
    let reason = body["context"]["reasons"][0]["message"].as_str().unwrap();
    assert!(reason.contains("`custom`"), "{reason}");
    // A deny's own obligations are kept whatever the PEP declared.
    let body = evaluate(
        &server(),
        "mallory",
        json!({"supported_obligations": ["step-up"]}),
    )
    .await;
    assert_eq!(
        body["context"]["obligations"][0]["properties"]["type"],
        "audit"
    );
}

/// Search: the obligations of each result travel with it, and a result the PEP cannot
/// comply with is left out, never the whole answer ("MUST exclude only that result", "MUST
/// NOT withhold the entire Search response").
#[tokio::test]
async fn search_results_carry_their_obligations_and_only_unenforceable_ones_are_left_out() {
    let dir = std::env::temp_dir().join(format!(
        "warden-obligations-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("warden.toml"),
        "id = \"docs\"\nversion = \"1\"\n[search]\nentities = \"e.json\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("e.json"),
        json!({"resources": [{"type": "doc", "id": "plain"}, {"type": "doc", "id": "secret"}]})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("p.rego"),
        r#"package warden
import rego.v1
default decision := {"allow": false}
decision := {"allow": true} if input.resource.id == "plain"
decision := {"allow": true, "obligations": [{"type": "redact", "paths": ["$.body"]}]} if input.resource.id == "secret"
"#,
    )
    .unwrap();
    let server = Server::builder().policy_dir(&dir).build();
    server.load().unwrap();
    let search = |context: Value| {
        json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
               "resource": {"type": "doc"}, "context": context})
        .to_string()
    };
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/search/resource",
        &search(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[0].get("obligations").is_none());
    assert_eq!(results[1]["obligations"][0]["type"], "custom");
    assert_eq!(results[1]["obligations"][0]["properties"]["type"], "redact");
    let (status, _, body) = call(
        &server,
        "POST",
        "/access/v1/search/resource",
        &search(json!({"supported_obligations": ["step-up"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"], json!([{"type": "doc", "id": "plain"}]));
    std::fs::remove_dir_all(&dir).unwrap();
}
