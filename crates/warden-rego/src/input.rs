//! Building the Rego `input` from an access request, without an intermediate JSON tree.

use std::collections::BTreeMap;

use regorus::Value;
use warden_decision::{AccessRequest, Properties};

/// The AuthZEN-shaped request as a regorus value: every member the request has, `properties`
/// and `context` included when they are empty (`not input.context` is false, as it is in OPA for
/// `context: {}`).
///
/// A number that cannot reach the policy with the value the client sent is refused: serde_json
/// parses an integer beyond 64 bits as the nearest float, so `100000000000000000001` arrives as
/// `1e20` and would equal `100000000000000000000`. Every float that is a whole number of
/// magnitude 2⁵³ or more is such a number (no float there tells which integer was sent).
pub(crate) fn input(request: &AccessRequest) -> Result<Value, String> {
    let mut subject = BTreeMap::new();
    subject.insert(key("type"), Value::from(request.subject.kind.as_str()));
    subject.insert(key("id"), Value::from(request.subject.id.as_str()));
    subject.insert(
        key("properties"),
        object(&request.subject.properties, "subject.properties")?,
    );

    let mut action = BTreeMap::new();
    action.insert(key("name"), Value::from(request.action.name.as_str()));
    action.insert(
        key("properties"),
        object(&request.action.properties, "action.properties")?,
    );

    let mut resource = BTreeMap::new();
    resource.insert(key("type"), Value::from(request.resource.kind.as_str()));
    resource.insert(key("id"), Value::from(request.resource.id.as_str()));
    resource.insert(
        key("properties"),
        object(&request.resource.properties, "resource.properties")?,
    );

    let mut root = BTreeMap::new();
    root.insert(key("subject"), Value::from(subject));
    root.insert(key("action"), Value::from(action));
    root.insert(key("resource"), Value::from(resource));
    root.insert(key("context"), object(&request.context, "context")?);
    Ok(Value::from(root))
}

fn key(name: &str) -> Value {
    Value::from(name)
}

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
