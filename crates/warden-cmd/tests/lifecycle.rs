//! `warden test`, `warden check` and `warden catalog` on the example packages and on broken
//! copies of them, run as a user runs them.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::path::{Path, PathBuf};
use std::process::Output;

mod support;
use support::{Scratch, root, warden};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = warden().args(args).output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

impl Scratch {
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn edit(&self, name: &str, from: &str, to: &str) {
        let path = self.file(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{name} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.file(name), text).unwrap();
    }
}

fn in_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_package_has_cases_and_they_all_pass_with_coverage() {
    let (code, out, err) = run(&["test", "--coverage"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for package in in_dir(&root().join("policies")) {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("policies/{package}: ")))
            .unwrap_or_else(|| panic!("{package} not tested: {out}"));
        assert!(!line.ends_with(" 0 cases"), "{line}");
    }
    // Every Rego and Cedar package reports coverage (casbin has none to report).
    let measured = in_dir(&root().join("policies"))
        .iter()
        .filter(|p| !root().join("policies").join(p).join("model.conf").exists())
        .count();
    assert_eq!(out.matches("  coverage ").count(), measured, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_case_shows_what_differed_and_exits_1() {
    for (package, file) in [
        ("policies/clinic", "cases.json"),
        ("policies/clinic-cedar", "cases.yaml"),
    ] {
        let scratch = Scratch::copy(package);
        let text = std::fs::read_to_string(scratch.file(file)).unwrap();
        // The nurse of another clinic is denied; the changed case says permit, with a redaction.
        let target = "nurse may not read a patient of another clinic";
        let at = text.find(target).unwrap();
        let (before, after) = text.split_at(at);
        let after = after
            .replacen("\"allow\": false", "\"allow\": true", 1)
            .replacen("allow: false", "allow: true", 1)
            .replacen("\"obligations\": []", "\"obligations\": [\"redact\"]", 1)
            .replacen("obligations: []", "obligations: [redact]", 1);
        scratch.write(file, &format!("{before}{after}"));
        let (code, out, err) = run(&["test", scratch.path()]);
        assert_eq!(code, Some(1), "{package}: {out}{err}");
        let fail = format!("  FAIL  {target} ({file})");
        assert!(out.contains(&fail), "{out}");
        assert!(out.contains("decision     want permit, got deny"), "{out}");
        assert!(out.contains("obligations  missing redact"), "{out}");
        assert!(out.contains("31 passed, 1 failed"), "{out}");

        let (code, xml, _) = run(&["test", scratch.path(), "--format", "junit"]);
        assert_eq!(code, Some(1));
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(
            xml.contains("tests=\"32\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"decision     want permit, got deny\">"),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase ").count(), 32, "{xml}");
    }
}

#[test]
fn expected_reasons_and_exact_obligations_are_compared() {
    let scratch = Scratch::copy("policies/clinic");
    scratch.write(
        "cases.yaml",
        r#"
- name: nurse of another clinic, with the reason
  request:
    subject: {id: nina, properties: {role: nurse, clinics: [c1]}}
    action: {name: GET}
    resource: {type: route, id: "/clinics/{clinic_id}/patients/{patient_id}",
               properties: {params: {clinic_id: c2, patient_id: p1}}}
  expect: {allow: false, reasons: [not a member of the clinic, role may not do this]}
- name: nurse of the clinic, the exact masks
  request:
    subject: {id: nina, properties: {role: nurse, clinics: [c1]}}
    action: {name: GET}
    resource: {type: route, id: "/clinics/{clinic_id}/patients/{patient_id}",
               properties: {params: {clinic_id: c1, patient_id: p1}}}
  expect:
    allow: true
    obligations:
      - {type: redact, paths: ["$..ssn"], with: last4}
      - {type: redact, paths: ["$..notes"], with: first4}
"#,
    );
    std::fs::remove_file(scratch.file("cases.json")).unwrap();
    let (code, out, _) = run(&["test", scratch.path()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("  ok    nurse of another clinic, with the reason"),
        "{out}"
    );
    assert!(
        out.contains("  FAIL  nurse of the clinic, the exact masks"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("obligations  missing"))
        .unwrap();
    let (missing, unexpected) = line.split_once("; unexpected ").unwrap();
    assert!(missing.contains(r#""with":"first4""#), "{line}");
    assert!(unexpected.contains(r#""with":"remove""#), "{line}");
}

#[test]
fn broken_packages_and_case_files_exit_3_and_bad_arguments_2() {
    let scratch = Scratch::copy("policies/clinic");
    scratch.write(
        "cases.json",
        "[{\"name\": \"x\", \"request\": {}, \"expect\": {}}",
    );
    let (code, out, _) = run(&["test", scratch.path()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("cases.json:1:"), "the file and line: {out}");

    let scratch = Scratch::copy("policies/clinic");
    scratch.edit("clinic.rego", "if {", "if {{");
    let (code, out, _) = run(&["test", scratch.path()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("clinic.rego"), "{out}");

    let (code, _, err) = run(&["test", "no/such/dir"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`no/such/dir` is not a directory"), "{err}");
    let (code, _, _) = run(&["test", "--format", "xml"]);
    assert_eq!(code, Some(2));
}

#[test]
fn coverage_names_the_rego_lines_and_cedar_policies_no_case_reached() {
    let scratch = Scratch::copy("policies/clinic");
    scratch.write(
        "extra.rego",
        "package clinic\n\nallow if {\n\tmethod == \"PATCH\"\n\tjanitor\n}\n\njanitor if {\n\trole == \"janitor\"\n}\n",
    );
    let (code, out, _) = run(&["test", scratch.path(), "--coverage"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("not covered  extra.rego:9  role == \"janitor\""),
        "{out}"
    );
    assert!(!out.contains("coverage 100%"), "{out}");
    // A file whose rules no case reached at all is reported too.
    scratch.write(
        "extra.rego",
        "package clinic\n\n# never used\nunused if {\n\trole == \"janitor\"\n}\n",
    );
    let (_, out, _) = run(&["test", scratch.path(), "--coverage"]);
    assert!(
        out.contains("not covered  extra.rego:4  unused if {"),
        "{out}"
    );
    assert!(
        out.contains("not covered  extra.rego:5  role == \"janitor\""),
        "{out}"
    );
    assert!(
        !out.contains("extra.rego:3"),
        "comments are not code: {out}"
    );

    let scratch = Scratch::copy("policies/clinic-cedar");
    // Keep only the cases about health: every other policy never determines a decision.
    let text = std::fs::read_to_string(scratch.file("cases.yaml")).unwrap();
    let first = text.find("- name: anonymous may not").unwrap();
    scratch.write("cases.yaml", &text[..first]);
    let (code, out, _) = run(&["test", scratch.path(), "--coverage"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("coverage 5.9% of policies (1 of 17)"), "{out}");
    assert_eq!(
        out.matches("never determined a decision").count(),
        16,
        "{out}"
    );
}

#[test]
fn a_casbin_package_is_tested_checked_and_listed_like_the_others() {
    let (code, out, _) = run(&["test", "policies/clinic-casbin"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("policies/clinic-casbin: clinic-casbin 0.9.0+sha256."),
        "{out}"
    );
    assert!(out.contains(" (casbin), 8 cases"), "{out}");
    let scratch = Scratch::copy("policies/clinic-casbin");
    scratch.edit(
        "policy.csv",
        "p, nurse, /clinics/{clinic_id}/patients/{patient_id}, GET\n",
        "",
    );
    let (code, out, _) = run(&["test", scratch.path()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("  FAIL  a nurse reads a patient"), "{out}");
    scratch.edit(
        "warden.toml",
        "obj = \"resource.id\"",
        "obj = \"resource.name\"",
    );
    let (code, out, _) = run(&["check", scratch.path()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("`resource.name`"), "{out}");
}

#[test]
fn check_accepts_the_examples_and_names_file_and_line_of_each_problem() {
    let (code, out, _) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" package(s) checked, 0 with errors"), "{out}");

    let scratch = Scratch::copy("policies/clinic");
    scratch.edit("warden.toml", "owner = ", "# owner = ");
    scratch.edit("warden.toml", "scope = ", "# scope = ");
    scratch.edit("warden.toml", "reference = \"164.312(b)\"", "");
    let mut toml = std::fs::read_to_string(scratch.file("warden.toml")).unwrap();
    toml.push_str(
        "\n[[exceptions]]\nid = \"EX-1\"\nreason = \"migration\"\nexpires = \"2020-01-01\"\n",
    );
    scratch.write("warden.toml", &toml);
    let (code, out, _) = run(&["check", scratch.path()]);
    assert_eq!(code, Some(1), "{out}");
    let manifest = format!("{}/warden.toml", scratch.path());
    assert!(
        out.contains(&format!("{manifest}:1: the manifest has no `owner`")),
        "{out}"
    );
    assert!(out.contains("has no `scope`"), "{out}");
    assert!(out.contains("regulation 2 has no `reference`"), "{out}");
    assert!(
        out.contains("exception `EX-1` expired on 2020-01-01"),
        "{out}"
    );

    let scratch = Scratch::copy("policies/clinic-cedar");
    scratch.edit("clinic.cedar", "principal.role", "principal.rolle");
    let (code, out, _) = run(&["check", scratch.path()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("does not validate against the schema"),
        "{out}"
    );
    assert!(out.contains("clinic.cedar"), "{out}");

    let scratch = Scratch::copy("policies/clinic");
    scratch.edit("warden.toml", "status = \"active\"", "status = \"paused\"");
    let (code, out, _) = run(&["check", scratch.path()]);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("warden.toml:7:"),
        "the line of the bad value: {out}"
    );
}

#[test]
fn check_fails_on_an_obligation_the_rego_policy_returns_malformed() {
    let scratch = Scratch::copy("policies/clinic");
    scratch.edit("clinic.rego", "\"last4\"", "\"last5\"");
    let (code, out, _) = run(&["check", scratch.path()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("obligation"), "{out}");
    assert!(out.contains("cases.json: case `"), "{out}");
}

#[test]
fn catalog_lists_packages_with_controls_tests_and_coverage() {
    let (code, out, _) = run(&["catalog"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("PACKAGE"), "{out}");
    assert!(out.contains("clinic-data"), "{out}");
    assert!(out.contains("32/32"), "{out}");

    let (code, json, _) = run(&["catalog", "--format", "json"]);
    assert_eq!(code, Some(0));
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    let data = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "clinic-data")
        .unwrap();
    assert_eq!(data["status"], "active");
    assert_eq!(data["owner"], "clinic-platform@example.com");
    assert_eq!(data["scope"]["pep"][0], "sql");
    assert_eq!(data["regulations"][2]["reference"], "Art. 32");
    assert_eq!(data["tests"], 17);
    assert!(
        data["revision"]
            .as_str()
            .unwrap()
            .starts_with("1.0.0+sha256.")
    );

    let (code, md, _) = run(&["catalog", "--format", "markdown"]);
    assert_eq!(code, Some(0));
    assert!(
        md.contains("* control HIPAA 164.312(b) (Audit controls):"),
        "{md}"
    );
    assert!(
        md.contains("enforced by package clinic 1.0.0 (`policies/clinic`, rego, active), revision `1.0.0+sha256."),
        "{md}"
    );
    assert!(md.contains("32 passing cases of 32"), "{md}");
}
