use super::*;
use proptest::prelude::*;
use serde_json::json;
use serde_json_path::JsonPath;
use warden_decision::Obligation;

fn plan(obligations: &[Value]) -> Plan {
    let cache = PathCache::default();
    let masker = masker();
    let mut plan = Plan::default();
    for o in obligations {
        let Obligation::Redact(r) = Obligation::from_json(o.clone()).unwrap() else {
            panic!("not a redact obligation: {o}");
        };
        plan.add(&r, &cache, &masker).unwrap();
    }
    plan
}

fn masker() -> Masker {
    Masker::with_hash_key("an-example-hash-key-of-32-bytes!").unwrap()
}

fn redact(doc: Value, obligations: &[Value]) -> Value {
    let mut doc = doc;
    plan(obligations).apply(&mut doc, &masker()).unwrap();
    doc
}

fn r(paths: &[&str], with: &str) -> Value {
    json!({"type": "redact", "paths": paths, "with": with})
}

fn patients() -> Value {
    json!({"patients": [
        {"id": "p1", "clinic": "c1", "name": "Ada", "ssn": "123-45-6789", "notes": "penicillin", "born": "1985-12-10"},
        {"id": "p2", "clinic": "c2", "name": "Alan", "ssn": "987-65-4321", "notes": "march", "born": "1972-06-23"},
        {"id": "p3", "clinic": "c1", "name": "Grace", "ssn": null, "notes": "", "born": "1966-12-09"}
    ], "meta": {"ssn": "000-00-0000", "count": 3}})
}

#[test]
fn every_strategy_on_a_wildcard_path() {
    let cases = [
        ("remove", json!([null, null, null])),
        ("null", json!([null, null, null])),
        ("redact", json!(["[REDACTED]", "[REDACTED]", null])),
        ("last4", json!(["***-**-6789", "***-**-4321", null])),
        ("first4", json!(["123-4*-****", "987-6*-****", null])),
        ("year", json!(["[REDACTED]", "[REDACTED]", null])),
    ];
    for (with, want) in cases {
        let out = redact(patients(), &[r(&["$.patients[*].ssn"], with)]);
        let got: Vec<Value> = (0..3)
            .map(|i| {
                out["patients"][i]
                    .get("ssn")
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        assert_eq!(Value::Array(got), want, "{with}");
        if with == "remove" {
            assert!(out["patients"][0].get("ssn").is_none());
        }
        assert_eq!(
            out["meta"]["ssn"], "000-00-0000",
            "only the selected values change"
        );
    }
    let out = redact(patients(), &[r(&["$.patients[*].ssn"], "hash")]);
    let hashed = out["patients"][0]["ssn"].as_str().unwrap();
    assert_eq!(hashed.len(), 64);
    assert_eq!(
        redact(patients(), &[r(&["$.patients[*].ssn"], "hash")])["patients"][0]["ssn"],
        hashed
    );
    let out = redact(patients(), &[r(&["$.patients[*].born"], "year")]);
    assert_eq!(out["patients"][1]["born"], "1972");
}

#[test]
fn recursive_descent_filters_and_slices() {
    let out = redact(patients(), &[r(&["$..ssn"], "remove")]);
    assert!(!out.to_string().contains("ssn"));
    let out = redact(
        patients(),
        &[r(&["$.patients[?@.clinic != 'c1']"], "remove")],
    );
    assert_eq!(out["patients"].as_array().unwrap().len(), 2);
    assert!(!out.to_string().contains("Alan"));
    let out = redact(patients(), &[r(&["$.patients[1:].name"], "redact")]);
    assert_eq!(out["patients"][0]["name"], "Ada");
    assert_eq!(out["patients"][1]["name"], "[REDACTED]");
    assert_eq!(out["patients"][2]["name"], "[REDACTED]");
    let out = redact(patients(), &[r(&["$.patients[-1]"], "remove")]);
    assert_eq!(out["patients"].as_array().unwrap().len(), 2);
}

#[test]
fn removing_several_array_elements_removes_exactly_those() {
    let doc = json!({"xs": ["a", "b", "c", "d", "e"]});
    let out = redact(doc, &[r(&["$.xs[0]", "$.xs[2]", "$.xs[4]"], "remove")]);
    assert_eq!(out, json!({"xs": ["b", "d"]}));
    let doc = json!({"xs": [{"k": 1, "s": "x"}, {"k": 2, "s": "y"}]});
    let out = redact(doc, &[r(&["$.xs[*].s"], "null"), r(&["$.xs[0]"], "remove")]);
    assert_eq!(out, json!({"xs": [{"k": 2, "s": null}]}));
}

#[test]
fn the_stricter_strategy_wins_for_the_same_value() {
    let out = redact(
        patients(),
        &[r(&["$.patients[*].ssn"], "last4"), r(&["$..ssn"], "null")],
    );
    assert_eq!(out["patients"][0]["ssn"], Value::Null);
    assert!(out["patients"][0].get("ssn").is_some());
    let out = redact(
        patients(),
        &[r(&["$..ssn"], "hash"), r(&["$.patients[0].ssn"], "remove")],
    );
    assert!(out["patients"][0].get("ssn").is_none());
    assert_eq!(out["patients"][1]["ssn"].as_str().unwrap().len(), 64);
    let out = redact(
        patients(),
        &[r(&["$..ssn"], "last4"), r(&["$..ssn"], "first4")],
    );
    assert_eq!(
        out["patients"][0]["ssn"], "[REDACTED]",
        "two partial masks disclose nothing"
    );
}

#[test]
fn a_parent_and_its_child_are_both_handled() {
    let out = redact(
        patients(),
        &[
            r(&["$.patients[0].ssn"], "null"),
            r(&["$.patients[0]"], "redact"),
        ],
    );
    assert_eq!(out["patients"][0], "[REDACTED]");
    let out = redact(
        patients(),
        &[r(&["$.meta"], "hash"), r(&["$.meta.ssn"], "remove")],
    );
    assert_eq!(out["meta"].as_str().unwrap().len(), 64);
    let out = redact(json!({"a": 1}), &[r(&["$"], "redact")]);
    assert_eq!(out, json!("[REDACTED]"));
}

#[test]
fn paths_that_match_nothing_change_nothing() {
    let out = redact(
        patients(),
        &[r(
            &["$.nobody[*].ssn", "$..missing", "$.meta.count.deeper"],
            "remove",
        )],
    );
    assert_eq!(out, patients());
}

#[test]
fn keys_with_dots_brackets_quotes_and_unicode() {
    let doc = json!({"a.b": "dot", "c[0]": "bracket", "it's": "quote", "ñame": "ünïcode", "a": {"b": "plain"}});
    let out = redact(
        doc,
        &[r(
            &["$['a.b']", "$['c[0]']", "$['it\\'s']", "$['ñame']"],
            "redact",
        )],
    );
    assert_eq!(out["a.b"], "[REDACTED]");
    assert_eq!(out["c[0]"], "[REDACTED]");
    assert_eq!(out["it's"], "[REDACTED]");
    assert_eq!(out["ñame"], "[REDACTED]");
    assert_eq!(out["a"]["b"], "plain");
}

#[test]
fn escaped_and_duplicate_keys_in_the_raw_body_leave_no_copy() {
    let redaction = Redaction {
        plan: plan(&[r(&["$..ssn"], "last4")]),
        masker: masker(),
        limit: 1 << 20,
        head: false,
        blocking_threshold: usize::MAX,
    };
    let raw = br#"{"\u0073sn": "111-11-1111", "ssn": "222-22-2222", "ssn": "333-33-3333", "x": {"s\u0073n": "444-44-4444"}}"#;
    let out = redaction.redact_body(raw, false).unwrap();
    let text = String::from_utf8(out).unwrap();
    for secret in [
        "111-11-1111",
        "222-22-2222",
        "333-33-3333",
        "444-44-4444",
        "\\u0073",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("***-**-4444"), "{text}");
}

#[test]
fn invalid_paths_and_unconfigured_hash_make_the_obligation_impossible() {
    let cache = PathCache::default();
    let redact_bad = Obligation::from_json(r(&["$.patients[?"], "null")).unwrap();
    let Obligation::Redact(bad) = redact_bad else {
        panic!()
    };
    let err = Plan::default().add(&bad, &cache, &masker()).unwrap_err();
    assert!(err.contains("invalid JSONPath"), "{err}");
    let Obligation::Redact(hash) = Obligation::from_json(r(&["$.a"], "hash")).unwrap() else {
        panic!()
    };
    let err = Plan::default()
        .add(&hash, &cache, &Masker::new())
        .unwrap_err();
    assert!(err.contains("hash"), "{err}");
}

#[test]
fn json_media_types() {
    let ct = |s: &'static str| Some(HeaderValue::from_static(s));
    for yes in [
        "application/json",
        "application/JSON; charset=utf-8",
        "application/problem+json",
        "application/vnd.api+json",
    ] {
        assert!(is_json(ct(yes).as_ref()), "{yes}");
    }
    for no in [
        "text/json",
        "application/jsonp",
        "application/json-seq",
        "text/html",
        "application/x-json+xml",
        "",
    ] {
        assert!(!is_json(ct(no).as_ref()), "{no}");
    }
    assert!(!is_json(None));
}

#[test]
fn gzip_bodies_are_decoded_and_bombs_refused() {
    use std::io::Write;
    let redaction = Redaction {
        plan: plan(&[r(&["$.ssn"], "remove")]),
        masker: masker(),
        limit: 1000,
        head: false,
        blocking_threshold: usize::MAX,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"ssn": "123-45-6789", "ok": 1}"#).unwrap();
    let body = gz.finish().unwrap();
    assert_eq!(redaction.redact_body(&body, true).unwrap(), br#"{"ok":1}"#);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 10_000]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1000);
    assert!(
        redaction
            .redact_body(&bomb, true)
            .unwrap_err()
            .contains("limit")
    );
    assert!(redaction.redact_body(b"not gzip", true).is_err());
}

/// A JSON document whose every leaf is a unique marker string.
fn document() -> impl Strategy<Value = Value> {
    let leaf = Just(()).prop_map(|_| Value::Null);
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]{1,2}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|mut doc| {
        let mut n = 0;
        mark(&mut doc, &mut n);
        doc
    })
}

fn mark(v: &mut Value, n: &mut usize) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| mark(i, n)),
        Value::Object(members) => members.values_mut().for_each(|m| mark(m, n)),
        leaf => {
            *n += 1;
            *leaf = Value::String(format!("SECRET{n:04}X"));
        }
    }
}

fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
        Value::Object(members) => members.values().for_each(|m| leaves(m, out)),
        Value::String(s) => out.push(s.clone()),
        _ => {}
    }
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-d]{1,2}".prop_map(|k| format!(".{k}")),
        "[a-d]{1,2}".prop_map(|k| format!("..{k}")),
        Just("[*]".to_owned()),
        Just("..[*]".to_owned()),
        (0usize..4).prop_map(|i| format!("[{i}]")),
        Just("[-1]".to_owned()),
        Just("[1:3]".to_owned()),
        Just("[?@.a]".to_owned()),
    ];
    prop::collection::vec(segment, 1..4).prop_map(|s| format!("${}", s.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn no_value_selected_by_a_path_survives(
        doc in document(),
        paths in prop::collection::vec(path(), 1..4),
        with in prop::sample::select(vec!["remove", "null", "redact", "hash", "last4", "first4", "year"]),
    ) {
        let mut selected = Vec::new();
        for p in &paths {
            let compiled = JsonPath::parse(p).unwrap();
            for node in compiled.query(&doc).all() {
                leaves(node, &mut selected);
            }
        }
        let obligation = json!({"type": "redact", "paths": paths, "with": with});
        let out = redact(doc.clone(), &[obligation]).to_string();
        for secret in &selected {
            prop_assert!(!out.contains(secret.as_str()), "{} survived {:?} with {}: {}", secret, paths, with, out);
        }
        // Leaves nobody selected are all still there.
        let mut all = Vec::new();
        leaves(&doc, &mut all);
        for leaf in all.iter().filter(|l| !selected.contains(l)) {
            prop_assert!(out.contains(leaf.as_str()), "{} lost: {:?} {}", leaf, paths, out);
        }
    }
}

#[test]
fn simple_paths_are_recognised_and_others_left_to_the_full_parser() {
    use query::{Step, simple};
    assert_eq!(
        simple("$.patients[*].ssn"),
        Some(vec![
            Step::Name("patients".into()),
            Step::Wildcard,
            Step::Name("ssn".into())
        ])
    );
    assert_eq!(
        simple("$..ssn"),
        Some(vec![Step::DescendantName("ssn".into())])
    );
    assert_eq!(simple("$..*"), Some(vec![Step::DescendantWildcard]));
    assert_eq!(
        simple("$['a.b'][0]"),
        Some(vec![Step::Name("a.b".into()), Step::Index(0)])
    );
    assert_eq!(
        simple("$..['x']"),
        Some(vec![Step::DescendantName("x".into())])
    );
    assert_eq!(simple("$"), Some(vec![]));
    for full in [
        "$[-1]",
        "$[1:3]",
        "$[?@.a]",
        "$['it\\'s']",
        "$[01]",
        "$.a[0,1]",
        "$..[0]",
        "$.ñame",
        "$.[a]",
        "$a",
        "$.1a",
        "$['a']b",
        "$[\"a\"]",
    ] {
        assert_eq!(simple(full), None, "{full}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn simple_paths_select_exactly_what_rfc_9535_selects(doc in document(), path in path()) {
        let Some(steps) = query::simple(&path) else { return Ok(()) };
        let mut fast = Vec::new();
        query::Query::Simple(steps).select(&doc, &mut |n| fast.push(address(n)));
        let mut full: Vec<usize> = JsonPath::parse(&path).unwrap().query(&doc).all().into_iter().map(address).collect();
        fast.sort_unstable();
        full.sort_unstable();
        prop_assert_eq!(fast, full, "{}", path);
    }
}

/// A simple path (or `None` when the generated one is not simple).
fn simple_path() -> impl Strategy<Value = String> {
    path().prop_filter("a simple path", |p| query::simple(p).is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn one_walk_gives_what_selecting_then_masking_gives(
        doc in document(),
        obligations in prop::collection::vec(
            (
                prop::collection::vec(simple_path(), 1..3),
                prop::sample::select(vec!["remove", "null", "redact", "hash", "last4", "first4", "year"]),
            ),
            1..4,
        ),
    ) {
        let obligations: Vec<Value> = obligations
            .iter()
            .map(|(paths, with)| json!({"type": "redact", "paths": paths, "with": with}))
            .collect();
        let plan = plan(&obligations);
        prop_assert!(plan.walk().is_some());
        let (mut walked, mut general) = (doc.clone(), doc);
        plan.apply(&mut walked, &masker()).unwrap();
        plan.select_then_mask(&mut general, &masker()).unwrap();
        prop_assert_eq!(
            serde_json::to_string(&walked).unwrap(),
            serde_json::to_string(&general).unwrap(),
            "{:?}", obligations
        );
    }
}

#[test]
fn one_walk_keeps_the_order_of_members_and_the_fold_of_strategies() {
    // Removals in the middle of objects and arrays, a parent masked after its child, three
    // paths on one value whose fold depends on their order (last4, hash, first4 is hash;
    // last4, first4, hash is redact).
    let doc = json!({"a": {"x": 1, "s": "123-45-6789", "y": 2, "t": "z", "w": 3},
        "b": [{"s": "1"}, {"s": "22"}, 3, {"s": "4444"}], "c": {"d": {"s": "98765"}}});
    for obligations in [
        vec![
            r(&["$.a.s", "$..t"], "remove"),
            r(&["$.b[1]", "$.b[2]"], "remove"),
        ],
        vec![
            r(&["$..s"], "last4"),
            r(&["$.a.s"], "hash"),
            r(&["$..s"], "first4"),
        ],
        vec![
            r(&["$..s"], "last4"),
            r(&["$..s"], "first4"),
            r(&["$.a.s"], "hash"),
        ],
        vec![
            r(&["$.c.d.s"], "null"),
            r(&["$.c.d"], "hash"),
            r(&["$..*"], "year"),
        ],
        vec![r(&["$"], "redact"), r(&["$..s"], "remove")],
    ] {
        let plan = plan(&obligations);
        let (mut walked, mut general) = (doc.clone(), doc.clone());
        plan.apply(&mut walked, &masker()).unwrap();
        plan.select_then_mask(&mut general, &masker()).unwrap();
        assert_eq!(
            serde_json::to_string(&walked).unwrap(),
            serde_json::to_string(&general).unwrap(),
            "{obligations:?}"
        );
    }
}
