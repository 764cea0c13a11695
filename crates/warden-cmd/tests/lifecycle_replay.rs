//! `warden replay` on recorded decision events with injected flips: every flip is reported and
//! no false one, from pseudonymised recordings that hold no raw identifier.
//!
//! The number of events is `WARDEN_REPLAY_EVENTS` (default 10,000); the throughput `warden
//! replay` measured is printed.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use warden_decision::{AccessRequest, Decision, Pdp};
use warden_rego::RegoPdp;
use warden_telemetry::{DecisionEvent, Outcome, Pep, Pseudonymizer};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-replay-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of the clinic package with four changes: auditors lose the audit log (permit to
/// deny), doctors may delete patients (deny to permit), auditors' patient lists lose the
/// birth-date redaction (obligations removed), the metrics get audited (obligations added).
fn candidate(dir: &Path) {
    for name in ["clinic.rego", "data.json", "warden.toml"] {
        std::fs::copy(root().join("policies/clinic").join(name), dir.join(name)).unwrap();
    }
    let path = dir.join("clinic.rego");
    let mut rego = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        (
            "\troute == \"/audit-log\"\n\trole in {\"auditor\", \"admin\"}",
            "\troute == \"/audit-log\"\n\trole == \"admin\"",
        ),
        (
            "\tmethod == \"DELETE\"\n\troute == \"/clinics/{clinic_id}/patients/{patient_id}\"\n\trole == \"admin\"",
            "\tmethod == \"DELETE\"\n\troute == \"/clinics/{clinic_id}/patients/{patient_id}\"\n\trole in {\"admin\", \"doctor\"}",
        ),
        (
            "obligations contains {\"type\": \"redact\", \"paths\": [\"$[*].birth_date\"], \"with\": \"year\"} if {",
            "unused_birth_date_redaction contains {\"type\": \"redact\", \"paths\": [\"$[*].birth_date\"], \"with\": \"year\"} if {",
        ),
    ] {
        assert!(rego.contains(from), "{from}");
        rego = rego.replacen(from, to, 1);
    }
    rego.push_str(
        "\nobligations contains {\"type\": \"audit\", \"level\": \"low\", \"tags\": [\"metrics\"]} if {\n\troute == \"/metrics\"\n}\n",
    );
    std::fs::write(&path, rego).unwrap();
}

/// The requests of the clinic's cases, each in seven clinics (claims and parameters alike) and
/// under many subject ids.
fn requests(count: usize) -> Vec<AccessRequest> {
    let text = std::fs::read_to_string(root().join("policies/clinic/cases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    (0..count)
        .map(|i| {
            let case = &cases[i % cases.len()]["request"];
            let clinic = format!("c{}", i % 7 + 1);
            let text = case.to_string().replace("\"c1\"", &format!("\"{clinic}\""));
            let mut request: AccessRequest = serde_json::from_str(&text).unwrap();
            request.subject.id = format!("{}-{}", request.subject.id, i % 997);
            request
        })
        .collect()
}

fn kinds(d: &Decision) -> Vec<String> {
    d.obligations
        .iter()
        .map(|o| o.type_name().to_owned())
        .collect()
}

/// What replay must find for one event.
fn changes(before: &Decision, after: &Decision) -> Vec<&'static str> {
    let mut out = Vec::new();
    match (before.allowed, after.allowed) {
        (true, false) => out.push("permit-to-deny"),
        (false, true) => out.push("deny-to-permit"),
        (true, true) => {
            let count = |d: &Decision| {
                let mut m: BTreeMap<String, usize> = BTreeMap::new();
                for k in kinds(d) {
                    *m.entry(k).or_default() += 1;
                }
                m
            };
            let (b, a) = (count(before), count(after));
            if a.iter().any(|(k, n)| b.get(k).copied().unwrap_or(0) < *n) {
                out.push("obligations-added");
            }
            if b.iter().any(|(k, n)| a.get(k).copied().unwrap_or(0) < *n) {
                out.push("obligations-removed");
            }
        }
        (false, false) => {}
    }
    out
}

fn replay(events: &Path, policy: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["replay", "--events"])
        .arg(events)
        .arg("--policy")
        .arg(policy)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.code(),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn replay_reports_every_injected_flip_and_no_false_one() {
    let count: usize = std::env::var("WARDEN_REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = scratch("flips");
    let changed = dir.join("candidate");
    std::fs::create_dir_all(&changed).unwrap();
    candidate(&changed);
    let baseline = RegoPdp::from_dir(root().join("policies/clinic")).unwrap();
    let after = RegoPdp::from_dir(&changed).unwrap();
    let pseudonyms = Pseudonymizer::new(b"replay test key, thirty-two bytes or more")
        .unwrap()
        .path("subject.properties.clinics")
        .path("resource.properties.params.*");

    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let events = dir.join("events.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
    for request in requests(count) {
        let before = baseline.decide(&request).await.unwrap();
        let now = after.decide(&request).await.unwrap();
        for change in changes(&before, &now) {
            *expected.entry(change).or_default() += 1;
        }
        let outcome = if before.allowed {
            Outcome::Permit
        } else {
            Outcome::Deny
        };
        let mut event = DecisionEvent::new(
            Pep::Http,
            request.action.name.clone(),
            request.resource.kind.clone(),
            request.resource.id.clone(),
            outcome,
        );
        event.decision_id = Some(before.id.to_string());
        event.policy = Some(before.policy.clone());
        event.obligations = kinds(&before);
        event.record_request(&request, &pseudonyms);
        writeln!(file, "{}", serde_json::to_string(&event).unwrap()).unwrap();
    }
    // An event without a decision (no credentials) is not replayable, and says so.
    let early = DecisionEvent::new(Pep::Http, "GET", "route", "/x", Outcome::Unauthenticated);
    writeln!(file, "{}", serde_json::to_string(&early).unwrap()).unwrap();
    file.flush().unwrap();
    drop(file);

    // Every injected kind of change occurs.
    for kind in [
        "permit-to-deny",
        "deny-to-permit",
        "obligations-added",
        "obligations-removed",
    ] {
        assert!(
            expected.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {expected:?}"
        );
    }
    // The log holds pseudonyms, not the identifiers and clinic ids.
    let log = std::fs::read_to_string(&events).unwrap();
    for raw in ["\"alice-", "\"nina-", "\"c1\"", "\"c7\"", "\"p1\""] {
        assert!(!log.contains(raw), "{raw} in the recorded events");
    }

    // The same policy: nothing changes, the gate passes.
    let (code, report, err) = replay(
        &events,
        &root().join("policies/clinic"),
        &["--fail-on", "any"],
    );
    assert_eq!(code, Some(0), "{report} {err}");
    assert_eq!(report["replayed"], count, "{report}");
    assert_eq!(report["unchanged"], count, "no false flip: {report}");
    assert_eq!(report["not_replayable"], 1);

    // The candidate: every change, exactly.
    let (code, report, err) = replay(
        &events,
        &changed,
        &["--fail-on", "permit-to-deny", "--stats"],
    );
    assert_eq!(code, Some(1), "the gate fails: {report} {err}");
    for (kind, n) in &expected {
        assert_eq!(report["changes"][kind], *n, "{kind}: {report}");
    }
    let total: usize = expected.values().sum();
    let grouped: u64 = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(grouped, total as u64);
    let group = |change: &str, resource: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["change"] == change && g["resource"] == resource)
            .cloned()
            .unwrap_or_else(|| json!(null))
    };
    let audit = group("permit-to-deny", "route /audit-log");
    assert_eq!(audit["package"], "clinic", "{report}");
    assert_eq!(audit["subject_type"], "user");
    assert_eq!(audit["examples"].as_array().unwrap().len(), 3);
    assert!(
        group(
            "deny-to-permit",
            "route /clinics/{clinic_id}/patients/{patient_id}"
        )["count"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let (code, _, _) = replay(&events, &changed, &["--fail-on", "obligations"]);
    assert_eq!(code, Some(1));
    let (code, _, _) = replay(&events, &changed, &[]);
    assert_eq!(code, Some(0), "without --fail-on replay only reports");
    assert!(err.contains(" events/s)"), "{err}");
    eprintln!("{}", err.trim());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_refuses_unreadable_events_and_logs_without_recorded_requests() {
    let dir = scratch("bad");
    let events = dir.join("events.jsonl");
    std::fs::write(&events, "{\"not\": \"an event\"}\n").unwrap();
    let policy = root().join("policies/clinic");
    let (code, _, err) = replay(&events, &policy, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("events.jsonl:1: not a decision event"),
        "{err}"
    );

    let event = DecisionEvent::new(Pep::Http, "GET", "route", "/health", Outcome::Permit);
    std::fs::write(&events, serde_json::to_string(&event).unwrap() + "\n").unwrap();
    let (code, _, err) = replay(&events, &policy, &["--fail-on", "any"]);
    assert_eq!(code, Some(2), "nothing replayed is not a pass: {err}");
    assert!(err.contains("none of the 1 events"), "{err}");

    let (code, _, err) = replay(&events, &policy, &["--fail-on", "permit-to-denied"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, _) = replay(&events, &dir.join("missing"), &[]);
    assert_eq!(code, Some(3));
    let _ = std::fs::remove_dir_all(&dir);
}
