//! The canonical form of an access request: the cache key.

use serde_json::{Map, Value};

use crate::decision::PolicyRevision;
use crate::request::AccessRequest;

/// A string equal for two requests exactly when they are the same request (object members in
/// any order) under the same policy revision; context attributes in `ignore` left out.
pub(crate) fn cache_key(
    request: &AccessRequest,
    ignore: &[String],
    revision: &PolicyRevision,
) -> String {
    let mut out = String::with_capacity(256);
    entity(
        &mut out,
        &request.subject.kind,
        &request.subject.id,
        &request.subject.properties,
    );
    out.push('|');
    string(&mut out, &request.action.name);
    object(&mut out, &request.action.properties, &[]);
    out.push('|');
    entity(
        &mut out,
        &request.resource.kind,
        &request.resource.id,
        &request.resource.properties,
    );
    out.push('|');
    object(&mut out, &request.context, ignore);
    out.push('|');
    string(&mut out, &revision.id);
    string(&mut out, &revision.revision);
    out
}

fn entity(out: &mut String, kind: &str, id: &str, properties: &Map<String, Value>) {
    string(out, kind);
    string(out, id);
    object(out, properties, &[]);
}

fn string(out: &mut String, s: &str) {
    // serde_json's escaping makes every string self-delimiting.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn object(out: &mut String, map: &Map<String, Value>, ignore: &[String]) {
    let mut keys: Vec<&String> = map.keys().filter(|k| !ignore.contains(k)).collect();
    keys.sort();
    out.push('{');
    for key in keys {
        string(out, key);
        out.push(':');
        if let Some(v) = map.get(key) {
            value(out, v);
        }
        out.push(',');
    }
    out.push('}');
}

fn value(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => object(out, map, &[]),
        Value::Array(items) => {
            out.push('[');
            for item in items {
                value(out, item);
                out.push(',');
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Resource, Subject};
    use serde_json::json;

    fn request(props: Value, context: Value) -> AccessRequest {
        let mut r = AccessRequest::new(
            Subject::user("alice"),
            Action::new("GET"),
            Resource::new("route", "/p/{id}"),
        );
        if let (Value::Object(p), Value::Object(c)) = (props, context) {
            r.subject.properties = p;
            r.context = c;
        }
        r
    }

    #[test]
    fn member_order_does_not_matter_but_values_do() {
        let rev = PolicyRevision::new("p", "1");
        let ignore = vec!["time".to_owned()];
        let a = cache_key(
            &request(
                json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}),
                json!({"time": "t1"}),
            ),
            &ignore,
            &rev,
        );
        let b = cache_key(
            &request(
                json!({"b": {"y": "z", "x": [1, 2]}, "a": 1}),
                json!({"time": "t2"}),
            ),
            &ignore,
            &rev,
        );
        assert_eq!(a, b);
        let c = cache_key(
            &request(json!({"a": 1, "b": {"x": [2, 1], "y": "z"}}), json!({})),
            &ignore,
            &rev,
        );
        assert_ne!(a, c);
        let d = cache_key(
            &request(json!({"a": "1", "b": {"x": [1, 2], "y": "z"}}), json!({})),
            &ignore,
            &rev,
        );
        assert_ne!(a, d, "the number 1 and the string \"1\" differ");
        assert_ne!(
            a,
            cache_key(
                &request(json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}), json!({})),
                &ignore,
                &PolicyRevision::new("p", "2")
            )
        );
    }

    #[test]
    fn strings_cannot_be_spliced_into_another_key() {
        let rev = PolicyRevision::new("p", "1");
        let mut a = request(json!({}), json!({}));
        a.subject.id = "al|ice".into();
        let mut b = request(json!({}), json!({}));
        b.subject.id = "al".into();
        b.subject.kind = "user\"\"ice".into();
        assert_ne!(cache_key(&a, &[], &rev), cache_key(&b, &[], &rev));
    }
}
