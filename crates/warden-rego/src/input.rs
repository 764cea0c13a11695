//! Building the Rego `input` from an access request, without an intermediate JSON tree.

use std::collections::BTreeMap;

use regorus::Value;
use warden_decision::{AccessRequest, Properties};

/// The AuthZEN-shaped request as a regorus value (the same document `serde_json` would give).
pub(crate) fn input(request: &AccessRequest) -> Value {
    let mut subject = BTreeMap::new();
    subject.insert(key("type"), Value::from(request.subject.kind.as_str()));
    subject.insert(key("id"), Value::from(request.subject.id.as_str()));
    properties(&mut subject, &request.subject.properties);

    let mut action = BTreeMap::new();
    action.insert(key("name"), Value::from(request.action.name.as_str()));
    properties(&mut action, &request.action.properties);

    let mut resource = BTreeMap::new();
    resource.insert(key("type"), Value::from(request.resource.kind.as_str()));
    resource.insert(key("id"), Value::from(request.resource.id.as_str()));
    properties(&mut resource, &request.resource.properties);

    let mut root = BTreeMap::new();
    root.insert(key("subject"), Value::from(subject));
    root.insert(key("action"), Value::from(action));
    root.insert(key("resource"), Value::from(resource));
    if !request.context.is_empty() {
        root.insert(key("context"), object(&request.context));
    }
    Value::from(root)
}

fn key(name: &str) -> Value {
    Value::from(name)
}

fn properties(into: &mut BTreeMap<Value, Value>, properties: &Properties) {
    if !properties.is_empty() {
        into.insert(key("properties"), object(properties));
    }
}

fn object(map: &Properties) -> Value {
    Value::from(
        map.iter()
            .map(|(k, v)| (Value::from(k.as_str()), value(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(value).collect::<Vec<_>>()),
        serde_json::Value::Object(map) => object(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equals_the_serde_conversion() {
        let request: AccessRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "alice", "properties": {
                "role": "doctor", "clinics": ["c1", "c2"], "n": 3, "big": 18446744073709551615u64,
                "f": 1.5, "neg": -7, "none": null, "nested": {"a": [true, {"b": "ü"}]}
            }},
            "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/x/{id}", "properties": {"params": {"id": "42"}}},
            "context": {"time": "2026-11-30T00:00:00Z"}
        }))
        .unwrap();
        let via_serde = Value::from(serde_json::to_value(&request).unwrap());
        assert_eq!(input(&request), via_serde);
        let bare: AccessRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "a"}, "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/"}
        }))
        .unwrap();
        assert_eq!(
            input(&bare),
            Value::from(serde_json::to_value(&bare).unwrap())
        );
    }
}
