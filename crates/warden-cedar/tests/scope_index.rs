//! A package of many policies, each on its route, decides through the scope index as Cedar
//! decides on the whole set: policies that apply through a group of the principal (from an
//! entity provider), of the route or of the action (stored entities) still apply, an
//! erroring policy denies where its scope holds and nowhere else, and the determining
//! policies' obligations and reasons are carried.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use serde_json::json;
use warden_cedar::{CedarPdp, ProviderError};
use warden_decision::{AccessRequest, Action, Decision, Obligation, Pdp, Resource, Subject};

fn package() -> String {
    let mut text = String::new();
    for n in 0..500 {
        text.push_str(&format!(
            "@id(\"route.{n}\")\n\
             @obligation(\"{{\\\"type\\\": \\\"redact\\\", \\\"paths\\\": [\\\"$.r{n}\\\"]}}\")\n\
             permit (principal, action == Action::\"GET\", resource == Route::\"/r/{n}\")\n\
             when {{ principal has role && principal.role == \"staff\" }};\n"
        ));
    }
    text.push_str(
        r#"
@id("banned")
@reason("banned users")
forbid (principal in Group::"banned", action, resource);

@id("locked")
@reason("locked routes are read-only")
forbid (principal, action in [Action::"write"], resource in RouteGroup::"locked");

@id("writers")
permit (principal, action == Action::"POST", resource is Route)
when { principal has role && principal.role == "staff" };

@id("levels")
forbid (principal, action, resource == Route::"/r/7") when { principal.level > 1 };
"#,
    );
    text
}

fn pdp() -> CedarPdp {
    let groups = |request: &AccessRequest| -> Result<serde_json::Value, ProviderError> {
        let parents = if request.subject.id == "mallory" {
            json!([{"type": "Group", "id": "banned"}])
        } else {
            json!([])
        };
        Ok(
            json!([{"uid": {"type": "User", "id": request.subject.id}, "attrs": {}, "parents": parents}]),
        )
    };
    CedarPdp::builder()
        .policy("routes.cedar", package())
        .entities_json(json!([
            {"uid": {"type": "Action", "id": "POST"}, "attrs": {}, "parents": [{"type": "Action", "id": "write"}]},
            {"uid": {"type": "Route", "id": "/r/5"}, "attrs": {}, "parents": [{"type": "RouteGroup", "id": "locked"}]},
        ]))
        .entity_provider(groups)
        .build()
        .unwrap()
}

async fn decide(pdp: &CedarPdp, user: &str, method: &str, route: &str) -> Decision {
    let request = AccessRequest::new(
        Subject::user(user).with_property("role", "staff"),
        Action::new(method),
        Resource::new("route", route),
    );
    pdp.decide(&request).await.unwrap()
}

fn redacted(decision: &Decision) -> Vec<String> {
    decision
        .obligations
        .iter()
        .map(|o| match o {
            Obligation::Redact(r) => format!("{r:?}"),
            other => other.type_name().to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn the_policies_of_a_request_apply_through_groups_and_no_others() {
    let pdp = pdp();
    let permit = decide(&pdp, "nina", "GET", "/r/3").await;
    assert!(permit.allowed, "{permit:?}");
    assert!(permit.diagnostics.is_empty(), "{permit:?}");
    let obligations = redacted(&permit);
    assert_eq!(obligations.len(), 1, "{obligations:?}");
    assert!(obligations[0].contains("$.r3"), "{obligations:?}");

    // The forbid applies through the principal's group, which only the provider knows.
    let banned = decide(&pdp, "mallory", "GET", "/r/3").await;
    assert!(!banned.allowed && !banned.not_applicable, "{banned:?}");
    assert_eq!(banned.reasons[0].message, "banned users");

    // Through the action's group and the route's group, both stored entities.
    let locked = decide(&pdp, "nina", "POST", "/r/5").await;
    assert!(!locked.allowed, "{locked:?}");
    assert_eq!(locked.reasons[0].message, "locked routes are read-only");
    assert!(decide(&pdp, "nina", "POST", "/r/6").await.allowed);

    // No policy for this route and method: Cedar's default deny, not applicable.
    let none = decide(&pdp, "nina", "GET", "/elsewhere").await;
    assert!(none.not_applicable, "{none:?}");
}

#[tokio::test]
async fn an_erroring_policy_denies_where_its_scope_holds() {
    let pdp = pdp();
    // `principal.level` is missing: the forbid on `/r/7` errors, and the decision is a deny.
    let erroring = decide(&pdp, "nina", "GET", "/r/7").await;
    assert!(!erroring.allowed, "{erroring:?}");
    assert!(
        erroring
            .diagnostics
            .iter()
            .any(|d| d.message.contains("levels")),
        "{erroring:?}"
    );
    // Its scope does not hold for `/r/8`: it neither errors nor denies there.
    let other = decide(&pdp, "nina", "GET", "/r/8").await;
    assert!(other.allowed && other.diagnostics.is_empty(), "{other:?}");
}

#[tokio::test]
async fn a_reload_starts_a_new_index() {
    let dir = std::env::temp_dir().join(format!("warden-cedar-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("routes.cedar");
    std::fs::write(
        &file,
        "permit (principal, action == Action::\"GET\", resource == Route::\"/a\");",
    )
    .unwrap();
    let pdp = CedarPdp::from_dir(&dir).unwrap();
    let get = |route: &'static str| {
        AccessRequest::new(
            Subject::user("u"),
            Action::new("GET"),
            Resource::new("route", route),
        )
    };
    assert!(pdp.decide(&get("/a")).await.unwrap().allowed);
    assert!(!pdp.decide(&get("/b")).await.unwrap().allowed);
    std::fs::write(
        &file,
        "permit (principal, action == Action::\"GET\", resource == Route::\"/b\");",
    )
    .unwrap();
    pdp.reload().unwrap();
    let (a, b) = (
        pdp.decide(&get("/a")).await.unwrap(),
        pdp.decide(&get("/b")).await.unwrap(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!a.allowed, "{a:?}");
    assert!(b.allowed, "{b:?}");
}
