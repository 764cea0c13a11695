//! The HTTP policy enforcement point through real axum routers: in-process with `oneshot` and
//! over loopback TCP with raw request lines, so no client normalises the path.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use warden_decision::{Decision, ErrorClass, Obligation, PdpError, Subject};
use warden_http::{Authorized, JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_test::{Answer, ScriptedPdp, StaticPdp, TestTokens};

/// Permits doctors on the patient routes and records the route and params it saw as reasons.
const POLICY: &str = r#"
package warden

default decision := {"allow": false}

decision := {"allow": true, "reasons": [input.resource.id, json.marshal(input.resource.properties.params)]} if {
    input.subject.properties.role == "doctor"
    input.action.name == "GET"
    input.resource.id in {"/patients", "/patients/{id}"}
}
"#;

fn verifier() -> JwtVerifier {
    JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)
        .unwrap()
        .rs256_pem(warden_test::RSA_PUBLIC_PEM)
        .unwrap()
        .es256_pem(warden_test::EC_PUBLIC_PEM)
        .unwrap()
}

/// A router whose handlers count their calls and echo the decision they were given.
fn router(layer: PolicyLayer, calls: Arc<AtomicUsize>) -> Router {
    routes(calls).layer(layer)
}

fn routes(calls: Arc<AtomicUsize>) -> Router {
    let handler = move |authorized: Authorized| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({
                "subject": authorized.request().subject.id,
                "route": authorized.request().resource.id,
                "reasons": authorized.decision().reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
            }))
        }
    };
    Router::new()
        .route("/patients", get(handler.clone()))
        .route("/patients/{id}", get(handler.clone()))
        .route("/admin", get(handler))
}

fn rego_layer() -> PolicyLayer {
    let pdp = RegoPdp::builder().policy("p.rego", POLICY).build().unwrap();
    PolicyLayer::new(pdp).jwt(verifier())
}

fn token(sub: &str, role: &str) -> String {
    TestTokens::hs256(&TestTokens::claims(sub, json!({"role": role})))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn get_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

fn assert_problem(headers: &http::HeaderMap, body: &Value, status: StatusCode) {
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn permits_with_the_decision_in_the_extensions_and_route_params_for_the_policy() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = router(rego_layer(), calls.clone());
    let (status, _, body) = send(
        &app,
        get_with("/patients/42", Some(&token("alice", "doctor"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], "alice");
    assert_eq!(body["route"], "/patients/{id}");
    assert_eq!(body["reasons"], json!(["/patients/{id}", r#"{"id":"42"}"#]));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn denies_with_problem_json_and_a_decision_id_but_no_policy_internals() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pdp = StaticPdp::new(Decision::deny().with_reason("secret-internal-reason"));
    let app = router(PolicyLayer::new(pdp).jwt(verifier()), calls.clone());
    let (status, headers, body) =
        send(&app, get_with("/patients", Some(&token("nina", "nurse")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_problem(&headers, &body, StatusCode::FORBIDDEN);
    let id = body["decision_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(!body.to_string().contains("secret-internal-reason"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refuses_missing_invalid_expired_and_unsigned_tokens_with_401() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = router(rego_layer(), calls.clone());
    let now = TestTokens::now();
    let doctor = json!({"role": "doctor"});
    let expired = TestTokens::hs256(&json!({"sub": "alice", "role": "doctor", "exp": now - 600}));
    let not_yet = TestTokens::hs256(&json!({"sub": "alice", "exp": now + 600, "nbf": now + 300}));
    let no_exp = TestTokens::hs256(&json!({"sub": "alice", "role": "doctor"}));
    let no_sub = TestTokens::hs256(&json!({"role": "doctor", "exp": now + 600}));
    let unsigned = TestTokens::unsigned(&TestTokens::claims("alice", doctor.clone()));
    let good = TestTokens::hs256(&TestTokens::claims("alice", doctor.clone()));
    let (head, payload, _) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    // The payload of an admin with the signature of the doctor's token.
    let tampered = format!(
        "{head}.{}.{}",
        warden_test::base64url(
            TestTokens::claims("alice", json!({"role": "admin"}))
                .to_string()
                .as_bytes()
        ),
        good.rsplit('.').next().unwrap()
    );
    let stripped = format!("{head}.{payload}.");
    // An HS256 token signed with the RSA *public* key as the secret (algorithm confusion).
    let confused = {
        let key =
            jsonwebtoken::EncodingKey::from_secret(warden_test::RSA_PUBLIC_PEM.as_bytes()).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &TestTokens::claims("alice", doctor.clone()), &key).unwrap()
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "Bearer"),
        ("expired", Some(expired), "expired"),
        ("not yet valid", Some(not_yet), "not valid yet"),
        ("without exp", Some(no_exp), "invalid_token"),
        ("without sub", Some(no_sub), "invalid_token"),
        ("alg none", Some(unsigned), "unaccepted algorithm"),
        ("tampered payload", Some(tampered), "signature is invalid"),
        ("signature stripped", Some(stripped), "invalid_token"),
        ("algorithm confusion", Some(confused), "invalid_token"),
        ("garbage", Some("not-a-jwt".into()), "malformed"),
    ];
    for (name, token, want) in cases {
        let (status, headers, body) = send(&app, get_with("/patients", token.as_deref())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_problem(&headers, &body, StatusCode::UNAUTHORIZED);
        let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        assert!(challenge.contains(want), "{name}: {challenge}");
    }
    // Other schemes and two Authorization headers are refused too.
    let basic = Request::get("/patients")
        .header(header::AUTHORIZATION, "Basic YWxpY2U6cHc=")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, basic).await.0, StatusCode::UNAUTHORIZED);
    let doctor_token = token("alice", "doctor");
    let two = Request::get("/patients")
        .header(header::AUTHORIZATION, format!("Bearer {doctor_token}"))
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token("mallory", "nurse")),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, two).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no refused request reached the handler"
    );
}

#[tokio::test]
async fn accepts_rs256_and_es256_tokens() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = router(rego_layer(), calls.clone());
    let claims = TestTokens::claims("alice", json!({"role": "doctor"}));
    for token in [TestTokens::rs256(&claims), TestTokens::es256(&claims)] {
        let (status, _, body) = send(&app, get_with("/patients", Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // An RS256 token is refused by a layer configured for HS256 only.
    let hs_only = router(
        PolicyLayer::new(StaticPdp::permit())
            .jwt(JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap()),
        calls.clone(),
    );
    let (status, _, _) = send(
        &hs_only,
        get_with("/patients", Some(&TestTokens::rs256(&claims))),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn takes_the_subject_from_an_extension_set_by_an_authentication_layer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pdp = RegoPdp::builder().policy("p.rego", POLICY).build().unwrap();
    let app = router(PolicyLayer::new(pdp), calls.clone());
    let mut request = get_with("/patients", None);
    request
        .extensions_mut()
        .insert(Subject::user("carol").with_property("role", "doctor"));
    let (status, _, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], "carol");
    // Without extension and without a verifier, a request is unauthenticated.
    let (status, _, _) = send(&app, get_with("/patients", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn step_up_layer() -> PolicyLayer {
    let obligation = Obligation::from_json(json!({
        "type": "step_up", "acr_values": "urn:warden:mfa urn:warden:hwk", "max_age": 300
    }))
    .unwrap();
    PolicyLayer::new(StaticPdp::new(
        Decision::permit().with_obligation(obligation),
    ))
    .jwt(verifier())
}

#[tokio::test]
async fn step_up_answers_an_rfc_9470_challenge_until_the_token_is_strong_and_recent_enough() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = router(step_up_layer(), calls.clone());
    let now = TestTokens::now();
    let weak = [
        json!({}),
        json!({"acr": "urn:warden:pwd", "auth_time": now}),
        json!({"acr": "urn:warden:mfa"}),
        json!({"acr": "urn:warden:mfa", "auth_time": now - 301}),
        json!({"acr": "urn:warden:mfa", "auth_time": "recent"}),
        json!({"acr": ["urn:warden:mfa"], "auth_time": now}),
    ];
    for claims in weak {
        let token = TestTokens::hs256(&TestTokens::claims("alice", claims.clone()));
        let (status, headers, body) = send(&app, get_with("/patients", Some(&token))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{claims}");
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A different \
             authentication level is required\", acr_values=\"urn:warden:mfa urn:warden:hwk\", max_age=\"300\""
        );
        assert!(body["decision_id"].is_string());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    for acr in ["urn:warden:mfa", "urn:warden:hwk"] {
        let token = TestTokens::hs256(&TestTokens::claims(
            "alice",
            json!({"acr": acr, "auth_time": now - 10}),
        ));
        let (status, _, body) = send(&app, get_with("/patients", Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{acr}: {body}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unavailable_pdp_is_a_503_and_a_broken_policy_a_403() {
    let calls = Arc::new(AtomicUsize::new(0));
    let doctor = token("alice", "doctor");
    let down = router(
        PolicyLayer::new(ScriptedPdp::failing(PdpError::unavailable(
            "connection refused",
        )))
        .jwt(verifier()),
        calls.clone(),
    );
    let (status, headers, body) = send(&down, get_with("/patients", Some(&doctor))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_problem(&headers, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.to_string().contains("connection refused"));
    let broken = router(
        PolicyLayer::new(ScriptedPdp::failing(PdpError::policy("rego_type_error"))).jwt(verifier()),
        calls.clone(),
    );
    let (status, _, body) = send(&broken, get_with("/patients", Some(&doctor))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.to_string().contains("rego_type_error"));
    let errored = router(
        PolicyLayer::new(StaticPdp::new(
            Decision::permit().with_error(ErrorClass::PolicyError, "evaluation failed"),
        ))
        .jwt(verifier()),
        calls.clone(),
    );
    assert_eq!(
        send(&errored, get_with("/patients", Some(&doctor))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_pdp_that_never_answers_times_out_with_503() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = router(
        PolicyLayer::new(ScriptedPdp::hang())
            .jwt(verifier())
            .decision_timeout(Duration::from_millis(100)),
        calls.clone(),
    );
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        send(&app, get_with("/patients", Some(&token("alice", "doctor")))),
    )
    .await
    .expect("the PEP must not wait forever");
    assert_eq!(response.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The default timeout applies when none is configured.
    let default = router(
        PolicyLayer::new(ScriptedPdp::hang()).jwt(verifier()),
        calls.clone(),
    );
    let response = tokio::time::timeout(
        warden_http::DEFAULT_DECISION_TIMEOUT + Duration::from_secs(3),
        send(
            &default,
            get_with("/patients", Some(&token("alice", "doctor"))),
        ),
    )
    .await
    .expect("the default decision timeout bounds the wait");
    assert_eq!(response.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn obligations_the_layer_cannot_carry_out_turn_a_permit_into_a_deny() {
    let calls = Arc::new(AtomicUsize::new(0));
    let doctor = token("alice", "doctor");
    for obligation in [
        json!({"type": "x-watermark", "text": "confidential"}),
        json!({"type": "filter_rows", "table": "patients", "where": {"const": true}}),
        json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "null"}}),
    ] {
        let decision =
            Decision::permit().with_obligation(Obligation::from_json(obligation.clone()).unwrap());
        let app = router(
            PolicyLayer::new(StaticPdp::new(decision)).jwt(verifier()),
            calls.clone(),
        );
        let (status, _, _) = send(&app, get_with("/patients", Some(&doctor))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{obligation}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // With a handler registered, the custom obligation is carried out and the request goes on.
    let decision = Decision::permit().with_obligation(
        Obligation::from_json(json!({"type": "x-watermark", "text": "confidential"})).unwrap(),
    );
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_by_handler = seen.clone();
    let layer = PolicyLayer::new(StaticPdp::new(decision.clone()))
        .jwt(verifier())
        .obligation_handler(
            "x-watermark",
            move |o: &warden_decision::CustomObligation, parts: &mut http::request::Parts| {
                *seen_by_handler.lock().unwrap() = Some(o.fields["text"].clone());
                parts.headers.insert(
                    "x-watermark",
                    http::HeaderValue::from_static("confidential"),
                );
                Ok(())
            },
        );
    let (status, _, _) = send(
        &router(layer, calls.clone()),
        get_with("/patients", Some(&doctor)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*seen.lock().unwrap(), Some(json!("confidential")));
    // A handler that fails denies.
    let failing = PolicyLayer::new(StaticPdp::new(decision))
        .jwt(verifier())
        .obligation_handler(
            "x-watermark",
            |_: &warden_decision::CustomObligation, _: &mut http::request::Parts| {
                Err("no watermark service".to_owned())
            },
        );
    let (status, _, _) = send(
        &router(failing, calls.clone()),
        get_with("/patients", Some(&doctor)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_malformed_obligation_from_the_policy_denies() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pdp = RegoPdp::builder()
        .policy(
            "p.rego",
            r#"package warden
            decision := {"allow": true, "obligations": [{"type": "redact", "paths": ["$.ssn"], "with": "rot13"}]}"#,
        )
        .build()
        .unwrap();
    let app = router(PolicyLayer::new(pdp).jwt(verifier()), calls.clone());
    let (status, _, body) =
        send(&app, get_with("/patients", Some(&token("alice", "doctor")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains("rot13"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrent_requests_with_different_subjects_never_share_a_decision() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Doctors are permitted only after a random delay, so decisions overlap and finish out of
    // order; nurses are denied.
    let pdp = ScriptedPdp::new(|request| {
        let doctor = request.subject.properties.get("role") == Some(&json!("doctor"));
        let delay = Duration::from_micros(u64::from(request.subject.id.len() as u32 * 137 % 2000));
        let decision = if doctor {
            Decision::permit().with_reason(request.subject.id.clone())
        } else {
            Decision::deny()
        };
        Answer::Delay(delay, Box::new(Answer::Decision(decision)))
    });
    let app = router(PolicyLayer::new(pdp).jwt(verifier()), calls.clone());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let role = if i % 3 == 0 { "nurse" } else { "doctor" };
            let sub = format!("user-{i}-{}", "x".repeat(i % 17));
            let (status, _, body) =
                send(&app, get_with("/patients", Some(&token(&sub, role)))).await;
            if role == "doctor" {
                assert_eq!(status, StatusCode::OK);
                assert_eq!(body["subject"], sub.as_str());
                assert_eq!(body["reasons"], json!([sub]));
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 200 - 67);
}

#[tokio::test]
async fn anonymous_callers_reach_the_policy_and_are_asked_to_authenticate_when_denied() {
    let calls = Arc::new(AtomicUsize::new(0));
    let pdp = RegoPdp::builder()
        .policy(
            "p.rego",
            r#"package warden
            decision if { input.subject.type == "anonymous"; input.resource.id == "/admin" }"#,
        )
        .build()
        .unwrap();
    let app = router(
        PolicyLayer::new(pdp).jwt(verifier()).allow_anonymous(),
        calls.clone(),
    );
    assert_eq!(send(&app, get_with("/admin", None)).await.0, StatusCode::OK);
    let (status, headers, _) = send(&app, get_with("/patients", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
}

/// Sends one raw HTTP/1.1 request line over TCP and returns the status code.
async fn raw_status(addr: SocketAddr, target: &str, token: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn route_matching_tricks_never_reach_a_handler_the_policy_did_not_permit() {
    // Doctors may read patients but not /admin; the fallback answers 200 to anything, so a
    // request that slips past the PEP would show.
    let calls = Arc::new(AtomicUsize::new(0));
    let fallback_calls = Arc::new(AtomicUsize::new(0));
    let counter = fallback_calls.clone();
    let app = routes(calls.clone())
        .fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "fallback"
            }
        })
        .layer(rego_layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let doctor = token("alice", "doctor");

    assert_eq!(raw_status(addr, "/patients/7", &doctor).await, 200);
    assert_eq!(raw_status(addr, "/admin", &doctor).await, 403);
    let before = calls.load(Ordering::SeqCst);
    for target in [
        "//admin",
        "/patients/../admin",
        "/patients/%2e%2e/admin",
        "/%2e%2e/admin",
        "/ADMIN",
        "/Admin",
        "/admin/",
        "/admin;x=1",
        "/admin%2f",
        "/%61dmin",
        "/patients/7/../../admin",
        "/./admin",
        "/admin/.",
        "http://localhost/admin",
    ] {
        let status = raw_status(addr, target, &doctor).await;
        assert!(
            status == 403 || status == 400 || status == 404,
            "{target} answered {status}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "no trick reached a guarded handler"
    );
    assert_eq!(
        fallback_calls.load(Ordering::SeqCst),
        0,
        "no trick reached the fallback"
    );
    server.abort();
}

#[tokio::test]
async fn a_grpc_content_type_does_not_rename_an_http_route() {
    // The policy permits a gRPC method; an HTTP route whose template could match the same path
    // must still be decided as the route it is.
    let pdp = RegoPdp::builder()
        .policy(
            "p.rego",
            r#"package warden
            decision if { input.resource.type == "rpc"; input.resource.id == "/clinic.Patients/Get" }"#,
        )
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/{service}/{method}",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "http handler"
                }
            }),
        )
        .layer(PolicyLayer::new(pdp).jwt(verifier()));
    let request = Request::get("/clinic.Patients/Get")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token("alice", "doctor")),
        )
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["grpc-status"],
        "7",
        "denied as the route it is"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
