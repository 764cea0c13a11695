//! The transport and batch rules of AuthZEN 1.0 and its certification scenario.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{PATIENT, call, clinic, nurse};
use crate::Server;

async fn send(
    server: &Server,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = server.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

#[tokio::test]
async fn a_content_type_other_than_json_is_refused_on_every_authzen_endpoint() {
    let server = clinic();
    let body = nurse(PATIENT, "c1").to_string();
    for uri in [
        "/access/v1/evaluation",
        "/access/v1/evaluations",
        "/access/v1/search/subject",
        "/access/v1/search/resource",
        "/access/v1/search/action",
    ] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonp"),
            Some("application/json-patch+json"),
            None,
        ] {
            let mut request = Request::post(uri).header(header::HOST, "pdp.test");
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let (status, headers, answer) =
                send(&server, request.body(Body::from(body.clone())).unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {content_type:?}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
            assert_eq!(answer["title"], "Unsupported media type");
        }
    }
    // Parameters and case do not matter.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let request = Request::post("/access/v1/evaluation")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, _, answer) = send(&server, request).await;
        assert_eq!(status, StatusCode::OK, "{content_type}");
        assert_eq!(answer["decision"], true);
    }
}

#[tokio::test]
async fn unknown_members_are_ignored_everywhere() {
    let server = clinic();
    let mut request = nurse(PATIENT, "c1");
    request["foo"] = json!("bar");
    request["futureField"] = json!({"nested": true});
    request["subject"]["extra"] = json!(1);
    request["action"]["extra"] = json!([1]);
    let (status, _, answer) = call(
        &server,
        "POST",
        "/access/v1/evaluation",
        &request.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], true);

    let batch = json!({
        "subject": request["subject"], "action": {"name": "GET"},
        "futureField": 1,
        "options": {"evaluations_semantic": "execute_all", "futureOption": true},
        "evaluations": [
            {"resource": request["resource"], "subjekt": {}},
            {"resource": {"type": "route", "id": "/health"}, "more": [1, 2]}
        ]
    });
    let (status, _, answer) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &batch.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["evaluations"][0]["decision"], true);
    assert_eq!(answer["evaluations"][1]["decision"], true);
}

#[tokio::test]
async fn under_execute_all_a_bad_item_is_its_own_deny_not_a_400() {
    let server = clinic();
    let batch = json!({
        "subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
        "action": {"name": "GET"},
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": [
            {"resource": {"type": "route", "id": "/health"}},
            {},
            {"resource": "not an object"},
            "not an item",
            {"resource": {"type": "route", "id": "/health"}}
        ]
    });
    let (status, _, answer) = call(
        &server,
        "POST",
        "/access/v1/evaluations",
        &batch.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let items = answer["evaluations"].as_array().unwrap();
    assert_eq!(items.len(), 5, "one answer per item, in order");
    assert_eq!(items[0]["decision"], true);
    assert_eq!(items[4]["decision"], true);
    for (index, expected) in [
        (1, "has no `resource`"),
        (2, "is malformed"),
        (3, "not a JSON object"),
    ] {
        assert_eq!(items[index]["decision"], false, "{index}");
        let message = items[index]["context"]["error"]["message"]
            .as_str()
            .unwrap();
        assert!(message.contains(expected), "{index}: {message}");
        assert_eq!(items[index]["context"]["error"]["status"], 400);
    }
    // A bad item is a deny for the short-circuit semantics too: deny_on_first_deny stops there,
    // permit_on_first_permit goes on past it.
    let mut stop = batch.clone();
    stop["options"]["evaluations_semantic"] = json!("deny_on_first_deny");
    let (_, _, answer) = call(&server, "POST", "/access/v1/evaluations", &stop.to_string()).await;
    assert_eq!(answer["evaluations"].as_array().unwrap().len(), 2);
    let mut go = batch;
    go["options"]["evaluations_semantic"] = json!("permit_on_first_permit");
    go["evaluations"].as_array_mut().unwrap().remove(0);
    let (_, _, answer) = call(&server, "POST", "/access/v1/evaluations", &go.to_string()).await;
    let decisions: Vec<bool> = answer["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect();
    assert_eq!(decisions, [false, false, false, true]);
}

#[tokio::test]
async fn the_request_id_is_echoed_on_every_endpoint_and_outcome() {
    let server = clinic();
    let cases = [
        (
            "POST",
            "/access/v1/evaluation",
            nurse(PATIENT, "c1").to_string(),
        ),
        ("POST", "/access/v1/evaluation", "{not json".to_owned()),
        ("POST", "/access/v1/evaluations", "{}".to_owned()),
        ("POST", "/access/v1/search/subject", "{}".to_owned()),
        ("POST", "/access/v1/search/resource", "{}".to_owned()),
        ("POST", "/access/v1/search/action", "{}".to_owned()),
        ("GET", "/.well-known/authzen-configuration", String::new()),
        ("POST", "/v1/data/clinic/decision", "{}".to_owned()),
        ("GET", "/health", String::new()),
        ("GET", "/metrics", String::new()),
        ("GET", "/no/such/endpoint", String::new()),
        ("DELETE", "/access/v1/evaluation", String::new()),
    ];
    for (method, uri, body) in cases {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "pdp.test")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-request-id", "req-7f3a")
            .body(Body::from(body))
            .unwrap();
        let (status, headers, _) = send(&server, request).await;
        assert_eq!(
            headers["x-request-id"], "req-7f3a",
            "{method} {uri} ({status})"
        );
    }
    // Without one, nothing fails and none is made up from another request.
    let request = Request::post("/access/v1/evaluation")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(nurse(PATIENT, "c1").to_string()))
        .unwrap();
    let (status, headers, _) = send(&server, request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-request-id").is_none());
}

#[tokio::test]
async fn metadata_names_the_search_endpoints_and_capabilities() {
    let server = Server::builder()
        .policy_dir(super::clinic_dir())
        .public_url("https://pdp.example")
        .signed_metadata("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL3BkcC5leGFtcGxlIn0.c2ln")
        .build();
    let (status, content_type, body) =
        call(&server, "GET", "/.well-known/authzen-configuration", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    for (member, path) in [
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ] {
        assert_eq!(body[member], format!("https://pdp.example{path}"));
    }
    assert!(body["capabilities"].is_array());
    assert!(body["signed_metadata"].as_str().unwrap().starts_with("eyJ"));
    let (_, _, body) = call(&clinic(), "GET", "/.well-known/authzen-configuration", "").await;
    assert!(body.get("signed_metadata").is_none());
}

#[tokio::test]
async fn error_bodies_do_not_quote_the_engine() {
    use std::sync::Arc;
    use warden_decision::PdpError;
    use warden_test::{Answer, ScriptedPdp};
    let pdp = ScriptedPdp::new(|request| match request.subject.id.as_str() {
        "broken" => Answer::Error(PdpError::policy("rego: clinic.rego:12: secret_rule_text")),
        _ => Answer::Error(PdpError::unavailable("connect to 10.1.2.3:8181 refused")),
    });
    let server = Server::builder().pdp(Arc::new(pdp)).build();
    for (id, leak) in [("broken", "secret_rule_text"), ("down", "10.1.2.3")] {
        let request = json!({"subject": {"type": "user", "id": id}, "action": {"name": "GET"},
                             "resource": {"type": "route", "id": "/"}});
        let (_, _, body) = call(
            &server,
            "POST",
            "/access/v1/evaluation",
            &request.to_string(),
        )
        .await;
        assert!(!body.to_string().contains(leak), "{id}: {body}");
    }
}

#[tokio::test]
async fn a_number_the_parser_would_round_is_refused_not_decided() {
    let server = clinic();
    // Two clinics' ids a double cannot tell apart: decided, one would pass for the other.
    for number in ["100000000000000000001", "0.30000000000000001"] {
        let body = nurse(PATIENT, "c1").to_string().replace(
            r#""clinics":["c1"]"#,
            &format!(r#""clinics":["c1",{number}]"#),
        );
        assert!(body.contains(number), "{body}");
        for uri in ["/access/v1/evaluation", "/v1/data/clinic/decision"] {
            let body = if uri.starts_with("/v1/data") {
                format!(r#"{{"input": {body}}}"#)
            } else {
                body.clone()
            };
            let (status, _, answer) = call(&server, "POST", uri, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {number}: {answer}");
            assert!(
                answer.to_string().contains("cannot be represented exactly"),
                "{uri}: {answer}"
            );
        }
    }
    // The same number as a string is text, and decided.
    let body = nurse(PATIENT, "c1").to_string().replace(
        r#""clinics":["c1"]"#,
        r#""clinics":["c1","100000000000000000001"]"#,
    );
    let (status, _, answer) = call(&server, "POST", "/access/v1/evaluation", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
}
