//! The clinic policy against its case table, on both regorus evaluators.

use warden_decision::Pdp;
use warden_rego::{Evaluator, RegoPdp};
use warden_tests::{cases, clinic_policy_dir};

#[tokio::test]
async fn clinic_policy_decides_every_case_on_vm_and_interpreter() {
    let dir = clinic_policy_dir();
    let cases = cases(&dir);
    assert!(cases.len() >= 25, "the case table is too small");
    for evaluator in [Evaluator::Vm, Evaluator::Interpreter] {
        let pdp = RegoPdp::builder()
            .directory(&dir)
            .evaluator(evaluator)
            .build()
            .unwrap();
        let mut failures = Vec::new();
        for case in &cases {
            let d = pdp.decide(&case.request).await.unwrap();
            let mut obligations: Vec<String> = d
                .obligations
                .iter()
                .map(|o| o.type_name().to_owned())
                .collect();
            obligations.sort();
            if d.error_class().is_some() {
                failures.push(format!("{}: error {:?}", case.name, d.diagnostics));
            } else if d.allowed != case.expect.allow || obligations != case.expect.obligations {
                failures.push(format!(
                    "{}: got allow={} obligations={obligations:?}, want allow={} obligations={:?}",
                    case.name, d.allowed, case.expect.allow, case.expect.obligations
                ));
            }
            if !d.allowed {
                assert!(
                    !d.reasons.is_empty(),
                    "{}: a deny carries a reason",
                    case.name
                );
            }
        }
        assert!(
            failures.is_empty(),
            "{evaluator:?}:\n{}",
            failures.join("\n")
        );
    }
}

#[test]
fn clinic_policy_reports_its_manifest_revision() {
    let pdp = RegoPdp::from_dir(clinic_policy_dir()).unwrap();
    let revision = pdp.revision().unwrap();
    assert_eq!(revision.id, "clinic");
    assert!(
        revision.revision.starts_with("1.0.0+sha256."),
        "{revision:?}"
    );
    assert_eq!(pdp.entrypoint(), "data.clinic.decision");
}
