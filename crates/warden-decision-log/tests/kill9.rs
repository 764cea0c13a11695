//! `kill -9` of a process during a 10,000-event burst in disk mode loses no event: every event
//! the process logged is in the JetStream stream once the process is back, exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{PrivateNats, event, id_counts, read_stream, unique};
use warden_decision_log::{DecisionLog, JetStreamSink, Mode};
use warden_telemetry::Outcome;

const BURST: usize = 10_000;
const URL: &str = "WARDEN_DL_CHILD_URL";
const DIR: &str = "WARDEN_DL_CHILD_DIR";
const ROLE: &str = "WARDEN_DL_CHILD_ROLE";

/// The process that is killed: run by the test below, not on its own.
#[test]
#[ignore = "run as a child process by kill_9_during_a_burst_in_disk_mode_loses_no_event"]
fn child() {
    let (Ok(url), Ok(dir), Ok(role)) =
        (std::env::var(URL), std::env::var(DIR), std::env::var(ROLE))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let sink = JetStreamSink::connect(&url, "DECISIONS", "warden.decisions")
            .await
            .unwrap()
            .ack_timeout(Duration::from_secs(1));
        let log = DecisionLog::builder(sink)
            .mode(Mode::Disk {
                dir: dir.into(),
                max_bytes: 256 << 20,
            })
            .build()
            .unwrap();
        // As a PEP emits: its telemetry hands each event to the decision log before `emit`
        // returns.
        let telemetry = warden_telemetry::Telemetry::builder()
            .writer(|_: &warden_telemetry::DecisionEvent| {})
            .durable_writer(log.durable_writer())
            .build()
            .unwrap();
        if role == "burst" {
            for i in 0..BURST {
                telemetry.emit(event(&format!("burst-{i:05}"), Outcome::Deny));
                // Written to the file: this event must never be lost.
                println!("logged {i}");
                if i % 50 == 49 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        } else {
            println!("recovered {}", log.queue_depth());
            let drained = log.flush(Duration::from_secs(60)).await;
            println!("drained {drained} {}", log.queue_depth());
        }
    });
}

fn spawn(role: &str, url: &str, dir: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URL, url)
        .env(DIR, dir)
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_in_disk_mode_loses_no_event() {
    let Some(mut nats) = PrivateNats::start() else {
        return;
    };
    let dir = std::env::temp_dir().join(unique("warden-dl-kill9"));
    let url = nats.url();

    let mut burst = spawn("burst", &url, &dir);
    let mut lines = BufReader::new(burst.stdout.take().unwrap()).lines();
    let mut last_logged = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(i) = line.strip_prefix("logged ") {
            let i: usize = i.parse().unwrap();
            last_logged = Some(i);
            if i == BURST / 4 {
                // The sink goes away: from here on the events wait in the file.
                nats.stop();
            }
            if i == BURST / 2 {
                burst.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    // What it printed before it died was logged too.
    for line in lines.map_while(Result::ok) {
        if let Some(i) = line.strip_prefix("logged ") {
            last_logged = Some(i.parse().unwrap());
        }
    }
    burst.wait().unwrap();
    let last_logged = last_logged.expect("the burst started");
    assert!(
        last_logged < BURST - 1,
        "killed during the burst, at {last_logged}"
    );
    nats.resume();
    let shipped_before = read_stream(&url, "DECISIONS").await.len();

    let recover = spawn("recover", &url, &dir);
    let output = recover.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("drained true 0"), "{text}");

    let messages = read_stream(&url, "DECISIONS").await;
    let counts = id_counts(&messages);
    let lost: Vec<usize> = (0..=last_logged)
        .filter(|i| !counts.contains_key(&format!("burst-{i:05}")))
        .collect();
    eprintln!(
        "kill -9 at event {last_logged} of {BURST}: {shipped_before} in the stream before, {} after the restart, {} lost, {} duplicates",
        messages.len(),
        lost.len(),
        messages.len() - counts.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} events: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(messages.len(), counts.len(), "stored exactly once");
    let _ = std::fs::remove_dir_all(&dir);
}
