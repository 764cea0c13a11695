//! A fleet on 127.0.0.1: a private NATS JetStream server, five `warden serve --bundle`
//! processes (one per region), bundles built, signed and published with the `warden` command.
//! Propagation is measured; a 30 s partition between the instances and NATS, a cold start with
//! the channel down, tampered bundles and region scoping are checked.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
const RECONCILE: Duration = Duration::from_secs(5);

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

fn run(args: &[&str]) -> Output {
    let output = warden().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "warden {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A private nats-server with JetStream, on its own port and store.
struct Nats {
    child: Child,
}

impl Nats {
    fn start(port: u16, store: &Path) -> Self {
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy between the instances and NATS that can cut every connection: a partition of
/// the instances from the channel, while the publisher still reaches it.
struct Partition {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    port: u16,
}

impl Partition {
    fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (flag, open) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = open.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { up, conns, port }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// One `warden serve --bundle` process.
struct Instance {
    name: String,
    child: Child,
    addr: String,
}

impl Instance {
    fn start(name: &str, region: &str, source: &str, key: &Path, state: &Path) -> Self {
        let mut child = warden()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--bundle",
                source,
                "--bundle-key",
            ])
            .arg(key)
            .args([
                "--region",
                region,
                "--environment",
                "production",
                "--instance",
                name,
            ])
            .args([
                "--reconcile",
                &format!("{}s", RECONCILE.as_secs()),
                "--state-dir",
            ])
            .arg(state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches(',')
            .to_owned();
        Self {
            name: name.to_owned(),
            child,
            addr,
        }
    }

    fn status(&self) -> Option<Value> {
        http(&self.addr, "GET", "/status", None).map(|(_, body)| body)
    }

    /// The bundle revision in force, if any.
    fn revision(&self) -> Option<u64> {
        self.status()?["bundle"]["revision"].as_u64()
    }

    fn decide(&self) -> bool {
        let request = json!({
            "subject": {"type": "user", "id": "u"},
            "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/orders"}
        });
        let (code, body) =
            http(&self.addr, "POST", "/access/v1/evaluation", Some(&request)).unwrap();
        assert_eq!(code, 200, "{body}");
        body["decision"].as_bool().unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client: status and JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A package whose policy permits or denies everything, for some regions.
fn package(root: &Path, id: &str, allow: bool, regions: &[&str], note: &str) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let module = id.replace('-', "_");
    let regions: Vec<String> = regions.iter().map(|r| format!("{r:?}")).collect();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "id = \"{id}\"\nversion = \"1.0.0\"\nentrypoint = \"data.{module}.decision\"\nregions = [{}]\n",
            regions.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.rego"),
        format!("package {module}\n\n# {note}\ndefault decision := {{\"allow\": {allow}}}\n"),
    )
    .unwrap();
    dir
}

struct Fleet {
    root: PathBuf,
    nats_url: String,
}

impl Fleet {
    /// Builds revision `revision` (the global package permits, the `eu` one denies) and
    /// publishes it to `production`.
    fn publish(&self, revision: u64, key: &str) -> Duration {
        let dir = self.root.join(format!("src-{revision}"));
        let global = package(&dir, "orders", true, &[], &format!("revision {revision}"));
        let eu = package(&dir, "eu-hold", false, &["eu-west"], "held in the EU");
        let out = self.root.join(format!("bundle-{revision}.tar.gz"));
        run(&[
            "build",
            global.to_str().unwrap(),
            eu.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--revision",
            &revision.to_string(),
            "--key",
            key,
        ]);
        let started = Instant::now();
        run(&[
            "publish",
            out.to_str().unwrap(),
            "--channel",
            "production",
            "--nats",
            &self.nats_url,
        ]);
        started.elapsed()
    }
}

fn wait_all(instances: &[Instance], revision: u64, within: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut reached = vec![None; instances.len()];
    while reached.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < within,
            "not every instance reached revision {revision} within {within:?}: {:?}",
            instances.iter().map(Instance::status).collect::<Vec<_>>()
        );
        for (i, instance) in instances.iter().enumerate() {
            if reached[i].is_none() {
                let seen = instance.revision();
                if let Some(seen) = seen {
                    assert!(
                        seen <= revision,
                        "{} went past {revision}: {seen}",
                        instance.name
                    );
                }
                if seen == Some(revision) {
                    reached[i] = Some(started.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reached.into_iter().map(Option::unwrap).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[test]
fn a_fleet_of_five_propagates_converges_after_a_partition_and_cold_starts() {
    if warden_test_nats().is_none() {
        return;
    }
    let root = temp("five");
    let keys = root.join("keys/fleet");
    run(&["keygen", "-o", keys.to_str().unwrap()]);
    let secret = keys.with_extension("key");
    let public = keys.with_extension("pub");
    let nats_port = free_port();
    let _nats = Nats::start(nats_port, &root.join("jetstream"));
    let fleet = Fleet {
        root: root.clone(),
        nats_url: format!("nats://127.0.0.1:{nats_port}"),
    };
    let partition = Partition::start(nats_port);
    let source = format!("nats://127.0.0.1:{}/production", partition.port);
    fleet.publish(1, secret.to_str().unwrap());

    let regions = ["eu-west", "us-east", "ap-south", "eu-central", "us-west"];
    let mut instances: Vec<Instance> = regions
        .iter()
        .enumerate()
        .map(|(i, region)| {
            Instance::start(
                &format!("pdp-{i}"),
                region,
                &source,
                &public,
                &root.join(format!("state-{i}")),
            )
        })
        .collect();
    wait_all(&instances, 1, Duration::from_secs(20));

    // Region scoping: the EU hold applies in eu-west only.
    assert!(!instances[0].decide(), "eu-west runs the eu-hold package");
    for instance in &instances[1..] {
        assert!(
            instance.decide(),
            "{} runs only the global package",
            instance.name
        );
    }
    assert_eq!(
        instances[0].status().unwrap()["bundle"]["packages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        instances[1].status().unwrap()["bundle"]["packages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Propagation: publish, and time until each instance serves the new revision.
    // A PEP behind each PDP long-polls the server's revision watch; it must hear of the switch.
    let mut samples = Vec::new();
    let mut watched = Vec::new();
    for revision in 2..=21 {
        let watchers: Vec<_> = instances
            .iter()
            .map(|instance| {
                let before = instance.status().unwrap()["policy"]["revision"]
                    .as_str()
                    .unwrap()
                    .replace('+', "%2B");
                let addr = instance.addr.clone();
                std::thread::spawn(move || {
                    let path = format!("/v1/revision?after={before}&wait=10");
                    let answer = http(&addr, "GET", &path, None).unwrap();
                    (Instant::now(), answer)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        fleet.publish(revision, secret.to_str().unwrap());
        let published = Instant::now();
        samples.extend(wait_all(&instances, revision, Duration::from_secs(10)));
        for watcher in watchers {
            let (heard, (code, body)) = watcher.join().unwrap();
            assert_eq!(code, 200, "{body}");
            watched.push(heard.saturating_duration_since(published));
        }
    }
    samples.sort();
    watched.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    let (w50, w99) = (percentile(&watched, 0.50), percentile(&watched, 0.99));
    eprintln!(
        "propagation over {} instance updates: p50 {p50:?}, p99 {p99:?}, max {:?}; a PEP's revision watch: p50 {w50:?}, p99 {w99:?}",
        samples.len(),
        samples.last().unwrap()
    );
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
    assert!(w99 < Duration::from_secs(2), "revision watch p99 {w99:?}");

    // A bundle signed by another key reaches every instance and is refused by every one.
    let stranger = root.join("keys/stranger");
    run(&["keygen", "-o", stranger.to_str().unwrap()]);
    fleet.publish(22, stranger.with_extension("key").to_str().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    for instance in &instances {
        let status = instance.status().unwrap();
        assert_eq!(
            status["bundle"]["revision"], 21,
            "{}: {status}",
            instance.name
        );
        let error = status["bundle"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains("signature"), "{}: {status}", instance.name);
    }

    // Partition: the instances lose the channel for 30 s while revisions 23..25 are published.
    partition.cut();
    for revision in 23..=25 {
        fleet.publish(revision, secret.to_str().unwrap());
        std::thread::sleep(Duration::from_secs(10));
    }
    for instance in &instances {
        assert_eq!(
            instance.revision(),
            Some(21),
            "{} saw through the partition",
            instance.name
        );
    }
    // A cold start during the partition serves the persisted bundle.
    let restarted = {
        let old = instances.remove(1);
        drop(old);
        Instance::start("pdp-1", regions[1], &source, &public, &root.join("state-1"))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while restarted.revision() != Some(21) {
        assert!(
            Instant::now() < deadline,
            "cold start: {:?}",
            restarted.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = restarted.status().unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["bundle"]["from_persisted"], true, "{status}");
    assert_eq!(status["bundle"]["cold_starts"], 1);
    assert!(restarted.decide());
    instances.insert(1, restarted);

    // The channel's view meanwhile: everyone behind the head.
    let output = run(&["status", "--nats", &fleet.nats_url]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert_eq!(table.matches("behind 25").count(), 5, "{table}");

    partition.heal();
    let healed = Instant::now();
    let converged = wait_all(&instances, 25, RECONCILE * 2 + Duration::from_secs(5));
    let slowest = converged.iter().max().unwrap();
    eprintln!(
        "after a 30 s partition: every instance on the head revision {:?} after the channel came back (reconcile interval {RECONCILE:?})",
        healed.elapsed().min(*slowest + Duration::from_millis(10))
    );
    assert!(
        *slowest <= RECONCILE + Duration::from_secs(3),
        "{converged:?}"
    );

    // `warden status` shows the fleet from the channel, everyone current.
    let output = run(&["status", "--nats", &fleet.nats_url]);
    let table = String::from_utf8(output.stdout).unwrap();
    for i in 0..5 {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("pdp-{i} ")))
            .unwrap_or_else(|| panic!("pdp-{i} missing from\n{table}"));
        assert!(line.contains(" 25 ") && line.contains("current"), "{table}");
    }
    drop(instances);
    let _ = std::fs::remove_dir_all(&root);
}

fn warden_test_nats() -> Option<()> {
    // The fleet runs its own nats-server; the variable says this machine has NATS at all.
    let required = std::env::var("WARDEN_TEST_REQUIRE_DATABASES").as_deref() == Ok("1");
    if Path::new(NATS_SERVER).exists() {
        return Some(());
    }
    assert!(
        !required,
        "{NATS_SERVER} is missing and WARDEN_TEST_REQUIRE_DATABASES=1"
    );
    eprintln!("note: skipping the fleet test: {NATS_SERVER} is not installed");
    None
}

#[test]
fn serve_bundle_from_a_file_refuses_what_does_not_verify_and_keeps_serving() {
    let root = temp("file");
    let keys = root.join("keys/k");
    run(&["keygen", "-o", keys.to_str().unwrap()]);
    let (secret, public) = (keys.with_extension("key"), keys.with_extension("pub"));
    let build = |revision: u64| {
        let dir = root.join(format!("src-{revision}"));
        let orders = package(&dir, "orders", revision % 2 == 1, &[], "file source");
        let out = root.join(format!("b-{revision}.tar.gz"));
        run(&[
            "build",
            orders.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--revision",
            &revision.to_string(),
            "--key",
            secret.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    };
    let file = root.join("current.tar.gz");
    std::fs::write(&file, build(1)).unwrap();
    let instance = Instance::start(
        "file-1",
        "eu-west",
        file.to_str().unwrap(),
        &public,
        &root.join("state"),
    );
    let wait = |revision: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while instance.revision() != Some(revision) {
            assert!(Instant::now() < deadline, "{:?}", instance.status());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(1);
    assert!(instance.decide());

    // A truncated copy, a changed byte, an older revision: each refused, revision 1 serves on.
    let two = build(2);
    let mut flipped = two.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    for (refusals, (what, bytes)) in [
        ("truncated", two[..two.len() / 2].to_vec()),
        ("changed", flipped),
        ("older", build(0)),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&file, &bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = instance.status().unwrap();
            if status["bundle"]["refusals"].as_u64() == Some(refusals as u64 + 1) {
                assert_eq!(status["bundle"]["revision"], 1, "{what}: {status}");
                assert!(
                    status["bundle"]["last_error"].is_string(),
                    "{what}: {status}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{what}: {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            instance.decide(),
            "{what}: the old revision no longer decides"
        );
    }
    std::fs::write(&file, &two).unwrap();
    wait(2);
    assert!(!instance.decide(), "revision 2 denies");
    let metrics = {
        let mut stream = TcpStream::connect(&instance.addr).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    assert!(
        metrics.contains("\nwarden_bundle_revision 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nwarden_bundle_refusals_total 3\n"),
        "{metrics}"
    );
    drop(instance);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn serve_bundle_needs_a_key_and_no_policy_directory() {
    let no_key = warden()
        .args(["serve", "--addr", "127.0.0.1:0", "--bundle", "x.tar.gz"])
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(2), "{no_key:?}");
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("--bundle-key"));
    let both = warden()
        .args([
            "serve",
            "--policy",
            "policies/clinic",
            "--bundle",
            "x.tar.gz",
            "--allow-unsigned",
        ])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let bad_key = warden()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bundle",
            "x.tar.gz",
            "--bundle-key",
            "Cargo.toml",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert_eq!(bad_key.status.code(), Some(3), "{bad_key:?}");
    let unknown = warden()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bundle",
            "ftp://x/y",
            "--allow-unsigned",
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}

/// A bundle server on 127.0.0.1 with `ETag`, `If-None-Match` and `Prefer: wait=N` long polling,
/// serving what `current` holds.
fn bundle_server(current: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bundle.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let current = current.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut seen, mut wait) = (None, 0u64);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("if-none-match:") {
                        seen = Some(v.trim().to_owned());
                    }
                    if let Some(v) = lower.strip_prefix("prefer:") {
                        wait = v.trim().trim_start_matches("wait=").parse().unwrap_or(0);
                    }
                }
                let etag = |bytes: &[u8]| {
                    format!(
                        "\"{:x}\"",
                        bytes.iter().fold(bytes.len() as u64, |h, b| h
                            .wrapping_mul(31)
                            .wrapping_add(u64::from(*b)))
                    )
                };
                let deadline = Instant::now() + Duration::from_secs(wait);
                loop {
                    let bytes = current.lock().unwrap().clone();
                    let tag = etag(&bytes);
                    if seen.as_deref() != Some(tag.as_str()) {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\netag: {tag}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            bytes.len()
                        );
                        let _ = stream.write_all(&bytes);
                        return;
                    }
                    if Instant::now() >= deadline {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n"
                        );
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
        }
    });
    url
}

#[test]
fn serve_bundle_over_http_long_polls_for_the_next_bundle() {
    let root = temp("http");
    let keys = root.join("keys/k");
    run(&["keygen", "-o", keys.to_str().unwrap()]);
    let (secret, public) = (keys.with_extension("key"), keys.with_extension("pub"));
    let build = |revision: u64| {
        let dir = root.join(format!("src-{revision}"));
        let orders = package(&dir, "orders", revision == 1, &[], "http source");
        let out = root.join(format!("b-{revision}.tar.gz"));
        run(&[
            "build",
            orders.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--revision",
            &revision.to_string(),
            "--key",
            secret.to_str().unwrap(),
        ]);
        std::fs::read(out).unwrap()
    };
    let current = Arc::new(Mutex::new(build(1)));
    let url = bundle_server(current.clone());
    // The default reconcile interval (30 s): only the long poll can bring revision 2 quickly.
    let mut child = warden()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bundle",
            &url,
            "--bundle-key",
        ])
        .arg(&public)
        .args(["--instance", "http-1", "--state-dir"])
        .arg(root.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let instance = Instance {
        name: "http-1".into(),
        addr: line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap()
            .trim_end_matches(',')
            .to_owned(),
        child,
    };
    let wait = |revision: u64, within: Duration| {
        let started = Instant::now();
        while instance.revision() != Some(revision) {
            assert!(started.elapsed() < within, "{:?}", instance.status());
            std::thread::sleep(Duration::from_millis(10));
        }
        started.elapsed()
    };
    wait(1, Duration::from_secs(10));
    assert!(instance.decide());
    std::thread::sleep(Duration::from_millis(300));
    let two = build(2);
    *current.lock().unwrap() = two;
    let took = wait(2, Duration::from_secs(5));
    eprintln!("HTTP long poll: revision 2 in force {took:?} after the server had it");
    assert!(!instance.decide());
    assert_eq!(instance.status().unwrap()["bundle"]["source"], url);
    drop(instance);
    let _ = std::fs::remove_dir_all(&root);
}
