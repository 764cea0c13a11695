//! The Cedar clinic package (`policies/clinic-cedar`) decides every case of the Rego clinic
//! package (`policies/clinic/cases.json`) as the Rego package does: the same permit or deny,
//! the same obligations.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use warden_cedar::CedarPdp;
use warden_decision::{AccessRequest, Decision, Pdp};
use warden_rego::RegoPdp;

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[derive(Deserialize)]
struct Case {
    name: String,
    request: AccessRequest,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    allow: bool,
    obligations: Vec<String>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(policies().join("clinic/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn types(d: &Decision) -> Vec<String> {
    let mut types: Vec<String> = d
        .obligations
        .iter()
        .map(|o| o.type_name().to_owned())
        .collect();
    types.sort();
    types
}

/// The obligations as a set of JSON values (sorted canonical strings, without duplicates).
fn obligation_set(d: &Decision) -> Vec<String> {
    let mut set: Vec<String> = d
        .obligations
        .iter()
        .map(|o| o.to_json().to_string())
        .collect();
    set.sort();
    set.dedup();
    set
}

#[tokio::test]
async fn cedar_decides_every_clinic_case_like_rego() {
    let rego = RegoPdp::from_dir(policies().join("clinic")).unwrap();
    let cedar = CedarPdp::from_dir(policies().join("clinic-cedar")).unwrap();
    let cases = cases();
    assert_eq!(cases.len(), 32, "the clinic case table");
    let mut failures = Vec::new();
    for case in &cases {
        let want = {
            let mut t = case.expect.obligations.clone();
            t.sort();
            t
        };
        let r = rego.decide(&case.request).await.unwrap();
        let c = cedar.decide(&case.request).await.unwrap();
        if r.allowed != case.expect.allow || types(&r) != want {
            failures.push(format!("{}: rego {r:?}", case.name));
        }
        if c.allowed != case.expect.allow || types(&c) != want {
            failures.push(format!("{}: cedar {c:?}", case.name));
        }
        if obligation_set(&c) != obligation_set(&r) {
            failures.push(format!(
                "{}: obligations differ\n  cedar {:?}\n  rego  {:?}",
                case.name,
                obligation_set(&c),
                obligation_set(&r)
            ));
        }
        // Cedar reports each obligation once; the types match the table with duplicates.
        assert_eq!(
            c.obligations.len(),
            obligation_set(&c).len(),
            "{}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn both_packages_report_the_same_policy_id_and_version() {
    let rego = RegoPdp::from_dir(policies().join("clinic")).unwrap();
    let cedar = CedarPdp::from_dir(policies().join("clinic-cedar")).unwrap();
    let r = rego.revision().unwrap();
    let c = cedar.revision().unwrap();
    assert_eq!(c.id, "clinic");
    assert_eq!(c.id, r.id);
    let version = |rev: &str| rev.split('+').next().unwrap_or_default().to_owned();
    assert_eq!(version(&c.revision), version(&r.revision));
    let hash = c.revision.split("+sha256.").nth(1).unwrap();
    assert_eq!(hash.len(), 16);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    for case in cases() {
        assert_eq!(cedar.decide(&case.request).await.unwrap().policy, c);
    }
}

#[tokio::test]
async fn well_formed_clinic_requests_evaluate_without_errors() {
    let cedar = CedarPdp::from_dir(policies().join("clinic-cedar")).unwrap();
    for case in cases() {
        let d = cedar.decide(&case.request).await.unwrap();
        let malformed_clinics = case
            .request
            .subject
            .properties
            .get("clinics")
            .is_some_and(|c| !c.is_array());
        if malformed_clinics {
            // A `clinics` claim that is not a list makes the membership test fail to
            // evaluate: a policy-error deny that names the policies.
            assert!(!d.allowed);
            assert!(
                d.diagnostics
                    .iter()
                    .any(|x| x.message.contains("patients.read.carer")),
                "{}: {d:?}",
                case.name
            );
        } else {
            assert!(
                d.diagnostics.is_empty(),
                "{}: {:?}",
                case.name,
                d.diagnostics
            );
        }
    }
}

#[tokio::test]
async fn denials_of_carers_outside_their_clinic_give_the_reason() {
    let cedar = CedarPdp::from_dir(policies().join("clinic-cedar")).unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "nurse may not read a patient of another clinic")
        .unwrap();
    let d = cedar.decide(&case.request).await.unwrap();
    assert!(!d.allowed && !d.not_applicable);
    assert_eq!(d.reasons.len(), 1);
    assert_eq!(d.reasons[0].message, "not a member of the clinic");
    assert_eq!(d.reasons[0].code.as_deref(), Some("not_clinic_member"));
    let _: Value = serde_json::to_value(&d).unwrap();
}
