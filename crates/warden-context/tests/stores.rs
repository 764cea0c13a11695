//! Context providers against real Redis, PostgreSQL and HTTP servers: values reach the policy,
//! a caller cannot forge them, and a store that is down, slow or answers garbage ends in the
//! documented outcome — never in a silent allow; decision cache keys change with the values.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};
use warden_context::{
    Attribute, ContextConfig, ContextPdp, HttpProvider, KeyBy, OnError, PostgresProvider,
    RedisProvider, RedisRead, SessionHistory,
};
use warden_decision::{
    AccessRequest, Action, CacheConfig, Decision, DecisionCache, Pdp, PdpError, Resource, Subject,
};
use warden_rego::RegoPdp;

/// Counts the decisions its PDP makes.
struct Counting<P>(P, Arc<AtomicUsize>);

impl<P: Pdp> Pdp for Counting<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> warden_decision::PdpFuture<'a> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.decide(request)
    }

    fn revision(&self) -> Option<warden_decision::PolicyRevision> {
        self.0.revision()
    }
}

fn redis_url() -> Option<String> {
    warden_test::service_url(
        "WARDEN_TEST_REDIS_URL",
        "the context provider tests on Redis",
    )
}

fn postgres_url() -> Option<String> {
    warden_test::service_url(
        "WARDEN_TEST_POSTGRES_URL",
        "the context provider tests on PostgreSQL",
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}:", uuid::Uuid::now_v7().simple())
}

fn request(subject: &str, resource: &str) -> AccessRequest {
    AccessRequest::new(
        Subject::new("user", subject),
        Action::new("GET"),
        Resource::new("route", resource),
    )
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Permits exactly when `context.sensitivity` is `"low"`.
fn sensitivity_policy() -> RegoPdp {
    RegoPdp::builder()
        .entrypoint("data.inventory.allow")
        .policy(
            "inventory.rego",
            "package inventory\nimport rego.v1\ndefault allow := false\nallow if input.context.sensitivity == \"low\"\n",
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redis_value_reaches_the_policy_and_a_caller_cannot_forge_it() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("warden:test:inventory:");
    let mut r = redis(&url).await;
    let _: () = r.set(format!("{prefix}/vault"), "\"high\"").await.unwrap();
    let _: () = r.set(format!("{prefix}/lobby"), "\"low\"").await.unwrap();
    let provider = RedisProvider::new(&url, &prefix, RedisRead::Json).unwrap();
    let pdp = ContextPdp::new(sensitivity_policy()).attribute(Attribute::new(
        "sensitivity",
        KeyBy::Resource,
        provider,
    ));

    assert!(
        pdp.decide(&request("alice", "/lobby"))
            .await
            .unwrap()
            .allowed
    );
    let forged = request("alice", "/vault").with_context("sensitivity", "low");
    assert!(
        !pdp.decide(&forged).await.unwrap().allowed,
        "the store's value wins"
    );
    // A key the store does not have is null: the policy denies.
    assert!(
        !pdp.decide(&request("alice", "/nowhere"))
            .await
            .unwrap()
            .allowed
    );
    let _: () = r
        .del(&[format!("{prefix}/vault"), format!("{prefix}/lobby")])
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_down_denies_by_default_and_omit_leaves_the_attribute_absent() {
    // Nothing listens on port 1.
    let down = || RedisProvider::new("redis://127.0.0.1:1", "x:", RedisRead::Json).unwrap();
    let pdp = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(Attribute::new(
        "sensitivity",
        KeyBy::Resource,
        down(),
    ));
    let refused = pdp.decide(&request("alice", "/lobby")).await;
    assert!(
        matches!(refused, Err(PdpError::Unavailable { .. })),
        "{refused:?}"
    );

    let omitting = ContextPdp::new(sensitivity_policy())
        .attribute(Attribute::new("sensitivity", KeyBy::Resource, down()).on_error(OnError::Omit));
    let forged = request("alice", "/lobby").with_context("sensitivity", "low");
    let enriched = omitting.enrich(&forged).await.unwrap();
    assert!(
        enriched.context.get("sensitivity").is_none(),
        "absent, not the caller's value"
    );
    assert!(!omitting.decide(&forged).await.unwrap().allowed);
}

#[tokio::test]
async fn redis_garbage_is_refused_not_read_as_a_value() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("warden:test:garbage:");
    let mut r = redis(&url).await;
    let _: () = r.set(format!("{prefix}/a"), "low").await.unwrap(); // not JSON
    let _: () = r.hset(format!("{prefix}/b"), "f", "v").await.unwrap(); // not a string
    let pdp = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(Attribute::new(
        "sensitivity",
        KeyBy::Resource,
        RedisProvider::new(&url, &prefix, RedisRead::Json).unwrap(),
    ));
    for resource in ["/a", "/b"] {
        let refused = pdp.decide(&request("alice", resource)).await;
        assert!(
            matches!(refused, Err(PdpError::Unavailable { .. })),
            "{resource}: {refused:?}"
        );
    }
    let _: () = r
        .del(&[format!("{prefix}/a"), format!("{prefix}/b")])
        .await
        .unwrap();
}

#[tokio::test]
async fn decision_cache_keys_change_with_context_values() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("warden:test:cache:");
    let mut r = redis(&url).await;
    let key = format!("{prefix}/vault");
    let _: () = r.set(&key, "\"low\"").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = Counting(sensitivity_policy(), calls.clone());
    let pdp = ContextPdp::new(DecisionCache::new(inner, CacheConfig::default())).attribute(
        Attribute::new(
            "sensitivity",
            KeyBy::Resource,
            RedisProvider::new(&url, &prefix, RedisRead::Json).unwrap(),
        ),
    );
    let vault = request("alice", "/vault");
    assert!(pdp.decide(&vault).await.unwrap().allowed);
    assert!(pdp.decide(&vault).await.unwrap().allowed);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second decision came from the cache"
    );
    let _: () = r.set(&key, "\"high\"").await.unwrap();
    assert!(
        !pdp.decide(&vault).await.unwrap().allowed,
        "not the cached permit"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let _: () = r.del(&key).await.unwrap();
}

#[tokio::test]
async fn a_cached_attribute_is_reused_within_its_ttl_only() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("warden:test:ttl:");
    let mut r = redis(&url).await;
    let key = format!("{prefix}alice");
    let _: () = r.set(&key, "1").await.unwrap();
    let pdp = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(
        Attribute::new(
            "level",
            KeyBy::Subject,
            RedisProvider::new(&url, &prefix, RedisRead::Json).unwrap(),
        )
        .ttl(Duration::from_millis(300)),
    );
    let alice = request("alice", "/p");
    assert_eq!(pdp.enrich(&alice).await.unwrap().context["level"], 1);
    let _: () = r.set(&key, "2").await.unwrap();
    assert_eq!(
        pdp.enrich(&alice).await.unwrap().context["level"],
        1,
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        pdp.enrich(&alice).await.unwrap().context["level"],
        2,
        "expired"
    );
    let _: () = r.del(&key).await.unwrap();
}

async fn http_store() -> String {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/risk/alice", get(|| async { "{\"score\": 7}" }))
        .route("/risk/garbage", get(|| async { "<html>oops</html>" }))
        .route(
            "/risk/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/risk/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "{\"score\": 0}"
            }),
        )
        .route("/risk/{other}", get(|| async { StatusCode::NOT_FOUND }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/risk/{{key}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_store_answers_values_nulls_and_failures_as_documented() {
    let url = http_store().await;
    let pdp = ContextPdp::new(warden_test::StaticPdp::permit())
        .attribute(Attribute::new(
            "risk",
            KeyBy::Subject,
            HttpProvider::new(&url).unwrap(),
        ))
        .timeout(Duration::from_millis(300));
    let enriched = pdp.enrich(&request("alice", "/p")).await.unwrap();
    assert_eq!(enriched.context["risk"], json!({"score": 7}));
    let unknown = pdp.enrich(&request("bob", "/p")).await.unwrap();
    assert_eq!(unknown.context["risk"], Value::Null, "404 is null");
    for subject in ["garbage", "broken", "..", "slow"] {
        let started = Instant::now();
        let refused = pdp.decide(&request(subject, "/p")).await;
        assert!(
            matches!(refused, Err(PdpError::Unavailable { .. })),
            "{subject}: {refused:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{subject}: bounded by the timeout"
        );
    }
    // Several stores are asked at once: two slow ones cost one timeout, not two.
    let both = ContextPdp::new(warden_test::StaticPdp::permit())
        .attribute(
            Attribute::new("a", KeyBy::Subject, HttpProvider::new(&url).unwrap())
                .on_error(OnError::Omit),
        )
        .attribute(
            Attribute::new("b", KeyBy::Subject, HttpProvider::new(&url).unwrap())
                .on_error(OnError::Omit),
        )
        .timeout(Duration::from_millis(500));
    let started = Instant::now();
    let enriched = both.enrich(&request("slow", "/p")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(enriched.context.is_empty());
}

#[tokio::test]
async fn a_postgres_store_answers_values_nulls_and_failures_as_documented() {
    let Some(url) = postgres_url() else { return };
    let table = format!("inventory_{}", uuid::Uuid::now_v7().simple());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (resource text, sensitivity text, raw text);
             INSERT INTO {table} VALUES ('/vault', 'high', 'not json'), ('/lobby', 'low', '1'), ('/twice', 'a', '1'), ('/twice', 'b', '1');"
        ))
        .await
        .unwrap();
    let provider = |column: &str| {
        PostgresProvider::new(
            &url,
            &format!("SELECT {column} FROM {table} WHERE resource = $1"),
        )
    };
    let pdp = ContextPdp::new(sensitivity_policy()).attribute(Attribute::new(
        "sensitivity",
        KeyBy::Resource,
        provider("to_jsonb(sensitivity)::text"),
    ));
    assert!(
        pdp.decide(&request("alice", "/lobby"))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !pdp.decide(&request("alice", "/vault"))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !pdp.decide(&request("alice", "/none"))
            .await
            .unwrap()
            .allowed,
        "no row: null"
    );
    for (column, resource) in [
        ("raw", "/vault"),                         // text that is not JSON
        ("1", "/vault"),                           // not text
        ("to_jsonb(sensitivity)::text", "/twice"), // two rows for one key
    ] {
        let strict = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(Attribute::new(
            "x",
            KeyBy::Resource,
            provider(column),
        ));
        let refused = strict.decide(&request("alice", resource)).await;
        assert!(
            matches!(refused, Err(PdpError::Unavailable { .. })),
            "{column}: {refused:?}"
        );
    }
    let down = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(Attribute::new(
        "x",
        KeyBy::Resource,
        PostgresProvider::new("postgres://postgres@127.0.0.1:1/test", "SELECT '1'"),
    ));
    assert!(down.decide(&request("alice", "/lobby")).await.is_err());
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn session_history_slides_and_the_clinic_session_policy_steps_up_then_refuses() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("warden:test:history:");
    let manifest_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic-session");
    let manifest = std::fs::read_to_string(format!("{manifest_dir}/warden.toml")).unwrap();
    // The package's own declaration, pointed at this test's server and keys.
    let manifest = manifest
        .replace("redis://127.0.0.1:6379", &url)
        .replace("warden:clinic:history:", &prefix);
    // ANCHOR: wiring
    let attributes = ContextConfig::from_manifest(&manifest)
        .unwrap()
        .attributes()
        .unwrap();
    let pdp = ContextPdp::new(RegoPdp::from_dir(manifest_dir).unwrap()).attributes(attributes);
    let history = SessionHistory::new(&url, &prefix, Duration::from_secs(900)).unwrap();
    // ANCHOR_END: wiring

    let nurse = request("nurse", "/clinics/{clinic_id}/patients");
    let step_up = |d: &Decision| d.obligations.iter().any(|o| o.type_name() == "step_up");
    let first = pdp.decide(&nurse).await.unwrap();
    assert!(first.allowed && !step_up(&first));
    // A caller claiming a clean history changes nothing.
    for i in 0..3 {
        history
            .record("nurse", "deny", &format!("d{i}"))
            .await
            .unwrap();
    }
    let forged = nurse.clone().with_context("recent_denials", 0);
    let third = pdp.decide(&forged).await.unwrap();
    assert!(third.allowed && step_up(&third), "{third:?}");
    for i in 3..5 {
        history
            .record("nurse", "deny", &format!("d{i}"))
            .await
            .unwrap();
    }
    assert!(
        !pdp.decide(&nurse).await.unwrap().allowed,
        "refused after 5"
    );
    // Another subject's history is its own.
    assert!(pdp.decide(&request("doctor", "/p")).await.unwrap().allowed);

    // A PEP records its outcomes through its telemetry.
    let recorder = Arc::new(SessionHistory::new(&url, &prefix, Duration::from_secs(900)).unwrap());
    let telemetry = warden_telemetry::Telemetry::builder()
        .writer(recorder.writer().unwrap())
        .build()
        .unwrap();
    for i in 0..2 {
        let mut event = warden_telemetry::DecisionEvent::new(
            warden_telemetry::Pep::Http,
            "GET",
            "route",
            "/p",
            warden_telemetry::Outcome::Deny,
        );
        event.subject = Some("resident".into());
        event.decision_id = Some(format!("r{i}"));
        telemetry.emit(event);
    }
    telemetry.flush().await;
    let resident = request("resident", "/p");
    let started = Instant::now();
    loop {
        let seen = pdp.enrich(&resident).await.unwrap().context["recent_denials"].clone();
        if seen == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "recorded: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The window slides: old denials stop counting.
    let short = SessionHistory::new(&url, &prefix, Duration::from_millis(300)).unwrap();
    let counter = ContextPdp::new(warden_test::StaticPdp::permit()).attribute(Attribute::new(
        "recent_denials",
        KeyBy::Subject,
        RedisProvider::new(
            &url,
            &prefix,
            RedisRead::RecentDenials {
                window: Duration::from_millis(300),
            },
        )
        .unwrap(),
    ));
    short.record("intern", "deny", "x1").await.unwrap();
    short.record("intern", "permit", "x2").await.unwrap();
    let intern = request("intern", "/p");
    assert_eq!(
        counter.enrich(&intern).await.unwrap().context["recent_denials"],
        1
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        counter.enrich(&intern).await.unwrap().context["recent_denials"],
        0
    );

    let mut r = redis(&url).await;
    for subject in ["nurse", "intern", "resident"] {
        for outcome in ["deny", "permit"] {
            let _: () = r.del(format!("{prefix}{outcome}:{subject}")).await.unwrap();
        }
    }
}
