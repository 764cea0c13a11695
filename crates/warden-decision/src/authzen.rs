//! The AuthZEN Authorization API 1.0 wire format, shared by the Warden PDP server and the remote
//! PDP client.
//!
//! An [`AccessRequest`] is already the AuthZEN request. This module adds the responses, the batch
//! (*evaluations*) request and the metadata document, and says where the parts of a Warden
//! [`Decision`] that AuthZEN has no member for travel: in the response's `context`.
//!
//! | member of `context` | meaning |
//! |---|---|
//! | `decision_id` | the PDP's id for the decision |
//! | `obligations` | array of Obligations Profile objects, `{"id", "type", "properties"}` (see [`obligation_to_profile`]; Warden obligations as earlier servers sent them are read too) |
//! | `advice` | array of advice objects |
//! | `reasons` | array of `{"message": ...}` objects (plain strings are read too) |
//! | `policy` | `{"id": ..., "revision": ...}` of the policy that decided |
//! | `not_applicable` | `true` when no policy applied |
//! | `diagnostics` | `[{"error": "policy_error", "message": ...}]` when the policy failed |
//! | `decided_at` | when the PDP made the decision (RFC 3339, UTC) |
//!
//! ```
//! use warden_decision::authzen::EvaluationResponse;
//! use warden_decision::{Decision, PolicyRevision};
//!
//! let decision = Decision::deny()
//!     .with_reason("not a member of the clinic")
//!     .with_policy(PolicyRevision::new("clinic", "1.0.0"));
//! let wire = serde_json::to_value(EvaluationResponse::from_decision(&decision)).unwrap();
//! assert_eq!(wire["decision"], false);
//! assert_eq!(wire["context"]["reasons"][0]["message"], "not a member of the clinic");
//!
//! let back = EvaluationResponse::parse(wire.to_string().as_bytes()).unwrap().into_decision().unwrap();
//! assert_eq!(back.allowed, false);
//! assert_eq!(back.reasons, decision.reasons);
//! assert_eq!(back.policy, decision.policy);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod answer;
mod obligations;

pub use answer::DecisionAnswer;

pub use obligations::{
    SUPPORTED_OBLIGATIONS, VENDOR, is_profile_object, obligation_from_profile,
    obligation_to_profile, profile_type,
};

use crate::decision::{Advice, Decision, DecisionId, Diagnostic, PolicyRevision, Reason};
use crate::obligation::Obligation;
use crate::pdp::PdpError;
use crate::request::{AccessRequest, Action, Properties, Resource, Subject};

/// The default path of the access evaluation endpoint.
pub const EVALUATION_PATH: &str = "/access/v1/evaluation";
/// The default path of the access evaluations (batch) endpoint.
pub const EVALUATIONS_PATH: &str = "/access/v1/evaluations";
/// The path of the PDP metadata document.
pub const METADATA_PATH: &str = "/.well-known/authzen-configuration";

/// How a PDP runs a batch of evaluations (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    /// Evaluate every request (the default).
    #[default]
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

impl EvaluationsSemantic {
    /// Whether a batch stops after a request with this outcome.
    pub fn stops_after(self, allowed: bool) -> bool {
        match self {
            Self::ExecuteAll => false,
            Self::DenyOnFirstDeny => !allowed,
            Self::PermitOnFirstPermit => allowed,
        }
    }
}

/// The answer to one access evaluation: `{"decision": bool, "context": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResponse {
    /// Permit or deny.
    pub decision: bool,
    /// Everything else; see the [module documentation](self) for the members Warden uses.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
}

impl EvaluationResponse {
    /// The wire form of a decision.
    pub fn from_decision(decision: &Decision) -> Self {
        let mut context = Map::new();
        context.insert("decision_id".into(), Value::String(decision.id.to_string()));
        let mut put = |key: &str, value: Result<Value, serde_json::Error>| {
            if let Ok(value) = value {
                context.insert(key.to_owned(), value);
            }
        };
        if !decision.obligations.is_empty() {
            let wire: Vec<Value> = decision
                .obligations
                .iter()
                .enumerate()
                .map(|(i, o)| obligation_to_profile(i, o))
                .collect();
            put("obligations", Ok(Value::Array(wire)));
        }
        if !decision.advice.is_empty() {
            put("advice", serde_json::to_value(&decision.advice));
        }
        if !decision.reasons.is_empty() {
            put("reasons", serde_json::to_value(&decision.reasons));
        }
        if decision.policy != PolicyRevision::default() {
            put("policy", serde_json::to_value(&decision.policy));
        }
        if decision.not_applicable {
            put("not_applicable", Ok(Value::Bool(true)));
        }
        if !decision.diagnostics.is_empty() {
            put("diagnostics", serde_json::to_value(&decision.diagnostics));
        }
        if let Some(at) = decision.decided_at {
            put(
                "decided_at",
                Ok(Value::String(crate::resilience::age::format_rfc3339(at))),
            );
        }
        Self {
            decision: decision.allowed,
            context,
        }
    }

    /// Parses an answer. Anything but a JSON object with a boolean `decision` and, if present,
    /// an object `context` is an error.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        Self::from_value(value)
    }

    fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(mut object) = value else {
            return Err("the answer is not a JSON object".into());
        };
        let decision = match object.remove("decision") {
            Some(Value::Bool(decision)) => decision,
            Some(_) => return Err("`decision` is not a boolean".into()),
            None => return Err("the answer has no `decision`".into()),
        };
        let context = match object.remove("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(context)) => context,
            Some(_) => return Err("`context` is not an object".into()),
        };
        Ok(Self { decision, context })
    }

    /// The decision the answer carries, with obligations, reasons, advice, policy revision and
    /// diagnostics read from `context`. A member of the wrong shape is an error: a permit whose
    /// obligations cannot be read must not be enforced without them.
    pub fn into_decision(mut self) -> Result<Decision, PdpError> {
        let mut decision = if self.decision {
            Decision::permit()
        } else {
            Decision::deny()
        };
        if let Some(Value::String(id)) = self.context.get("decision_id")
            && let Ok(id) = id.parse::<DecisionId>()
        {
            decision.id = id;
        }
        if let Some(value) = self.context.remove("obligations") {
            decision.obligations = read_obligations(value).map_err(PdpError::policy)?;
        }
        if let Some(value) = self.context.remove("advice") {
            decision.advice = member::<Vec<Advice>>(value, "advice").map_err(PdpError::policy)?;
        }
        if let Some(value) = self.context.remove("reasons") {
            decision.reasons = member::<Vec<Reason>>(value, "reasons").map_err(PdpError::policy)?;
        }
        if let Some(value) = self.context.remove("policy") {
            decision.policy =
                member::<PolicyRevision>(value, "policy").map_err(PdpError::unavailable)?;
        }
        if let Some(value) = self.context.remove("diagnostics") {
            decision.diagnostics =
                member::<Vec<Diagnostic>>(value, "diagnostics").map_err(PdpError::unavailable)?;
        }
        if let Some(value) = self.context.remove("decided_at") {
            let at = match &value {
                Value::String(text) => crate::resilience::age::parse_rfc3339(text),
                _ => None,
            };
            decision.decided_at = Some(at.ok_or_else(|| {
                PdpError::unavailable("malformed `decided_at` in the answer: not an RFC 3339 time")
            })?);
        }
        if let Some(Value::Bool(true)) = self.context.get("not_applicable") {
            decision.not_applicable = true;
        }
        Ok(decision)
    }
}

/// `context.obligations`: profile objects, or Warden obligations as earlier servers sent them.
/// Obligations on a deny are kept: the PEP carries them out and denies.
fn read_obligations(value: Value) -> Result<Vec<Obligation>, String> {
    let Value::Array(items) = value else {
        return Err("malformed `obligations` in the answer: not an array".into());
    };
    items
        .into_iter()
        .map(|item| {
            if is_profile_object(&item) {
                obligation_from_profile(item)
            } else {
                Obligation::from_json(item).map_err(|e| e.0)
            }
            .map_err(|e| format!("malformed `obligations` in the answer: {e}"))
        })
        .collect()
}

fn member<T: serde::de::DeserializeOwned>(value: Value, name: &str) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("malformed `{name}` in the answer: {e}"))
}

/// The answer to a batch: `{"evaluations": [{"decision": ..., "context": ...}, ...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsResponse {
    /// One answer per evaluated request, in order. With a short-circuit semantic the list ends
    /// at the request that stopped the batch.
    pub evaluations: Vec<EvaluationResponse>,
}

impl EvaluationsResponse {
    /// Parses a batch answer.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err("the answer is not a JSON object".into());
        };
        let Some(Value::Array(items)) = object.remove("evaluations") else {
            return Err("the answer has no `evaluations` array".into());
        };
        let evaluations = items
            .into_iter()
            .map(EvaluationResponse::from_value)
            .collect::<Result<_, _>>()?;
        Ok(Self { evaluations })
    }
}

/// A batch request: default `subject`, `action`, `resource` and `context`, and a list of
/// evaluations, each of which may override any of the four. Unknown members are ignored, as
/// AuthZEN 1.0 requires of receivers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    /// The default subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The default resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The default context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Properties>,
    /// The requests; an empty or missing list means the defaults form a single request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations: Option<Vec<PartialRequest>>,
    /// Batch options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EvaluationsOptions>,
}

/// Options of a batch request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvaluationsOptions {
    /// How the batch runs.
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
    /// Other options, ignored.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One request of a batch; missing members come from the batch's defaults. Unknown members are
/// ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PartialRequest {
    /// The subject, if it differs from the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The action, if it differs from the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The resource, if it differs from the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The context, if it differs from the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Properties>,
}

impl EvaluationsRequest {
    /// A batch that spells every request out in full.
    pub fn new(requests: &[AccessRequest], semantic: EvaluationsSemantic) -> Self {
        let evaluations = requests
            .iter()
            .map(|r| PartialRequest {
                subject: Some(r.subject.clone()),
                action: Some(r.action.clone()),
                resource: Some(r.resource.clone()),
                context: (!r.context.is_empty()).then(|| r.context.clone()),
            })
            .collect();
        Self {
            evaluations: Some(evaluations),
            options: (semantic != EvaluationsSemantic::ExecuteAll).then(|| EvaluationsOptions {
                evaluations_semantic: semantic,
                other: Map::new(),
            }),
            ..Self::default()
        }
    }

    /// Whether the batch is in fact a single request (no or an empty `evaluations` list).
    pub fn is_single(&self) -> bool {
        self.evaluations.as_ref().is_none_or(Vec::is_empty)
    }

    /// The semantic asked for.
    pub fn semantic(&self) -> EvaluationsSemantic {
        self.options
            .as_ref()
            .map(|o| o.evaluations_semantic)
            .unwrap_or_default()
    }

    /// The full requests, defaults filled in. An evaluation that ends up without a subject,
    /// action or resource is an error naming its index and the missing member.
    pub fn requests(&self) -> Result<Vec<AccessRequest>, String> {
        let single = [PartialRequest::default()];
        let items = match &self.evaluations {
            Some(items) if !items.is_empty() => items.as_slice(),
            _ => &single,
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let missing = |name: &str| format!("evaluations[{index}] has no `{name}`");
                Ok(AccessRequest {
                    subject: item
                        .subject
                        .clone()
                        .or_else(|| self.subject.clone())
                        .ok_or_else(|| missing("subject"))?,
                    action: item
                        .action
                        .clone()
                        .or_else(|| self.action.clone())
                        .ok_or_else(|| missing("action"))?,
                    resource: item
                        .resource
                        .clone()
                        .or_else(|| self.resource.clone())
                        .ok_or_else(|| missing("resource"))?,
                    context: item
                        .context
                        .clone()
                        .or_else(|| self.context.clone())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// A batch as a PDP reads it. The defaults (`subject`, `action`, `resource`, `context`) and
/// `options` must be well formed, or the whole batch is malformed; each evaluation is read on
/// its own, so one malformed or incomplete item is that item's error, not the batch's. Unknown
/// members are ignored.
///
/// ```
/// use warden_decision::authzen::Batch;
///
/// let batch = Batch::parse(br#"{
///     "subject": {"type": "user", "id": "alice"},
///     "action": {"name": "read"},
///     "evaluations": [{"resource": {"type": "record", "id": "record-1"}}, {}],
///     "futureField": true
/// }"#).unwrap();
/// assert!(batch.items[0].is_ok());
/// assert_eq!(batch.items[1].as_ref().unwrap_err(), "evaluations[1] has no `resource`");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Each evaluation, in order: its full request (defaults filled in), or why it is not one.
    pub items: Vec<Result<AccessRequest, String>>,
    /// How the batch runs.
    pub semantic: EvaluationsSemantic,
    /// The request had no or an empty `evaluations` list: its defaults are one request, to be
    /// answered as a single evaluation.
    pub single: bool,
}

impl Batch {
    /// Reads a batch request body. The error, for a body that is not a JSON object or whose
    /// defaults or options are malformed, names the member.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err("the body is not a JSON object".into());
        };
        let defaults = partial(&mut object, "")?;
        let semantic = match object.remove("options") {
            None | Some(Value::Null) => EvaluationsSemantic::default(),
            Some(value) => {
                serde_json::from_value::<EvaluationsOptions>(value)
                    .map_err(|e| format!("`options` is malformed: {e}"))?
                    .evaluations_semantic
            }
        };
        let items = match object.remove("evaluations") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => return Err("`evaluations` is not an array".into()),
        };
        if items.is_empty() {
            let request = complete(&PartialRequest::default(), &defaults, "the request")?;
            return Ok(Self {
                items: vec![Ok(request)],
                semantic,
                single: true,
            });
        }
        let items = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("evaluations[{index}]");
                let Value::Object(mut item) = item else {
                    return Err(format!("{at} is not a JSON object"));
                };
                let item = partial(&mut item, &format!("{at}."))?;
                complete(&item, &defaults, &at)
            })
            .collect();
        Ok(Self {
            items,
            semantic,
            single: false,
        })
    }
}

/// The four members of a request object, each read on its own so the error names it.
fn partial(object: &mut Map<String, Value>, at: &str) -> Result<PartialRequest, String> {
    fn read<T: serde::de::DeserializeOwned>(
        object: &mut Map<String, Value>,
        name: &str,
        at: &str,
    ) -> Result<Option<T>, String> {
        match object.remove(name) {
            None => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| format!("`{at}{name}` is malformed: {e}")),
        }
    }
    Ok(PartialRequest {
        subject: read(object, "subject", at)?,
        action: read(object, "action", at)?,
        resource: read(object, "resource", at)?,
        context: read(object, "context", at)?,
    })
}

fn complete(
    item: &PartialRequest,
    defaults: &PartialRequest,
    at: &str,
) -> Result<AccessRequest, String> {
    let missing = |name: &str| format!("{at} has no `{name}`");
    Ok(AccessRequest {
        subject: item
            .subject
            .clone()
            .or_else(|| defaults.subject.clone())
            .ok_or_else(|| missing("subject"))?,
        action: item
            .action
            .clone()
            .or_else(|| defaults.action.clone())
            .ok_or_else(|| missing("action"))?,
        resource: item
            .resource
            .clone()
            .or_else(|| defaults.resource.clone())
            .ok_or_else(|| missing("resource"))?,
        context: item
            .context
            .clone()
            .or_else(|| defaults.context.clone())
            .unwrap_or_default(),
    })
}

/// The path of the subject search endpoint.
pub const SEARCH_SUBJECT_PATH: &str = "/access/v1/search/subject";
/// The path of the resource search endpoint.
pub const SEARCH_RESOURCE_PATH: &str = "/access/v1/search/resource";
/// The path of the action search endpoint.
pub const SEARCH_ACTION_PATH: &str = "/access/v1/search/action";

/// The PDP metadata document at [`METADATA_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The PDP's base URL.
    pub policy_decision_point: String,
    /// The access evaluation endpoint.
    pub access_evaluation_endpoint: String,
    /// The access evaluations endpoint, if the PDP has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_evaluations_endpoint: Option<String>,
    /// The subject search endpoint, if the PDP has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_subject_endpoint: Option<String>,
    /// The resource search endpoint, if the PDP has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_resource_endpoint: Option<String>,
    /// The action search endpoint, if the PDP has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_action_endpoint: Option<String>,
    /// The obligation types the PDP issues (AuthZEN Obligations Profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_obligations: Option<Vec<String>>,
    /// Capability URNs the PDP supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// The metadata as a signed JWT, when the PDP signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_metadata: Option<String>,
    /// Other members, kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Metadata {
    /// The metadata of a PDP at `base` with the default endpoint paths.
    pub fn for_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            policy_decision_point: base.to_owned(),
            access_evaluation_endpoint: format!("{base}{EVALUATION_PATH}"),
            access_evaluations_endpoint: Some(format!("{base}{EVALUATIONS_PATH}")),
            search_subject_endpoint: None,
            search_resource_endpoint: None,
            search_action_endpoint: None,
            supported_obligations: None,
            capabilities: None,
            signed_metadata: None,
            other: Map::new(),
        }
    }

    /// Parses a metadata document.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("malformed metadata: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn batch_members_default_from_the_top_level() {
        let batch: EvaluationsRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "GET"},
            "evaluations": [
                {"resource": {"type": "route", "id": "/a"}},
                {"resource": {"type": "route", "id": "/b"}, "action": {"name": "DELETE"}}
            ],
            "options": {"evaluations_semantic": "deny_on_first_deny"}
        }))
        .unwrap();
        let requests = batch.requests().unwrap();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].action.name, "GET");
        assert_eq!(requests[1].action.name, "DELETE");
        assert_eq!(requests[1].subject.id, "alice");
        assert_eq!(batch.semantic(), EvaluationsSemantic::DenyOnFirstDeny);
    }

    #[test]
    fn a_batch_missing_a_member_names_it() {
        let batch: EvaluationsRequest = serde_json::from_value(json!({
            "subject": {"type": "user", "id": "alice"},
            "evaluations": [{"action": {"name": "GET"}}]
        }))
        .unwrap();
        assert_eq!(
            batch.requests().unwrap_err(),
            "evaluations[0] has no `resource`"
        );
    }

    #[test]
    fn a_batch_ignores_unknown_members_and_fails_items_one_by_one() {
        let batch = Batch::parse(
            br#"{"subject": {"type": "user", "id": "alice", "x": 1}, "action": {"name": "read"},
                 "futureField": {"nested": true}, "options": {"evaluations_semantic": "execute_all", "y": 2},
                 "evaluations": [
                    {"resource": {"type": "record", "id": "r1"}, "subjekt": {}},
                    {"resource": "r2"},
                    7,
                    {}
                 ]}"#,
        )
        .unwrap();
        assert!(!batch.single);
        assert_eq!(batch.items.len(), 4);
        assert_eq!(batch.items[0].as_ref().unwrap().resource.id, "r1");
        assert!(
            batch.items[1]
                .as_ref()
                .unwrap_err()
                .starts_with("`evaluations[1].resource` is malformed")
        );
        assert_eq!(
            batch.items[2].as_ref().unwrap_err(),
            "evaluations[2] is not a JSON object"
        );
        assert_eq!(
            batch.items[3].as_ref().unwrap_err(),
            "evaluations[3] has no `resource`"
        );
    }

    #[test]
    fn a_batch_with_malformed_defaults_or_options_is_malformed_as_a_whole() {
        for (body, expected) in [
            (
                r#"{"subject": "alice", "evaluations": [{}]}"#,
                "`subject` is malformed",
            ),
            (
                r#"{"options": {"evaluations_semantic": "first"}, "evaluations": [{}]}"#,
                "`options` is malformed",
            ),
            (r#"{"evaluations": {}}"#, "`evaluations` is not an array"),
            (r#"[]"#, "not a JSON object"),
            ("", "not JSON"),
            (
                r#"{"subject": {"type": "user", "id": "a"}, "evaluations": []}"#,
                "the request has no `action`",
            ),
        ] {
            let error = Batch::parse(body.as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
        let single = Batch::parse(
            br#"{"subject": {"type": "user", "id": "a"}, "action": {"name": "read"},
                 "resource": {"type": "record", "id": "r"}}"#,
        )
        .unwrap();
        assert!(single.single);
        assert!(single.items[0].is_ok());
    }

    #[test]
    fn malformed_answers_are_errors() {
        for body in [
            "<html>",
            "{\"decision\": \"true\"}",
            "{}",
            "[true]",
            "{\"decision\": true, \"context\": []}",
            "{\"decision\": tr",
        ] {
            assert!(
                EvaluationResponse::parse(body.as_bytes()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn a_permit_with_a_malformed_obligation_is_not_a_permit() {
        let answer = EvaluationResponse::parse(
            br#"{"decision": true, "context": {"obligations": [{"type": "redact"}]}}"#,
        )
        .unwrap();
        assert!(answer.into_decision().is_err());
    }

    #[test]
    fn decisions_round_trip() {
        let decision = Decision::permit()
            .with_obligation(
                Obligation::from_json(json!({"type": "redact", "paths": ["$.ssn"]})).unwrap(),
            )
            .with_policy(PolicyRevision::new("clinic", "1.0.0+sha256.00"));
        let wire = serde_json::to_vec(&EvaluationResponse::from_decision(&decision)).unwrap();
        let back = EvaluationResponse::parse(&wire)
            .unwrap()
            .into_decision()
            .unwrap();
        assert_eq!(back, decision);
    }
}
