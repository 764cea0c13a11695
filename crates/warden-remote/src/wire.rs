//! Reading the answers of the two protocols.

use serde::Serialize;
use serde_json::{Map, Value};
use warden_decision::authzen::{EvaluationResponse, EvaluationsResponse};
use warden_decision::{
    AccessRequest, Advice, Decision, Obligation, PdpError, PolicyRevision, Reason,
};

pub(crate) use warden_decision::authzen::{
    EVALUATION_PATH, EVALUATIONS_PATH, EvaluationsRequest, EvaluationsSemantic, METADATA_PATH,
    Metadata,
};

/// The OPA Data API request body.
#[derive(Serialize)]
pub(crate) struct OpaInput<'a> {
    pub(crate) input: &'a AccessRequest,
}

pub(crate) fn parse_evaluation(body: &[u8]) -> Result<Decision, PdpError> {
    EvaluationResponse::parse(body)
        .map_err(PdpError::unavailable)?
        .into_decision()
}

/// One result per request. With a short-circuit semantic, requests after the one that stopped
/// the batch are denied with a reason saying they were not evaluated.
pub(crate) fn parse_evaluations(
    body: &[u8],
    expected: usize,
    semantic: EvaluationsSemantic,
) -> Result<Vec<Result<Decision, PdpError>>, PdpError> {
    let answer = EvaluationsResponse::parse(body).map_err(PdpError::unavailable)?;
    let got = answer.evaluations.len();
    let short = semantic != EvaluationsSemantic::ExecuteAll;
    if got > expected || (got < expected && !short) || (got == 0 && expected > 0) {
        return Err(PdpError::unavailable(format!(
            "the PDP answered {got} evaluations for {expected} requests"
        )));
    }
    let mut out: Vec<Result<Decision, PdpError>> = answer
        .evaluations
        .into_iter()
        .map(EvaluationResponse::into_decision)
        .collect();
    if got < expected {
        // A short answer must end at the evaluation that stopped the batch.
        let stopped = matches!(out.last(), Some(Ok(d)) if semantic.stops_after(d.allowed));
        if !stopped {
            return Err(PdpError::unavailable(format!(
                "the PDP answered {got} evaluations for {expected} requests without a reason to stop"
            )));
        }
        out.extend(
            (got..expected).map(|_| {
                Ok(Decision::deny().with_reason("not evaluated: the batch stopped early"))
            }),
        );
    }
    Ok(out)
}

/// An OPA Data API answer: `{"result": <bool | decision object>}`, optionally with
/// `decision_id` and `provenance.bundles.<id>.revision`.
pub(crate) fn parse_opa(body: &[u8]) -> Result<Decision, PdpError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PdpError::unavailable(format!("the answer is not JSON: {e}")))?;
    let Value::Object(mut answer) = value else {
        return Err(PdpError::unavailable("the answer is not a JSON object"));
    };
    let mut decision = match answer.remove("result") {
        None => {
            return Err(PdpError::policy(
                "the document is undefined: no policy at this path, or it produced no value",
            ));
        }
        Some(Value::Bool(allowed)) => {
            if allowed {
                Decision::permit()
            } else {
                Decision::deny()
            }
        }
        Some(Value::Object(object)) => decision_object(object).map_err(PdpError::policy)?,
        Some(_) => {
            return Err(PdpError::policy(
                "the document is neither a boolean nor a decision object",
            ));
        }
    };
    if let Some(Value::String(id)) = answer.get("decision_id")
        && let Ok(id) = id.parse()
    {
        decision.id = id;
    }
    if let Some(Value::Object(bundles)) = answer
        .get("provenance")
        .and_then(|p| p.get("bundles"))
        .cloned()
        && bundles.len() == 1
        && let Some((id, bundle)) = bundles.into_iter().next()
        && let Some(Value::String(revision)) = bundle.get("revision")
    {
        decision.policy = PolicyRevision::new(id, revision.clone());
    }
    Ok(decision)
}

/// `{"allow": bool, "obligations": [...], "reasons": [...], "advice": [...]}`, nothing else: the
/// Rego document as the server returns it, read as `RegoPdp` reads it.
fn decision_object(mut object: Map<String, Value>) -> Result<Decision, String> {
    let allowed = match object.remove("allow") {
        Some(Value::Bool(allowed)) => allowed,
        Some(_) => return Err("`allow` is not a boolean".into()),
        None => return Err("the decision object has no `allow`".into()),
    };
    let mut decision = if allowed {
        Decision::permit()
    } else {
        Decision::deny()
    };
    for (key, value) in object {
        let malformed = |e: serde_json::Error| format!("malformed `{key}`: {e}");
        match key.as_str() {
            "obligations" => {
                decision.obligations =
                    serde_json::from_value::<Vec<Obligation>>(value).map_err(malformed)?;
            }
            "reasons" => {
                decision.reasons =
                    serde_json::from_value::<Vec<Reason>>(value).map_err(malformed)?;
            }
            "advice" => {
                decision.advice =
                    serde_json::from_value::<Vec<Advice>>(value).map_err(malformed)?;
            }
            other => return Err(format!("unknown member `{other}` in the decision object")),
        }
    }
    // Read as the embedded Rego PDP reads the same document: a deny carries no obligations
    // (a Rego document computes them whatever `allow` is).
    if !allowed {
        decision.obligations.clear();
    }
    Ok(decision)
}
