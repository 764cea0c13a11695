//! The canonical form of an access request: the cache key.

use std::fmt::Write as _;

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
    let mut out = request_key(request, ignore);
    out.push('|');
    string(&mut out, &revision.id);
    string(&mut out, &revision.revision);
    out
}

/// A string equal for two requests exactly when they are the same request (object members in
/// any order), context attributes in `ignore` left out: [`cache_key`] without the revision,
/// for a cache that checks the revision of what it finds instead.
pub(crate) fn request_key(request: &AccessRequest, ignore: &[String]) -> String {
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
    out
}

fn entity(out: &mut String, kind: &str, id: &str, properties: &Map<String, Value>) {
    string(out, kind);
    string(out, id);
    object(out, properties, &[]);
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped as serde_json
/// escapes them, so every string is self-delimiting.
fn string(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escape: one pass without early exit (it vectorizes) tells.
    let special = s.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !special {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so the runs between them are whole characters.
        out.push_str(s.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

/// Objects up to this many members are sorted on the stack.
const SMALL: usize = 16;

fn object(out: &mut String, map: &Map<String, Value>, ignore: &[String]) {
    out.push('{');
    let kept = map.iter().filter(|(k, _)| !ignore.contains(k));
    if map.len() <= SMALL {
        let mut members: [Option<(&String, &Value)>; SMALL] = [None; SMALL];
        let mut n = 0;
        for (slot, entry) in members.iter_mut().zip(kept) {
            *slot = Some(entry);
            n += 1;
        }
        let members = members.get_mut(..n).unwrap_or_default();
        members.sort_unstable_by(|a, b| a.map(|m| m.0).cmp(&b.map(|m| m.0)));
        for (key, v) in members.iter().flatten() {
            member(out, key, v);
        }
    } else {
        let mut members: Vec<(&String, &Value)> = kept.collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, v) in members {
            member(out, key, v);
        }
    }
    out.push('}');
}

fn member(out: &mut String, key: &str, v: &Value) {
    string(out, key);
    out.push(':');
    value(out, v);
    out.push(',');
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
        Value::String(s) => string(out, s),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Null => out.push_str("null"),
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

    /// The key as it was first written: serde_json prints every string and scalar. The
    /// allocation-free writer must print exactly the same key.
    fn reference_key(
        request: &AccessRequest,
        ignore: &[String],
        revision: &PolicyRevision,
    ) -> String {
        fn string(out: &mut String, s: &str) {
            out.push_str(&Value::String(s.to_owned()).to_string());
        }
        fn object(out: &mut String, map: &Map<String, Value>, ignore: &[String]) {
            let mut keys: Vec<&String> = map.keys().filter(|k| !ignore.contains(k)).collect();
            keys.sort();
            out.push('{');
            for key in keys {
                string(out, key);
                out.push(':');
                value(out, &map[key]);
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
        let mut out = String::new();
        string(&mut out, &request.subject.kind);
        string(&mut out, &request.subject.id);
        object(&mut out, &request.subject.properties, &[]);
        out.push('|');
        string(&mut out, &request.action.name);
        object(&mut out, &request.action.properties, &[]);
        out.push('|');
        string(&mut out, &request.resource.kind);
        string(&mut out, &request.resource.id);
        object(&mut out, &request.resource.properties, &[]);
        out.push('|');
        object(&mut out, &request.context, ignore);
        out.push('|');
        string(&mut out, &revision.id);
        string(&mut out, &revision.revision);
        out
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Strings from a small alphabet, so that equal strings and near-collisions are
        /// frequent: quotes, escapes, the key's own separators, control and non-ASCII
        /// characters.
        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "a", "b", "\"", "\\", "|", "{", "}", ":", ",", "[", "]", "\u{0}", "\n",
                    "\u{1f}", "\u{7f}", "é", "\u{2028}", "1", " ",
                ]),
                0..4,
            )
            .prop_map(|parts| parts.concat())
        }

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                (-2_i64..3).prop_map(Value::from),
                prop::sample::select(vec![0.0, 1.0, -0.5, 1e300]).prop_map(Value::from),
                (0_u64..2).prop_map(|n| Value::from(u64::MAX - n)),
                text().prop_map(Value::String),
            ]
        }

        fn json() -> impl Strategy<Value = Value> {
            scalar().prop_recursive(3, 12, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::vec((text(), inner), 0..3)
                        .prop_map(|members| Value::Object(members.into_iter().collect())),
                ]
            })
        }

        fn object() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec((text(), json()), 0..3)
                .prop_map(|members| members.into_iter().collect())
        }

        fn context() -> impl Strategy<Value = Map<String, Value>> {
            (object(), prop::option::of(text()), prop::option::of(json())).prop_map(
                |(mut context, time, ignored)| {
                    if let Some(time) = time {
                        context.insert("time".into(), time.into());
                    }
                    if let Some(v) = ignored {
                        context.insert("request_id".into(), v);
                    }
                    context
                },
            )
        }

        fn request() -> impl Strategy<Value = AccessRequest> {
            (
                (text(), text(), object()),
                (text(), object()),
                (text(), text(), object()),
                context(),
            )
                .prop_map(|(subject, action, resource, context)| AccessRequest {
                    subject: Subject {
                        kind: subject.0,
                        id: subject.1,
                        properties: subject.2,
                    },
                    action: Action {
                        name: action.0,
                        properties: action.1,
                    },
                    resource: Resource {
                        kind: resource.0,
                        id: resource.1,
                        properties: resource.2,
                    },
                    context,
                })
        }

        fn revision() -> impl Strategy<Value = PolicyRevision> {
            (text(), text()).prop_map(|(id, revision)| PolicyRevision::new(id, revision))
        }

        /// What the PDP sees of a request once the ignored context attributes are left out
        /// (member order is not part of it: serde_json's maps compare as maps).
        fn seen(request: &AccessRequest, ignore: &[String]) -> AccessRequest {
            let mut seen = request.clone();
            seen.context.retain(|k, _| !ignore.contains(k));
            seen
        }

        /// The same request with every object's members in reverse order.
        fn reversed(request: &AccessRequest) -> AccessRequest {
            fn map(m: &Map<String, Value>) -> Map<String, Value> {
                m.iter().rev().map(|(k, v)| (k.clone(), value(v))).collect()
            }
            fn value(v: &Value) -> Value {
                match v {
                    Value::Object(m) => Value::Object(map(m)),
                    Value::Array(items) => Value::Array(items.iter().map(value).collect()),
                    other => other.clone(),
                }
            }
            let mut r = request.clone();
            r.subject.properties = map(&r.subject.properties);
            r.action.properties = map(&r.action.properties);
            r.resource.properties = map(&r.resource.properties);
            r.context = map(&r.context);
            r
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Two requests share a key exactly when the PDP sees the same request under the
            /// same revision.
            #[test]
            fn keys_are_equal_exactly_when_the_requests_are(
                a in request(),
                b in request(),
                ra in revision(),
                rb in revision(),
            ) {
                let ignore = vec!["time".to_owned(), "request_id".to_owned()];
                let same = seen(&a, &ignore) == seen(&b, &ignore) && ra == rb;
                prop_assert_eq!(cache_key(&a, &ignore, &ra) == cache_key(&b, &ignore, &rb), same);
                prop_assert_eq!(cache_key(&a, &ignore, &ra), cache_key(&reversed(&a), &ignore, &ra));
            }

            /// A request differing from another in one string only (the likeliest collision)
            /// never shares its key.
            #[test]
            fn one_changed_string_changes_the_key(a in request(), s in text(), which in 0_usize..5) {
                let rev = PolicyRevision::new("p", "1");
                let mut b = a.clone();
                let field = match which {
                    0 => &mut b.subject.kind,
                    1 => &mut b.subject.id,
                    2 => &mut b.action.name,
                    3 => &mut b.resource.kind,
                    _ => &mut b.resource.id,
                };
                let changed = *field != s;
                *field = s;
                prop_assert_eq!(cache_key(&a, &[], &rev) != cache_key(&b, &[], &rev), changed);
            }

            /// The writer prints what serde_json prints, member for member.
            #[test]
            fn the_key_is_the_serde_json_canonical_form(a in request(), r in revision()) {
                let ignore = vec!["time".to_owned()];
                prop_assert_eq!(cache_key(&a, &ignore, &r), reference_key(&a, &ignore, &r));
            }
        }

        #[test]
        fn objects_larger_than_the_stack_buffer_are_sorted_too() {
            let rev = PolicyRevision::new("p", "1");
            let members: Vec<(String, Value)> = (0..40)
                .map(|i| (format!("k{i:02}"), Value::from(i)))
                .collect();
            let forward: Map<String, Value> = members.iter().cloned().collect();
            let backward: Map<String, Value> = members.iter().rev().cloned().collect();
            let mut a = super::request(json!({}), json!({}));
            a.subject.properties = forward;
            let mut b = a.clone();
            b.subject.properties = backward;
            assert_eq!(cache_key(&a, &[], &rev), cache_key(&b, &[], &rev));
            assert_eq!(cache_key(&a, &[], &rev), reference_key(&a, &[], &rev));
            b.subject.properties.insert("k07".into(), Value::from("7"));
            assert_ne!(cache_key(&a, &[], &rev), cache_key(&b, &[], &rev));
        }
    }
}
