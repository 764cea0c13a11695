//! Helpers of the decision log tests: private NATS servers and reading a stream back.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers, each binary uses a part of them; a failure fails the test"
)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_telemetry::{DecisionEvent, Outcome, Pep};

pub(crate) const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The shared NATS server's URL, or `None` (the test skips, or fails in CI).
pub(crate) fn shared_nats() -> Option<String> {
    warden_test::service_url(
        "WARDEN_TEST_NATS_URL",
        "the decision log tests against NATS JetStream",
    )
}

/// A NATS server of the test's own, with JetStream storing in a temporary directory, so the
/// test can stop and start it without touching the shared one.
pub(crate) struct PrivateNats {
    pub(crate) port: u16,
    pub(crate) store: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    /// `None` when the tests do not run against NATS here.
    pub(crate) fn start() -> Option<Self> {
        shared_nats()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = std::env::temp_dir().join(format!("warden-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&store).unwrap();
        let mut nats = Self {
            port,
            store,
            child: None,
        };
        nats.resume();
        Some(nats)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), on the same port and store.
    pub(crate) fn resume(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A unique name for a stream of one test.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Every message of a stream: (message id, body), in stream order.
pub(crate) async fn read_stream(url: &str, stream: &str) -> Vec<(String, serde_json::Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::with_capacity(state.messages as usize);
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&message.payload).unwrap()));
    }
    out
}

/// Removes a stream from a server.
pub(crate) async fn delete_stream(url: &str, stream: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

/// How many times each id occurs.
pub(crate) fn id_counts(messages: &[(String, serde_json::Value)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (id, _) in messages {
        *counts.entry(id.clone()).or_insert(0) += 1;
    }
    counts
}

/// An event with a decision id.
pub(crate) fn event(id: &str, outcome: Outcome) -> DecisionEvent {
    let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/patients/{id}", outcome);
    event.decision_id = Some(id.to_owned());
    event.subject = Some("alice".into());
    event.policy = Some(warden_decision::PolicyRevision::new("clinic", "1.0.0"));
    event
        .attributes
        .insert("email".into(), "alice@example.com".into());
    event
}
