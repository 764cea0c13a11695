//! A package's status and exceptions at runtime: `warden eval` and `warden serve` decide with
//! them, a reload switches them, `warden test` evaluates every status as active.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{Scratch, Serving, warden};

impl Scratch {
    fn status(&self, status: &str) {
        let path = self.0.join("warden.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("\nstatus = ").unwrap() + 1;
        let end = start + text[start..].find('\n').unwrap();
        let text = format!("{}status = \"{status}\"{}", &text[..start], &text[end..]);
        std::fs::write(&path, text).unwrap();
    }

    fn append(&self, toml: &str) {
        let path = self.0.join("warden.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(toml);
        std::fs::write(&path, text).unwrap();
    }
}

fn nurse(clinic: &str) -> String {
    json!({
        "subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": "/clinics/{clinic_id}/patients/{patient_id}",
                     "properties": {"params": {"clinic_id": clinic, "patient_id": "p1"}, "query": {}}}
    })
    .to_string()
}

/// `warden eval` of `request`: the exit status and the decision.
fn eval(args: &[&str], request: &str) -> (Option<i32>, Value) {
    let output = warden()
        .arg("eval")
        .args(args)
        .args(["--request", request])
        .output()
        .unwrap();
    let decision = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), decision)
}

const PACKAGES: [&str; 2] = ["policies/clinic", "policies/clinic-cedar"];

#[test]
fn a_disabled_package_decides_nothing_and_a_shadow_package_is_never_enforced() {
    for package in PACKAGES {
        let scratch = Scratch::copy(package);
        let (code, active) = eval(&["--policy", scratch.path()], &nurse("c1"));
        assert_eq!(code, Some(0), "{package}: {active}");
        assert_eq!(
            active["policy"]["regulations"],
            json!([
                "HIPAA 164.312(a)(1)",
                "HIPAA 164.312(b)",
                "HIPAA 164.312(d)"
            ]),
            "decisions carry the package's controls"
        );

        for status in ["disabled", "shadow"] {
            scratch.status(status);
            let (code, d) = eval(&["--policy", scratch.path()], &nurse("c1"));
            assert_eq!(code, Some(1), "{package} {status}: {d}");
            assert_eq!(d["decision"], false);
            assert_eq!(d["not_applicable"], true, "{d}");
            assert!(d.get("obligations").is_none(), "{d}");
            assert_eq!(d["policy"]["id"], "clinic");
            let note = d["diagnostics"][0]["message"].as_str().unwrap();
            assert!(note.contains(status), "{note}");
            if status == "shadow" {
                assert!(note.contains("it would permit"), "{note}");
            }
            // The cases still run: a package is tested as if it were active.
            let test = warden().args(["test", scratch.path()]).output().unwrap();
            assert_eq!(test.status.code(), Some(0), "{package} {status}: {test:?}");
        }
    }
}

#[test]
fn an_unknown_status_does_not_load() {
    let scratch = Scratch::copy("policies/clinic");
    scratch.status("enabled");
    let (code, _) = eval(&["--policy", scratch.path()], &nurse("c1"));
    assert_eq!(code, Some(3), "a policy error, never a silent default");
}

#[test]
fn an_exception_permits_its_scope_until_it_expires() {
    for package in PACKAGES {
        let scratch = Scratch::copy(package);
        let other = nurse("c2");
        let (code, _) = eval(&["--policy", scratch.path()], &other);
        assert_eq!(code, Some(1), "denied without the exception");
        let exception = |expires: &str| {
            format!(
                "\n[[exceptions]]\nid = \"EX-9\"\nreason = \"cover for clinic c2\"\nexpires = \"{expires}\"\n\
                 permit = {{ subject = \"user:nina\", action = \"GET\", resource = \"route:/clinics/{{clinic_id}}/patients/{{patient_id}}\" }}\n"
            )
        };
        scratch.append(&exception("2999-01-01"));
        let (code, d) = eval(&["--policy", scratch.path()], &other);
        assert_eq!(code, Some(0), "{package}: {d}");
        assert_eq!(d["obligations"][0]["type"], "audit", "{d}");
        assert_eq!(d["obligations"][0]["tags"][0], "exception:EX-9");
        // Another subject, or the same one on another route, is not excepted.
        let (code, _) = eval(
            &["--policy", scratch.path()],
            &other.replace("\"nina\"", "\"nora\""),
        );
        assert_eq!(code, Some(1));

        let scratch = Scratch::copy(package);
        scratch.append(&exception("2020-01-01"));
        let (code, d) = eval(&["--policy", scratch.path()], &other);
        assert_eq!(code, Some(1), "an expired exception no longer applies: {d}");
    }
}

impl Serving {
    /// Waits until the server answers `request` with the exit status `code` at a revision other
    /// than `before`.
    fn wait_for(&self, request: &str, code: i32, before: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (got, decision) = eval(&["--remote", &self.url], request);
            if got == Some(code) && decision["policy"]["revision"] != *before {
                return decision;
            }
            assert!(
                Instant::now() < deadline,
                "still {got:?} instead of {code}: {decision}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn switching_the_status_takes_effect_on_reload_without_a_restart() {
    for package in PACKAGES {
        let scratch = Scratch::copy(package);
        let server = Serving::policy(scratch.path(), "100ms");
        let mut d = server.wait_for(&nurse("c1"), 0, &Value::Null);
        for (status, code) in [("disabled", 1), ("shadow", 1), ("active", 0)] {
            scratch.status(status);
            d = server.wait_for(&nurse("c1"), code, &d["policy"]["revision"]);
            assert_eq!(d["decision"], code == 0, "{package} {status}: {d}");
        }
    }
}
