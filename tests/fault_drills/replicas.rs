//! The replica drill: a `PolicyLayer` under concurrent load, deciding through `Replicas` over
//! three PDP server processes on 127.0.0.1 that are killed, stopped and continued, replaced by
//! one answering garbage, and switched to new, broken and restored policy revisions.
//!
//! The processes are this test binary started again in the ignored test `drill_pdp_process`,
//! which runs `warden_server::Server` (what `warden serve` runs) on a port and a policy
//! directory the drill gives it, reloading the directory every 50 ms.
//!
//! Oracles: no forward without a permit a PDP gave for that request (a nurse of c1 reading c1,
//! under a revision a server really had); every stale decision younger than its bound when
//! served; no permit under an old revision later than 1 s after the first replica switched; the
//! breaker opens and closes; the events and metrics add up; no panic anywhere. The figures
//! (propagation after each switch, requests refused while one replica was killed) are printed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use warden_decision::{BreakerConfig, BreakerState, CacheConfig, FallbackMode, PdpExt};
use warden_http::{Authorized, PolicyLayer};
use warden_remote::Replicas;
use warden_server::Server;
use warden_telemetry::{DecisionEvent, Telemetry};

use super::{Drill, PATIENT, Seen, check_counts, nurse};

const STALE_BOUND: Duration = Duration::from_secs(3);
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

/// The PDP server process of the drill (not a test of its own: the drill starts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the PDP process of the replica drill, started by it"]
async fn drill_pdp_process() {
    let Ok(addr) = std::env::var("WARDEN_DRILL_ADDR") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    match std::env::var("WARDEN_DRILL_MODE").as_deref() {
        Ok("garbage") => {
            let router = Router::new()
                .route(
                    "/access/v1/evaluation",
                    // A permit whose obligations cannot be read: never to be enforced.
                    post(|| async {
                        let body =
                            r#"{"decision": true, "context": {"obligations": [{"type": 7}]}}"#;
                        (StatusCode::OK, body).into_response()
                    }),
                )
                .route("/health", get(|| async { "ok" }));
            axum::serve(listener, router).await.unwrap();
        }
        _ => {
            let dir = std::env::var("WARDEN_DRILL_POLICY").unwrap();
            Server::builder()
                .policy_dir(dir)
                .watch(Duration::from_millis(50))
                .build()
                .serve(listener, std::future::pending())
                .await
                .unwrap();
        }
    }
}

/// One replica: its port and the process serving it.
struct Replica {
    addr: SocketAddr,
    child: Option<Child>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn start(&mut self, policy: &Path, mode: &str) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "replicas::drill_pdp_process",
                "--test-threads=1",
            ])
            .env("WARDEN_DRILL_ADDR", self.addr.to_string())
            .env("WARDEN_DRILL_POLICY", policy)
            .env("WARDEN_DRILL_MODE", mode)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} failed");
        }
    }

    /// Whether the process is still running (it must never exit on its own).
    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A plain HTTP/1.1 GET: the status and the body, or `None` when there is no answer within
/// 300 ms.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_millis(300), exchange)
        .await
        .ok()
        .flatten()
}

async fn wait_ready(addr: SocketAddr) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if http_get(addr, "/health")
            .await
            .is_some_and(|(status, _)| status == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replica {addr} did not become ready");
}

/// A copy of the clinic package the drill changes.
fn policy_copy() -> PathBuf {
    let unique = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("warden-drill-{}-{unique}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = warden_tests::clinic_policy_dir();
    for name in ["clinic.rego", "data.json", "warden.toml"] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    dir
}

/// The policy data: with `nurses` the nurse may read c1's patients, without she may not;
/// `variant` changes the content (and so the revision) without changing the decisions.
fn write_data(dir: &Path, nurses: bool, variant: usize) {
    let care = if nurses {
        r#"["doctor", "nurse"]"#
    } else {
        r#"["doctor"]"#
    };
    let text = format!(
        "{{\"clinic_config\": {{\"step_up\": {{\"acr_values\": \"urn:warden:mfa\", \"max_age\": 300}},\n  \"care_roles\": {care}, \"staff_roles\": [\"doctor\", \"nurse\", \"admin\", \"auditor\"]}}}}{}\n",
        " ".repeat(variant)
    );
    write_atomically(dir, "data.json", &text);
}

fn write_atomically(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

/// What the drill's monitor saw of the replicas' revisions.
#[derive(Default)]
struct Revisions {
    /// Every revision a replica reported.
    all: BTreeSet<String>,
    /// (when the first replica reported it, the revision), in order.
    switches: Vec<(Instant, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_both_promises_through_kills_stops_garbage_and_new_revisions() {
    let policy = policy_copy();
    write_data(&policy, true, 0);
    let mut replicas: Vec<Replica> = (0..3)
        .map(|_| Replica {
            addr: free_addr(),
            child: None,
        })
        .collect();
    for replica in &mut replicas {
        replica.start(&policy, "serve");
    }
    for replica in &replicas {
        wait_ready(replica.addr).await;
    }

    let set = Replicas::authzen(replicas.iter().map(Replica::url))
        .configure(|e| {
            e.timeout(Duration::from_millis(150))
                .revalidate_every(Duration::from_millis(500))
        })
        .deadline(Duration::from_millis(400))
        .health_every(Some(Duration::from_millis(200)))
        .eject_after(3, Duration::from_millis(500))
        .retry_budget(0.3)
        .max_in_flight(32)
        .build()
        .unwrap();
    let stats_of = set.clone();
    let breaker = Arc::new(
        set.with_breaker(
            BreakerConfig::default()
                .consecutive_failures(8)
                .open_for(Duration::from_millis(300))
                .ramp_up(Duration::from_millis(300)),
        ),
    );
    let stack = breaker
        .clone()
        .with_cache(CacheConfig::default().ttl(Duration::from_secs(5)))
        .with_fallback(FallbackMode::Stale {
            max_age: STALE_BOUND,
        });

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let telemetry = Telemetry::builder()
        .capacity(200_000)
        .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let forwards = Arc::new(AtomicUsize::new(0));
    let counted = forwards.clone();
    let app = Router::new()
        .route(
            PATIENT,
            get(move |authorized: Authorized| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::to_value(authorized.decision()).unwrap())
                }
            }),
        )
        .layer(
            PolicyLayer::new(stack)
                .decision_timeout(Duration::from_secs(1))
                .telemetry(telemetry.clone()),
        );

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(Seen, SystemTime)>::new()));
    let mut workers = Vec::new();
    for worker in 0..8_usize {
        let (app, stop, seen) = (app.clone(), stop.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let clinic = if i % 4 == 0 { "c2" } else { "c1" };
                let patient = i % 5;
                let mut request = Request::get(format!("/clinics/{clinic}/patients/p{patient}"))
                    .body(Body::empty())
                    .unwrap();
                request.extensions_mut().insert(nurse());
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let decision = (status == StatusCode::OK)
                    .then(|| serde_json::from_slice::<Value>(&body).unwrap());
                let seen_at = Seen {
                    clinic,
                    status,
                    decision,
                    at: Instant::now(),
                };
                seen.lock().unwrap().push((seen_at, SystemTime::now()));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    // The monitor: the replicas' revisions as they report them, and the breaker's state.
    let revisions = Arc::new(Mutex::new(Revisions::default()));
    let opened = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (revisions, stop, opened, breaker) = (
            revisions.clone(),
            stop.clone(),
            opened.clone(),
            breaker.clone(),
        );
        let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if breaker.state() == BreakerState::Open {
                    opened.store(true, Ordering::SeqCst);
                }
                for addr in &addrs {
                    let Some((200, body)) = http_get(*addr, "/v1/revision").await else {
                        continue;
                    };
                    let Ok(body) = serde_json::from_str::<Value>(&body) else {
                        continue;
                    };
                    let Some(revision) = body["revision"].as_str() else {
                        continue;
                    };
                    // Every revision of the drill is new (no rollback): the first replica to
                    // report one marks the switch; a replica behind reports a known one.
                    let mut r = revisions.lock().unwrap();
                    if r.all.insert(revision.to_owned()) {
                        r.switches.push((Instant::now(), revision.to_owned()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let drill_started = Instant::now();
    let phase = |name: &str| eprintln!("{:>6} ms  {name}", drill_started.elapsed().as_millis());
    tokio::time::sleep(Duration::from_millis(800)).await;

    phase("kill replica 0");
    let failover_from = Instant::now();
    replicas[0].kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let failover_to = Instant::now();
    replicas[0].start(&policy, "serve");
    wait_ready(replicas[0].addr).await;
    phase("replica 0 back");
    tokio::time::sleep(Duration::from_millis(500)).await;

    phase("stop replica 1 (SIGSTOP)");
    replicas[1].signal("-STOP");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    replicas[1].signal("-CONT");
    phase("replica 1 continued");
    tokio::time::sleep(Duration::from_millis(500)).await;

    phase("replica 2 answers garbage");
    replicas[2].kill();
    replicas[2].start(&policy, "garbage");
    wait_ready(replicas[2].addr).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    replicas[2].kill();
    replicas[2].start(&policy, "serve");
    wait_ready(replicas[2].addr).await;
    phase("replica 2 serves again");
    tokio::time::sleep(Duration::from_millis(500)).await;

    phase("revision: nurses may no longer read");
    write_data(&policy, false, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase("revision: nurses may read again");
    write_data(&policy, true, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase("broken revision (kept out: the last good one stays)");
    write_atomically(&policy, "data.json", "{\"clinic_config\": ");
    tokio::time::sleep(Duration::from_millis(800)).await;
    phase("revision: fixed");
    write_data(&policy, true, 2);
    // Soon after the switch every key was decided again: the decisions are young enough for
    // the stale fallback when every replica stops.
    tokio::time::sleep(Duration::from_millis(700)).await;

    phase("stop every replica");
    for replica in &replicas {
        replica.signal("-STOP");
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for replica in &replicas {
        replica.signal("-CONT");
    }
    phase("every replica continued");
    tokio::time::sleep(Duration::from_millis(2000)).await;

    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker panicked");
    }
    monitor.await.expect("the monitor panicked");
    let breaker_at_end = breaker.state();
    for (i, replica) in replicas.iter_mut().enumerate() {
        assert!(replica.alive(), "replica {i} exited on its own");
    }
    telemetry.flush().await;
    let seen = seen.lock().unwrap().clone();
    let revisions = std::mem::take(&mut *revisions.lock().unwrap());
    let stats = stats_of.stats();
    eprintln!("replica stats: {stats:?}");

    // Every forward had a permit a PDP gave for that request, under a revision it had.
    for (s, _) in &seen {
        if s.status != StatusCode::OK {
            continue;
        }
        let d = s.decision.as_ref().unwrap();
        assert_eq!(d["decision"], true, "forwarded without a permit: {d}");
        assert_eq!(s.clinic, "c1", "the policy never permits c2: {d}");
        assert_eq!(d["policy"]["id"], "clinic");
        let revision = d["policy"]["revision"].as_str().unwrap();
        assert!(
            revisions.all.contains(revision),
            "revision {revision} was never served"
        );
        assert_ne!(d["fallback"], "fail_open");
    }
    // Every stale decision was younger than its bound when served.
    let mut stale = 0;
    for (s, when) in &seen {
        let Some(d) = s.decision.as_ref().filter(|d| d["fallback"] == "stale") else {
            continue;
        };
        stale += 1;
        let decision: warden_decision::Decision = serde_json::from_value(d.clone()).unwrap();
        let made = decision
            .decided_at
            .expect("a stale decision says when it was made");
        let age = when.duration_since(made).unwrap_or_default();
        assert!(
            age < STALE_BOUND + Duration::from_millis(50),
            "stale decision {age:?} old"
        );
    }
    // No permit under an old revision later than the bound after the first replica switched.
    let mut propagation = Vec::new();
    let order = |revision: &str| revisions.switches.iter().position(|(_, r)| r == revision);
    for (i, (switched, revision)) in revisions.switches.iter().enumerate().skip(1) {
        let until = revisions
            .switches
            .get(i + 1)
            .map_or(Instant::now(), |(at, _)| *at);
        let old_permits: Vec<&Seen> = seen
            .iter()
            .map(|(s, _)| s)
            .filter(|s| s.at > *switched && s.at < until && s.status == StatusCode::OK)
            .filter(|s| {
                // Old: in force before this switch. (A newer one may show up before the monitor
                // noticed it: the PEP's watch is quicker than the monitor's polls.)
                let theirs = s.decision.as_ref().unwrap()["policy"]["revision"].clone();
                order(theirs.as_str().unwrap_or_default()).is_none_or(|n| n < i)
            })
            .collect();
        let last = old_permits
            .iter()
            .map(|s| s.at)
            .max()
            .map_or(Duration::ZERO, |at| at.duration_since(*switched));
        if let Some(offender) = old_permits.last().filter(|_| last > PROPAGATION_BOUND) {
            panic!(
                "a permit under an old revision {last:?} after the switch to {revision} (switch {i}, {:?} into the drill): {}",
                switched.duration_since(drill_started),
                offender.decision.as_ref().unwrap()
            );
        }
        propagation.push(last);
    }
    propagation.sort();
    // The breaker opened while every replica was stopped and closed after.
    assert!(opened.load(Ordering::SeqCst), "the breaker never opened");
    assert_eq!(
        breaker_at_end,
        BreakerState::Closed,
        "the breaker did not close"
    );
    // The counts add up.
    let drill = Drill {
        seen: seen.iter().map(|(s, _)| s.clone()).collect(),
        forwards: forwards.load(Ordering::SeqCst),
        events: events.lock().unwrap().clone(),
        telemetry,
        breaker_opened: true,
        breaker_at_end,
    };
    check_counts(&drill);
    let during_failover: Vec<&Seen> = drill
        .seen
        .iter()
        .filter(|s| s.at > failover_from && s.at < failover_to)
        .collect();
    let refused = during_failover
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let count = |status| drill.seen.iter().filter(|s| s.status == status).count();
    println!(
        "replica drill: {} requests ({} forwarded, {} denied, {} unavailable, {stale} stale); \
         {} switches, old-revision permits stopped after p50 {:?} / max {:?}; \
         {refused} of {} requests refused while one of three replicas was killed",
        drill.seen.len(),
        count(StatusCode::OK),
        count(StatusCode::FORBIDDEN),
        count(StatusCode::SERVICE_UNAVAILABLE),
        propagation.len(),
        propagation
            .get(propagation.len() / 2)
            .copied()
            .unwrap_or_default(),
        propagation.last().copied().unwrap_or_default(),
        during_failover.len(),
    );
    assert!(
        revisions.switches.len() >= 4,
        "the drill saw {} revisions: {:?}",
        revisions.switches.len(),
        revisions
            .switches
            .iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
    );
    drop(replicas);
    let _ = std::fs::remove_dir_all(&policy);
}
