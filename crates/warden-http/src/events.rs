//! Decision events of the HTTP PEP.

use std::time::Instant;

use http::request::Parts;
use serde_json::Value;
use warden_decision::{AccessRequest, Decision, ErrorClass, Obligation};
use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};

use crate::access::{UNMATCHED_ROUTE, matched_route};
use crate::respond::Refusal;

/// The error class of a withheld event whose response was an error (4xx, 5xx) with a body that
/// could not be redacted: its status went out with a problem+json body instead. Not a policy or
/// PEP error: usually a client's malformed request.
pub(crate) const ERROR_REPLACED: &str = "error_replaced";

/// An event for a request refused before any access request was built (no or bad credentials).
pub(crate) fn refused_early(telemetry: &Telemetry, parts: &Parts, grpc: bool, started: Instant) {
    // A gRPC path names the event only when it is a plain method path: the event never carries
    // a name the client made up.
    let resource = if grpc && crate::access::grpc_method(parts.uri.path()).is_some() {
        ("rpc", parts.uri.path().to_owned())
    } else {
        (
            "route",
            matched_route(parts).unwrap_or(UNMATCHED_ROUTE).to_owned(),
        )
    };
    let mut event = DecisionEvent::new(
        pep(grpc),
        parts.method.as_str(),
        resource.0,
        resource.1,
        Outcome::Unauthenticated,
    );
    if let Some((trace_id, span_id)) = trace_context(&parts.headers) {
        event.trace_id = Some(trace_id);
        event.span_id = Some(span_id);
    }
    event.latency_us = micros(started);
    telemetry.emit(event);
}

/// The event of a decided request, before the verdict: who asked for what, and what the PDP
/// answered. [`verdict`] completes it.
pub(crate) fn decided(
    grpc: bool,
    traceparent: Option<(String, String)>,
    request: &AccessRequest,
    decision: Option<&Decision>,
) -> DecisionEvent {
    let mut event = DecisionEvent::new(
        pep(grpc),
        request.action.name.clone(),
        request.resource.kind.clone(),
        request.resource.id.clone(),
        Outcome::Permit,
    );
    if let Some((trace_id, span_id)) = traceparent {
        event.trace_id = Some(trace_id);
        event.span_id = Some(span_id);
    }
    event.subject = Some(request.subject.id.clone());
    event.attributes.insert(
        "subject".into(),
        Value::Object(request.subject.properties.clone()),
    );
    event
        .attributes
        .insert("context".into(), Value::Object(request.context.clone()));
    if let Some(d) = decision {
        event.decision_id = Some(d.id.to_string());
        event.policy = Some(d.policy.clone());
        event.fallback = d.fallback.map(|f| f.as_str().to_owned());
        event.cache_hit = d.cache_hit;
        if d.cache_hit || d.fallback == Some(warden_decision::FallbackUse::Stale) {
            event.decision_age_ms = d
                .age(std::time::SystemTime::now())
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        }
        if !d.reasons.is_empty() {
            event.attributes.insert(
                "reasons".into(),
                serde_json::to_value(&d.reasons).unwrap_or(Value::Null),
            );
        }
        event.obligations = d
            .obligations
            .iter()
            .map(|o| o.type_name().to_owned())
            .collect();
        // What the decision hides from the response stays hidden in the log.
        let hidden: Vec<&str> = d
            .obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::Redact(redact) => Some(redact.paths.iter()),
                _ => None,
            })
            .flatten()
            .filter_map(|path| last_member(path))
            .collect();
        event.redact_attributes(&hidden);
    }
    event
}

/// A decision's reasons on one line for the log: `code: message; …`.
pub(crate) fn reasons_line(reasons: &[warden_decision::Reason]) -> String {
    let mut line = String::new();
    for reason in reasons {
        if !line.is_empty() {
            line.push_str("; ");
        }
        if let Some(code) = &reason.code {
            line.push_str(code);
            line.push_str(": ");
        }
        line.push_str(&reason.message);
    }
    line
}

/// Completes a [`decided`] event with what the PEP did, and why.
pub(crate) fn verdict(
    event: &mut DecisionEvent,
    started: Instant,
    verdict: Result<(), (&Refusal, Option<ErrorClass>)>,
) {
    let error = verdict.as_ref().err().and_then(|(_, class)| *class);
    let outcome = match verdict.map_err(|(refusal, _)| refusal) {
        Ok(()) => Outcome::Permit,
        Err(Refusal::StepUp(..)) => Outcome::StepUp,
        Err(Refusal::Unauthenticated | Refusal::InvalidToken(_)) => Outcome::Unauthenticated,
        Err(Refusal::Unavailable) => Outcome::Unavailable,
        Err(Refusal::Withheld(_) | Refusal::ErrorReplaced(..)) => Outcome::Withheld,
        Err(Refusal::Denied(_) | Refusal::BadRequest(_)) => Outcome::Deny,
    };
    event.outcome = outcome;
    event.latency_us = micros(started);
    // Obligations are reported as carried out only when the request went through.
    if outcome != Outcome::Permit {
        event.obligations.clear();
    }
    event.error_class = match (error, outcome) {
        (Some(class), _) => Some(class.as_str().to_owned()),
        (None, Outcome::Deny) => Some("violation".to_owned()),
        _ => None,
    };
}

/// The member a JSONPath ends with: `ssn` for `$..ssn`, `$.patients[*].ssn` or `$['ssn']`.
fn last_member(path: &str) -> Option<&str> {
    path.rsplit(['.', '[', ']', '\'', '"', '*', '$', ' '])
        .find(|s| !s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit()))
}

fn pep(grpc: bool) -> Pep {
    if grpc { Pep::Grpc } else { Pep::Http }
}

pub(crate) fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The trace id and parent span id of a valid W3C `traceparent` header.
pub(crate) fn trace_context(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get("traceparent").and_then(|v| v.to_str().ok())?;
    let fields: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if let [version, trace_id, span_id, flags] = fields.as_slice()
        && hex(version, 2)
        && *version != "ff"
        && hex(trace_id, 32)
        && hex(span_id, 16)
        && hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && span_id.bytes().any(|b| b != b'0')
    {
        return Some(((*trace_id).to_owned(), (*span_id).to_owned()));
    }
    None
}
