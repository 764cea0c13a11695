//! `redact` obligations through a real axum router: whatever the handler answers, the raw
//! sensitive values never reach the client.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test loudly"
)]

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::{Decision, Masker, Obligation};
use warden_http::PolicyLayer;
use warden_test::StaticPdp;

const SSN: &str = "123-45-6789";
const NOTES: &str = "allergic-to-penicillin";

fn patients_json() -> String {
    json!({"patients": [
        {"id": "p1", "name": "Ada", "ssn": SSN, "notes": NOTES},
        {"id": "p2", "name": "Alan", "ssn": "987-65-4321", "notes": "follow-up"}
    ]})
    .to_string()
}

fn with_type(content_type: &'static str, body: impl Into<Body>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, "\"v1\"")
        .header("x-internal-ssn", SSN)
        .body(body.into())
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A body that yields the given frames, then ends.
struct Frames(VecDeque<Result<Bytes, std::io::Error>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
    }
}

fn chunks(parts: Vec<Result<Bytes, std::io::Error>>) -> Body {
    Body::new(Frames(parts.into()))
}

/// The request headers each handler saw, by path.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

fn app(decision: Decision, limit: usize, seen: Seen) -> Router {
    let record = move |path: &'static str, seen: Seen| {
        move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((path.to_owned(), headers.clone()));
                let body = patients_json();
                match path {
                    "/json" => with_type("application/json; charset=utf-8", body),
                    "/problem" => with_type(
                        "application/problem+json",
                        json!({"type": "about:blank", "status": 409, "ssn": SSN}).to_string(),
                    ),
                    "/vnd" => with_type("application/vnd.api+json", body),
                    "/text" => with_type("text/plain", format!("ssn={SSN}")),
                    "/untyped" => Response::new(Body::from(body)),
                    "/gzip" => {
                        let mut r = with_type("application/json", gzip(body.as_bytes()));
                        r.headers_mut()
                            .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
                        r
                    }
                    "/brotli" => {
                        let mut r = with_type("application/json", body);
                        r.headers_mut()
                            .insert(header::CONTENT_ENCODING, "br".parse().unwrap());
                        r
                    }
                    "/ranged" => {
                        // Honours Range and If-None-Match as a file server would.
                        if headers.contains_key(header::RANGE) {
                            let mut r = with_type("application/json", body[..40].to_owned());
                            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                            return r;
                        }
                        if headers.get(header::IF_NONE_MATCH).is_some() {
                            let mut r = Response::new(Body::empty());
                            *r.status_mut() = StatusCode::NOT_MODIFIED;
                            return r;
                        }
                        with_type("application/json", body)
                    }
                    "/always-206" => {
                        let mut r = with_type("application/json", body[..40].to_owned());
                        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                        r
                    }
                    "/always-304" => {
                        let mut r = with_type("application/json", Body::empty());
                        *r.status_mut() = StatusCode::NOT_MODIFIED;
                        r
                    }
                    "/chunked" => {
                        let bytes = body.into_bytes();
                        let pieces = bytes
                            .chunks(7)
                            .map(|c| Ok(Bytes::copy_from_slice(c)))
                            .collect();
                        with_type("application/json", chunks(pieces))
                    }
                    "/broken" => with_type(
                        "application/json",
                        chunks(vec![
                            Ok(Bytes::from(format!("{{\"ssn\": \"{SSN}\", "))),
                            Err(std::io::Error::other("database went away")),
                        ]),
                    ),
                    "/invalid" => with_type("application/json", format!("{{\"ssn\": \"{SSN}\"")),
                    "/exact" => {
                        let mut s = format!("{{\"ssn\": \"{SSN}\", \"pad\": \"");
                        let pad = limit - s.len() - 2;
                        s.push_str(&"x".repeat(pad));
                        s.push_str("\"}");
                        with_type("application/json", s)
                    }
                    "/over" => {
                        let mut s = format!("{{\"ssn\": \"{SSN}\", \"pad\": \"");
                        let pad = limit - s.len() - 1;
                        s.push_str(&"x".repeat(pad));
                        s.push_str("\"}");
                        with_type("application/json", s)
                    }
                    "/over-chunked" => {
                        let s =
                            format!("{{\"ssn\": \"{SSN}\", \"pad\": \"{}\"}}", "x".repeat(limit));
                        let pieces = s
                            .into_bytes()
                            .chunks(1000)
                            .map(|c| Ok(Bytes::copy_from_slice(c)))
                            .collect();
                        with_type("application/json", chunks(pieces))
                    }
                    "/empty" => {
                        let mut r = Response::new(Body::empty());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r.headers_mut()
                            .insert("x-internal-ssn", SSN.parse().unwrap());
                        r
                    }
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }
    };
    let mut router = Router::new();
    for path in [
        "/json",
        "/problem",
        "/vnd",
        "/text",
        "/untyped",
        "/gzip",
        "/brotli",
        "/ranged",
        "/always-206",
        "/always-304",
        "/chunked",
        "/broken",
        "/invalid",
        "/exact",
        "/over",
        "/over-chunked",
        "/empty",
    ] {
        router = router.route(path, get(record(path, seen.clone())));
    }
    let layer = PolicyLayer::new(StaticPdp::new(decision))
        .allow_anonymous()
        .masker(Masker::with_hash_key("an-example-hash-key-of-32-bytes!").unwrap())
        .redaction_limit(limit);
    router.layer(layer)
}

fn redacting() -> Decision {
    Decision::permit()
        .with_obligation(
            Obligation::from_json(json!({
                "type": "redact", "paths": ["$.patients[*].ssn", "$.ssn"], "with": "last4",
                "headers": ["x-internal-ssn"]
            }))
            .unwrap(),
        )
        .with_obligation(
            Obligation::from_json(
                json!({"type": "redact", "paths": ["$..notes"], "with": "remove"}),
            )
            .unwrap(),
        )
}

const LIMIT: usize = 4096;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// Everything the client received, headers included.
    fn everything(&self) -> String {
        let mut all = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            all.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        all.push_str(&String::from_utf8_lossy(&self.body));
        all
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn assert_nothing_leaked(&self) {
        let all = self.everything();
        for secret in [SSN, NOTES, "987-65-4321"] {
            assert!(!all.contains(secret), "{secret} leaked in:\n{all}");
        }
    }

    fn assert_withheld(&self) {
        assert_eq!(
            self.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            self.everything()
        );
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(self.json()["detail"], "response withheld by policy");
        assert!(self.json()["decision_id"].is_string());
        self.assert_nothing_leaked();
    }
}

async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get_path(app: &Router, path: &str) -> Answer {
    call(app, Request::get(path).body(Body::empty()).unwrap()).await
}

fn new_app() -> (Router, Seen) {
    let seen: Seen = Arc::default();
    (app(redacting(), LIMIT, seen.clone()), seen)
}

#[tokio::test]
async fn json_problem_and_vnd_api_bodies_are_redacted() {
    let (app, _) = new_app();
    for path in ["/json", "/vnd"] {
        let answer = get_path(&app, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        answer.assert_nothing_leaked();
        let body = answer.json();
        assert_eq!(body["patients"][0]["ssn"], "***-**-6789");
        assert_eq!(body["patients"][1]["ssn"], "***-**-4321");
        assert!(body["patients"][0].get("notes").is_none());
        assert_eq!(body["patients"][0]["name"], "Ada");
        assert_eq!(
            answer.headers[header::CONTENT_LENGTH],
            answer.body.len().to_string().as_str()
        );
        assert!(
            !answer.headers.contains_key(header::ETAG),
            "the old validator is gone"
        );
        assert!(!answer.headers.contains_key("x-internal-ssn"));
    }
    let answer = get_path(&app, "/problem").await;
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(answer.json()["ssn"], "***-**-6789");
    answer.assert_nothing_leaked();
}

#[tokio::test]
async fn bodies_it_cannot_redact_are_withheld() {
    let (app, _) = new_app();
    for path in [
        "/text",
        "/untyped",
        "/brotli",
        "/invalid",
        "/broken",
        "/always-206",
        "/always-304",
    ] {
        get_path(&app, path).await.assert_withheld();
    }
}

#[tokio::test]
async fn gzip_output_is_decoded_redacted_and_sent_plain() {
    let (app, seen) = new_app();
    let request = Request::get("/gzip")
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .body(Body::empty())
        .unwrap();
    let answer = call(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(!answer.headers.contains_key(header::CONTENT_ENCODING));
    assert_eq!(answer.json()["patients"][0]["ssn"], "***-**-6789");
    answer.assert_nothing_leaked();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].1[header::ACCEPT_ENCODING],
        "identity",
        "the handler is asked for a plain body"
    );
}

#[tokio::test]
async fn range_and_revalidation_requests_get_the_full_redacted_body() {
    let (app, seen) = new_app();
    let request = Request::get("/ranged")
        .header(header::RANGE, "bytes=0-39")
        .header(header::IF_RANGE, "\"v1\"")
        .body(Body::empty())
        .unwrap();
    let answer = call(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["patients"][0]["ssn"], "***-**-6789");
    answer.assert_nothing_leaked();
    let request = Request::get("/ranged")
        .header(header::IF_NONE_MATCH, "\"v1\"")
        .header(header::IF_MODIFIED_SINCE, "Mon, 30 Nov 2026 00:00:00 GMT")
        .body(Body::empty())
        .unwrap();
    let answer = call(&app, request).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "no 304 for a body the client never saw redacted"
    );
    answer.assert_nothing_leaked();
    let seen = seen.lock().unwrap();
    for (_, headers) in seen.iter() {
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            assert!(!headers.contains_key(&name), "{name} reached the handler");
        }
    }
}

#[tokio::test]
async fn chunked_bodies_are_buffered_and_redacted() {
    let (app, _) = new_app();
    let answer = get_path(&app, "/chunked").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["patients"][1]["ssn"], "***-**-4321");
    answer.assert_nothing_leaked();
}

#[tokio::test]
async fn the_size_limit_is_exact() {
    let (app, _) = new_app();
    let answer = get_path(&app, "/exact").await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "a body of exactly the limit is redacted"
    );
    answer.assert_nothing_leaked();
    get_path(&app, "/over").await.assert_withheld();
    get_path(&app, "/over-chunked").await.assert_withheld();
}

#[tokio::test]
async fn head_and_no_content_responses_pass_without_body_or_validators() {
    let (app, _) = new_app();
    let answer = call(&app, Request::head("/json").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.is_empty());
    assert!(!answer.headers.contains_key(header::ETAG));
    // The length of the unredacted body is not disclosed (axum may add its own `0`).
    let length = answer.headers.get(header::CONTENT_LENGTH);
    assert!(length.is_none_or(|l| l == "0"), "{length:?}");
    answer.assert_nothing_leaked();
    let answer = get_path(&app, "/empty").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    answer.assert_nothing_leaked();
}

#[tokio::test]
async fn without_a_redaction_due_bodies_stream_through_untouched() {
    let seen: Seen = Arc::default();
    let app = app(Decision::permit(), LIMIT, seen.clone());
    let answer = get_path(&app, "/text").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, format!("ssn={SSN}").as_bytes());
    assert_eq!(answer.headers[header::ETAG], "\"v1\"");
    let request = Request::get("/ranged")
        .header(header::RANGE, "bytes=0-39")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(&app, request).await.status,
        StatusCode::PARTIAL_CONTENT
    );
}

#[tokio::test]
async fn header_only_redaction_streams_the_body() {
    let seen: Seen = Arc::default();
    let decision = Decision::permit().with_obligation(
        Obligation::from_json(json!({"type": "redact", "headers": ["x-internal-ssn"]})).unwrap(),
    );
    let app = app(decision, LIMIT, seen);
    let answer = get_path(&app, "/text").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, format!("ssn={SSN}").as_bytes());
    assert!(!answer.headers.contains_key("x-internal-ssn"));
}

#[tokio::test]
async fn an_unusable_redaction_denies_before_the_handler_runs() {
    for obligation in [
        json!({"type": "redact", "paths": ["$.patients[?"], "with": "null"}),
        json!({"type": "redact", "paths": ["$.ssn"], "with": "hash"}),
    ] {
        let seen: Seen = Arc::default();
        let decision =
            Decision::permit().with_obligation(Obligation::from_json(obligation).unwrap());
        let router = Router::new()
            .route("/json", get(|| async { "never" }))
            .layer(PolicyLayer::new(StaticPdp::new(decision)).allow_anonymous());
        let answer = get_path(&router, "/json").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_body_over_a_real_connection_is_redacted_too() {
    let (app, _) = new_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for path in ["/chunked", "/gzip", "/broken", "/json"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nRange: bytes=0-10\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        for secret in [SSN, NOTES, "987-65-4321"] {
            assert!(!text.contains(secret), "{path}: {secret} in {text}");
        }
        assert!(
            text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.1 500"),
            "{text}"
        );
    }
    server.abort();
}
