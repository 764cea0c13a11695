//! The agent against real sources: a file, an HTTP server, NATS JetStream on 127.0.0.1.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_bundle::source::{BundleSource, Channel, FileSource, HttpSource, NatsSource};
use warden_bundle::{
    Activation, Agent, AgentConfig, BundleBuilder, BundleError, InstanceStatus, Offered, Scope,
    SecretKey, Verifier,
};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warden-bundle-{name}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A package `id` whose policy permits when `allow` says so, for the regions given.
fn package(root: &Path, id: &str, allow: bool, regions: &[&str]) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let regions: Vec<String> = regions.iter().map(|r| format!("{r:?}")).collect();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "id = \"{id}\"\nversion = \"1.0.0\"\nentrypoint = \"data.{p}.decision\"\nregions = [{}]\n",
            regions.join(", "),
            p = id.replace('-', "_")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.rego"),
        format!(
            "package {}\n\ndefault decision := {{\"allow\": {allow}}}\n",
            id.replace('-', "_")
        ),
    )
    .unwrap();
    dir
}

/// A signed bundle of `dirs` at `revision`. Its creation time is fixed, so two builds of
/// the same packages at the same revision are the same bytes, as a rebuild in a release
/// pipeline is meant to be (the builder's default, the current second, would make them
/// differ across a second boundary).
fn bundle(revision: u64, dirs: &[PathBuf], key: &SecretKey) -> Vec<u8> {
    dirs.iter()
        .fold(
            BundleBuilder::new(revision).created(1_700_000_000 + revision),
            |b, d| b.package(d).unwrap(),
        )
        .build(Some(key))
        .unwrap()
}

/// Records what the agent activated: (revision, package ids).
type Log = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

fn recorder() -> (
    Log,
    impl FnMut(&Activation<'_>) -> Result<(), String> + Send + 'static,
) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let activate = move |a: &Activation<'_>| {
        for (_, dir) in &a.packages {
            // What is activated is on disk, whole.
            assert!(dir.join("warden.toml").is_file());
            assert!(dir.join("policy.rego").is_file());
        }
        sink.lock().unwrap().push((
            a.bundle.revision(),
            a.packages.iter().map(|(p, _)| p.id.clone()).collect(),
        ));
        Ok(())
    };
    (log, activate)
}

fn config(name: &str, key: &SecretKey, state: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(name, Verifier::new(vec![key.public_key()]), state);
    config.reconcile = Duration::from_millis(500);
    config.startup_timeout = Duration::from_secs(2);
    config
}

async fn wait_for(
    status: &mut tokio::sync::watch::Receiver<InstanceStatus>,
    within: Duration,
    what: impl Fn(&InstanceStatus) -> bool,
) -> InstanceStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        {
            let current = status.borrow_and_update();
            if what(&current) {
                return current.clone();
            }
        }
        if tokio::time::timeout_at(deadline, status.changed())
            .await
            .is_err()
        {
            let current = status.borrow().clone();
            panic!("not reached within {within:?}: {current:?}");
        }
    }
}

#[test]
fn tampered_stale_and_conflicting_bundles_are_refused_and_the_old_revision_stays() {
    let root = temp("refusals");
    let key = SecretKey::generate().unwrap();
    let p1 = package(&root.join("v1"), "orders", true, &[]);
    let p2 = package(&root.join("v2"), "orders", false, &[]);
    let (log, activate) = recorder();
    let state = root.join("state");
    let mut agent = Agent::new(
        Box::new(FileSource::new(root.join("none"))),
        config("a", &key, &state),
        activate,
    );
    assert_eq!(
        agent
            .offer(&bundle(2, std::slice::from_ref(&p1), &key))
            .unwrap(),
        Offered::Activated { revision: 2 }
    );
    assert_eq!(
        agent
            .offer(&bundle(2, std::slice::from_ref(&p1), &key))
            .unwrap(),
        Offered::Unchanged
    );

    // Truncated, tampered, signed by someone else, unsigned: each refused.
    let good = bundle(3, std::slice::from_ref(&p2), &key);
    assert!(matches!(
        agent.offer(&good[..good.len() - 10]),
        Err(BundleError::Archive(_))
    ));
    let stranger = SecretKey::generate().unwrap();
    assert!(matches!(
        agent.offer(&bundle(3, std::slice::from_ref(&p2), &stranger)),
        Err(BundleError::Signature(_))
    ));
    let unsigned = BundleBuilder::new(3)
        .package(&p2)
        .unwrap()
        .build(None)
        .unwrap();
    assert!(matches!(agent.offer(&unsigned), Err(BundleError::Unsigned)));
    // Older, and the same revision with other content: replaying history is refused.
    assert!(matches!(
        agent.offer(&bundle(1, std::slice::from_ref(&p2), &key)),
        Err(BundleError::Stale { .. })
    ));
    let error = agent
        .offer(&bundle(2, std::slice::from_ref(&p2), &key))
        .unwrap_err();
    assert!(
        error.to_string().contains("same revision, other content"),
        "{error}"
    );
    assert_eq!(agent.revision(), Some(2));
    let status = agent.status().borrow().clone();
    assert_eq!(status.revision, Some(2));
    assert_eq!(status.refusals, 5);
    assert!(status.last_error.is_some());

    // A package that does not load is refused too, and nothing changes.
    let mut failing = Agent::new(
        Box::new(FileSource::new(root.join("none"))),
        config("b", &key, &root.join("state-b")),
        |_: &Activation<'_>| Err("policy.rego:3: unexpected token".to_owned()),
    );
    assert!(failing.offer(&good).is_err());
    assert_eq!(failing.revision(), None);
    assert!(
        !root
            .join("state-b")
            .join(warden_bundle::agent::PERSISTED_BUNDLE)
            .exists()
    );

    // The next good one goes through, and was persisted.
    assert_eq!(
        agent.offer(&good).unwrap(),
        Offered::Activated { revision: 3 }
    );
    assert_eq!(
        std::fs::read(state.join(warden_bundle::agent::PERSISTED_BUNDLE)).unwrap(),
        good
    );
    assert_eq!(
        log.lock()
            .unwrap()
            .iter()
            .map(|(r, _)| *r)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn only_the_packages_of_the_instance_region_are_activated() {
    let root = temp("regions");
    let key = SecretKey::generate().unwrap();
    let global = package(&root, "global", true, &[]);
    let eu = package(&root, "gdpr", false, &["eu-west", "eu-central"]);
    let bytes = bundle(1, &[global, eu], &key);
    let activated = |region: Option<&str>| {
        let (log, activate) = recorder();
        let mut cfg = config("r", &key, &root.join(format!("state-{region:?}")));
        cfg.scope = Scope::new(region, Some("production"));
        let mut agent = Agent::new(Box::new(FileSource::new(root.join("none"))), cfg, activate);
        agent.offer(&bytes).unwrap();
        log.lock().unwrap()[0].1.clone()
    };
    assert_eq!(activated(Some("eu-west")), ["global", "gdpr"]);
    assert_eq!(activated(Some("us-east")), ["global"]);
    assert_eq!(activated(None), ["global"]);

    // Environments scope the same way.
    let staging_dir = root.join("staging");
    let staging = package(&staging_dir, "canary", false, &[]);
    let manifest = std::fs::read_to_string(staging.join("warden.toml")).unwrap();
    std::fs::write(
        staging.join("warden.toml"),
        format!("{manifest}environments = [\"staging\"]\n"),
    )
    .unwrap();
    let mixed = bundle(
        3,
        &[package(&staging_dir, "base", true, &[]), staging],
        &key,
    );
    for (environment, want) in [
        ("staging", vec!["base", "canary"]),
        ("production", vec!["base"]),
    ] {
        let (log, activate) = recorder();
        let mut cfg = config("e", &key, &root.join(format!("state-{environment}")));
        cfg.scope = Scope::new(Some("us-east"), Some(environment));
        let mut agent = Agent::new(Box::new(FileSource::new(root.join("none"))), cfg, activate);
        agent.offer(&mixed).unwrap();
        assert_eq!(log.lock().unwrap()[0].1, want, "{environment}");
    }

    // A bundle with nothing for this region is refused, not activated empty.
    let only_eu = bundle(
        2,
        &[package(&root.join("x"), "gdpr", false, &["eu-west"])],
        &key,
    );
    let (_, activate) = recorder();
    let mut cfg = config("us", &key, &root.join("state-us"));
    cfg.scope = Scope::new(Some("us-east"), None);
    let mut agent = Agent::new(Box::new(FileSource::new(root.join("none"))), cfg, activate);
    assert!(matches!(
        agent.offer(&only_eu),
        Err(BundleError::NoPackage { .. })
    ));
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_with_the_source_down_serves_the_persisted_bundle() {
    let root = temp("cold");
    let key = SecretKey::generate().unwrap();
    let file = root.join("bundle.tar.gz");
    std::fs::write(
        &file,
        bundle(5, &[package(&root, "orders", true, &[])], &key),
    )
    .unwrap();
    let state = root.join("state");

    let (_, activate) = recorder();
    let agent = Agent::new(
        Box::new(FileSource::new(&file)),
        config("c", &key, &state),
        activate,
    );
    let mut status = agent.status();
    let running = tokio::spawn(agent.run());
    wait_for(&mut status, Duration::from_secs(5), |s| {
        s.revision == Some(5)
    })
    .await;
    running.abort();

    // The source is gone; a new instance starts from what was persisted.
    std::fs::remove_file(&file).unwrap();
    let (log, activate) = recorder();
    let agent = Agent::new(
        Box::new(FileSource::new(&file)),
        config("c", &key, &state),
        activate,
    );
    let mut status = agent.status();
    let running = tokio::spawn(agent.run());
    let now = wait_for(&mut status, Duration::from_secs(5), |s| {
        s.revision == Some(5)
    })
    .await;
    assert!(now.from_persisted);
    assert_eq!(now.cold_starts, 1);
    assert_eq!(log.lock().unwrap().len(), 1);
    // The source is still down: the error says so, and the persisted revision serves on.
    let now = wait_for(&mut status, Duration::from_secs(5), |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(now.last_error.unwrap().contains("cannot read"));
    // The source is back with the bundle in force: its error is over.
    let persisted_bytes =
        std::fs::read(state.join(warden_bundle::agent::PERSISTED_BUNDLE)).unwrap();
    std::fs::write(&file, &persisted_bytes).unwrap();
    let now = wait_for(&mut status, Duration::from_secs(5), |s| {
        s.last_error.is_none()
    })
    .await;
    assert_eq!(now.revision, Some(5));
    std::fs::remove_file(&file).unwrap();

    // A restart is no chance to replay an older bundle: the persisted revision is the floor,
    // even before anything is active.
    running.abort();
    std::fs::write(
        &file,
        bundle(4, &[package(&root.join("old"), "orders", false, &[])], &key),
    )
    .unwrap();
    let (log, activate) = recorder();
    let mut agent = Agent::new(
        Box::new(FileSource::new(&file)),
        config("c", &key, &state),
        activate,
    );
    agent.load_floor();
    let replayed = std::fs::read(&file).unwrap();
    let error = agent.offer(&replayed).unwrap_err();
    assert!(error.to_string().contains("persisted"), "{error}");
    assert!(log.lock().unwrap().is_empty());
    let agent = Agent::new(
        Box::new(FileSource::new(&file)),
        config("c", &key, &state),
        |_: &Activation<'_>| Ok(()),
    );
    let mut status = agent.status();
    let running = tokio::spawn(agent.run());
    let now = wait_for(&mut status, Duration::from_secs(5), |s| {
        s.revision.is_some()
    })
    .await;
    assert_eq!(
        now.revision,
        Some(5),
        "the replayed revision 4 won over the persisted 5"
    );
    assert!(now.from_persisted);

    // A persisted bundle is verified again: one that was tampered with on disk is not used.
    running.abort();
    let persisted = state.join(warden_bundle::agent::PERSISTED_BUNDLE);
    let mut bytes = std::fs::read(&persisted).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&persisted, bytes).unwrap();
    let (log, activate) = recorder();
    let mut agent = Agent::new(
        Box::new(FileSource::new(&file)),
        config("c", &key, &state),
        activate,
    );
    assert!(agent.activate_persisted().is_err());
    assert!(log.lock().unwrap().is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A bundle server with `ETag`, `If-None-Match` and `Prefer: wait=N` long polling.
async fn bundle_server(current: Arc<tokio::sync::watch::Sender<Vec<u8>>>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/bundle.tar.gz",
        axum::routing::get(move |headers: HeaderMap| {
            let current = current.clone();
            async move {
                let etag = |bytes: &[u8]| {
                    format!(
                        "\"{}\"",
                        bytes.len() + bytes.iter().map(|b| usize::from(*b)).sum::<usize>()
                    )
                };
                let mut watch = current.subscribe();
                let wait = headers
                    .get("prefer")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("wait="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let seen = headers
                    .get("if-none-match")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
                loop {
                    let bytes = watch.borrow_and_update().clone();
                    let tag = etag(&bytes);
                    if seen.as_deref() != Some(tag.as_str()) {
                        return ([("etag", tag)], bytes).into_response();
                    }
                    if tokio::time::timeout_at(deadline, watch.changed())
                        .await
                        .is_err()
                    {
                        return StatusCode::NOT_MODIFIED.into_response();
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/bundle.tar.gz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_source_long_polls_and_sees_a_new_bundle_at_once() {
    let root = temp("http");
    let key = SecretKey::generate().unwrap();
    let v1 = bundle(1, &[package(&root.join("1"), "orders", true, &[])], &key);
    let v2 = bundle(2, &[package(&root.join("2"), "orders", false, &[])], &key);
    let current = Arc::new(tokio::sync::watch::Sender::new(v1));
    let url = bundle_server(current.clone()).await;

    let mut source = HttpSource::new(&url).unwrap();
    assert!(source.poll(Duration::ZERO).await.unwrap().is_some());
    // Nothing changed: a 304, after the wait.
    let started = Instant::now();
    assert!(source.poll(Duration::from_secs(1)).await.unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let (_, activate) = recorder();
    let mut cfg = config("h", &key, &root.join("state"));
    cfg.reconcile = Duration::from_secs(20);
    let agent = Agent::new(Box::new(HttpSource::new(&url).unwrap()), cfg, activate);
    let mut status = agent.status();
    let running = tokio::spawn(agent.run());
    wait_for(&mut status, Duration::from_secs(5), |s| {
        s.revision == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The agent is in a 20 s long poll: the new bundle must reach it well before.
    let published = Instant::now();
    current.send_replace(v2);
    wait_for(&mut status, Duration::from_secs(3), |s| {
        s.revision == Some(2)
    })
    .await;
    assert!(
        published.elapsed() < Duration::from_secs(2),
        "{:?}",
        published.elapsed()
    );
    running.abort();

    // A source that answers garbage is an error, not an activation.
    current.send_replace(b"<html>maintenance</html>".to_vec());
    let (log, activate) = recorder();
    let mut agent = Agent::new(
        Box::new(FileSource::new(root.join("none"))),
        config("g", &key, &root.join("g")),
        activate,
    );
    let garbage = HttpSource::new(&url)
        .unwrap()
        .poll(Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(agent.offer(&garbage).is_err());
    assert!(log.lock().unwrap().is_empty());
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_channel_delivers_new_bundles_and_refuses_tampered_ones() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_NATS_URL", "the NATS bundle source test")
    else {
        return;
    };
    let root = temp("nats");
    let key = SecretKey::generate().unwrap();
    let bucket = format!("warden-test-bundles-{}", uuid_like());
    let channel = Channel::connect(&url)
        .await
        .unwrap()
        .bundle_bucket(bucket.clone());
    let publish = |revision: u64, allow: bool| {
        let bytes = bundle(
            revision,
            &[package(
                &root.join(revision.to_string()),
                "orders",
                allow,
                &[],
            )],
            &key,
        );
        let verified = Verifier::new(vec![key.public_key()])
            .verify(&bytes)
            .unwrap();
        (bytes, verified.digest().to_owned())
    };
    let (v1, d1) = publish(1, true);
    channel.publish("staging", 1, &d1, &v1).await.unwrap();

    let spec = format!("{}/staging?bucket={bucket}", url.trim_end_matches('/'));
    let (_, activate) = recorder();
    let mut cfg = config("n", &key, &root.join("state"));
    cfg.reconcile = Duration::from_secs(20);
    let agent = Agent::new(Box::new(NatsSource::parse(&spec).unwrap()), cfg, activate);
    let mut status = agent.status();
    let running = tokio::spawn(agent.run());
    wait_for(&mut status, Duration::from_secs(5), |s| {
        s.revision == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A notification, not the 20 s reconcile, brings revision 2.
    let (v2, d2) = publish(2, false);
    let published = Instant::now();
    channel.publish("staging", 2, &d2, &v2).await.unwrap();
    wait_for(&mut status, Duration::from_secs(3), |s| {
        s.revision == Some(2)
    })
    .await;
    assert!(published.elapsed() < Duration::from_secs(2));

    // The channel refuses to go back; a bundle put there anyway is refused by the agent.
    let (v1b, d1b) = publish(1, false);
    assert!(channel.publish("staging", 1, &d1b, &v1b).await.is_err());
    let (mut v3, d3) = publish(3, true);
    let middle = v3.len() / 2;
    v3[middle] ^= 0x55;
    channel.publish("staging", 3, &d3, &v3).await.unwrap();
    let now = wait_for(&mut status, Duration::from_secs(3), |s| s.refusals >= 1).await;
    assert_eq!(now.revision, Some(2));
    // Another channel of the same bucket does not disturb this one.
    channel.publish("production", 1, &d1, &v1).await.unwrap();
    assert_eq!(
        channel.head("production").await.unwrap().unwrap().revision,
        1
    );
    let (v4, d4) = publish(4, true);
    channel.publish("staging", 4, &d4, &v4).await.unwrap();
    let now = wait_for(&mut status, Duration::from_secs(3), |s| {
        s.revision == Some(4)
    })
    .await;
    assert!(now.last_error.is_none());
    running.abort();

    // Status goes to the KV bucket and comes back.
    let status_channel = channel.clone().status_bucket(format!("{bucket}-status"));
    status_channel.put_status(&now).await.unwrap();
    let all = status_channel.all_status().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].revision, Some(4));
    status_channel.delete_buckets().await.unwrap();
    assert!(channel.head("staging").await.is_err());
    std::fs::remove_dir_all(&root).unwrap();
}
