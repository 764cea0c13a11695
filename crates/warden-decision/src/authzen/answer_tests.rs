//! The answer written from the decision is the one built through
//! `EvaluationResponse::from_decision`: the same JSON, and the same bytes where `serde_json`
//! keeps insertion order.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

use super::DecisionAnswer;
use crate::Decision;
use crate::authzen::EvaluationResponse;
use crate::obligation::Obligation;

fn obligations() -> Vec<Obligation> {
    [
        json!({"type": "redact", "paths": ["$.ssn", "$..notes"], "with": "last4"}),
        json!({"type": "redact", "paths": [], "headers": ["x-internal"]}),
        json!({"type": "step_up", "acr_values": "urn:example:mfa urn:example:hw"}),
        json!({"type": "step_up", "acr_values": " urn:example:pwd", "max_age": 300}),
        json!({"type": "filter_rows", "table": "patients",
            "where": {"eq": [{"column": "clinic_id"}, {"value": "c\"1\u{e9}"}]}}),
        json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "hash", "dob": "year"}}),
        json!({"type": "audit", "level": "high", "tags": ["hipaa"]}),
        json!({"type": "x-watermark", "text": "confidential"}),
        // A custom obligation with a member named like the profile's own `vendor`.
        json!({"type": "x-vendor", "vendor": "acme", "n": 1.5}),
    ]
    .into_iter()
    .map(|o| Obligation::from_json(o).unwrap())
    .collect()
}

/// Whether `serde_json` keeps members in insertion order in this build (its `preserve_order`
/// feature, which a dependency of a whole application usually turns on). Then the two forms
/// are the same bytes; without it the built answer's members are sorted, and the two are the
/// same JSON.
fn ordered() -> bool {
    serde_json::to_string(&json!({"b": 1, "a": 2})).unwrap() == r#"{"b":1,"a":2}"#
}

fn alike(direct: &str, built: &str) -> bool {
    let (d, b): (Value, Value) = (
        serde_json::from_str(direct).unwrap(),
        serde_json::from_str(built).unwrap(),
    );
    d == b && (!ordered() || direct == built)
}

fn same(decision: &Decision) {
    let direct = serde_json::to_string(&DecisionAnswer(decision)).unwrap();
    let built = serde_json::to_string(&EvaluationResponse::from_decision(decision)).unwrap();
    assert!(alike(&direct, &built), "{direct}\n{built}");
    // And it reads back as the answer it is.
    let parsed = EvaluationResponse::parse(direct.as_bytes()).unwrap();
    assert_eq!(parsed, EvaluationResponse::from_decision(decision));
}

#[test]
fn every_member_is_written_as_the_built_answer_has_it() {
    let mut full: Decision = serde_json::from_value(json!({
        "decision": true,
        "reasons": [{"code": "ok", "message": "a \"quoted\" reason"}, {"message": "plain"}],
        "advice": [{"type": "banner", "text": "hi", "n": [1, 2]}],
        "policy": {"id": "clinic", "revision": "r7", "regulations": ["HIPAA 164.312(b)"]},
        "diagnostics": [{"error": "policy_error", "message": "x"}, {"message": "y"}],
    }))
    .unwrap();
    full.obligations = obligations();
    full.decided_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    same(&full);
    same(&Decision::permit());
    same(&Decision::deny());
    same(&Decision::not_applicable());
    let text = serde_json::to_value(DecisionAnswer(&full)).unwrap();
    assert_eq!(
        text["context"]["obligations"][8]["properties"]["vendor"],
        "acme"
    );
    assert_eq!(
        text["context"]["obligations"][3]["properties"]["acr_value"],
        "urn:example:pwd"
    );
}

proptest! {
    #[test]
    fn any_mix_of_members_is_written_alike(
        allowed in any::<bool>(),
        picks in proptest::collection::vec(0..9usize, 0..6),
        reasons in proptest::collection::vec("[a-z \"\\\\é]{0,8}", 0..3),
        policy in any::<bool>(),
        not_applicable in any::<bool>(),
        decided in proptest::option::of(0..4_000_000_000u64),
    ) {
        let pool = obligations();
        let mut decision = if allowed { Decision::permit() } else { Decision::deny() };
        decision.obligations = picks.iter().map(|i| pool[*i].clone()).collect();
        for r in reasons {
            decision = decision.with_reason(r);
        }
        if policy {
            decision.policy = serde_json::from_value(json!({"id": "p", "revision": "1"})).unwrap();
        }
        decision.not_applicable = not_applicable;
        decision.decided_at = decided.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let direct = serde_json::to_string(&DecisionAnswer(&decision)).unwrap();
        let built = serde_json::to_string(&EvaluationResponse::from_decision(&decision)).unwrap();
        prop_assert!(alike(&direct, &built), "{}\n{}", direct, built);
    }
}

#[test]
fn the_answer_is_an_object_with_a_decision_and_a_context() {
    let v: Value = serde_json::to_value(DecisionAnswer(&Decision::permit())).unwrap();
    assert_eq!(v["decision"], true);
    assert!(v["context"]["decision_id"].is_string());
}
