//! Redacting a large body off the runtime's worker threads.
//!
//! Parsing, masking and serializing a body takes time in proportion to its size (about 10 ms
//! per megabyte): on a worker thread that would hold up every other task scheduled there. A body
//! larger than the layer's blocking threshold is redacted on Tokio's blocking pool
//! (`spawn_blocking`), a smaller one inline, where handing it over would cost more than the
//! work. Outside a Tokio runtime every body is redacted inline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::Redaction;

/// The body size above which the PEP redacts off the runtime's worker threads by default
/// (16 KiB, some 100–200 µs of work).
pub const DEFAULT_REDACTION_BLOCKING_THRESHOLD: usize = 16 * 1024;

/// A redaction under way: done inline already, or running on the blocking pool.
#[derive(Debug)]
pub(crate) enum Redacting {
    Ready(Option<Result<Vec<u8>, String>>),
    Blocking(tokio::task::JoinHandle<Result<Vec<u8>, String>>),
}

impl Redaction {
    /// Starts redacting a complete body: inline up to the blocking threshold, on the blocking
    /// pool above it. The redaction logs to the caller's subscriber, inside the caller's span.
    pub(crate) fn start(&self, body: Bytes, gzip: bool) -> Redacting {
        if body.len() > self.blocking_threshold
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let redaction = self.clone();
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let span = tracing::Span::current();
            return Redacting::Blocking(runtime.spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    span.in_scope(|| redaction.redact_body(&body, gzip))
                })
            }));
        }
        Redacting::Ready(Some(self.redact_body(&body, gzip)))
    }
}

impl Future for Redacting {
    type Output = Result<Vec<u8>, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err("the redaction was polled after it ended".into())),
            ),
            Self::Blocking(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|e| Err(format!("the redaction did not finish: {e}")))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::Request;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};
    use warden_decision::{Decision, Obligation};

    use crate::PolicyLayer;

    /// The names of the threads `warden::redaction` body events were emitted on.
    #[derive(Default, Clone)]
    struct Threads(Arc<Mutex<Vec<String>>>);

    impl Subscriber for Threads {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() == "warden::redaction"
                && event.metadata().level() == &tracing::Level::TRACE
            {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                self.0.lock().unwrap().push(name);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn app(body: Vec<u8>, threshold: usize) -> Router {
        let mut decision = Decision::permit();
        decision.obligations = vec![
            Obligation::from_json(json!({"type": "redact", "paths": ["$..ssn"], "with": "last4"}))
                .unwrap(),
        ];
        Router::new()
            .route(
                "/patients",
                get(move || {
                    let body = body.clone();
                    async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
                }),
            )
            .layer(
                PolicyLayer::new(warden_test::StaticPdp::new(decision))
                    .allow_anonymous()
                    .redaction_blocking_threshold(threshold),
            )
    }

    fn patients(n: usize) -> Vec<u8> {
        let patients: Vec<Value> = (0..n)
            .map(|i| json!({"id": i, "ssn": format!("123-45-{:04}", i % 10_000)}))
            .collect();
        serde_json::to_vec(&patients).unwrap()
    }

    /// Fetches `/patients` on a current-thread runtime: the runtime's only worker is the test's
    /// own thread, the blocking pool's threads are named `blocking-pool`.
    fn fetch(app: Router) -> (Value, Vec<String>) {
        let threads = Threads::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name("blocking-pool")
            .build()
            .unwrap();
        let body = tracing::subscriber::with_default(threads.clone(), || {
            runtime.block_on(async move {
                let response = app
                    .oneshot(Request::get("/patients").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
        let seen = threads.0.lock().unwrap().clone();
        (serde_json::from_slice(&body).unwrap(), seen)
    }

    #[test]
    fn a_body_over_the_threshold_is_redacted_on_the_blocking_pool() {
        let body = patients(500);
        let threshold = body.len() - 1;
        let (out, threads) = fetch(app(body, threshold));
        assert_eq!(threads, ["blocking-pool"]);
        assert_eq!(out[7]["ssn"], "***-**-0007");
        assert_eq!(out.as_array().unwrap().len(), 500);
    }

    #[test]
    fn a_body_up_to_the_threshold_is_redacted_inline() {
        let body = patients(500);
        let threshold = body.len();
        let (out, threads) = fetch(app(body, threshold));
        let here = std::thread::current().name().unwrap().to_owned();
        assert_eq!(threads, [here]);
        assert_eq!(out[7]["ssn"], "***-**-0007");
    }

    #[test]
    fn outside_a_runtime_a_large_body_is_redacted_inline() {
        let mut plan = super::super::Plan::default();
        let redact = json!({"type": "redact", "paths": ["$..ssn"], "with": "null"});
        let Ok(Obligation::Redact(redact)) = Obligation::from_json(redact) else {
            panic!("not a redact obligation");
        };
        let masker = warden_decision::Masker::new();
        plan.add(&redact, &super::super::PathCache::default(), &masker)
            .unwrap();
        let redaction = super::Redaction {
            plan,
            masker,
            limit: 1 << 20,
            head: false,
            blocking_threshold: 0,
        };
        let redacting = redaction.start(bytes::Bytes::from(patients(3)), false);
        assert!(matches!(redacting, super::Redacting::Ready(_)));
    }
}
