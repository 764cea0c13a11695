//! The decision event: one schema for every PEP.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warden_decision::PolicyRevision;

/// Which enforcement point saw the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pep {
    /// The HTTP `PolicyLayer`.
    Http,
    /// The `PolicyLayer` on a gRPC call.
    Grpc,
    /// The SQL PEP.
    Sql,
}

impl Pep {
    /// The name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Sql => "sql",
        }
    }
}

/// What the PEP did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Let through, obligations carried out.
    Permit,
    /// Refused by the policy (or because it could not be enforced).
    Deny,
    /// Refused until the caller authenticates more strongly.
    StepUp,
    /// Refused: no or invalid credentials.
    Unauthenticated,
    /// Refused: no decision could be had.
    Unavailable,
    /// Let through, but the response could not be redacted and was withheld.
    Withheld,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Self::Permit,
        Self::Deny,
        Self::StepUp,
        Self::Unauthenticated,
        Self::Unavailable,
        Self::Withheld,
    ];

    /// The name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Deny => "deny",
            Self::StepUp => "step_up",
            Self::Unauthenticated => "unauthenticated",
            Self::Unavailable => "unavailable",
            Self::Withheld => "withheld",
        }
    }
}

/// One decision, as every PEP reports it. `decision-event.schema.json` beside this crate is its
/// JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEvent {
    /// The decision id (absent when no decision was made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    /// When (RFC 3339).
    pub time: String,
    /// The W3C trace id of the request, when it carried a `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The W3C parent span id of the request, when it carried a `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Which PEP.
    pub pep: Pep,
    /// The subject's id (absent for unauthenticated requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The action.
    pub action: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource id.
    pub resource: String,
    /// What the PEP did.
    pub outcome: Outcome,
    /// The types of the obligations carried out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<String>,
    /// The policy and revision that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRevision>,
    /// Microseconds from the request reaching the PEP to the PEP's verdict.
    pub latency_us: u64,
    /// The fallback that served the decision, if any (`stale`, `fail_open`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Whether a decision cache served the decision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    /// For a decision served from a cache or by the stale fallback: how old it was, in
    /// milliseconds since its PDP made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_age_ms: Option<u64>,
    /// For refusals: `pdp_unavailable`, `policy_error`, `obligation_unsupported` or `violation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Further attributes (subject claims, context), sensitive ones redacted.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}
