//! `warden serve` starts fail-closed: a missing or broken policy ends it with status 3 unless
//! told to wait; it loads the policies once; its logs are JSON without colour when stderr is not
//! a terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn warden() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command.current_dir(root()).env_remove("WARDEN_LOG_FORMAT");
    command
}

/// A directory of its own, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "warden-serve-startup-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

#[test]
fn a_missing_or_broken_policy_ends_start_up_with_status_3() {
    let broken = Temp::new();
    std::fs::write(
        broken.0.join("p.rego"),
        "package p\nallow if { this is not rego",
    )
    .unwrap();
    let empty = Temp::new();
    let missing = empty.0.join("no-such-dir");
    for dir in [&broken.0, &empty.0, &missing] {
        let started = Instant::now();
        let output = warden()
            .args(["serve", "--addr", "127.0.0.1:0", "--policy"])
            .arg(dir)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{dir:?}: {output:?}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not started"), "{stderr}");
        assert!(output.stdout.is_empty(), "it never listened: {output:?}");
    }
}

#[test]
fn told_to_wait_it_serves_503_until_the_policy_appears_then_loads_it() {
    let dir = Temp::new();
    let mut child = Killed(
        warden()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--watch",
                "50ms",
                "--wait-for-policy",
                "--policy",
            ])
            .arg(&dir.0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("policies not loaded"), "{line}");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap()
        .to_owned();
    let (status, body) = get(&addr, "/health").unwrap();
    assert_eq!(status, 503, "{body}");
    std::fs::write(
        dir.0.join("p.rego"),
        "package warden\nimport rego.v1\ndefault decision := true\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = get(&addr, "/health") {
            assert!(body.contains("\"ready\""), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the policy never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn it_loads_once_and_logs_json_without_colour_off_a_terminal() {
    let mut child = Killed(
        warden()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--watch",
                "50ms",
                "--policy",
                "policies/clinic",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("serving policy clinic"), "{line}");
    // Several watch ticks pass without a change.
    std::thread::sleep(Duration::from_millis(600));
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains('\u{1b}'), "no ANSI escapes: {stderr:?}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let loads = lines
        .iter()
        .filter(|l| l["message"] == "policies loaded")
        .count();
    assert_eq!(loads, 1, "loaded once: {stderr}");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["policy"], "clinic");
}
