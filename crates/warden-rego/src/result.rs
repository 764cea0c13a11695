//! Turning what the entrypoint returned into a decision.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use warden_decision::{Advice, Decision, DecisionId, ErrorClass, Obligation, Reason};

/// How many distinct entrypoint results a policy revision remembers.
const REMEMBERED: usize = 1024;

/// The decisions already made of entrypoint results, so that a result seen before (the common
/// case: policies return few distinct values) is not converted and validated again.
#[derive(Debug, Default)]
pub(crate) struct Interpreted(RwLock<BTreeMap<regorus::Value, Arc<Decision>>>);

impl Interpreted {
    pub(crate) fn interpret(&self, value: regorus::Value) -> Decision {
        if let Some(known) = self.0.read().ok().and_then(|m| m.get(&value).cloned()) {
            let mut decision = (*known).clone();
            decision.id = DecisionId::new();
            return decision;
        }
        let decision = interpret(value.clone());
        if let Ok(mut known) = self.0.write() {
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(value, Arc::new(decision.clone()));
        }
        decision
    }
}

/// Interprets the entrypoint's value. Never fails: whatever is wrong becomes a deny with a
/// policy-error diagnostic.
pub(crate) fn interpret(value: regorus::Value) -> Decision {
    match value {
        regorus::Value::Undefined => Decision::not_applicable(),
        regorus::Value::Bool(true) => Decision::permit(),
        regorus::Value::Bool(false) => Decision::deny(),
        other => match serde_json::to_value(&other) {
            Ok(Value::Object(members)) => from_object(members).unwrap_or_else(|message| {
                Decision::deny().with_error(ErrorClass::PolicyError, message)
            }),
            Ok(v) => Decision::deny().with_error(
                ErrorClass::PolicyError,
                format!(
                    "the entrypoint returned {}, not a boolean or a decision object",
                    kind(&v)
                ),
            ),
            Err(e) => Decision::deny().with_error(ErrorClass::PolicyError, e.to_string()),
        },
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn from_object(members: serde_json::Map<String, Value>) -> Result<Decision, String> {
    let mut allowed = None;
    let mut obligations = Vec::new();
    let mut reasons = Vec::new();
    let mut advice = Vec::new();
    for (key, value) in members {
        match key.as_str() {
            "allow" => match value {
                Value::Bool(b) => allowed = Some(b),
                other => return Err(format!("`allow` is {}, not a boolean", kind(&other))),
            },
            "obligations" => {
                for (i, o) in list(value, "obligations")?.into_iter().enumerate() {
                    let o = Obligation::from_json(o)
                        .map_err(|e| format!("obligation {i} is malformed: {e}"))?;
                    obligations.push(o);
                }
            }
            "reasons" => {
                for r in list(value, "reasons")? {
                    reasons.push(
                        serde_json::from_value::<Reason>(r).map_err(|_| {
                            "a reason must be a string or {code, message}".to_owned()
                        })?,
                    );
                }
            }
            "advice" => {
                for a in list(value, "advice")? {
                    advice.push(
                        serde_json::from_value::<Advice>(a)
                            .map_err(|e| format!("advice is malformed: {e}"))?,
                    );
                }
            }
            other => {
                return Err(format!(
                    "the decision object has an unknown member `{other}` (expected allow, obligations, reasons, advice)"
                ));
            }
        }
    }
    let allowed = allowed.ok_or("the decision object has no `allow`")?;
    let mut decision = if allowed {
        Decision::permit()
    } else {
        Decision::deny()
    };
    decision.obligations = if allowed { obligations } else { Vec::new() };
    decision.reasons = reasons;
    decision.advice = advice;
    Ok(decision)
}

fn list(value: Value, member: &str) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!(
            "`{member}` is {}, not an array or a set",
            kind(&other)
        )),
    }
}
