//! The decision a PDP returns: total, permit or deny, with everything a PEP needs to enforce it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::obligation::Obligation;
use crate::resilience::FallbackUse;

/// A decision identifier (a UUIDv7, so ids sort by time), quoted in denials and decision logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DecisionId(uuid::Uuid);

impl DecisionId {
    /// A fresh identifier.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl std::str::FromStr for DecisionId {
    type Err = InvalidDecisionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|_| InvalidDecisionId)
    }
}

/// A decision id that is not a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a decision id is a UUID")]
pub struct InvalidDecisionId;

impl Default for DecisionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Which policy, at which revision, made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PolicyRevision {
    /// The policy (package) id.
    pub id: String,
    /// Its revision: a manifest version or a content hash.
    pub revision: String,
    /// The regulatory controls the package maps to (`HIPAA 164.312(b)`), from its manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regulations: Vec<String>,
}

impl PolicyRevision {
    /// A policy revision.
    pub fn new(id: impl Into<String>, revision: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            revision: revision.into(),
            regulations: Vec::new(),
        }
    }
}

/// Why a decision came out as it did, for people (logs, support), never shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// A stable code a policy may give (`not_clinic_member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A sentence.
    pub message: String,
}

impl Reason {
    /// A reason with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
        }
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Message(String),
            Full {
                #[serde(default)]
                code: Option<String>,
                message: String,
            },
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Message(message) => Reason::new(message),
            Wire::Full { code, message } => Reason { code, message },
        })
    }
}

/// A recommendation a PEP may act on and may ignore (unlike an obligation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// The advice's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its other members.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The class of a problem met while deciding; it tells an outage or a misconfiguration from a
/// genuine violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The PDP could not be reached or did not answer in time.
    PdpUnavailable,
    /// The policy is broken: it failed to evaluate or returned something malformed.
    PolicyError,
    /// The decision carries an obligation the PEP cannot carry out.
    ObligationUnsupported,
}

impl ErrorClass {
    /// The class's name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PdpUnavailable => "pdp_unavailable",
            Self::PolicyError => "policy_error",
            Self::ObligationUnsupported => "obligation_unsupported",
        }
    }
}

/// A note about how a decision was reached: an engine error that became a deny, a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The class, when the diagnostic records an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorClass>,
    /// What happened.
    pub message: String,
}

/// A decision: permit or deny, always, with the obligations that come with it.
///
/// Its JSON form (what `warden eval` prints, what decision logs hold) speaks AuthZEN's words:
/// `decision` is the permit (`true`) or deny (`false`) that Rust calls [`allowed`](Self::allowed),
/// and `decision_id` is the [`id`](Self::id) a denial quotes. A Rego policy says the same with
/// `allow`, a Cedar policy with `permit` and `forbid`.
///
/// ```
/// use warden_decision::{Decision, ErrorClass, PolicyRevision};
///
/// let d = Decision::deny().with_error(ErrorClass::PolicyError, "entrypoint is undefined");
/// assert!(!d.allowed);
/// assert_eq!(d.error_class(), Some(ErrorClass::PolicyError));
/// let p = Decision::permit().with_policy(PolicyRevision::new("clinic", "1.4.0"));
/// assert!(p.allowed && p.error_class().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The decision's identifier (`decision_id` in JSON).
    #[serde(default, rename = "decision_id")]
    pub id: DecisionId,
    /// Permit (`true`) or deny (`false`) (`decision` in JSON).
    #[serde(rename = "decision")]
    pub allowed: bool,
    /// Whether no policy applied to the request (a deny by default). First-applicable combining
    /// skips such decisions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_applicable: bool,
    /// What the PEP must do for the decision to hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
    /// What the PEP may do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advice: Vec<Advice>,
    /// Why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Which policy at which revision decided.
    #[serde(default)]
    pub policy: PolicyRevision,
    /// How the decision was reached, engine errors included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// Set when a fallback served the decision because the PDP was unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackUse>,
    /// Which side of a canary rollout decided (`"active"` or `"canary"`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Set when a decision cache served the decision without asking the PDP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    /// When the PDP made the decision (RFC 3339 in JSON, `context.decided_at` on the AuthZEN
    /// wire). Cache hits and fallbacks keep it: every age bound is measured from it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::resilience::age::serde_opt"
    )]
    pub decided_at: Option<SystemTime>,
}

impl Decision {
    fn new(allowed: bool) -> Self {
        Self {
            id: DecisionId::new(),
            allowed,
            not_applicable: false,
            obligations: Vec::new(),
            advice: Vec::new(),
            reasons: Vec::new(),
            policy: PolicyRevision::default(),
            diagnostics: Vec::new(),
            fallback: None,
            served_by: None,
            cache_hit: false,
            decided_at: None,
        }
    }

    /// A permit without obligations.
    pub fn permit() -> Self {
        Self::new(true)
    }

    /// A deny.
    pub fn deny() -> Self {
        Self::new(false)
    }

    /// A deny because no policy applied.
    pub fn not_applicable() -> Self {
        Self {
            not_applicable: true,
            ..Self::new(false)
        }
    }

    /// Adds an obligation.
    #[must_use]
    pub fn with_obligation(mut self, obligation: Obligation) -> Self {
        self.obligations.push(obligation);
        self
    }

    /// Adds a reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(Reason::new(reason));
        self
    }

    /// Sets the policy revision.
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyRevision) -> Self {
        self.policy = policy;
        self
    }

    /// Records an error; the decision becomes a deny, whatever it was.
    #[must_use]
    pub fn with_error(mut self, class: ErrorClass, message: impl Into<String>) -> Self {
        self.allowed = false;
        self.obligations.clear();
        self.diagnostics.push(Diagnostic {
            error: Some(class),
            message: message.into(),
        });
        self
    }

    /// Sets when the decision was made (kept to whole milliseconds, the wire's precision).
    #[must_use]
    pub fn made_at(mut self, at: SystemTime) -> Self {
        self.decided_at = Some(crate::resilience::age::to_millis(at));
        self
    }

    /// Stamps the decision with the present time if it does not say when it was made yet.
    pub fn stamp_if_unset(&mut self) {
        if self.decided_at.is_none() {
            self.decided_at = Some(crate::resilience::age::now_millis());
        }
    }

    /// How old the decision is at `now`: `None` when it does not say when it was made, zero
    /// when it claims a time after `now`.
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.decided_at
            .map(|at| now.duration_since(at).unwrap_or_default())
    }

    /// The class of the first error recorded in the diagnostics, if any.
    pub fn error_class(&self) -> Option<ErrorClass> {
        self.diagnostics.iter().find_map(|d| d.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_turns_a_permit_into_a_deny_and_drops_obligations() {
        let d = Decision::permit()
            .with_obligation(Obligation::from_json(json!({"type": "audit"})).unwrap())
            .with_error(ErrorClass::ObligationUnsupported, "no handler for `x`");
        assert!(!d.allowed);
        assert!(d.obligations.is_empty());
        assert_eq!(d.error_class(), Some(ErrorClass::ObligationUnsupported));
    }

    #[test]
    fn round_trips_through_json() {
        let d = Decision::permit()
            .with_reason("member of clinic c1")
            .with_policy(PolicyRevision::new("clinic", "sha256:ab"))
            .with_obligation(
                Obligation::from_json(json!({"type": "step_up", "acr_values": "urn:mfa"})).unwrap(),
            );
        let wire = serde_json::to_value(&d).unwrap();
        assert_eq!(wire["decision"], true);
        assert_eq!(wire["decision_id"], d.id.to_string());
        assert!(wire.get("allowed").is_none() && wire.get("id").is_none());
        assert_eq!(wire["reasons"][0]["message"], "member of clinic c1");
        let back: Decision = serde_json::from_value(wire).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn reasons_accept_strings_and_objects() {
        let r: Vec<Reason> =
            serde_json::from_value(json!(["plain", {"code": "c", "message": "m"}])).unwrap();
        assert_eq!(r[0], Reason::new("plain"));
        assert_eq!(r[1].code.as_deref(), Some("c"));
    }

    #[test]
    fn decision_ids_are_unique_and_ordered() {
        let a = DecisionId::new();
        let b = DecisionId::new();
        assert_ne!(a, b);
        assert!(a < b);
    }
}
