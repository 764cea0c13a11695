//! The casbin adapter on real casbin models: ACL and RBAC with domains, the request mapping,
//! refusals at load, and the combination with a Rego package.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use warden_casbin::{CasbinPdp, LoadError};
use warden_decision::{
    AccessRequest, Action, Combined, Combining, ErrorClass, Pdp, Resource, Subject,
};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn patients(who: &str, clinic: &str, route: &str) -> AccessRequest {
    AccessRequest::new(
        Subject::user(who),
        Action::new("GET"),
        Resource::new("route", route)
            .with_property("params", json!({"clinic_id": clinic, "patient_id": "p1"})),
    )
}

async fn rbac() -> CasbinPdp {
    CasbinPdp::builder()
        .directory(dir("rbac-domains"))
        .request_value("dom", "resource.properties.params.clinic_id")
        .policy_id("clinic-casbin")
        .build()
        .await
        .unwrap()
}

const LIST: &str = "/clinics/{clinic_id}/patients";
const ONE: &str = "/clinics/{clinic_id}/patients/{patient_id}";

#[tokio::test]
async fn rbac_with_domains_decides_as_casbin_does() {
    let pdp = rbac().await;
    for (who, clinic, route, allowed) in [
        ("alice", "c1", LIST, true),
        ("alice", "c1", ONE, true),
        ("alice", "c2", LIST, false),
        ("nina", "c1", LIST, true),
        ("nina", "c1", ONE, false),
        ("bob", "c2", LIST, true),
        ("bob", "c1", LIST, false),
        ("mallory", "c1", LIST, false),
        // A parameter cannot smuggle a path past keyMatch2's segments.
        ("alice", "c1/../c2", LIST, false),
    ] {
        let d = pdp.decide(&patients(who, clinic, route)).await.unwrap();
        assert_eq!(d.allowed, allowed, "{who} {clinic} {route}: {d:?}");
        assert!(d.obligations.is_empty());
        assert_eq!(d.policy.id, "clinic-casbin");
        assert!(d.policy.revision.starts_with("sha256."));
    }
    let post = AccessRequest::new(
        Subject::user("alice"),
        Action::new("POST"),
        Resource::new("route", LIST).with_property("params", json!({"clinic_id": "c1"})),
    );
    assert!(!pdp.decide(&post).await.unwrap().allowed);
}

#[tokio::test]
async fn a_missing_request_value_is_a_deny_with_a_policy_error() {
    let pdp = rbac().await;
    let no_clinic = AccessRequest::new(
        Subject::user("alice"),
        Action::new("GET"),
        Resource::new("route", LIST),
    );
    let d = pdp.decide(&no_clinic).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
    assert!(d.diagnostics[0].message.contains("`dom`"), "{d:?}");
    // An object where a string is expected is not turned into one.
    let object = patients("alice", "c1", LIST);
    let mut object = object;
    object
        .resource
        .properties
        .insert("params".into(), json!({"clinic_id": {"id": "c1"}}));
    assert!(!pdp.decide(&object).await.unwrap().allowed);
}

#[tokio::test]
async fn acl_uses_the_default_mapping() {
    let pdp = CasbinPdp::from_dir(dir("acl")).await.unwrap();
    let ask = |who: &str, method: &str| {
        AccessRequest::new(
            Subject::user(who),
            Action::new(method),
            Resource::new("route", "/reports"),
        )
    };
    assert!(pdp.decide(&ask("alice", "POST")).await.unwrap().allowed);
    assert!(pdp.decide(&ask("bob", "GET")).await.unwrap().allowed);
    assert!(!pdp.decide(&ask("bob", "POST")).await.unwrap().allowed);
    assert!(!pdp.decide(&ask("alice", "get")).await.unwrap().allowed);
}

#[tokio::test]
async fn bad_configurations_fail_at_load() {
    let unmapped = CasbinPdp::from_dir(dir("rbac-domains")).await.unwrap_err();
    assert!(
        matches!(unmapped, LoadError::Unmapped(ref t) if t == "dom"),
        "{unmapped}"
    );
    let bad_path = CasbinPdp::builder()
        .directory(dir("rbac-domains"))
        .request_value("dom", "resource.params.clinic_id")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(bad_path, LoadError::BadPath { .. }), "{bad_path}");
    let missing = CasbinPdp::from_dir(dir("nowhere")).await.unwrap_err();
    assert!(matches!(missing, LoadError::Io { .. }), "{missing}");
    let no_request = CasbinPdp::builder()
        .model("[policy_definition]\np = sub, obj, act\n")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(no_request, LoadError::NoRequestDefinition),
        "{no_request}"
    );
    let broken = CasbinPdp::builder()
        .model("[request_definition]\nr = sub, obj, act\n[matchers]\nm = r.sub ==\n")
        .build()
        .await;
    assert!(broken.is_err(), "a model casbin refuses does not load");
}

#[tokio::test]
async fn casbin_and_rego_combine_deny_overrides_with_the_rego_obligations() {
    let casbin: Arc<dyn Pdp> = Arc::new(rbac().await);
    let rego: Arc<dyn Pdp> = Arc::new(
        warden_rego::RegoPdp::builder()
            .policy(
                "masks.rego",
                r#"
                package warden
                decision := {"allow": true, "obligations": [{"type": "redact", "paths": ["$..ssn"], "with": "last4"}]}
                "#,
            )
            .build()
            .unwrap(),
    );
    let both = Combined::new(Combining::DenyOverrides)
        .with(casbin)
        .with(rego);
    let d = both.decide(&patients("alice", "c1", LIST)).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.obligations.len(), 1, "the Rego package's mask: {d:?}");
    let d = both.decide(&patients("alice", "c2", LIST)).await.unwrap();
    assert!(!d.allowed, "casbin's deny wins: {d:?}");
}
