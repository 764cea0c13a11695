//! Building the Rego `input` from an access request, without an intermediate JSON tree.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regorus::Value;
use warden_decision::{AccessRequest, Action, Properties, Resource, Subject};

/// The AuthZEN-shaped request as a regorus value: every member the request has, `properties`
/// and `context` included when they are empty (`not input.context` is false, as it is in OPA for
/// `context: {}`).
///
/// A number that cannot reach the policy with the value the client sent is refused: serde_json
/// parses an integer beyond 64 bits as the nearest float, so `100000000000000000001` arrives as
/// `1e20` and would equal `100000000000000000000`. Every float that is a whole number of
/// magnitude 2⁵³ or more is such a number (no float there tells which integer was sent).
pub(crate) fn input(request: &AccessRequest) -> Result<Value, String> {
    LAST.with(|last| last.borrow_mut().input(request))
}

thread_local! {
    /// Each thread's last request, part by part, with the values built for it.
    static LAST: RefCell<Last> = RefCell::default();
}

/// The parts of the last request a thread built an input for, and their values.
///
/// A service's requests repeat their parts from one to the next: the same subject asks again,
/// the same action, the same context. A part equal to the last one (compared as the request
/// holds it, so `1` and `1.0` are different numbers) reuses the value built for it, which the
/// policy cannot tell from a new one; a part that differs is built and remembered. Each thread
/// keeps one request's parts, no more.
#[derive(Default)]
struct Last {
    subject: Option<(Subject, Value)>,
    action: Option<(Action, Value)>,
    resource: Option<(Resource, Value)>,
    context: Option<(Properties, Value)>,
    /// The whole input, while every part is the one it was built from.
    root: Option<Value>,
}

impl Last {
    fn input(&mut self, request: &AccessRequest) -> Result<Value, String> {
        let k = &*KEYS;
        let (subject, same_subject) = reuse(&mut self.subject, &request.subject, |s| {
            member(
                [(&k.kind, s.kind.as_str()), (&k.id, s.id.as_str())],
                &s.properties,
                "subject.properties",
            )
        })?;
        let (action, same_action) = reuse(&mut self.action, &request.action, |a| {
            member(
                [(&k.name, a.name.as_str())],
                &a.properties,
                "action.properties",
            )
        })?;
        let (resource, same_resource) = reuse(&mut self.resource, &request.resource, |r| {
            member(
                [(&k.kind, r.kind.as_str()), (&k.id, r.id.as_str())],
                &r.properties,
                "resource.properties",
            )
        })?;
        let (context, same_context) = reuse(&mut self.context, &request.context, |c| {
            object(c, "context")
        })?;
        if same_subject
            && same_action
            && same_resource
            && same_context
            && let Some(root) = &self.root
        {
            return Ok(root.clone());
        }
        let mut root = BTreeMap::new();
        root.insert(k.subject.clone(), subject);
        root.insert(k.action.clone(), action);
        root.insert(k.resource.clone(), resource);
        root.insert(k.context.clone(), context);
        let root = Value::from(root);
        self.root = Some(root.clone());
        Ok(root)
    }
}

/// An object of the input: its string members and its `properties`.
fn member<const N: usize>(
    strings: [(&Value, &str); N],
    properties: &Properties,
    at: &str,
) -> Result<Value, String> {
    let mut members = BTreeMap::new();
    for (key, value) in strings {
        members.insert(key.clone(), Value::from(value));
    }
    members.insert(KEYS.properties.clone(), object(properties, at)?);
    Ok(Value::from(members))
}

/// The value of `part`: the remembered one when `part` equals the part it was built from
/// (and `true`), else a new one, remembered.
fn reuse<P: Same + Clone>(
    slot: &mut Option<(P, Value)>,
    part: &P,
    build: impl FnOnce(&P) -> Result<Value, String>,
) -> Result<(Value, bool), String> {
    if let Some((seen, value)) = slot.as_ref()
        && seen.same(part)
    {
        return Ok((value.clone(), true));
    }
    // Forgotten first: a part that fails to build leaves nothing behind to reuse.
    *slot = None;
    let value = build(part)?;
    *slot = Some((part.clone(), value.clone()));
    Ok((value, false))
}

/// Equality, decided fast: maps compare member by member in order, so two maps with the same
/// members in another order are not the same (a miss, which only costs a build). Never the
/// same where `==` would say they differ.
trait Same {
    fn same(&self, other: &Self) -> bool;
}

impl Same for Subject {
    fn same(&self, other: &Self) -> bool {
        self.id == other.id && self.kind == other.kind && self.properties.same(&other.properties)
    }
}

impl Same for Action {
    fn same(&self, other: &Self) -> bool {
        self.name == other.name && self.properties.same(&other.properties)
    }
}

impl Same for Resource {
    fn same(&self, other: &Self) -> bool {
        self.id == other.id && self.kind == other.kind && self.properties.same(&other.properties)
    }
}

impl Same for Properties {
    fn same(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|((ka, va), (kb, vb))| ka == kb && va.same(vb))
    }
}

impl Same for serde_json::Value {
    fn same(&self, other: &Self) -> bool {
        use serde_json::Value as J;
        match (self, other) {
            (J::Object(a), J::Object(b)) => a.same(b),
            (J::Array(a), J::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            // Scalars as serde_json compares them: `1` and `1.0` differ.
            (a, b) => a == b,
        }
    }
}

/// The member names of the input, built once.
struct Keys {
    kind: Value,
    id: Value,
    name: Value,
    properties: Value,
    subject: Value,
    action: Value,
    resource: Value,
    context: Value,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    kind: Value::from("type"),
    id: Value::from("id"),
    name: Value::from("name"),
    properties: Value::from("properties"),
    subject: Value::from("subject"),
    action: Value::from("action"),
    resource: Value::from("resource"),
    context: Value::from("context"),
});

fn object(map: &Properties, at: &str) -> Result<Value, String> {
    let mut members = BTreeMap::new();
    for (k, v) in map {
        members.insert(Value::from(k.as_str()), value(v, at)?);
    }
    Ok(Value::from(members))
}

/// The smallest magnitude from which a float no longer tells one integer from the next.
const INEXACT: f64 = 9_007_199_254_740_992.0; // 2^53

fn value(v: &serde_json::Value, at: &str) -> Result<Value, String> {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && !(f.fract() == 0.0 && f.abs() >= INEXACT) => {
                        Value::from(f)
                    }
                    _ => {
                        return Err(format!(
                            "the number `{n}` in `{at}` is beyond the range numbers keep their exact value in (integers of 64 bits); the request is refused as malformed"
                        ));
                    }
                }
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(
            items
                .iter()
                .map(|item| value(item, at))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        serde_json::Value::Object(map) => object(map, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equals_the_serde_conversion_with_every_member() {
        let request: AccessRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "alice", "properties": {
                "role": "doctor", "clinics": ["c1", "c2"], "n": 3, "big": 18446744073709551615u64,
                "f": 1.5, "neg": -7, "none": null, "nested": {"a": [true, {"b": "ü"}], "e": {}}
            }},
            "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/x/{id}", "properties": {"params": {"id": "42"}}},
            "context": {"time": "2026-11-30T00:00:00Z"}
        }))
        .unwrap();
        let mut wire = serde_json::to_value(&request).unwrap();
        wire["action"]["properties"] = json!({});
        assert_eq!(input(&request).unwrap(), Value::from(wire));
    }

    #[test]
    fn empty_objects_are_kept() {
        let bare: AccessRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "a", "properties": {}}, "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/"}, "context": {}
        }))
        .unwrap();
        let want = json!({
            "subject": {"type": "user", "id": "a", "properties": {}},
            "action": {"name": "GET", "properties": {}},
            "resource": {"type": "route", "id": "/", "properties": {}},
            "context": {}
        });
        assert_eq!(input(&bare).unwrap(), Value::from(want));
    }

    fn with_properties(wire: &str) -> AccessRequest {
        let mut subject = warden_decision::Subject::user("a");
        subject.properties = serde_json::from_str(wire).unwrap();
        AccessRequest::new(
            subject,
            warden_decision::Action::new("GET"),
            warden_decision::Resource::new("route", "/"),
        )
    }

    #[tokio::test]
    async fn a_big_clinic_id_is_refused_not_rounded_into_another() {
        use warden_decision::Pdp;
        let pdp = crate::RegoPdp::builder()
            .policy(
                "p.rego",
                "package warden\ndecision if input.resource.properties.clinic in input.subject.properties.clinics",
            )
            .build()
            .unwrap();
        let request: AccessRequest = serde_json::from_str(
            r#"{"subject": {"type": "user", "id": "doc", "properties": {"clinics": [100000000000000000000]}},
                "action": {"name": "GET"},
                "resource": {"type": "clinic", "id": "x", "properties": {"clinic": 100000000000000000001}}}"#,
        )
        .unwrap();
        let d = pdp.decide(&request).await.unwrap();
        assert!(!d.allowed, "{d:?}");
        assert!(
            d.diagnostics[0].message.contains("refused as malformed"),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_context_is_an_object_the_policy_sees() {
        use warden_decision::Pdp;
        let pdp = crate::RegoPdp::builder()
            .policy(
                "p.rego",
                "package warden\ndecision if { not input.context.x; is_object(input.context); is_object(input.action.properties) }",
            )
            .build()
            .unwrap();
        let request = AccessRequest::new(
            warden_decision::Subject::user("a"),
            warden_decision::Action::new("GET"),
            warden_decision::Resource::new("route", "/"),
        );
        assert!(pdp.decide(&request).await.unwrap().allowed);
    }

    #[test]
    fn numbers_beyond_exact_range_are_refused_not_rounded() {
        for wire in [
            r#"{"clinics": [100000000000000000000]}"#,
            r#"{"clinics": [100000000000000000001]}"#,
            r#"{"n": -18446744073709551617}"#,
            r#"{"n": 9007199254740992.0}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 1.5e300}"#,
            r#"{"deep": {"a": [{"n": 123456789012345678901234567890}]}}"#,
        ] {
            let error = input(&with_properties(wire)).unwrap_err();
            assert!(error.contains("subject.properties"), "{wire}: {error}");
        }
        for wire in [
            r#"{"n": 18446744073709551615}"#,
            r#"{"n": -9223372036854775808}"#,
            r#"{"n": 9007199254740991.0}"#,
            r#"{"n": 0.1}"#,
            r#"{"n": 1.5e-300}"#,
        ] {
            assert!(input(&with_properties(wire)).is_ok(), "{wire}");
        }
    }
}

#[cfg(test)]
mod reuse_tests {
    //! The remembered parts: every input is the one a fresh build gives, whatever came before.

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The input a fresh build gives (the request's wire form with every member), or the
    /// refusal.
    fn fresh(request: &AccessRequest) -> Result<(Value, String), ()> {
        let mut wire = serde_json::to_value(request).unwrap();
        // Every member, empty ones too, as the input has them.
        wire["subject"]["properties"] = json!(request.subject.properties);
        wire["action"]["properties"] = json!(request.action.properties);
        wire["resource"]["properties"] = json!(request.resource.properties);
        wire["context"] = json!(request.context);
        let built = Last::default().input(request).map_err(|_| ())?;
        assert_eq!(built, Value::from(wire));
        let text = serde_json::to_string(&built).unwrap();
        Ok((built, text))
    }

    /// Parts that differ only slightly: numbers of both kinds, a refused one, an empty map.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!(1)),
            Just(json!(1.0)),
            Just(json!("1")),
            Just(json!(9_007_199_254_740_992.0_f64)),
            Just(json!([1])),
            Just(json!({"a": 1})),
            Just(json!({"a": 1, "b": [2, {"c": 1.0}]})),
            Just(json!({"b": [2, {"c": 1.0}], "a": 1})),
            Just(json!({"b": [2, {"c": 1}], "a": 1})),
            Just(json!({})),
            Just(json!(null)),
        ]
    }

    fn request() -> impl Strategy<Value = AccessRequest> {
        (
            prop::sample::select(vec!["a", "b"]),
            value(),
            prop::sample::select(vec!["GET", "POST"]),
            value(),
            value(),
        )
            .prop_map(|(id, s, action, r, c)| {
                serde_json::from_value(json!({
                    "subject": {"type": "user", "id": id, "properties": {"p": s}},
                    "action": {"name": action},
                    "resource": {"type": "route", "id": "/", "properties": {"q": r}},
                    "context": {"c": c}
                }))
                .unwrap()
            })
    }

    proptest! {
        /// `same` says so only of equal values.
        #[test]
        fn same_values_are_equal(a in value(), b in value()) {
            prop_assert!(!a.same(&b) || a == b);
            prop_assert!(a.same(&a.clone()));
        }

        #[test]
        fn each_input_is_the_fresh_one(requests in prop::collection::vec(request(), 1..12)) {
            for request in &requests {
                let got = input(request);
                match fresh(request) {
                    Ok((want, text)) => {
                        let got = got.unwrap();
                        prop_assert_eq!(serde_json::to_string(&got).unwrap(), text);
                        prop_assert_eq!(got, want);
                    }
                    Err(()) => prop_assert!(got.is_err()),
                }
            }
        }
    }
}
