//! `warden eval` and `warden serve`, run as a user runs them.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::io::Write as _;
use std::process::{Output, Stdio};

use serde_json::{Value, json};

mod support;
use support::{Serving, warden};

fn nurse(clinic: &str) -> String {
    json!({
        "subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": "/clinics/{clinic_id}/patients/{patient_id}",
                     "properties": {"params": {"clinic_id": clinic, "patient_id": "p1"}, "query": {}}}
    })
    .to_string()
}

fn eval_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = warden()
        .arg("eval")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A child that refuses its arguments exits without reading its input; writing to it then
    // fails with a broken pipe, which is not the test's concern.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn decision(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a decision ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn eval_exits_0_on_permit_1_on_deny_with_the_decision_on_stdout() {
    for policy in ["policies/clinic", "policies/clinic-cedar"] {
        let permit = eval_stdin(&["--policy", policy], &nurse("c1"));
        assert_eq!(permit.status.code(), Some(0), "{policy}: {permit:?}");
        let body = decision(&permit);
        assert_eq!(body["decision"], true);
        assert_eq!(body["policy"]["id"], "clinic");
        assert!(!body["obligations"].as_array().unwrap().is_empty());

        let deny = warden()
            .args(["eval", "--policy", policy, "--request", &nurse("c2")])
            .output()
            .unwrap();
        assert_eq!(deny.status.code(), Some(1), "{policy}: {deny:?}");
        assert_eq!(decision(&deny)["decision"], false);
    }
}

#[test]
fn eval_reads_a_request_file() {
    let path = std::env::temp_dir().join(format!("warden-cmd-request-{}.json", std::process::id()));
    std::fs::write(&path, nurse("c1")).unwrap();
    let output = warden()
        .args(["eval", "--policy", "policies/clinic", "--request"])
        .arg(format!("@{}", path.display()))
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[test]
fn eval_exits_by_the_scheme_on_errors_with_a_message() {
    let cases: [(&[&str], &str, i32, &str); 5] = [
        (
            &["--policy", "policies/clinic"],
            "{not json",
            2,
            "the request on standard input is not JSON",
        ),
        (
            &["--policy", "policies/clinic"],
            r#"{"subject": {"type": "user", "id": "a"}}"#,
            2,
            "the request has no action: pass `--action`",
        ),
        (&["--policy", "no/such/dir"], &nurse("c1"), 3, "no/such/dir"),
        (&[], &nurse("c1"), 2, "--policy"),
        (
            &["--remote", "http://127.0.0.1:9", "--timeout", "300ms"],
            &nurse("c1"),
            4,
            "unavailable",
        ),
    ];
    for (args, stdin, code, message) in cases {
        let output = eval_stdin(args, stdin);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing on stdout for an error");
    }
}

#[test]
fn serve_answers_eval_remote_and_stops_on_sigterm() {
    for policy in ["policies/clinic", "policies/clinic-cedar"] {
        let server = Serving::policy(policy, "0s");
        assert!(
            server
                .line
                .contains("serving policy clinic at revision 1.0.0+sha256."),
            "{}",
            server.line
        );
        let permit = eval_stdin(&["--remote", &server.url], &nurse("c1"));
        assert_eq!(permit.status.code(), Some(0), "{policy}: {permit:?}");
        assert_eq!(decision(&permit)["policy"]["id"], "clinic");
        let deny = eval_stdin(&["--remote", &server.url], &nurse("c2"));
        assert_eq!(deny.status.code(), Some(1), "{policy}: {deny:?}");
        if policy == "policies/clinic" {
            let opa = eval_stdin(
                &[
                    "--remote",
                    &server.url,
                    "--protocol",
                    "opa",
                    "--opa-path",
                    "clinic/decision",
                ],
                &nurse("c1"),
            );
            assert_eq!(opa.status.code(), Some(0), "{opa:?}");
        }
        let output = server.stop();
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("warden: stopped"));
    }
}

#[test]
fn serve_refuses_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = warden()
        .args(["serve", "--policy", "policies/clinic", "--addr", &addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "a configuration error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}

#[test]
fn eval_builds_the_request_from_its_members_with_the_subject_rules_of_every_subcommand() {
    let resource = json!({"type": "route", "id": "/clinics/{clinic_id}/patients/{patient_id}",
                          "properties": {"params": {"clinic_id": "c1", "patient_id": "p1"}}})
    .to_string();
    let output = warden()
        .args([
            "eval",
            "--policy",
            "policies/clinic",
            "--subject",
            r#"{"id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}}"#,
            "--action",
            "GET",
            "--resource",
            &resource,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(decision(&output)["decision"], true);
    // A member given on its own replaces the request's: the same nurse asking for clinic c2.
    let output = warden()
        .args([
            "eval",
            "--policy",
            "policies/clinic",
            "--request",
            "@policies/clinic/requests/nurse-reads-patient.json",
            "--resource",
            &resource.replace("c1", "c2"),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

#[test]
fn eval_prints_a_summary_with_format_pretty() {
    for policy in ["policies/clinic", "policies/clinic-cedar"] {
        let output = warden()
            .args([
                "eval",
                "--policy",
                policy,
                "--format",
                "pretty",
                "--request",
            ])
            .arg("@policies/clinic/requests/nurse-reads-patient.json")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let mut lines = text.lines();
        assert!(
            lines.next().unwrap().starts_with("permit  decision_id "),
            "{text}"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("policy    clinic at revision 1.0.0+")
        );
        assert!(
            text.contains(r#"obligation redact {"paths":["$..ssn"],"with":"last4"}"#),
            "{text}"
        );
    }
}

#[test]
fn the_sample_requests_decide_as_their_readme_says_on_both_engines() {
    let expected = [
        ("nurse-reads-patient.json", 0),
        ("nurse-other-clinic.json", 1),
        ("doctor-full-record.json", 0),
    ];
    for policy in ["policies/clinic", "policies/clinic-cedar"] {
        for (file, code) in expected {
            let output = warden()
                .args(["eval", "--policy", policy, "--request"])
                .arg(format!("@policies/clinic/requests/{file}"))
                .output()
                .unwrap();
            assert_eq!(
                output.status.code(),
                Some(code),
                "{policy} {file}: {output:?}"
            );
        }
    }
}

#[test]
fn help_shows_the_exit_statuses_and_usage_errors_exit_2() {
    for args in [&["--help"][..], &["eval", "--help"], &["serve", "--help"]] {
        let output = warden().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("4  PDP unavailable"), "{args:?}: {text}");
    }
    let output = warden().args(["eval", "--no-such-flag"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = warden().arg("no-such-command").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn messages_name_the_flag_to_pass_not_the_api_call() {
    let schema =
        std::env::temp_dir().join(format!("warden-cli-schema-{}.json", std::process::id()));
    std::fs::write(&schema, r#"{"tables": {"patients": ["id", "clinic_id"]}}"#).unwrap();
    let output = warden()
        .args(["sql", "rewrite", "--policy", "policies/clinic-data"])
        .args([
            "--subject",
            r#"{"id": "nina", "properties": {"role": "nurse"}}"#,
        ])
        .args(["--dialect", "mysql", "--schema"])
        .arg(&schema)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&schema);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // A flag the dialect needs is missing: usage or configuration, never a deny.
    assert!(
        matches!(output.status.code(), Some(2 | 3)),
        "{:?}: {stderr}",
        output.status
    );
    assert!(stderr.contains("pass `--default-schema NAME`"), "{stderr}");
    assert!(!stderr.contains("call `"), "{stderr}");
}

#[test]
fn eval_refuses_a_number_it_would_round_into_another() {
    let request = nurse("c1").replace(
        r#""clinics":["c1"]"#,
        r#""clinics":[100000000000000000001]"#,
    );
    assert!(request.contains("100000000000000000001"), "{request}");
    for args in [
        vec![
            "eval",
            "--policy",
            "policies/clinic",
            "--request",
            request.as_str(),
        ],
        vec![
            "eval",
            "--policy",
            "policies/clinic",
            "--request",
            request.as_str(),
            "--context",
            r#"{"amount": 0.30000000000000001}"#,
        ],
    ] {
        let output = warden().args(&args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cannot be represented exactly"), "{stderr}");
    }
    let output = eval_stdin(&["--policy", "policies/clinic"], &request);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
