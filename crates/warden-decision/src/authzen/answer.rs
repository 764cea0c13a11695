//! A decision's answer written straight from the decision: the JSON of
//! `EvaluationResponse::from_decision(decision)`, without building its tree first (the same
//! bytes when `serde_json` keeps insertion order, as it does with its `preserve_order` feature;
//! without it the built form sorts its members). The PDP server answers evaluations this way;
//! the tests compare the two forms.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde_json::Value;

use super::obligations::VENDOR;
use crate::decision::{Decision, PolicyRevision};
use crate::obligation::Obligation;

/// Serializes as [`EvaluationResponse::from_decision`](super::EvaluationResponse::from_decision)
/// of the decision does, member for member, in the order that function inserts them.
///
/// ```
/// use warden_decision::Decision;
/// use warden_decision::authzen::{DecisionAnswer, EvaluationResponse};
///
/// let decision = Decision::deny().with_reason("only the owner may read it");
/// assert_eq!(
///     serde_json::to_value(DecisionAnswer(&decision)).unwrap(),
///     serde_json::to_value(EvaluationResponse::from_decision(&decision)).unwrap(),
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DecisionAnswer<'a>(pub &'a Decision);

impl Serialize for DecisionAnswer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut answer = serializer.serialize_struct("EvaluationResponse", 2)?;
        answer.serialize_field("decision", &self.0.allowed)?;
        // Never empty: the decision id is always there.
        answer.serialize_field("context", &Context(self.0))?;
        answer.end()
    }
}

struct Context<'a>(&'a Decision);

impl Serialize for Context<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut context = serializer.serialize_map(None)?;
        context.serialize_entry("decision_id", &Text(&d.id))?;
        if !d.obligations.is_empty() {
            context.serialize_entry("obligations", &Obligations(&d.obligations))?;
        }
        if !d.advice.is_empty() {
            context.serialize_entry("advice", &d.advice)?;
        }
        if !d.reasons.is_empty() {
            context.serialize_entry("reasons", &d.reasons)?;
        }
        if d.policy != PolicyRevision::default() {
            context.serialize_entry("policy", &d.policy)?;
        }
        if d.not_applicable {
            context.serialize_entry("not_applicable", &true)?;
        }
        if !d.diagnostics.is_empty() {
            context.serialize_entry("diagnostics", &d.diagnostics)?;
        }
        if let Some(at) = d.decided_at {
            context.serialize_entry("decided_at", &crate::resilience::age::format_rfc3339(at))?;
        }
        context.end()
    }
}

/// A value written as the string its `Display` gives.
struct Text<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Text<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

struct Obligations<'a>(&'a [Obligation]);

impl Serialize for Obligations<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (index, obligation) in self.0.iter().enumerate() {
            seq.serialize_element(&Profile { index, obligation })?;
        }
        seq.end()
    }
}

/// `obligation_to_profile(index, obligation)`, written.
struct Profile<'a> {
    index: usize,
    obligation: &'a Obligation,
}

impl Serialize for Profile<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_map(Some(3))?;
        object.serialize_entry("id", &Id(self.index))?;
        match self.obligation {
            Obligation::StepUp(step_up) => {
                object.serialize_entry("type", "step-up")?;
                object.serialize_entry("properties", &StepUpProperties(step_up))?;
            }
            other => {
                object.serialize_entry("type", "custom")?;
                object.serialize_entry("properties", &Custom(other.to_json()))?;
            }
        }
        object.end()
    }
}

/// `obl-1`, `obl-2`, … for the obligations in order.
struct Id(usize);

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("obl-{}", self.0.saturating_add(1)))
    }
}

struct StepUpProperties<'a>(&'a crate::obligation::StepUp);

impl Serialize for StepUpProperties<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let mut properties = serializer.serialize_map(None)?;
        let first = s
            .acr_values
            .split_ascii_whitespace()
            .next()
            .unwrap_or_default();
        properties.serialize_entry("acr_value", first)?;
        properties.serialize_entry("acr_values", &s.acr_values)?;
        if let Some(max_age) = s.max_age {
            properties.serialize_entry("max_age", &max_age)?;
        }
        properties.end()
    }
}

/// `vendor` first, then the obligation's members; a member named `vendor` takes its place.
struct Custom(Value);

impl Serialize for Custom {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let members = self.0.as_object();
        let mut properties = serializer.serialize_map(None)?;
        match members.and_then(|m| m.get("vendor")) {
            Some(vendor) => properties.serialize_entry("vendor", vendor)?,
            None => properties.serialize_entry("vendor", VENDOR)?,
        }
        for (key, value) in members.into_iter().flatten() {
            if key != "vendor" {
                properties.serialize_entry(key, value)?;
            }
        }
        properties.end()
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
