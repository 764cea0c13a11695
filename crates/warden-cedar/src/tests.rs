use super::*;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use warden_decision::{Action, MaskStrategy, Obligation, Resource, Subject};

const SCHEMA: &str = r#"
    entity Group;
    entity User in [Group] = { role?: String, level?: Long, clinics?: Set<String> };
    entity Route = { params?: { clinic_id?: String } };
    action "GET", "POST" appliesTo { principal: [User], resource: [Route] };
"#;

fn request(role: &str, action: &str) -> AccessRequest {
    AccessRequest::new(
        Subject::user("u1").with_property("role", role),
        Action::new(action),
        Resource::new("route", "/patients"),
    )
}

fn pdp(policies: &str) -> CedarPdp {
    CedarPdp::builder()
        .schema(SCHEMA)
        .policy("p.cedar", policies)
        .build()
        .unwrap()
}

fn redact(path: &str) -> String {
    format!(
        r#"@obligation("{{\"type\": \"redact\", \"paths\": [\"{path}\"], \"with\": \"last4\"}}")"#
    )
}

fn decide(pdp: &CedarPdp, request: &AccessRequest) -> Decision {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pdp.decide(request))
        .unwrap()
}

#[tokio::test]
async fn permits_and_denies_with_the_revision_in_every_decision() {
    let pdp = pdp(r#"permit (principal, action == Action::"GET", resource)
        when { principal has role && principal.role == "nurse" };"#);
    let revision = pdp.revision().unwrap();
    assert_eq!(revision.id, "inline");
    assert!(revision.revision.starts_with("sha256."), "{revision:?}");
    let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
    assert!(d.allowed && d.obligations.is_empty() && d.diagnostics.is_empty());
    assert_eq!(d.policy, revision);
    let d = pdp.decide(&request("nurse", "POST")).await.unwrap();
    assert!(!d.allowed && d.not_applicable, "a default deny: {d:?}");
    assert!(d.reasons.is_empty());
    assert_eq!(d.policy, revision);
    let d = pdp.decide(&request("doctor", "GET")).await.unwrap();
    assert!(!d.allowed);
}

#[tokio::test]
async fn obligations_of_every_determining_permit_once_each_in_load_order() {
    let pdp = pdp(&format!(
        r#"
        {ssn}
        permit (principal, action == Action::"GET", resource);
        @id("notes")
        @obligation("{{\"type\": \"redact\", \"paths\": [\"$..notes\"], \"with\": \"remove\"}}")
        @reason("nurses see no notes")
        @advice("{{\"type\": \"banner\", \"text\": \"restricted\"}}")
        permit (principal, action == Action::"GET", resource)
        when {{ principal has role && principal.role == "nurse" }};
        {ssn}
        permit (principal, action == Action::"GET", resource)
        when {{ principal has role && principal.role == "nurse" }};
        // Satisfied, but not determining: the decision is a permit.
        @obligation("{{\"type\": \"audit\", \"level\": \"high\"}}")
        permit (principal, action == Action::"POST", resource);
        "#,
        ssn = redact("$..ssn")
    ));
    let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
    assert!(d.allowed);
    let json: Vec<serde_json::Value> = d.obligations.iter().map(Obligation::to_json).collect();
    assert_eq!(
        json,
        [
            json!({"type": "redact", "paths": ["$..ssn"], "with": "last4"}),
            json!({"type": "redact", "paths": ["$..notes"], "with": "remove"}),
        ],
        "the identical ssn redaction of the third policy is kept once"
    );
    assert_eq!(d.reasons[0].message, "nurses see no notes");
    assert_eq!(d.advice.len(), 1);
    assert_eq!(d.advice[0].kind, "banner");
    // The doctor gets only what the first policy carries.
    let d = pdp.decide(&request("doctor", "GET")).await.unwrap();
    assert_eq!(d.obligations.len(), 1);
    let Obligation::Redact(r) = &d.obligations[0] else {
        panic!("{d:?}")
    };
    assert_eq!(r.with, MaskStrategy::Last4);
    assert!(d.reasons.is_empty() && d.advice.is_empty());
}

#[tokio::test]
async fn a_deny_has_the_reasons_of_the_determining_forbids_and_no_obligations() {
    let pdp = pdp(&format!(
        r#"
        {ssn}
        @reason("everyone may read")
        permit (principal, action, resource);
        @id("no-guests")
        @reason("guests may not read")
        @reason_code("guest")
        forbid (principal, action, resource)
        when {{ principal has role && principal.role == "guest" }};
        @reason("no writes")
        forbid (principal, action == Action::"POST", resource);
        @reason("never applies")
        forbid (principal, action, resource) when {{ false }};
        "#,
        ssn = redact("$..ssn")
    ));
    let d = pdp.decide(&request("guest", "POST")).await.unwrap();
    assert!(!d.allowed && !d.not_applicable);
    assert!(d.obligations.is_empty());
    let reasons: Vec<(&str, Option<&str>)> = d
        .reasons
        .iter()
        .map(|r| (r.message.as_str(), r.code.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [("guests may not read", Some("guest")), ("no writes", None)]
    );
    let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.reasons[0].message, "everyone may read");
}

#[test]
fn a_policy_that_does_not_validate_is_a_load_error_with_file_line_and_column() {
    let err = CedarPdp::builder()
        .schema(SCHEMA)
        .policy(
            "clinic.cedar",
            "permit (principal, action, resource);\n\n@id(\"typo\")\npermit (principal, action, resource)\n  when { principal.rol == \"nurse\" };",
        )
        .build()
        .unwrap_err();
    let LoadError::Validation {
        path,
        policy,
        position,
        message,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(path, "clinic.cedar");
    assert_eq!(policy, "typo");
    let position = position.unwrap();
    assert_eq!((position.line, position.column), (5, 10), "{err}");
    assert!(message.contains("rol"), "{message}");
    let text = err.to_string();
    assert!(text.contains("`typo` in `clinic.cedar` at 5:10"), "{text}");
}

#[test]
fn a_syntax_error_is_a_load_error_with_position() {
    let err = CedarPdp::builder()
        .policy(
            "bad.cedar",
            "permit (principal, action, resource);\npermit (principal action, resource);",
        )
        .build()
        .unwrap_err();
    let LoadError::Syntax { path, position, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, "bad.cedar");
    assert_eq!(position.unwrap().line, 2, "{err}");
    assert!(
        err.to_string().contains("bad.cedar` does not parse at 2:"),
        "{err}"
    );
}

#[test]
fn malformed_annotations_are_load_errors_with_position() {
    let cases = [
        (r#"@obligation("{\"type\": \"redact\"")"#, "not JSON"),
        (
            r#"@obligation("{\"type\": \"redact\", \"paths\": [\"$.a\"], \"with\": \"rot13\"}")"#,
            "unknown mask strategy `rot13`",
        ),
        (r#"@obligation("{\"paths\": [\"$.a\"]}")"#, "has no `type`"),
        (r#"@obligation("[]")"#, "must be a JSON object"),
        (
            r#"@obligations("{\"type\": \"audit\"}")"#,
            "did you mean `@obligation`",
        ),
        (r#"@advice("{\"text\": \"x\"}")"#, "not an advice object"),
        (r#"@reason("")"#, "empty"),
        (r#"@reason_code("c")"#, "needs a `@reason`"),
    ];
    for (annotation, want) in cases {
        let source = format!(
            "permit (principal, action, resource);\n// a comment\n  {annotation}\npermit (principal, action, resource);"
        );
        let err = CedarPdp::builder()
            .policy("a.cedar", source)
            .build()
            .unwrap_err();
        let LoadError::Annotation {
            path,
            policy,
            position,
            message,
            ..
        } = &err
        else {
            panic!("{annotation}: {err}")
        };
        assert_eq!(path, "a.cedar");
        assert_eq!(policy, "a.1");
        assert_eq!(
            position.map(|p| (p.line, p.column)),
            Some((3, 3)),
            "{annotation}: {err}"
        );
        assert!(message.contains(want), "{annotation}: {message}");
    }
    let err = CedarPdp::builder()
        .policy(
            "f.cedar",
            r#"@obligation("{\"type\": \"audit\"}") forbid (principal, action, resource);"#,
        )
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("forbid"), "{err}");
}

#[test]
fn other_load_errors() {
    let err = CedarPdp::builder()
        .policy(
            "a.cedar",
            r#"@id("x") permit (principal, action, resource);"#,
        )
        .policy(
            "b.cedar",
            r#"@id("x") forbid (principal, action, resource);"#,
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::DuplicateId { id, first, second } if id == "x" && first == "a.cedar" && second == "b.cedar"),
        "{err}"
    );
    let err = CedarPdp::builder()
        .policy(
            "t.cedar",
            "permit (principal == ?principal, action, resource);",
        )
        .build()
        .unwrap_err();
    assert!(matches!(err, LoadError::Template { .. }), "{err}");
    let err = CedarPdp::builder()
        .schema("entity User = {")
        .policy("a.cedar", "permit (principal, action, resource);")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LoadError::Schema {
                position: Some(_),
                ..
            }
        ),
        "{err}"
    );
    let err = CedarPdp::builder()
        .schema(SCHEMA)
        .entities_json(
            json!([{"uid": {"type": "User", "id": "a"}, "attrs": {"role": 3}, "parents": []}]),
        )
        .policy("a.cedar", "permit (principal, action, resource);")
        .build()
        .unwrap_err();
    assert!(matches!(err, LoadError::Entities { .. }), "{err}");
    assert!(matches!(
        CedarPdp::builder().build(),
        Err(LoadError::NoPolicies(_))
    ));
    let err = CedarPdp::builder()
        .namespace("not a namespace")
        .policy("a.cedar", "permit (principal, action, resource);")
        .build()
        .unwrap_err();
    assert!(matches!(err, LoadError::Mapping(_)), "{err}");
}

#[tokio::test]
async fn an_erroring_permit_never_permits_in_either_mode() {
    // No schema: the attribute test fails at evaluation.
    for deny_on_error in [true, false] {
        let pdp = CedarPdp::builder()
            .policy(
                "p.cedar",
                r#"@id("broken") permit (principal, action, resource) when { principal.level > 3 };"#,
            )
            .deny_on_error(deny_on_error)
            .build()
            .unwrap();
        let d = pdp.decide(&request("nurse", "GET")).await.unwrap();
        assert!(!d.allowed, "{deny_on_error}: {d:?}");
        assert!(!d.not_applicable, "an erroring policy may have applied");
        assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
        assert!(d.diagnostics[0].message.contains("`broken`"), "{d:?}");
        // The same policy with the attribute present permits.
        let ok = AccessRequest::new(
            Subject::user("u1").with_property("level", 5),
            Action::new("GET"),
            Resource::new("route", "/"),
        );
        assert!(pdp.decide(&ok).await.unwrap().allowed);
    }
}

#[tokio::test]
async fn an_erroring_forbid_denies_by_default_and_is_skipped_without_deny_on_error() {
    let policies = r#"
        @id("everyone") permit (principal, action, resource);
        @id("low-levels") forbid (principal, action, resource) when { principal.level < 3 };
    "#;
    // `level` is missing: the forbid fails to evaluate.
    let strict = CedarPdp::builder()
        .policy("p.cedar", policies)
        .build()
        .unwrap();
    let d = strict.decide(&request("nurse", "GET")).await.unwrap();
    assert!(!d.allowed, "fail closed: {d:?}");
    assert_eq!(d.diagnostics.len(), 1);
    let message = &d.diagnostics[0].message;
    assert!(
        message.contains("`low-levels`") && message.contains("deny_on_error"),
        "{message}"
    );

    let cedar = CedarPdp::builder()
        .policy("p.cedar", policies)
        .deny_on_error(false)
        .build()
        .unwrap();
    let d = cedar.decide(&request("nurse", "GET")).await.unwrap();
    assert!(
        d.allowed,
        "Cedar's semantics: the erroring forbid is skipped"
    );
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
    assert!(d.diagnostics[0].message.contains("skipped"), "{d:?}");
}

#[tokio::test]
async fn an_erroring_permit_with_obligations_does_not_silently_drop_them() {
    // Without deny_on_error the other permit permits and the redaction of the erroring one
    // is lost: the reason the default denies.
    let policies = format!(
        r#"
        permit (principal, action, resource);
        {ssn}
        permit (principal, action, resource) when {{ principal.level > 3 }};
        "#,
        ssn = redact("$..ssn")
    );
    let strict = CedarPdp::builder()
        .policy("p.cedar", policies.clone())
        .build()
        .unwrap();
    assert!(!strict.decide(&request("x", "GET")).await.unwrap().allowed);
    let cedar = CedarPdp::builder()
        .policy("p.cedar", policies)
        .deny_on_error(false)
        .build()
        .unwrap();
    let d = cedar.decide(&request("x", "GET")).await.unwrap();
    assert!(d.allowed && d.obligations.is_empty());
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
}

#[tokio::test]
async fn an_overflow_in_a_validated_policy_is_a_policy_error() {
    let pdp = pdp(r#"@id("overflow") permit (principal, action, resource)
        when { principal has level && principal.level + 9223372036854775807 > 0 };"#);
    let r = AccessRequest::new(
        Subject::user("u").with_property("level", 2),
        Action::new("GET"),
        Resource::new("route", "/"),
    );
    let d = pdp.decide(&r).await.unwrap();
    assert!(!d.allowed);
    assert!(d.diagnostics[0].message.contains("overflow"), "{d:?}");
}

#[tokio::test]
async fn values_cedar_cannot_represent() {
    let pdp = CedarPdp::builder()
        .policy(
            "p.cedar",
            r#"permit (principal, action, resource)
            when { principal has role && principal.role == "nurse" };
            forbid (principal, action, resource)
            when { (principal has score && principal.score > 50) ||
                   (principal has limits && principal.limits.max.contains(3)) ||
                   (principal has n && principal.n > 1) ||
                   (context has latency && context.latency > 1) };"#,
        )
        .build()
        .unwrap();
    // A fraction is rejected, with the path of the value.
    for (subject, path) in [
        (
            Subject::user("u")
                .with_property("role", "nurse")
                .with_property("score", 0.5),
            "subject.properties.score",
        ),
        (
            Subject::user("u")
                .with_property("role", "nurse")
                .with_property("limits", json!({"max": [1, 1e300]})),
            "subject.properties.limits.max[1]",
        ),
        (
            Subject::user("u")
                .with_property("role", "nurse")
                .with_property("n", u64::MAX),
            "subject.properties.n",
        ),
    ] {
        let r = AccessRequest::new(subject, Action::new("GET"), Resource::new("route", "/"));
        let d = pdp.decide(&r).await.unwrap();
        assert!(!d.allowed, "{d:?}");
        assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
        let message = &d.diagnostics[0].message;
        assert!(message.contains(&format!("`{path}`")), "{message}");
    }
    // In the context too.
    let r = request("nurse", "GET").with_context("latency", 1.5);
    let d = pdp.decide(&r).await.unwrap();
    assert!(!d.allowed);
    assert!(
        d.diagnostics[0].message.contains("`context.latency`"),
        "{d:?}"
    );
    // `null` is an absent attribute: `has` is false.
    let r = AccessRequest::new(
        Subject::user("u").with_property("role", serde_json::Value::Null),
        Action::new("GET"),
        Resource::new("route", "/"),
    );
    let d = pdp.decide(&r).await.unwrap();
    assert!(!d.allowed && d.diagnostics.is_empty(), "{d:?}");
    let r = request("nurse", "GET").with_context("latency", serde_json::Value::Null);
    assert!(pdp.decide(&r).await.unwrap().allowed);
    // Properties no policy names are never mapped, so they cannot be rejected either.
    let r = AccessRequest::new(
        Subject::user("u")
            .with_property("role", "nurse")
            .with_property("ratio", 0.25),
        Action::new("GET"),
        Resource::new("route", "/").with_property("weight", 1.5),
    )
    .with_context("load", 0.75);
    let d = pdp.decide(&r).await.unwrap();
    assert!(d.allowed && d.diagnostics.is_empty(), "{d:?}");
    // A type without a Cedar name.
    let r = AccessRequest::new(
        Subject::new("9lives", "u"),
        Action::new("GET"),
        Resource::new("route", "/"),
    );
    let d = pdp.decide(&r).await.unwrap();
    assert!(!d.allowed);
    assert!(d.diagnostics[0].message.contains("`9lives`"), "{d:?}");
}

#[tokio::test]
async fn request_properties_and_context_reach_the_policies() {
    let pdp = CedarPdp::builder()
        .schema(
            r#"
            entity User = { clinics?: Set<String> };
            entity Route = { params?: { clinic_id?: String }, query?: { page?: Long } };
            action "GET" appliesTo {
                principal: [User], resource: [Route],
                context: { acr?: String, action?: { method?: String } }
            };
            "#,
        )
        .policy(
            "p.cedar",
            r#"
            permit (principal, action == Action::"GET", resource)
            when {
                principal has clinics && resource has params && resource.params has clinic_id &&
                principal.clinics.contains(resource.params.clinic_id) &&
                context has acr && context.acr == "mfa" &&
                !(resource has query && resource.query has page && resource.query.page > 10)
            };
            forbid (principal, action, resource)
            when { context has action && context.action has method && context.action.method == "HEAD" };
            "#,
        )
        .build()
        .unwrap();
    let make = |clinic: &str, acr: &str, page: i64| {
        AccessRequest::new(
            Subject::user("alice").with_property("clinics", json!(["c1", "c2"])),
            Action::new("GET"),
            Resource::new("route", "/clinics/{clinic_id}")
                .with_property("params", json!({"clinic_id": clinic}))
                .with_property("query", json!({"page": page})),
        )
        .with_context("acr", acr)
        .with_context("time", "2026-11-30T10:00:00Z")
    };
    assert!(pdp.decide(&make("c2", "mfa", 1)).await.unwrap().allowed);
    assert!(!pdp.decide(&make("c3", "mfa", 1)).await.unwrap().allowed);
    assert!(!pdp.decide(&make("c1", "pwd", 1)).await.unwrap().allowed);
    assert!(!pdp.decide(&make("c1", "mfa", 11)).await.unwrap().allowed);
    let mut head = make("c1", "mfa", 1);
    head.action
        .properties
        .insert("method".into(), json!("HEAD"));
    assert!(!pdp.decide(&head).await.unwrap().allowed);
}

#[tokio::test]
async fn stored_entities_give_parents_and_win_over_request_properties() {
    let pdp = CedarPdp::builder()
        .schema(SCHEMA)
        .entities_json(json!([
            {"uid": {"type": "User", "id": "alice"}, "attrs": {"role": "auditor"},
             "parents": [{"type": "Group", "id": "staff"}]},
            {"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": []}
        ]))
        .policy(
            "p.cedar",
            r#"
            @id("staff") permit (principal in Group::"staff", action == Action::"GET", resource);
            @id("auditors-no-post") forbid (principal, action == Action::"POST", resource)
            when { principal has role && principal.role == "auditor" };
            @id("doctors-post") permit (principal, action == Action::"POST", resource)
            when { principal has role && principal.role == "doctor" && principal has level && principal.level > 1 };
            "#,
        )
        .build()
        .unwrap();
    let alice = |role: &str, action: &str| {
        AccessRequest::new(
            Subject::user("alice")
                .with_property("role", role)
                .with_property("level", 2),
            Action::new(action),
            Resource::new("route", "/"),
        )
    };
    // Group membership comes from the stored entity.
    assert!(pdp.decide(&alice("doctor", "GET")).await.unwrap().allowed);
    let bob = AccessRequest::new(
        Subject::user("bob"),
        Action::new("GET"),
        Resource::new("route", "/"),
    );
    assert!(!pdp.decide(&bob).await.unwrap().allowed);
    // The stored role (auditor) wins over the claim (doctor); the claim `level` is added.
    let d = pdp.decide(&alice("doctor", "POST")).await.unwrap();
    assert!(!d.allowed, "{d:?}");
    assert!(d.diagnostics.is_empty(), "{d:?}");
}

#[tokio::test]
async fn action_groups_of_the_schema_apply() {
    let pdp = CedarPdp::builder()
        .schema(
            r#"
            entity User;
            entity Route;
            action read;
            action "GET", "HEAD" in [read] appliesTo { principal: [User], resource: [Route] };
            action "POST" appliesTo { principal: [User], resource: [Route] };
            "#,
        )
        .policy(
            "p.cedar",
            r#"permit (principal, action in Action::"read", resource);"#,
        )
        .build()
        .unwrap();
    assert!(pdp.decide(&request("x", "HEAD")).await.unwrap().allowed);
    assert!(!pdp.decide(&request("x", "POST")).await.unwrap().allowed);
}

#[tokio::test]
async fn namespaces_and_explicit_entity_types() {
    let pdp = CedarPdp::builder()
        .schema(
            r#"
            namespace Clinic {
                entity User;
                action "GET" appliesTo { principal: [User], resource: [Http::Route] };
            }
            namespace Http { entity Route; }
            "#,
        )
        .namespace("Clinic")
        .entity_type("route", "Http::Route")
        .policy(
            "p.cedar",
            r#"permit (principal is Clinic::User, action == Clinic::Action::"GET", resource == Http::Route::"/x");"#,
        )
        .build()
        .unwrap();
    let r = AccessRequest::new(
        Subject::user("a"),
        Action::new("GET"),
        Resource::new("route", "/x"),
    );
    assert!(pdp.decide(&r).await.unwrap().allowed);
}

#[tokio::test]
async fn a_json_schema_validates_too() {
    let schema = json!({"": {
        "entityTypes": {"User": {}, "Route": {}},
        "actions": {"GET": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Route"]}}}
    }});
    let ok = CedarPdp::builder()
        .schema_json(schema.clone())
        .policy(
            "p.cedar",
            r#"permit (principal is User, action == Action::"GET", resource);"#,
        )
        .build()
        .unwrap();
    assert!(ok.decide(&request("x", "GET")).await.unwrap().allowed);
    let err = CedarPdp::builder()
        .schema_json(schema)
        .policy("p.cedar", r#"permit (principal is Usr, action, resource);"#)
        .build()
        .unwrap_err();
    assert!(matches!(err, LoadError::Validation { .. }), "{err}");
}

struct Store {
    calls: AtomicUsize,
}

impl EntityProvider for Store {
    fn entities<'a>(&'a self, request: &'a AccessRequest) -> EntityFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            match request.subject.id.as_str() {
                "down" => Err(ProviderError::new("store unreachable")),
                "bad" => Ok(
                    json!([{"uid": {"type": "User", "id": "bad"}, "attrs": {"role": 7}, "parents": []}]),
                ),
                "panic" => panic!("store bug"),
                id => Ok(json!([
                    {"uid": {"type": "User", "id": id}, "attrs": {},
                     "parents": [{"type": "Group", "id": if id == "alice" { "staff" } else { "guests" }}]},
                ])),
            }
        })
    }
}

#[tokio::test]
async fn an_entity_provider_supplies_entities_per_request() {
    let store = Arc::new(Store {
        calls: AtomicUsize::new(0),
    });
    struct Shared(Arc<Store>);
    impl EntityProvider for Shared {
        fn entities<'a>(&'a self, request: &'a AccessRequest) -> EntityFuture<'a> {
            self.0.entities(request)
        }
    }
    let pdp = CedarPdp::builder()
        .schema(SCHEMA)
        .entities_json(
            json!([{"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": []}]),
        )
        .entity_provider(Shared(store.clone()))
        .policy(
            "p.cedar",
            r#"permit (principal in Group::"staff", action, resource);"#,
        )
        .build()
        .unwrap();
    let for_user = |id: &str| {
        AccessRequest::new(
            Subject::user(id),
            Action::new("GET"),
            Resource::new("route", "/"),
        )
    };
    assert!(pdp.decide(&for_user("alice")).await.unwrap().allowed);
    assert!(!pdp.decide(&for_user("carol")).await.unwrap().allowed);
    assert_eq!(store.calls.load(Ordering::Relaxed), 2);

    let err = pdp.decide(&for_user("down")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("store unreachable"), "{err}");
    let err = pdp.decide(&for_user("panic")).await.unwrap_err();
    assert!(
        err.is_unavailable() && err.to_string().contains("panicked"),
        "{err}"
    );
    // Entities that do not conform to the schema: a policy-error deny.
    let d = pdp.decide(&for_user("bad")).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
    assert!(
        d.diagnostics[0].message.contains("entity provider"),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_closure_is_an_entity_provider() {
    let pdp = CedarPdp::builder()
        .entity_provider(|r: &AccessRequest| {
            Ok(json!([{"uid": {"type": "User", "id": r.subject.id}, "attrs": {"vip": true}, "parents": []}]))
        })
        .policy("p.cedar", "permit (principal, action, resource) when { principal.vip };")
        .build()
        .unwrap();
    assert!(pdp.decide(&request("x", "GET")).await.unwrap().allowed);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-cedar-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn loads_a_directory_and_keeps_the_last_good_revision_on_a_failed_reload() {
    let dir = temp_dir("reload");
    fs::create_dir_all(dir.join("policies")).unwrap();
    fs::write(
        dir.join("warden.toml"),
        "id = \"clinic\"\nversion = \"1.2.0\"\nowner = \"x@example.com\"\n\n[[regulations]]\nframework = \"HIPAA\"\n\n[cedar]\nnamespace = \"\"\n",
    )
    .unwrap();
    fs::write(dir.join("schema.cedarschema"), SCHEMA).unwrap();
    fs::write(
        dir.join("entities.json"),
        r#"[{"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": []},
            {"uid": {"type": "User", "id": "u1"}, "attrs": {}, "parents": [{"type": "Group", "id": "staff"}]}]"#,
    )
    .unwrap();
    fs::write(
        dir.join("policies/read.cedar"),
        r#"permit (principal in Group::"staff", action == Action::"GET", resource);"#,
    )
    .unwrap();
    fs::write(dir.join("README.md"), "not read").unwrap();
    let pdp = CedarPdp::from_dir(&dir).unwrap();
    assert_eq!(pdp.policy_ids(), ["read.0"]);
    let r1 = pdp.revision().unwrap();
    assert_eq!(r1.id, "clinic");
    assert!(r1.revision.starts_with("1.2.0+sha256."), "{r1:?}");
    assert_eq!(r1.revision.len(), "1.2.0+sha256.".len() + 16);
    assert!(pdp.decide(&request("x", "GET")).await.unwrap().allowed);
    assert!(!pdp.decide(&request("x", "POST")).await.unwrap().allowed);

    // Files the loader does not read do not change the revision.
    fs::write(dir.join("README.md"), "still not read").unwrap();
    assert_eq!(pdp.reload().unwrap(), r1);

    fs::write(
        dir.join("policies/write.cedar"),
        r#"permit (principal in Group::"staff", action == Action::"POST", resource);"#,
    )
    .unwrap();
    let r2 = pdp.reload().unwrap();
    assert_ne!(r1, r2, "a new file changes the revision");
    let d = pdp.decide(&request("x", "POST")).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.policy, r2);

    // A policy that does not validate fails the reload; the last good revision keeps deciding.
    fs::write(
        dir.join("policies/write.cedar"),
        r#"permit (principal, action == Action::"POST", resource) when { principal.nope };"#,
    )
    .unwrap();
    let err = pdp.reload().unwrap_err();
    assert!(
        matches!(&err, LoadError::Validation { path, .. } if path == "policies/write.cedar"),
        "{err}"
    );
    fs::write(dir.join("policies/write.cedar"), "permit (").unwrap();
    assert!(matches!(pdp.reload(), Err(LoadError::Syntax { .. })));
    assert_eq!(pdp.revision().unwrap(), r2);
    let d = pdp.decide(&request("x", "POST")).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.policy, r2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directory_errors_name_the_file() {
    let dir = temp_dir("errors");
    assert!(matches!(
        CedarPdp::from_dir(&dir),
        Err(LoadError::NoPolicies(_))
    ));
    fs::write(dir.join("p.cedar"), "permit (principal, action, resource);").unwrap();
    fs::write(dir.join("entities.json"), "{").unwrap();
    let err = CedarPdp::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("entities.json"), "{err}");
    fs::write(dir.join("entities.json"), "[]").unwrap();
    fs::write(dir.join("warden.toml"), "id = 3").unwrap();
    let err = CedarPdp::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("warden.toml"), "{err}");
    fs::write(
        dir.join("warden.toml"),
        "id = \"a\"\nversion = \"1\"\n[cedar]\nnamespaces = \"x\"\n",
    )
    .unwrap();
    assert!(
        CedarPdp::from_dir(&dir)
            .unwrap_err()
            .to_string()
            .contains("namespaces")
    );
    fs::write(dir.join("warden.toml"), "id = \"a\"\nversion = \"1\"\n").unwrap();
    fs::write(dir.join("s.cedarschema.json"), "{\"\": 1}").unwrap();
    let err = CedarPdp::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("s.cedarschema.json"), "{err}");
    assert!(CedarPdp::from_dir(dir.join("missing")).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_pdp_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CedarPdp>();
    assert_send_sync::<CedarPdpBuilder>();
    assert_send_sync::<LoadError>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_never_cross_requests() {
    let pdp = Arc::new(pdp(r#"
        @id("own")
        @reason("own clinic")
        permit (principal, action == Action::"GET", resource)
        when { principal has clinics && resource has params && resource.params has clinic_id &&
               principal.clinics.contains(resource.params.clinic_id) };
        "#));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let pdp = pdp.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..100 {
                let own = format!("c-{i}-{j}");
                let asked = if j % 2 == 0 {
                    own.clone()
                } else {
                    format!("c-{j}-{i}")
                };
                let r = AccessRequest::new(
                    Subject::user(format!("u{i}")).with_property("clinics", json!([own])),
                    Action::new("GET"),
                    Resource::new("route", "/clinics/{clinic_id}")
                        .with_property("params", json!({"clinic_id": asked})),
                );
                let d = pdp.decide(&r).await.unwrap();
                assert_eq!(d.allowed, j % 2 == 0 || i == j, "{i} {j}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_while_deciding_always_use_one_whole_revision() {
    let dir = temp_dir("swap");
    fs::write(dir.join("p.cedar"), "permit (principal, action, resource);").unwrap();
    let pdp = Arc::new(CedarPdp::from_dir(&dir).unwrap());
    let permit_all = pdp.revision().unwrap();
    fs::write(dir.join("p.cedar"), "forbid (principal, action, resource);").unwrap();
    let deciding = {
        let pdp = pdp.clone();
        let permit_all = permit_all.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                let d = pdp.decide(&request("x", "GET")).await.unwrap();
                // Each decision matches the revision it reports.
                assert_eq!(d.allowed, d.policy == permit_all);
            }
        })
    };
    for _ in 0..20 {
        pdp.reload().unwrap();
        tokio::task::yield_now().await;
    }
    deciding.await.unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn decides_without_an_async_runtime_of_its_own() {
    let pdp = pdp("permit (principal, action, resource);");
    assert!(decide(&pdp, &request("x", "GET")).allowed);
}

#[tokio::test]
async fn remembered_entities_follow_the_properties_policies_read() {
    let pdp = pdp(r#"permit (principal, action, resource)
        when { principal has role && principal.role == "nurse" };"#);
    let cached = || pdp.state.load().cache.len();
    let nurse = |iat: i64| {
        AccessRequest::new(
            Subject::user("u1")
                .with_property("role", "nurse")
                .with_property("iat", iat),
            Action::new("GET"),
            Resource::new("route", "/"),
        )
    };
    assert!(pdp.decide(&nurse(1)).await.unwrap().allowed);
    assert_eq!(cached(), 1);
    // A claim no policy reads does not make a new entry.
    assert!(pdp.decide(&nurse(2)).await.unwrap().allowed);
    assert_eq!(cached(), 1);
    // The same subject with another role is another entry, and decided on its own claims.
    for _ in 0..2 {
        assert!(!pdp.decide(&request("doctor", "GET")).await.unwrap().allowed);
        assert!(pdp.decide(&request("nurse", "GET")).await.unwrap().allowed);
    }
    assert_eq!(cached(), 3);
    // Three subject sets on two routes (`/` and `/patients`): two remembered resource sets.
    assert_eq!(pdp.state.load().cache.resources_len(), 2);
    // A reload starts afresh.
    pdp.reload().unwrap();
    assert_eq!(cached(), 0);
    assert_eq!(pdp.state.load().cache.resources_len(), 0);
}

#[tokio::test]
async fn a_subject_asking_about_itself_is_one_entity_with_both_property_sets() {
    for provider in [false, true] {
        let mut builder = CedarPdp::builder().policy(
            "p.cedar",
            r#"permit (principal, action, resource)
            when { principal == resource && principal.role == "nurse" && resource.section == "profile" };"#,
        );
        if provider {
            builder = builder.entity_provider(|_: &AccessRequest| Ok(json!([])));
        }
        let pdp = builder.build().unwrap();
        let r = AccessRequest::new(
            Subject::user("nina").with_property("role", "nurse"),
            Action::new("read"),
            Resource::new("user", "nina")
                .with_property("section", "profile")
                .with_property("role", "doctor"),
        );
        let d = pdp.decide(&r).await.unwrap();
        assert!(d.allowed, "the subject's role wins: {d:?}");
    }
}
