use super::*;
use std::fs;
use warden_decision::{Action, MaskStrategy, Obligation, Resource, Subject};

fn request(role: &str, action: &str) -> AccessRequest {
    AccessRequest::new(
        Subject::user("u1").with_property("role", role),
        Action::new(action),
        Resource::new("route", "/patients"),
    )
}

fn pdp(rego: &str) -> RegoPdp {
    RegoPdp::builder().policy("p.rego", rego).build().unwrap()
}

fn both(rego: &str) -> [RegoPdp; 2] {
    [
        RegoPdp::builder().policy("p.rego", rego).build().unwrap(),
        RegoPdp::builder()
            .policy("p.rego", rego)
            .evaluator(Evaluator::Interpreter)
            .build()
            .unwrap(),
    ]
}

#[tokio::test]
async fn boolean_entrypoint_permits_and_denies_on_vm_and_interpreter() {
    for pdp in both(
        r#"package warden
        default decision := false
        decision if input.subject.properties.role == "admin""#,
    ) {
        assert!(pdp.decide(&request("admin", "GET")).await.unwrap().allowed);
        let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
        assert!(!d.allowed && !d.not_applicable && d.error_class().is_none());
    }
}

#[tokio::test]
async fn decision_object_with_obligations_reasons_and_set_obligations() {
    for pdp in both(
        r#"package warden
        decision := {"allow": true, "obligations": obligations, "reasons": ["nurse", {"code": "c", "message": "m"}]}
        obligations contains {"type": "mask_columns", "table": "patients", "columns": {"ssn": "last4"}}
        obligations contains {"type": "audit", "level": "high"} if input.action.name == "POST""#,
    ) {
        let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.obligations.len(), 1);
        let Obligation::MaskColumns(m) = &d.obligations[0] else {
            panic!()
        };
        assert_eq!(m.columns["ssn"], MaskStrategy::Last4);
        assert_eq!(d.reasons.len(), 2);
        assert_eq!(d.policy.id, "inline");
        assert!(d.policy.revision.starts_with("sha256."));
        let d = pdp.decide(&request("nurse", "POST")).await.unwrap();
        assert_eq!(d.obligations.len(), 2);
    }
}

#[tokio::test]
async fn malformed_results_are_policy_errors_that_deny() {
    let cases = [
        (
            r#"decision := {"allow": true, "obligations": [{"type": "redact", "paths": ["$.a"], "with": "rot13"}]}"#,
            "unknown mask strategy `rot13`",
        ),
        (
            r#"decision := {"allow": true, "obligations": [{"paths": ["$.a"]}]}"#,
            "has no `type`",
        ),
        (
            r#"decision := {"allow": true, "obligations": {"type": "audit"}}"#,
            "not an array",
        ),
        (r#"decision := {"allow": "yes"}"#, "not a boolean"),
        (
            r#"decision := {"allowed": true}"#,
            "unknown member `allowed`",
        ),
        (r#"decision := {"obligations": []}"#, "no `allow`"),
        (r#"decision := 1"#, "a number"),
        (r#"decision := "allow""#, "a string"),
        (
            r#"decision := {"allow": true, "reasons": [1]}"#,
            "a reason must be",
        ),
    ];
    for (body, want) in cases {
        for pdp in both(&format!("package warden\n{body}")) {
            let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
            assert!(!d.allowed, "{body}");
            assert!(d.obligations.is_empty());
            assert_eq!(d.error_class(), Some(ErrorClass::PolicyError), "{body}");
            let message = &d.diagnostics[0].message;
            assert!(message.contains(want), "{body}: {message}");
        }
    }
}

#[tokio::test]
async fn an_evaluation_error_is_a_policy_error_deny() {
    // Two complete definitions with different values: a conflict at evaluation time. The
    // interpreter reports it as OPA does; regorus' VM answers undefined. Both deny.
    let [vm, interpreter] = both(
        r#"package warden
        decision := true if input.action.name == "GET"
        decision := false if input.subject.properties.role == "nurse""#,
    );
    let d = interpreter.decide(&request("nurse", "GET")).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError), "{d:?}");
    let message = &d.diagnostics[0].message;
    assert!(message.contains("conflicts"), "{message}");
    let d = vm.decide(&request("nurse", "GET")).await.unwrap();
    assert!(!d.allowed && d.obligations.is_empty(), "{d:?}");
}

#[tokio::test]
async fn a_runaway_policy_hits_the_instruction_limit_and_denies() {
    let pdp = RegoPdp::builder()
        .policy(
            "p.rego",
            r#"package warden
            decision if count([x | some x in numbers.range(1, 100000)]) > 0"#,
        )
        .max_instructions(1_000)
        .build()
        .unwrap();
    let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError), "{d:?}");
}

#[test]
fn a_policy_that_does_not_parse_is_a_load_error_with_position() {
    let err = RegoPdp::builder()
        .policy("bad.rego", "package warden\ndecision := {")
        .build()
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("bad.rego"), "{message}");
    assert!(
        message.contains(":2:") || message.contains("2:"),
        "{message}"
    );
}

#[test]
fn an_entrypoint_that_does_not_exist_is_a_load_error() {
    let err = RegoPdp::builder()
        .policy("p.rego", "package other\nx := 1")
        .build()
        .unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-rego-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn loads_a_directory_with_data_and_manifest_and_reloads() {
    let dir = temp_dir("reload");
    fs::create_dir_all(dir.join("roles")).unwrap();
    fs::write(
        dir.join("warden.toml"),
        "id = \"clinic\"\nversion = \"1.2.0\"\nentrypoint = \"data.clinic.decision\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("policy.rego"),
        "package clinic\ndecision if input.subject.properties.role in data.roles.allowed",
    )
    .unwrap();
    fs::write(dir.join("roles/data.json"), r#"{"allowed": ["doctor"]}"#).unwrap();
    let pdp = RegoPdp::from_dir(&dir).unwrap();
    assert_eq!(pdp.entrypoint(), "data.clinic.decision");
    let r1 = pdp.revision().unwrap();
    assert_eq!(r1.id, "clinic");
    assert!(r1.revision.starts_with("1.2.0+sha256."), "{r1:?}");
    assert!(pdp.decide(&request("doctor", "GET")).await.unwrap().allowed);
    assert!(!pdp.decide(&request("nurse", "GET")).await.unwrap().allowed);

    fs::write(
        dir.join("roles/data.json"),
        r#"{"allowed": ["doctor", "nurse"]}"#,
    )
    .unwrap();
    let r2 = pdp.reload().unwrap();
    assert_ne!(r1, r2, "a data change changes the revision");
    let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.policy, r2);

    // A broken policy fails the reload; the last good revision keeps deciding.
    fs::write(dir.join("policy.rego"), "package clinic\ndecision if {").unwrap();
    assert!(matches!(pdp.reload(), Err(LoadError::Policy { .. })));
    assert_eq!(pdp.revision().unwrap(), r2);
    assert!(pdp.decide(&request("nurse", "GET")).await.unwrap().allowed);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directory_errors_name_the_file() {
    let dir = temp_dir("errors");
    assert!(matches!(
        RegoPdp::from_dir(&dir),
        Err(LoadError::NoPolicies(_))
    ));
    fs::write(dir.join("p.rego"), "package warden\ndecision := true").unwrap();
    fs::write(dir.join("data.json"), "[1, 2]").unwrap();
    let err = RegoPdp::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("data.json") && err.contains("JSON object"),
        "{err}"
    );
    fs::write(dir.join("data.json"), "{").unwrap();
    assert!(
        RegoPdp::from_dir(&dir)
            .unwrap_err()
            .to_string()
            .contains("data.json")
    );
    fs::write(dir.join("data.json"), "{}").unwrap();
    fs::write(dir.join("warden.toml"), "id = 3").unwrap();
    let err = RegoPdp::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("warden.toml"), "{err}");
    assert!(RegoPdp::from_dir(dir.join("missing")).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn concurrent_decisions_never_cross_requests() {
    let pdp = Arc::new(pdp(r#"package warden
        decision := {"allow": true, "reasons": [input.subject.id]}"#));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let pdp = pdp.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..200 {
                let id = format!("user-{i}-{j}");
                let r = AccessRequest::new(
                    Subject::user(&id),
                    Action::new("GET"),
                    Resource::new("route", "/"),
                );
                let d = pdp.decide(&r).await.unwrap();
                assert_eq!(d.reasons[0].message, id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn evaluate_raw_returns_the_entrypoint_value() {
    let pdp = pdp("package warden\ndecision := {\"allow\": input.action.name == \"GET\"}");
    let v = pdp.evaluate_raw(&request("x", "GET")).unwrap().unwrap();
    assert_eq!(v, serde_json::json!({"allow": true}));
}
