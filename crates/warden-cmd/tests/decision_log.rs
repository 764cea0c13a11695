//! `warden serve --decision-log`: every decision of the server is logged, with its id, the
//! package's revision and regulations, masked; a route logged synchronously fails closed when
//! the sink is down.
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

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warden-serve-log-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `warden serve` with a decision log configuration; the address it listens on.
fn serve(config: &Path) -> (Killed, String) {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .current_dir(root())
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--policy",
                "policies/clinic",
            ])
            .arg("--decision-log")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"))
        .trim()
        .to_owned();
    (child, addr)
}

fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

const NURSE_OTHER_CLINIC: &str = r#"{"subject": {"type": "user", "id": "nurse-7", "properties": {"role": "nurse", "clinics": ["c1"], "email": "n7@clinic.example"}},
 "action": {"name": "GET"},
 "resource": {"type": "route", "id": "/clinics/{clinic_id}/patients", "properties": {"params": {"clinic_id": "c2"}}}}"#;

#[test]
fn every_decision_is_logged_with_its_id_revision_and_regulations_masked() {
    let dir = temp("file");
    let log = dir.join("decisions.jsonl");
    let config = dir.join("decision-log.toml");
    std::fs::write(
        &config,
        format!(
            "[sink]\ntype = \"file\"\npath = \"{}\"\n\n[mode]\ntype = \"disk\"\ndir = \"{}\"\n\n[[rules.mask]]\npath = \"/subject\"\nwith = \"[pseudonymised]\"\n",
            log.display(),
            dir.join("buffer").display()
        ),
    )
    .unwrap();
    let (_server, addr) = serve(&config);
    let (status, body) = post(&addr, "/access/v1/evaluation", NURSE_OTHER_CLINIC);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["decision"], false);
    let id = answer["context"]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let started = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["outcome"], "deny");
    assert_eq!(event["resource"], "/clinics/{clinic_id}/patients");
    assert_eq!(event["policy"]["id"], "clinic");
    assert_eq!(event["subject"], "[pseudonymised]");
    assert!(
        !line.contains("nurse-7"),
        "masked before it was written: {line}"
    );
    let regulations = event["regulations"].to_string();
    assert!(regulations.contains("HIPAA 164.312(a)(1)"), "{line}");
    assert_eq!(event["decision_id"], id.as_str(), "the id the caller got");
    assert_eq!(
        event["policy"]["revision"],
        answer["context"]["policy"]["revision"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_synchronously_logged_route_fails_closed_when_the_sink_is_down() {
    let dir = temp("sync");
    let config = dir.join("decision-log.toml");
    // Nothing listens on port 9.
    std::fs::write(
        &config,
        "synchronous = [\"/clinics/{clinic_id}/patients\"]\nsync_timeout_ms = 300\n\n[sink]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/logs\"\n",
    )
    .unwrap();
    let (_server, addr) = serve(&config);
    let doctor = NURSE_OTHER_CLINIC
        .replace("\"nurse\"", "\"doctor\"")
        .replace("\"c2\"", "\"c1\"");
    let (status, body) = post(&addr, "/access/v1/evaluation", &doctor);
    assert_eq!(status, 503, "no answer without the log: {body}");
    assert!(!body.contains("\"decision\":true"), "{body}");
    // A route that is not marked is answered.
    let health = r#"{"subject": {"type": "user", "id": "x"}, "action": {"name": "GET"}, "resource": {"type": "route", "id": "/health"}}"#;
    let (status, body) = post(&addr, "/access/v1/evaluation", health);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"decision\":true"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends one Redis command (inline form) and returns the reply line.
fn redis(command: &str) -> String {
    let mut stream = TcpStream::connect("127.0.0.1:6379").unwrap();
    write!(stream, "{command}\r\n").unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply
}

#[test]
fn the_package_context_comes_from_redis_and_three_recent_denials_demand_step_up() {
    // The clinic-session manifest names the Redis server of this machine.
    match std::env::var("WARDEN_TEST_REDIS_URL").as_deref() {
        Ok("redis://127.0.0.1:6379") => {}
        _ if std::env::var("WARDEN_TEST_REQUIRE_DATABASES").as_deref() == Ok("1") => {
            panic!("WARDEN_TEST_REDIS_URL is not redis://127.0.0.1:6379")
        }
        _ => {
            eprintln!(
                "note: skipping the context test of warden serve: set WARDEN_TEST_REDIS_URL=redis://127.0.0.1:6379"
            );
            return;
        }
    }
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .current_dir(root())
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--policy",
                "policies/clinic-session",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.split("http://").nth(1).unwrap().trim().to_owned();
    let subject = format!(
        "nurse-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let ask = |context: &str| {
        let body = format!(
            r#"{{"subject": {{"type": "user", "id": "{subject}"}}, "action": {{"name": "GET"}}, "resource": {{"type": "route", "id": "/clinics/{{clinic_id}}/patients"}}, "context": {context}}}"#
        );
        let (status, body) = post(&addr, "/access/v1/evaluation", &body);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let steps_up = |answer: &serde_json::Value| {
        answer["context"]["obligations"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["type"] == "step-up"))
    };
    let first = ask("{}");
    assert_eq!(first["decision"], true, "{first}");
    assert!(!steps_up(&first), "{first}");

    let key = format!("warden:clinic:history:deny:{subject}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for i in 0..3 {
        assert!(redis(&format!("ZADD {key} {now} d{i}")).starts_with(':'));
    }
    // What the caller claims about its history is replaced by what Redis holds.
    let third = ask(r#"{"recent_denials": 0}"#);
    assert_eq!(third["decision"], true, "{third}");
    assert!(steps_up(&third), "step-up after 3 denials: {third}");
    for i in 3..5 {
        redis(&format!("ZADD {key} {now} d{i}"));
    }
    let fifth = ask("{}");
    assert_eq!(fifth["decision"], false, "refused after 5: {fifth}");
    redis(&format!("DEL {key}"));
}
