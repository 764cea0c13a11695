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

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

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
