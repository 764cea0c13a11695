//! What the fleet tests run: a private nats-server, a partitioning proxy, `warden serve
//! --bundle` processes, a bundle server, HTTP.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const NATS_SERVER: &str = "/usr/sbin/nats-server";
pub(crate) const RECONCILE: Duration = Duration::from_secs(5);

pub(crate) fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

pub(crate) fn run(args: &[&str]) -> Output {
    let output = warden().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "warden {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A private nats-server with JetStream, on its own port and store.
pub(crate) struct Nats {
    pub(crate) child: Child,
}

impl Nats {
    pub(crate) fn start(port: u16, store: &Path) -> Self {
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
pub(crate) struct Partition {
    pub(crate) up: Arc<AtomicBool>,
    pub(crate) conns: Arc<Mutex<Vec<TcpStream>>>,
    pub(crate) port: u16,
}

impl Partition {
    pub(crate) fn start(target: u16) -> Self {
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

    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// One `warden serve --bundle` process.
pub(crate) struct Instance {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Instance {
    pub(crate) fn start(name: &str, region: &str, source: &str, key: &Path, state: &Path) -> Self {
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

    pub(crate) fn status(&self) -> Option<Value> {
        http(&self.addr, "GET", "/status", None).map(|(_, body)| body)
    }

    /// The bundle revision in force, if any.
    pub(crate) fn revision(&self) -> Option<u64> {
        self.status()?["bundle"]["revision"].as_u64()
    }

    pub(crate) fn decide(&self) -> bool {
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
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
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
pub(crate) fn package(root: &Path, id: &str, allow: bool, regions: &[&str], note: &str) -> PathBuf {
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

pub(crate) struct Fleet {
    pub(crate) root: PathBuf,
    pub(crate) nats_url: String,
}

impl Fleet {
    /// Builds revision `revision` (the global package permits, the `eu` one denies) and
    /// publishes it to `production`.
    pub(crate) fn publish(&self, revision: u64, key: &str) -> Duration {
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

pub(crate) fn wait_all(instances: &[Instance], revision: u64, within: Duration) -> Vec<Duration> {
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

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn warden_test_nats() -> Option<()> {
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

/// A bundle server on 127.0.0.1 with `ETag`, `If-None-Match` and `Prefer: wait=N` long polling,
/// serving what `current` holds.
pub(crate) fn bundle_server(current: Arc<Mutex<Vec<u8>>>) -> String {
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
