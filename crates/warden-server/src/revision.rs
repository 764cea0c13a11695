//! The policy revision on the wire: a header on every answer, a watch, and consistency tokens.
//!
//! | | |
//! |---|---|
//! | every answer | `Warden-Policy-Revision: <revision>` and `Warden-Policy-Id: <package id>` once policies are loaded |
//! | `GET /v1/revision` | `{"revision": "...", "policy_id": "..."}`; `503` until policies are loaded |
//! | `GET /v1/revision?after=<rev>&wait=<secs>` | long poll: answers as soon as the revision differs from `after`, or when `wait` (at most 60 s) ends, with the revision then in force |
//! | `GET /v1/revision/events` | server-sent events: `event: revision`, `data: {"revision": ..., "policy_id": ...}` at connect and on every change |
//! | `Warden-Min-Revision: <rev>` request header, or `context.min_revision` in the body | a consistency token: a server whose revision does not meet it answers `503` with a problem whose type ends in `revision_unavailable` |
//!
//! A revision meets a token when it is the token's revision or came into force after it on this
//! server (see [`RevisionHistory`]): a server that has never run revision R cannot promise
//! anything about it, so it refuses.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use tower::ServiceExt;
//! use warden_decision::{Decision, PolicyRevision};
//! use warden_server::Server;
//! use warden_test::StaticPdp;
//!
//! let pdp = StaticPdp::new(Decision::permit().with_policy(PolicyRevision::new("p", "7")));
//! let server = Server::builder().pdp(Arc::new(pdp)).build();
//! let request = axum::http::Request::get("/v1/revision").body(axum::body::Body::empty()).unwrap();
//! let answer = server.router().oneshot(request).await.unwrap();
//! assert_eq!(answer.headers()["warden-policy-revision"], "7");
//! # });
//! ```

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use warden_decision::{MIN_REVISION_CONTEXT, MIN_REVISION_HEADER, PolicyRevision, RevisionHistory};

use crate::State;

/// The header naming the revision in force.
pub const REVISION_HEADER: &str = "warden-policy-revision";
/// The header naming the policy package in force.
pub const POLICY_ID_HEADER: &str = "warden-policy-id";
/// The longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting watch looks at the policies in force.
const POLL: Duration = Duration::from_millis(20);

/// The server's revisions as they came into force, and the watchers' channel.
pub(crate) struct Revisions {
    state: Arc<State>,
    history: Mutex<RevisionHistory>,
    changes: watch::Sender<Option<PolicyRevision>>,
}

impl Revisions {
    fn new(state: Arc<State>) -> Self {
        Self {
            state,
            history: Mutex::new(RevisionHistory::default()),
            changes: watch::Sender::new(None),
        }
    }

    /// The revision in force now; notes a switch.
    fn current(&self) -> Option<PolicyRevision> {
        let current = self
            .state
            .current
            .load()
            .as_ref()
            .and_then(|l| l.pdp.revision())?;
        let switched = self.history.lock().is_ok_and(|mut h| h.advance(&current));
        if switched {
            self.changes.send_replace(Some(current.clone()));
        }
        Some(current)
    }

    fn meets(&self, have: &str, min: &str) -> bool {
        self.history.lock().is_ok_and(|h| h.meets(have, min))
    }

    /// The revision in force once it differs from `after` (any revision, when `after` is
    /// `None`), or when `deadline` comes.
    async fn changed(&self, after: Option<&str>, deadline: Instant) -> Option<PolicyRevision> {
        let mut changes = self.changes.subscribe();
        loop {
            let current = self.current();
            let differs = current
                .as_ref()
                .is_some_and(|c| after != Some(c.revision.as_str()));
            let now = Instant::now();
            if differs || now >= deadline {
                return current;
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), changes.changed()).await;
        }
    }
}

/// Adds the revision endpoints and the revision headers and token checks to `router`.
pub(crate) fn wrap(state: Arc<State>, router: Router) -> Router {
    let revisions = Arc::new(Revisions::new(state));
    router
        .merge(
            Router::new()
                .route("/v1/revision", get(revision))
                .route("/v1/revision/events", get(events))
                .with_state(revisions.clone()),
        )
        .layer(middleware::from_fn_with_state(revisions, stamp))
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn malformed(detail: impl Into<String>) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "about:blank",
        "Malformed request",
        detail,
    )
}

fn body_of(revision: &PolicyRevision) -> Value {
    json!({"revision": revision.revision, "policy_id": revision.id})
}

/// Every consistency token of a request body: `context.min_revision` of the request, of the
/// OPA `input`, of a batch's defaults and of each of its evaluations.
fn tokens_in(body: &[u8], out: &mut Vec<String>) -> Result<(), String> {
    // Cheap test first: most bodies carry no token.
    if !body
        .windows(MIN_REVISION_CONTEXT.len())
        .any(|w| w == MIN_REVISION_CONTEXT.as_bytes())
    {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: the endpoint will say so.
        return Ok(());
    };
    let mut take = |context: Option<&Value>| -> Result<(), String> {
        match context.and_then(|c| c.get(MIN_REVISION_CONTEXT)) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(token)) if !token.is_empty() => {
                out.push(token.clone());
                Ok(())
            }
            Some(_) => Err(format!("`{MIN_REVISION_CONTEXT}` is not a revision string")),
        }
    };
    take(value.get("context"))?;
    take(value.get("input").and_then(|i| i.get("context")))?;
    if let Some(Value::Array(items)) = value.get("evaluations") {
        for item in items {
            take(item.get("context"))?;
        }
    }
    Ok(())
}

/// Checks the request's consistency tokens, then stamps the answer with the revision.
async fn stamp(
    Extract(revisions): Extract<Arc<Revisions>>,
    request: Request,
    next: Next,
) -> Response {
    let mut tokens = Vec::new();
    for value in request.headers().get_all(MIN_REVISION_HEADER) {
        match value.to_str() {
            Ok(token) if !token.trim().is_empty() => tokens.push(token.trim().to_owned()),
            _ => return malformed("`Warden-Min-Revision` is not a revision"),
        }
    }
    let request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, revisions.state.body_limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "about:blank",
                    "Request body too large",
                    format!("the limit is {} bytes", revisions.state.body_limit),
                );
            }
        };
        if let Err(error) = tokens_in(&bytes, &mut tokens) {
            return malformed(error);
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    if !tokens.is_empty() {
        let current = revisions.current();
        for token in &tokens {
            let met = current
                .as_ref()
                .is_some_and(|c| revisions.meets(&c.revision, token));
            if !met {
                let have = current.as_ref().map_or("none", |c| c.revision.as_str());
                let mut response = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "urn:warden:problem:revision_unavailable",
                    "Revision unavailable",
                    format!(
                        "this server decides under revision `{have}`, which does not meet `{token}`"
                    ),
                );
                put_headers(&mut response, current.as_ref());
                return response;
            }
        }
    }
    let mut response = next.run(request).await;
    put_headers(&mut response, revisions.current().as_ref());
    response
}

fn put_headers(response: &mut Response, revision: Option<&PolicyRevision>) {
    let Some(revision) = revision else {
        return;
    };
    let headers = response.headers_mut();
    if let (Ok(r), Ok(id)) = (
        HeaderValue::from_str(&revision.revision),
        HeaderValue::from_str(&revision.id),
    ) {
        headers.insert(REVISION_HEADER, r);
        headers.insert(POLICY_ID_HEADER, id);
    }
}

/// Percent-decodes a query value (`+` stays `+`: revisions hold it, never spaces).
fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn revision(Extract(revisions): Extract<Arc<Revisions>>, uri: axum::http::Uri) -> Response {
    let mut after = None;
    let mut wait = None;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(value) = decode(value) else {
            return malformed(format!("`{key}` is not percent-encoded text"));
        };
        match key {
            "after" => after = Some(value),
            "wait" => match value.parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs >= 0.0 => {
                    wait = Some(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())));
                }
                _ => return malformed(format!("`wait` is a number of seconds, not `{value}`")),
            },
            _ => {}
        }
    }
    let current = match wait {
        Some(wait) => {
            revisions
                .changed(after.as_deref(), Instant::now() + wait)
                .await
        }
        None => revisions.current(),
    };
    match current {
        Some(current) => {
            let mut response = axum::Json(body_of(&current)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "about:blank",
            "Not ready",
            "no policies are loaded",
        ),
    }
}

async fn events(Extract(revisions): Extract<Arc<Revisions>>) -> Response {
    let stream = futures_util::stream::unfold(
        (revisions, None::<String>),
        |(revisions, last)| async move {
            loop {
                let deadline = Instant::now() + Duration::from_secs(3600);
                if let Some(current) = revisions.changed(last.as_deref(), deadline).await
                    && last.as_deref() != Some(current.revision.as_str())
                {
                    let event = Event::default()
                        .event("revision")
                        .data(body_of(&current).to_string());
                    let last = Some(current.revision);
                    return Some((Ok::<_, Infallible>(event), (revisions, last)));
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_wherever_a_request_carries_context() {
        let mut out = Vec::new();
        tokens_in(
            br#"{"context": {"min_revision": "a"}, "input": {"context": {"min_revision": "b"}},
              "evaluations": [{"context": {"min_revision": "c"}}, {}]}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, ["a", "b", "c"]);
        assert!(tokens_in(br#"{"context": {"min_revision": 3}}"#, &mut Vec::new()).is_err());
        let mut none = Vec::new();
        tokens_in(br#"{"context": {"time": "x"}}"#, &mut none).unwrap();
        assert!(none.is_empty());
    }

    use std::sync::Mutex as StdMutex;

    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use warden_decision::{AccessRequest, Decision, Pdp, PdpFuture};

    use crate::Server;

    /// A PDP whose revision a test switches.
    struct Switch(StdMutex<String>);

    impl Pdp for Switch {
        fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
            let d = Decision::permit().with_policy(self.revision().unwrap_or_default());
            Box::pin(async move { Ok(d) })
        }

        fn revision(&self) -> Option<PolicyRevision> {
            Some(PolicyRevision::new("p", self.0.lock().unwrap().clone()))
        }
    }

    fn server() -> (Arc<Switch>, Router) {
        let pdp = Arc::new(Switch(StdMutex::new("r1".into())));
        let router = Server::builder().pdp(pdp.clone()).build().router();
        (pdp, router)
    }

    fn evaluation(token: Option<&str>, context: Value) -> HttpRequest<Body> {
        let body = json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "GET"},
                          "resource": {"type": "route", "id": "/"}, "context": context});
        let mut request =
            HttpRequest::post("/access/v1/evaluation").header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("warden-min-revision", token);
        }
        request.body(Body::from(body.to_string())).unwrap()
    }

    async fn json_of(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_answer_names_the_revision_and_tokens_are_honoured() {
        let (pdp, router) = server();
        let answer = router
            .clone()
            .oneshot(evaluation(None, json!({})))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[REVISION_HEADER], "r1");
        assert_eq!(answer.headers()[POLICY_ID_HEADER], "p");
        let missing = HttpRequest::get("/nowhere").body(Body::empty()).unwrap();
        let answer = router.clone().oneshot(missing).await.unwrap();
        assert_eq!(answer.headers()[REVISION_HEADER], "r1", "even a 404");
        // A token this server has not run: 503 revision_unavailable, by header or by context.
        for request in [
            evaluation(Some("r2"), json!({})),
            evaluation(None, json!({"min_revision": "r2"})),
        ] {
            let answer = router.clone().oneshot(request).await.unwrap();
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = json_of(answer).await;
            assert!(
                body["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("revision_unavailable"),
                "{body}"
            );
        }
        *pdp.0.lock().unwrap() = "r2".into();
        for token in ["r2", "r1"] {
            let answer = router
                .clone()
                .oneshot(evaluation(Some(token), json!({})))
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{token} is met by r2");
            assert_eq!(answer.headers()[REVISION_HEADER], "r2");
        }
        let bad = evaluation(None, json!({"min_revision": ["r1"]}));
        assert_eq!(
            router.oneshot(bad).await.unwrap().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn the_long_poll_answers_as_soon_as_the_revision_changes() {
        let (pdp, router) = server();
        let get = |uri: &str| HttpRequest::get(uri).body(Body::empty()).unwrap();
        let now = json_of(router.clone().oneshot(get("/v1/revision")).await.unwrap()).await;
        assert_eq!(now, json!({"revision": "r1", "policy_id": "p"}));
        // Nothing changes: the wait ends with the same revision.
        let started = std::time::Instant::now();
        let same = router
            .clone()
            .oneshot(get("/v1/revision?after=r1&wait=0.2"))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(json_of(same).await["revision"], "r1");
        // A switch during the wait: the answer comes at once.
        let switcher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            *pdp.0.lock().unwrap() = "r2".into();
        });
        let started = std::time::Instant::now();
        let changed = router
            .clone()
            .oneshot(get("/v1/revision?after=r1&wait=10"))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(json_of(changed).await["revision"], "r2");
        switcher.await.unwrap();
        for bad in [
            "/v1/revision?wait=soon",
            "/v1/revision?wait=-1",
            "/v1/revision?after=%zz",
        ] {
            let answer = router.clone().oneshot(get(bad)).await.unwrap();
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_event_stream_sends_the_revision_at_connect_and_on_every_change() {
        let (pdp, router) = server();
        let request = HttpRequest::get("/v1/revision/events")
            .body(Body::empty())
            .unwrap();
        let answer = router.oneshot(request).await.unwrap();
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = answer.into_body();
        let mut text = String::new();
        let mut next = async || {
            let frame = tokio::time::timeout(Duration::from_secs(2), body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
        };
        text.push_str(&next().await);
        assert!(
            text.contains("event: revision") && text.contains(r#""revision":"r1""#),
            "{text}"
        );
        *pdp.0.lock().unwrap() = "r2".into();
        let second = next().await;
        assert!(second.contains(r#""revision":"r2""#), "{second}");
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            decode("1.0.0%2Bsha256.ab").as_deref(),
            Some("1.0.0+sha256.ab")
        );
        assert_eq!(decode("1.0.0+x").as_deref(), Some("1.0.0+x"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%2"), None);
    }
}
