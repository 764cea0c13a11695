//! The scope index gives Cedar's answer on the whole set: random policy sets with random
//! scopes and conditions, random entity hierarchies, random requests.

use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request, Response};
use proptest::prelude::*;
use serde_json::json;

use super::ScopeIndex;

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const GROUPS: [&str; 2] = ["g0", "g1"];
const ROUTES: [&str; 3] = ["r0", "r1", "r2"];
const ROUTE_GROUPS: [&str; 2] = ["rg0", "rg1"];
const ACTIONS: [&str; 4] = ["GET", "HEAD", "POST", "read"];

fn principal_scope(k: u8, i: usize) -> String {
    let user = USERS[i % USERS.len()];
    let group = GROUPS[i % GROUPS.len()];
    match k % 8 {
        0 => "principal".into(),
        1 => format!("principal == User::\"{user}\""),
        2 => format!("principal in Group::\"{group}\""),
        3 => format!("principal in User::\"{user}\""),
        4 => "principal is User".into(),
        5 => "principal is Group".into(),
        6 => format!("principal is User in Group::\"{group}\""),
        _ => format!("principal == Group::\"{group}\""),
    }
}

fn action_scope(k: u8, i: usize) -> String {
    let a = ACTIONS[i % ACTIONS.len()];
    let b = ACTIONS[(i + 1) % ACTIONS.len()];
    match k % 5 {
        0 => "action".into(),
        1 => format!("action == Action::\"{a}\""),
        2 => format!("action in Action::\"{a}\""),
        3 => format!("action in [Action::\"{a}\", Action::\"{b}\"]"),
        _ => "action in []".into(),
    }
}

fn resource_scope(k: u8, i: usize) -> String {
    let route = ROUTES[i % ROUTES.len()];
    let group = ROUTE_GROUPS[i % ROUTE_GROUPS.len()];
    match k % 7 {
        0 => "resource".into(),
        1 => format!("resource == Route::\"{route}\""),
        2 => format!("resource in RouteGroup::\"{group}\""),
        3 => format!("resource in Route::\"{route}\""),
        4 => "resource is Route".into(),
        5 => format!("resource is Route in RouteGroup::\"{group}\""),
        _ => format!("resource == RouteGroup::\"{group}\""),
    }
}

fn condition(k: u8) -> &'static str {
    match k % 7 {
        0 => "",
        1 => "when { principal has level && principal.level > 1 }",
        // Errors when the principal has no `level` (or is not an entity with attributes).
        2 => "when { principal.level > 0 }",
        3 => "when { resource has owner && resource.owner == principal }",
        // Overflows for a large `context.n`.
        4 => "when { context.n + 9223372036854775000 > 0 }",
        5 => "unless { principal in Group::\"g1\" }",
        _ => "when { context.n > 3 }",
    }
}

type PolicySpec = (bool, u8, u8, u8, u8, usize);

fn policies(specs: &[PolicySpec]) -> PolicySet {
    let text: String = specs
        .iter()
        .map(|&(permit, p, a, r, c, i)| {
            format!(
                "{} ({}, {}, {}) {};\n",
                if permit { "permit" } else { "forbid" },
                principal_scope(p, i),
                action_scope(a, i),
                resource_scope(r, i / 2),
                condition(c),
            )
        })
        .collect();
    PolicySet::from_str(&text).unwrap()
}

/// Users in groups, groups in groups, routes in route groups, GET and HEAD in `read`; the
/// parents drawn from `parents` bits.
fn entities(parents: u32, levels: u8) -> Entities {
    let bit = |n: u32| parents & (1 << n) != 0;
    let mut list = Vec::new();
    for (n, user) in (0u32..).zip(USERS) {
        let groups: Vec<_> = (0u32..)
            .zip(GROUPS)
            .filter(|(g, _)| bit(n * 2 + g))
            .map(|(_, g)| json!({"type": "Group", "id": g}))
            .collect();
        let mut attrs = json!({});
        if levels & (1 << n) != 0 {
            attrs["level"] = json!(n);
        }
        list.push(json!({"uid": {"type": "User", "id": user}, "attrs": attrs, "parents": groups}));
    }
    let nested = if bit(6) {
        vec![json!({"type": "Group", "id": "g1"})]
    } else {
        vec![]
    };
    list.push(json!({"uid": {"type": "Group", "id": "g0"}, "attrs": {}, "parents": nested}));
    list.push(json!({"uid": {"type": "Group", "id": "g1"}, "attrs": {}, "parents": []}));
    for (n, route) in (0u32..).zip(ROUTES) {
        let groups: Vec<_> = (0u32..)
            .zip(ROUTE_GROUPS)
            .filter(|(g, _)| bit(7 + n * 2 + g))
            .map(|(_, g)| json!({"type": "RouteGroup", "id": g}))
            .collect();
        let owner = USERS[(n as usize + usize::from(bit(13))) % USERS.len()];
        list.push(json!({"uid": {"type": "Route", "id": route},
            "attrs": {"owner": {"__entity": {"type": "User", "id": owner}}}, "parents": groups}));
    }
    for group in ROUTE_GROUPS {
        list.push(json!({"uid": {"type": "RouteGroup", "id": group}, "attrs": {}, "parents": []}));
    }
    for action in ["GET", "HEAD"] {
        let parents = if bit(14) || action == "GET" {
            vec![json!({"type": "Action", "id": "read"})]
        } else {
            vec![]
        };
        list.push(
            json!({"uid": {"type": "Action", "id": action}, "attrs": {}, "parents": parents}),
        );
    }
    Entities::from_json_value(json!(list), None).unwrap()
}

fn uid(text: &str) -> EntityUid {
    EntityUid::from_str(text).unwrap()
}

/// What a decision consists of: Cedar's decision, the determining policies, the errors.
fn answer(response: &Response) -> (bool, Vec<String>, Vec<String>) {
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    reasons.sort();
    let mut errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    errors.sort();
    (
        response.decision() == cedar_policy::Decision::Allow,
        reasons,
        errors,
    )
}

fn spec() -> impl Strategy<Value = PolicySpec> {
    (
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        0usize..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_index_answers_as_the_whole_set(
        specs in prop::collection::vec(spec(), 0..40),
        parents in any::<u32>(),
        levels in any::<u8>(),
        requests in prop::collection::vec((0usize..6, 0usize..4, 0usize..6, 0i64..6), 1..8),
    ) {
        let set = policies(&specs);
        let index = ScopeIndex::new(&set);
        let open: Vec<PolicySpec> = specs.iter().map(|&(_, p, a, r, _, i)| (true, p, a, r, 0, i)).collect();
        let scopes_only = policies(&open);
        let scopes_index = ScopeIndex::new(&scopes_only);
        let entities = entities(parents, levels);
        let authorizer = Authorizer::new();
        let principals = ["User::\"u0\"", "User::\"u1\"", "User::\"u2\"", "User::\"stranger\"",
            "Group::\"g0\"", "Group::\"g1\""];
        let resources = ["Route::\"r0\"", "Route::\"r1\"", "Route::\"r2\"", "Route::\"elsewhere\"",
            "RouteGroup::\"rg0\"", "RouteGroup::\"rg1\""];
        for (p, a, r, n) in requests {
            let (principal, action, resource) = (
                uid(principals[p]),
                uid(&format!("Action::\"{}\"", ACTIONS[a])),
                uid(resources[r]),
            );
            // Large `n` overflows in conditions of kind 4.
            let n = if n == 5 { i64::MAX - 10 } else { n };
            let context = Context::from_json_value(json!({"n": n}), None).unwrap();
            let request = Request::new(principal.clone(), action.clone(), resource.clone(),
                context, None).unwrap();
            let whole = authorizer.is_authorized(&request, &set, &entities);
            let subset = index.select(&entities, &principal, &action, &resource);
            let indexed = authorizer.is_authorized(&request, &subset, &entities);
            prop_assert_eq!(answer(&indexed), answer(&whole), "{} {} {}\n{}", principal,
                action, resource, set);
            // The sub-set holds exactly the policies whose scope holds: with every policy a
            // permit without conditions, those are the policies Cedar finds satisfied.
            let (scoped, scoped_index) = (&scopes_only, &scopes_index);
            let satisfied = answer(&authorizer.is_authorized(&request, scoped, &entities)).1;
            let mut selected: Vec<String> = scoped_index
                .select(&entities, &principal, &action, &resource)
                .policies()
                .map(|p| p.id().to_string())
                .collect();
            selected.sort();
            prop_assert_eq!(selected, satisfied);
        }
    }
}

#[test]
fn a_request_is_authorized_against_the_policies_of_its_scope_only() {
    let mut text = String::new();
    for n in 0..1000 {
        text.push_str(&format!(
            "permit (principal, action == Action::\"GET\", resource == Route::\"/r/{n}\");\n"
        ));
    }
    text.push_str("permit (principal, action, resource in RouteGroup::\"all\");\n");
    text.push_str("forbid (principal in Group::\"banned\", action, resource);\n");
    text.push_str("permit (principal is User, action in [Action::\"read\"], resource);\n");
    let set = PolicySet::from_str(&text).unwrap();
    let index = ScopeIndex::new(&set);
    let entities = Entities::from_json_value(
        json!([
            {"uid": {"type": "User", "id": "bob"}, "attrs": {}, "parents": [{"type": "Group", "id": "banned"}]},
            {"uid": {"type": "Route", "id": "/r/7"}, "attrs": {}, "parents": [{"type": "RouteGroup", "id": "all"}]},
            {"uid": {"type": "Action", "id": "GET"}, "attrs": {}, "parents": [{"type": "Action", "id": "read"}]},
        ]),
        None,
    )
    .unwrap();
    let ids = |principal: &str, action: &str, resource: &str| {
        let mut ids: Vec<String> = index
            .select(&entities, &uid(principal), &uid(action), &uid(resource))
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    };
    // Through the route's group, the user's group and the action's group.
    assert_eq!(
        ids("User::\"bob\"", "Action::\"GET\"", "Route::\"/r/7\""),
        ["policy1000", "policy1001", "policy1002", "policy7"]
    );
    // Another user, another route, an action outside `read`.
    assert_eq!(
        ids("User::\"amy\"", "Action::\"POST\"", "Route::\"/r/8\""),
        Vec::<String>::new()
    );
    assert_eq!(
        ids("Anonymous::\"a\"", "Action::\"GET\"", "Route::\"/r/8\""),
        ["policy8"]
    );
    // The same sub-set is remembered, not rebuilt.
    let first = index.select(
        &entities,
        &uid("User::\"amy\""),
        &uid("Action::\"GET\""),
        &uid("Route::\"/r/9\""),
    );
    let again = index.select(
        &entities,
        &uid("User::\"cy\""),
        &uid("Action::\"GET\""),
        &uid("Route::\"/r/9\""),
    );
    assert!(std::sync::Arc::ptr_eq(&first, &again));
}

#[test]
fn the_remembered_subsets_are_bounded_and_beyond_the_bound_still_exact() {
    let users = super::REMEMBERED + 100;
    let text: String = (0..users)
        .map(|n| format!("permit (principal == User::\"u{n}\", action, resource);\n"))
        .collect();
    let set = PolicySet::from_str(&text).unwrap();
    let index = ScopeIndex::new(&set);
    let entities = Entities::empty();
    let (action, resource) = (uid("Action::\"GET\""), uid("Route::\"/\""));
    for n in 0..users {
        let subset = index.select(
            &entities,
            &uid(&format!("User::\"u{n}\"")),
            &action,
            &resource,
        );
        let ids: Vec<String> = subset.policies().map(|p| p.id().to_string()).collect();
        assert_eq!(ids, [format!("policy{n}")]);
    }
    assert_eq!(index.subsets.read().unwrap().len(), super::REMEMBERED);
}
