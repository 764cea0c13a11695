//! Several replicas behind one `Replicas` PDP: failover, ejection, load shedding, hedging.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use warden_decision::Pdp;
use warden_remote::Replicas;

use super::{nurse_reads, switching_server};

/// A replica that answers a permit of revision `r0` after `delay` milliseconds.
async fn delayed(delay: Arc<AtomicU64>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route(
            "/access/v1/evaluation",
            post(move || {
                let delay = delay.clone();
                async move {
                    let ms = delay.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    r#"{"decision": true, "context": {"policy": {"id": "p", "revision": "r0"}}}"#
                        .into_response()
                }
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_retried_around_and_ejected() {
    let (_a, a) = switching_server().await;
    let (_b, b) = switching_server().await;
    let (_c, c) = switching_server().await;
    let dead = b.url();
    let pdp = Replicas::authzen([a.url(), b.url(), c.url()])
        .eject_after(2, Duration::from_secs(30))
        .health_every(None)
        .build()
        .unwrap();
    for _ in 0..10 {
        assert!(pdp.decide(&nurse_reads("c1")).await.unwrap().allowed);
    }
    b.stop().await;
    let mut refused = 0;
    for _ in 0..200 {
        match pdp.decide(&nurse_reads("c1")).await {
            Ok(d) => assert!(d.allowed),
            Err(error) => {
                assert!(error.is_unavailable(), "{error}");
                refused += 1;
            }
        }
    }
    let stats = pdp.stats();
    let dead = stats.endpoints.iter().find(|e| e.url == dead).unwrap();
    assert!(dead.ejected && dead.ejections == 1, "{stats:?}");
    assert_eq!(dead.failures, 2, "ejected after two failures: {stats:?}");
    assert_eq!(
        refused, 0,
        "the retries covered the dead replica: {stats:?}"
    );
    assert_eq!(stats.retries, 2);
    println!("failover between 3 replicas, one killed: {refused} of 200 decisions refused");
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_sheds_load_at_once_instead_of_queuing() {
    let delay = Arc::new(AtomicU64::new(10_000));
    let (url, task) = delayed(delay.clone()).await;
    let pdp = Arc::new(
        Replicas::authzen([url])
            .configure(|e| e.watch_revision(false))
            .max_in_flight(4)
            .deadline(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let mut calls = Vec::new();
    for _ in 0..20 {
        let pdp = pdp.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = pdp.decide(&nurse_reads("c1")).await;
            (outcome, started.elapsed())
        }));
        tokio::task::yield_now().await;
    }
    let mut fast = 0;
    for call in calls {
        let (outcome, took) = call.await.unwrap();
        let error = outcome.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        if took < Duration::from_millis(100) {
            fast += 1;
        }
    }
    let stats = pdp.stats();
    assert_eq!(stats.shed, 16, "{stats:?}");
    assert!(fast >= 16, "{fast} fast refusals");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_replica_is_hedged_on_another() {
    let slow = Arc::new(AtomicU64::new(1));
    let (a, a_task) = delayed(slow.clone()).await;
    let (b, b_task) = delayed(Arc::new(AtomicU64::new(1))).await;
    let pdp = Replicas::authzen([a, b])
        .configure(|e| e.watch_revision(false))
        .hedge_after(0.9)
        .retry_budget(0.5)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    for _ in 0..40 {
        pdp.decide(&nurse_reads("c1")).await.unwrap();
    }
    slow.store(1_000, Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..10 {
        assert!(pdp.decide(&nurse_reads("c1")).await.unwrap().allowed);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_500),
        "10 decisions took {took:?}"
    );
    assert!(pdp.stats().hedges >= 1, "{:?}", pdp.stats());
    a_task.abort();
    b_task.abort();
}
