//! Differential tests: Warden's Rego answers beside Go OPA's on the same policies and inputs.
//!
//! The reference is Go OPA (v1.20) embedded in the PyPI wheel `opa-golib-python-bindings`,
//! driven by a small Python script over stdin/stdout. Without it the test says so and passes,
//! unless `WARDEN_TEST_REQUIRE_DATABASES=1` (as CI sets), where `.ci/run` installs it.
//!
//! Every input is given to both engines as the same JSON text: the document Warden's Rego PDP
//! builds (every member of the access request, empty objects included). Each answer is a value,
//! `undefined` or an error. An answer that differs from OPA's must be a [`KNOWN`] difference,
//! and no difference may ever let Warden permit where OPA does not.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers fail the test loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use warden_decision::AccessRequest;
use warden_rego::{Evaluator, RegoPdp};

/// The reference engine's driver: one JSON job per line in, one JSON answer list per line out.
const DRIVER: &str = r#"
import json, sys
from opa_bindings import OpaEngine
from opa_bindings.engine import OpaUndefinedError
for line in sys.stdin:
    job = json.loads(line)
    answers = []
    engine = OpaEngine()
    try:
        for name, source in job["policies"]:
            engine.add_policy(name, source)
        if job["data"]:
            engine.add_data(job["data"])
    except Exception as e:
        print(json.dumps([{"error": str(e)}] * len(job["inputs"])), flush=True)
        continue
    for text in job["inputs"]:
        try:
            answers.append({"value": engine.eval_document(job["path"], json.loads(text))})
        except OpaUndefinedError:
            answers.append({"undefined": True})
        except Exception as e:
            answers.append({"error": str(e)})
    engine.close()
    print(json.dumps(answers), flush=True)
"#;

/// Differences from OPA that are known and kept, with their consequence for decisions. Each is
/// `(case name, what Warden answers instead, why)`; none turns a deny into a permit.
const KNOWN: &[(&str, &str, &str)] = &[(
    "numbers beyond exact range",
    "error",
    "OPA keeps the literal of an integer beyond 64 bits (or of a float beyond 2^53); serde_json \
         cannot, so Warden refuses the request as malformed (a deny) rather than decide on a \
         rounded number",
)];

struct Reference {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start() -> Option<Self> {
        let present = Command::new("python3")
            .args(["-c", "import opa_bindings"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            let required = std::env::var(warden_test::REQUIRE).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "the reference OPA engine is missing: pip install --ignore-requires-python opa-golib-python-bindings==0.4.4"
            );
            eprintln!(
                "note: Rego/OPA differential tests skipped: python3 module `opa_bindings` is absent \
                 (pip install --ignore-requires-python opa-golib-python-bindings==0.4.4)"
            );
            return None;
        }
        let mut child = Command::new("python3")
            .args(["-c", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Some(Self { child, out })
    }

    fn run(
        &mut self,
        policies: &[(String, String)],
        data: &Value,
        path: &str,
        inputs: &[String],
    ) -> Vec<Answer> {
        let job = json!({"policies": policies, "data": data, "path": path, "inputs": inputs});
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{job}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let answers: Vec<Value> = serde_json::from_str(&line).unwrap();
        answers
            .into_iter()
            .map(|a| match a {
                Value::Object(mut m) if m.contains_key("value") => {
                    Answer::Value(m.remove("value").unwrap())
                }
                Value::Object(m) if m.contains_key("undefined") => Answer::Undefined,
                other => Answer::Error(other["error"].as_str().unwrap_or("").to_owned()),
            })
            .collect()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Value(Value),
    Undefined,
    Error(String),
}

impl Answer {
    fn kind(&self) -> &'static str {
        match self {
            Self::Value(_) => "value",
            Self::Undefined => "undefined",
            Self::Error(_) => "error",
        }
    }

    /// Whether the answer, as an entrypoint's result, permits.
    fn permits(&self) -> bool {
        match self {
            Self::Value(Value::Bool(b)) => *b,
            Self::Value(Value::Object(m)) => m.get("allow") == Some(&Value::Bool(true)),
            _ => false,
        }
    }
}

/// The document Warden's Rego PDP gives the policy for `request` (every member, empty objects
/// included), as JSON text.
fn input_text(request: &Value) -> String {
    let mut doc = request.clone();
    for member in ["subject", "action", "resource"] {
        if let Some(m) = doc.get_mut(member).and_then(Value::as_object_mut) {
            m.entry("properties").or_insert(json!({}));
        }
    }
    if let Some(m) = doc.as_object_mut() {
        m.entry("context").or_insert(json!({}));
    }
    doc.to_string()
}

fn warden(pdp: &RegoPdp, text: &str) -> Answer {
    let request: AccessRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e.to_string()),
    };
    match pdp.evaluate_raw(&request) {
        Ok(Some(v)) => Answer::Value(v),
        Ok(None) => Answer::Undefined,
        Err(e) => Answer::Error(e.to_string()),
    }
}

/// JSON equality with numbers compared by value (`2` and `2.0` are one number in Rego).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || (x.as_i64().is_some() && x.as_i64() == y.as_i64())
                || (x.as_u64().is_some() && x.as_u64() == y.as_u64())
                || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

struct Case {
    name: &'static str,
    policies: Vec<(String, String)>,
    data: Value,
    entrypoint: &'static str,
    inputs: Vec<String>,
}

fn request(subject: Value, action: &str, resource: Value, context: Option<Value>) -> Value {
    let mut r = json!({"subject": subject, "action": {"name": action}, "resource": resource});
    if let Some(c) = context {
        r["context"] = c;
    }
    r
}

fn small(name: &'static str, rego: &str, inputs: Vec<String>) -> Case {
    Case {
        name,
        policies: vec![("p.rego".into(), rego.into())],
        data: json!({}),
        entrypoint: "data.t.decision",
        inputs,
    }
}

fn resource_props(props: &str) -> String {
    format!(
        r#"{{"subject": {{"type": "user", "id": "a"}}, "action": {{"name": "GET"}}, "resource": {{"type": "r", "id": "x", "properties": {props}}}}}"#
    )
}

fn plain() -> String {
    input_text(&request(
        json!({"type": "user", "id": "a"}),
        "GET",
        json!({"type": "route", "id": "/"}),
        None,
    ))
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // The clinic package, on its own cases and on generated variations of them.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/clinic");
    let source = std::fs::read_to_string(format!("{dir}/clinic.rego")).unwrap();
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/data.json")).unwrap())
            .unwrap();
    let recorded: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/cases.json")).unwrap())
            .unwrap();
    let mut inputs: Vec<String> = Vec::new();
    for case in &recorded {
        let base = case["request"].clone();
        inputs.push(input_text(&base));
        for role in ["doctor", "nurse", "admin", "auditor", "janitor", ""] {
            for clinics in [json!(["c1"]), json!([]), json!(["c2", "c1"]), json!("c1")] {
                for method in ["GET", "POST", "DELETE", "HEAD"] {
                    let mut r = base.clone();
                    r["subject"] = json!({"type": "user", "id": "u", "properties": {"role": role, "clinics": clinics}});
                    r["action"] = json!({"name": method});
                    inputs.push(input_text(&r));
                }
            }
        }
    }
    cases.push(Case {
        name: "clinic package",
        policies: vec![("clinic.rego".into(), source)],
        data,
        entrypoint: "data.clinic.decision",
        inputs,
    });
    cases.push(small(
        "numbers",
        r#"package t
        n := input.resource.properties.n
        decision := {"eq1": n == 1, "lt": n < 10, "int": is_number(n), "sum": n + 1}"#,
        [
            "1",
            "1.0",
            "-0",
            "0.5",
            "1e2",
            "9007199254740993",
            "18446744073709551615",
            "-9223372036854775808",
        ]
        .iter()
        .map(|n| resource_props(&format!(r#"{{"n": {n}}}"#)))
        .collect(),
    ));
    cases.push(small(
        "numbers beyond exact range",
        r#"package t
        decision if input.resource.properties.clinic in input.resource.properties.clinics"#,
        vec![
            resource_props(
                r#"{"clinic": 100000000000000000001, "clinics": [100000000000000000000]}"#,
            ),
            resource_props(r#"{"clinic": 1e20, "clinics": [100000000000000000000]}"#),
            resource_props(r#"{"clinic": 1.5e300, "clinics": []}"#),
        ],
    ));
    cases.push(small(
        "sets",
        r#"package t
        items := {x | some x in input.resource.properties.items}
        decision := {"items": items, "n": count(items), "has_a": "a" in items, "union": items | {"z"}}"#,
        ["[]", r#"["a", "a", "b"]"#, r#"["b", "a", 1, true, null]"#, r#"[[1], [1], {"k": 1}]"#]
            .iter()
            .map(|items| resource_props(&format!(r#"{{"items": {items}}}"#)))
            .collect(),
    ));
    cases.push(small(
        "empty collections",
        r#"package t
        decision := {
            "no_context": object.get(input, "context", "absent"),
            "not_x": not_x,
            "keys": object.keys(input.subject.properties),
            "props": input.action.properties,
            "empty_list": count(object.get(input.resource.properties, "l", [])),
        }
        not_x if not input.context.x"#,
        vec![
            plain(),
            input_text(&request(
                json!({"type": "user", "id": "a", "properties": {}}),
                "GET",
                json!({"type": "route", "id": "/", "properties": {"l": []}}),
                Some(json!({})),
            )),
            input_text(&request(
                json!({"type": "user", "id": "a", "properties": {"e": {}}}),
                "GET",
                json!({"type": "route", "id": "/"}),
                Some(json!({"x": false})),
            )),
        ],
    ));
    cases.push(small(
        "conflicting decisions",
        r#"package t
        decision := {"allow": true} if input.subject.id == "a"
        decision := {"allow": false} if input.action.name == "GET""#,
        vec![
            plain(),
            input_text(&request(
                json!({"type": "user", "id": "b"}),
                "GET",
                json!({"type": "route", "id": "/"}),
                None,
            )),
        ],
    ));
    cases.push(small(
        "conflicting helper under not",
        r#"package t
        role := "admin" if input.subject.id == "a"
        role := "guest" if input.action.name == "GET"
        decision if not role == "guest""#,
        vec![
            plain(),
            input_text(&request(
                json!({"type": "user", "id": "b"}),
                "POST",
                json!({"type": "route", "id": "/"}),
                None,
            )),
        ],
    ));
    cases.push(small(
        "complete rule with several outputs",
        r#"package t
        r := x if { some x in input.resource.properties.items }
        decision if not r == 3"#,
        vec![
            resource_props(r#"{"items": [1, 2]}"#),
            resource_props(r#"{"items": [1]}"#),
            resource_props(r#"{"items": [3, 3]}"#),
        ],
    ));
    cases.push(small(
        "builtins",
        r#"package t
        p := input.resource.properties
        decision := {
            "starts": startswith(p.s, "ab"),
            "regex": regex.match("^a.c$", p.s),
            "lower": lower(p.s),
            "split": split(p.s, "b"),
            "sprintf": sprintf("%v-%d", [p.s, 3]),
            "concat": concat(",", ["x", p.s]),
            "json": json.marshal({"s": p.s}),
            "time": time.parse_rfc3339_ns("2026-11-30T10:00:00Z"),
            "number": to_number("12"),
        }"#,
        [r#""abc""#, r#""""#, r#""ü-b-ß""#]
            .iter()
            .map(|s| resource_props(&format!(r#"{{"s": {s}}}"#)))
            .collect(),
    ));
    cases.push(small(
        "builtin error under not",
        r#"package t
        decision if not to_number(input.resource.properties.s) == 1"#,
        vec![resource_props(r#"{"s": "abc"}"#)],
    ));
    cases.push(small(
        "builtins that succeed under not",
        r#"package t
        decision if not to_number(input.resource.properties.s) == 1"#,
        vec![
            resource_props(r#"{"s": "1"}"#),
            resource_props(r#"{"s": "2"}"#),
        ],
    ));
    cases.push(small(
        "division by zero under not",
        r#"package t
        decision if not 1 / input.resource.properties.d == 1"#,
        vec![resource_props(r#"{"d": 0}"#)],
    ));
    cases
}

#[test]
fn warden_answers_as_go_opa_or_a_known_difference_that_never_permits() {
    let Some(mut opa) = Reference::start() else {
        return;
    };
    let mut compared = 0;
    let mut known_seen = Vec::new();
    let mut failures = Vec::new();
    for case in cases() {
        let path = case.entrypoint.strip_prefix("data.").unwrap();
        let reference = opa.run(&case.policies, &case.data, path, &case.inputs);
        for evaluator in [Evaluator::Vm, Evaluator::Interpreter] {
            let mut builder = RegoPdp::builder()
                .entrypoint(case.entrypoint)
                .evaluator(evaluator)
                .data(case.data.clone());
            for (name, source) in &case.policies {
                builder = builder.policy(name.clone(), source.clone());
            }
            let pdp = builder.build().unwrap();
            for (text, theirs) in case.inputs.iter().zip(&reference) {
                compared += 1;
                let ours = warden(&pdp, text);
                if ours.permits() && !theirs.permits() {
                    failures.push(format!("{} {evaluator:?}: Warden permits where OPA does not\n  input {text}\n  warden {ours:?}\n  opa {theirs:?}", case.name));
                    continue;
                }
                let same = match (&ours, theirs) {
                    (Answer::Error(_), Answer::Error(_))
                    | (Answer::Undefined, Answer::Undefined) => true,
                    (Answer::Value(a), Answer::Value(b)) => same_value(a, b),
                    _ => false,
                };
                if same {
                    continue;
                }
                match KNOWN.iter().find(|(name, kind, _)| *name == case.name && *kind == ours.kind()) {
                    Some(known) => {
                        if !known_seen.contains(&known.0) {
                            known_seen.push(known.0);
                        }
                    }
                    None => failures.push(format!(
                        "{} {evaluator:?}: differs from OPA\n  input {text}\n  warden {ours:?}\n  opa {theirs:?}",
                        case.name
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for (name, _, _) in KNOWN {
        assert!(
            known_seen.contains(name),
            "the known difference `{name}` no longer shows: remove it"
        );
    }
    eprintln!("{compared} answers compared with Go OPA; known differences seen: {known_seen:?}");
}
