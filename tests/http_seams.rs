//! The seams of the HTTP policy enforcement point where a request could be forwarded, or data
//! leave, without the decision behind it: resource names a client chooses, `HEAD`, protocol
//! switches under a redaction, error responses on redacted routes, nested routers, and what the
//! log says of a deny.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use warden_decision::{Decision, Obligation, Reason};
use warden_http::{JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_telemetry::{DecisionEvent, Outcome, Telemetry};
use warden_test::{Answer, ScriptedPdp, TestTokens};

const RECORD: &str = r#"{"name":"Ada","ssn":"123-45-6789"}"#;

fn verifier() -> JwtVerifier {
    JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap()
}

fn bearer(sub: &str) -> String {
    format!(
        "Bearer {}",
        TestTokens::hs256(&TestTokens::claims(sub, json!({"role": "doctor"})))
    )
}

fn rego(policy: &str) -> RegoPdp {
    RegoPdp::builder().policy("p.rego", policy).build().unwrap()
}

/// A permit that demands the `ssn` be removed from the response.
fn redacting() -> Decision {
    Decision::permit().with_obligation(
        Obligation::from_json(json!({"type": "redact", "paths": ["$.ssn"], "with": "remove"}))
            .unwrap(),
    )
}

fn counter() -> (Arc<AtomicUsize>, impl Fn() + Clone + Send + Sync + 'static) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    (calls, move || {
        c.fetch_add(1, Ordering::SeqCst);
    })
}

async fn body_text(response: http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn request(method: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, bearer("alice"))
}

#[tokio::test]
async fn a_grpc_content_type_never_names_a_request_the_router_did_not_match() {
    // The policy permits one gRPC service. The router has no gRPC route: its fallback must never
    // be reached through a name the client chose with a header.
    let pdp = rego(
        r#"package warden
        decision if { input.resource.type == "rpc"; input.resource.properties.service == "pkg.Service" }"#,
    );
    let (fallback_calls, count) = counter();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback(move || {
            count();
            async { "fallback" }
        })
        .layer(PolicyLayer::new(pdp).jwt(verifier()));
    for path in [
        "/pkg.Service/../../admin",
        "/pkg.Service/Get",
        "/pkg.Service/%2e%2e/admin",
        "/pkg.Service//Get",
    ] {
        for content_type in ["application/grpc", "application/grpc+proto"] {
            let response = app
                .clone()
                .oneshot(
                    request("POST", path)
                        .header(header::CONTENT_TYPE, content_type)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(
                response.headers()["grpc-status"],
                "7",
                "{path} with {content_type} is denied"
            );
        }
    }
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn nested_routers_and_services_are_named_by_their_full_template() {
    let pdp = ScriptedPdp::new(|_| Answer::Decision(Decision::permit()));
    let files = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("file")))
    });
    let inner_files = tower::service_fn(|_: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("inner")))
    });
    let app = Router::new()
        .nest(
            "/api/{tenant}",
            Router::new().route("/patients/{id}", get(|| async { "patient" })),
        )
        .nest_service("/files", files)
        .nest_service(
            "/docs",
            tower::ServiceBuilder::new()
                .layer(PolicyLayer::new(pdp.clone()).jwt(verifier()))
                .service(inner_files),
        )
        .layer(PolicyLayer::new(pdp.clone()).jwt(verifier()));
    for path in [
        "/api/t1/patients/7",
        "/files/a/b.txt",
        "/files",
        "/docs/guide.md",
        "/nowhere",
    ] {
        let response = app
            .clone()
            .oneshot(request("GET", path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status() == 404);
    }
    let seen: Vec<(String, Value)> = pdp
        .requests()
        .into_iter()
        .map(|r| {
            (
                r.resource.id,
                r.resource
                    .properties
                    .get("params")
                    .cloned()
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "/api/{tenant}/patients/{id}".to_owned(),
                json!({"tenant": "t1", "id": "7"})
            ),
            ("/files/{*rest}".to_owned(), json!({})),
            ("/files".to_owned(), json!({})),
            // The outer layer, then the one inside the nested service: both name the same route.
            ("/docs/{*rest}".to_owned(), json!({})),
            ("/docs/{*rest}".to_owned(), json!({})),
            ("<unmatched>".to_owned(), Value::Null),
        ]
    );
}

#[tokio::test]
async fn route_layer_leaves_the_fallback_undecided_and_layer_decides_it() {
    let (fallback_calls, count) = counter();
    let fallback = move || {
        count();
        async { "fallback" }
    };
    let routes = || Router::new().route("/patients", get(|| async { "patients" }));
    let unsafe_app = routes()
        .fallback(fallback.clone())
        .route_layer(PolicyLayer::new(rego("package warden\ndecision := false")));
    let response = unsafe_app
        .oneshot(Request::get("/secret").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "route_layer: undecided");
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 1);
    let safe_app = routes()
        .fallback(fallback)
        .layer(PolicyLayer::new(rego("package warden\ndecision := false")).jwt(verifier()));
    let response = safe_app
        .oneshot(request("GET", "/secret").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 1, "layer: decided");
}

#[tokio::test]
async fn head_is_decided_as_get_unless_opted_out() {
    // A policy that lets everything but GET through: HEAD reaches the GET handler in axum.
    let policy = r#"package warden
        decision := {"allow": true, "reasons": [json.marshal(object.get(input, "context", {}))]} if input.action.name != "GET""#;
    let (calls, count) = counter();
    let routes = move || {
        let count = count.clone();
        Router::new().route(
            "/patients/{id}",
            get(move || {
                count();
                async { RECORD }
            }),
        )
    };
    let app = routes().layer(PolicyLayer::new(rego(policy)).jwt(verifier()));
    let response = app
        .clone()
        .oneshot(request("HEAD", "/patients/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "HEAD is GET");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let pdp = ScriptedPdp::new(|_| Answer::Decision(Decision::permit()));
    let app = routes().layer(PolicyLayer::new(pdp.clone()).jwt(verifier()));
    app.oneshot(request("HEAD", "/patients/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let seen = pdp.requests();
    assert_eq!(seen[0].action.name, "GET");
    assert_eq!(
        seen[0].context["method"], "HEAD",
        "the context says the real method"
    );

    let opted_out = routes().layer(
        PolicyLayer::new(rego(policy))
            .jwt(verifier())
            .head_as_get(false),
    );
    let response = opted_out
        .oneshot(request("HEAD", "/patients/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "opted out: HEAD is HEAD");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn protocol_switches_are_refused_while_a_redaction_is_due() {
    // The handler answers 101 and would write the unredacted record over the switched
    // connection; served over TCP so that hyper really upgrades.
    let (calls, count) = counter();
    let route = |count: Arc<dyn Fn() + Send + Sync>| {
        Router::new().route(
            "/patients/{id}/live",
            get(move |request: Request<Body>| {
                count();
                async move {
                    let upgrade = hyper::upgrade::on(request);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = upgrade.await {
                            let mut io = hyper_util::rt::TokioIo::new(upgraded);
                            let _ = io.write_all(RECORD.as_bytes()).await;
                            let _ = io.shutdown().await;
                        }
                    });
                    http::Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header(header::CONNECTION, "upgrade")
                        .header(header::UPGRADE, "x-record")
                        .body(Body::empty())
                        .unwrap()
                }
            }),
        )
    };
    let count: Arc<dyn Fn() + Send + Sync> = Arc::new(count);
    let redacted = route(count.clone())
        .layer(PolicyLayer::new(warden_test::StaticPdp::new(redacting())).jwt(verifier()));
    let plain =
        route(count).layer(PolicyLayer::new(warden_test::StaticPdp::permit()).jwt(verifier()));
    let serve = |app: Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    };
    let exchange = |addr: std::net::SocketAddr, upgrade: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /patients/1/live HTTP/1.1\r\nHost: x\r\n{upgrade}Authorization: {}\r\n\r\n",
            bearer("alice")
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            stream.read_to_end(&mut out),
        )
        .await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let redacted = serve(redacted).await;
    let answer = exchange(redacted, "Connection: Upgrade\r\nUpgrade: x-record\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(!answer.contains("123-45-6789"), "{answer}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "refused before the handler"
    );
    // Without asking to upgrade, the handler's 101 is withheld all the same.
    let answer = exchange(redacted, "Connection: close\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(!answer.contains("123-45-6789"), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A decision without a response obligation still guards an upgrading route.
    let plain = serve(plain).await;
    let answer = exchange(plain, "Connection: Upgrade\r\nUpgrade: x-record\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer.contains("123-45-6789"),
        "the upgrade went through: {answer}"
    );
}

fn collecting() -> (Telemetry, Arc<Mutex<Vec<DecisionEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let telemetry = Telemetry::builder()
        .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    (telemetry, seen)
}

#[tokio::test]
async fn an_error_response_that_cannot_be_redacted_keeps_its_status_and_is_no_alert() {
    let (telemetry, seen) = collecting();
    let app = Router::new()
        .route(
            "/patients/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    match id.as_str() {
                        "bad" => (
                            StatusCode::BAD_REQUEST,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "no such id: 123-45-6789",
                        )
                            .into_response(),
                        "down" => {
                            (StatusCode::SERVICE_UNAVAILABLE, "backend 123-45-6789").into_response()
                        }
                        "json" => (
                            StatusCode::NOT_FOUND,
                            axum::Json(json!({"ssn": "123-45-6789", "error": "gone"})),
                        )
                            .into_response(),
                        _ => "plain text 123-45-6789".into_response(),
                    }
                },
            ),
        )
        .layer(
            PolicyLayer::new(warden_test::StaticPdp::new(redacting()))
                .jwt(verifier())
                .telemetry(telemetry.clone()),
        );
    let mut answers = Vec::new();
    for id in ["bad", "down", "json", "ok"] {
        let response = app
            .clone()
            .oneshot(
                request("GET", &format!("/patients/{id}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = body_text(response).await;
        assert!(!body.contains("123-45-6789"), "{id}: {body}");
        answers.push((status, headers, body));
    }
    assert_eq!(answers[0].0, StatusCode::BAD_REQUEST);
    assert_eq!(
        answers[0].1[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(answers[0].1[header::WWW_AUTHENTICATE], "Bearer");
    let problem: Value = serde_json::from_str(&answers[0].2).unwrap();
    assert_eq!(problem["status"], 400);
    assert!(problem["decision_id"].is_string());
    assert_eq!(answers[1].0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answers[2].0,
        StatusCode::NOT_FOUND,
        "a JSON error is redacted"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&answers[2].2).unwrap(),
        json!({"error": "gone"})
    );
    assert_eq!(
        answers[3].0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "a 2xx is withheld"
    );
    telemetry.flush().await;
    let withheld: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.outcome == Outcome::Withheld)
        .map(|e| e.error_class.clone())
        .collect();
    assert_eq!(
        withheld,
        vec![
            Some("error_replaced".to_owned()),
            Some("error_replaced".to_owned()),
            Some("obligation_unsupported".to_owned()),
        ]
    );
}

#[tokio::test]
async fn deny_reasons_are_in_the_decision_event_under_the_id_the_caller_sees() {
    let (telemetry, seen) = collecting();
    let pdp = ScriptedPdp::new(|_| {
        let mut deny = Decision::deny();
        deny.reasons = vec![Reason {
            code: Some("not_clinic_member".into()),
            message: "alice is not a member of clinic c9".into(),
        }];
        Answer::Decision(deny)
    });
    let app = Router::new()
        .route("/patients/{id}", get(|| async { RECORD }))
        .layer(
            PolicyLayer::new(pdp)
                .jwt(verifier())
                .telemetry(telemetry.clone()),
        );
    let response = app
        .oneshot(request("GET", "/patients/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let problem: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert!(
        !problem.to_string().contains("clinic c9"),
        "never shown to the caller"
    );
    telemetry.flush().await;
    let events = seen.lock().unwrap();
    let event = events
        .iter()
        .find(|e| {
            e.decision_id.as_ref() == problem["decision_id"].as_str().map(str::to_owned).as_ref()
        })
        .expect("an event under the caller's decision id");
    assert_eq!(
        event.attributes["reasons"],
        json!([{"code": "not_clinic_member", "message": "alice is not a member of clinic c9"}])
    );
}

use axum::response::IntoResponse;
