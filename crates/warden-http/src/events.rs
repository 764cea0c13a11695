//! Decision events of the HTTP PEP.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderValue;
use http::request::Parts;
use serde_json::Value;
use warden_decision::{AccessRequest, Decision, ErrorClass, Obligation};
use warden_telemetry::{
    DecisionEvent, EventCounts, Outcome, PendingEvent, Pep, Pseudonymizer, Telemetry,
};

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

/// The event of a decided request, built by the telemetry's writer task from what the request
/// path already holds: the shared access request and decision, the clock reading, the
/// `traceparent` header. [`verdict`](Self::verdict) completes it.
#[derive(Clone)]
pub(crate) struct Decided {
    pep: Pep,
    time: SystemTime,
    traceparent: Option<HeaderValue>,
    request: Arc<AccessRequest>,
    decision: Option<Arc<Decision>>,
    outcome: Outcome,
    latency_us: u64,
    error_class: Option<&'static str>,
}

impl Decided {
    /// Who asked for what, and what the PDP answered (`None`: no decision).
    pub(crate) fn new(
        grpc: bool,
        headers: &http::HeaderMap,
        request: Arc<AccessRequest>,
        decision: Option<Arc<Decision>>,
    ) -> Self {
        Self {
            pep: pep(grpc),
            time: SystemTime::now(),
            traceparent: headers.get(&crate::access::TRACEPARENT).cloned(),
            request,
            decision,
            outcome: Outcome::Permit,
            latency_us: 0,
            error_class: None,
        }
    }

    /// What the PEP did, and why.
    pub(crate) fn verdict(
        &mut self,
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
        self.outcome = outcome;
        self.latency_us = micros(started);
        self.error_class = match (error, outcome) {
            (Some(class), _) => Some(class.as_str()),
            (None, Outcome::Deny) => Some("violation"),
            _ => None,
        };
    }

    /// The same decision, its response withheld after all (error class `class`).
    pub(crate) fn withheld(&self, class: &'static str) -> Self {
        let mut event = self.clone();
        event.outcome = Outcome::Withheld;
        event.error_class = Some(class);
        event
    }
}

impl PendingEvent for Decided {
    fn counts(&self) -> EventCounts<'_> {
        EventCounts {
            pep: self.pep,
            outcome: self.outcome,
            latency_us: self.latency_us,
            cache_hit: self.decision.as_ref().is_some_and(|d| d.cache_hit),
            decided: self.decision.is_some(),
            error_class: self.error_class,
            fallback: self
                .decision
                .as_ref()
                .and_then(|d| d.fallback)
                .map(|f| f.as_str()),
        }
    }

    fn build(self: Box<Self>, pseudonyms: Option<&Pseudonymizer>) -> DecisionEvent {
        let request = &*self.request;
        let mut event = DecisionEvent::new_at(
            self.time,
            self.pep,
            request.action.name.clone(),
            request.resource.kind.clone(),
            request.resource.id.clone(),
            self.outcome,
        );
        if let Some((trace_id, span_id)) = self
            .traceparent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(trace_ids)
        {
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
        if let Some(d) = &self.decision {
            event.decision_id = Some(d.id.to_string());
            event.policy = Some(d.policy.clone());
            event.fallback = d.fallback.map(|f| f.as_str().to_owned());
            event.cache_hit = d.cache_hit;
            if d.cache_hit || d.fallback == Some(warden_decision::FallbackUse::Stale) {
                event.decision_age_ms = d
                    .age(self.time)
                    .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            }
            if !d.reasons.is_empty() {
                event.attributes.insert(
                    "reasons".into(),
                    serde_json::to_value(&d.reasons).unwrap_or(Value::Null),
                );
            }
            // Obligations are reported as carried out only when the request went through.
            if self.outcome == Outcome::Permit {
                event.obligations = d
                    .obligations
                    .iter()
                    .map(|o| o.type_name().to_owned())
                    .collect();
            }
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
        event.latency_us = self.latency_us;
        event.error_class = self.error_class.map(str::to_owned);
        if let Some(pseudonyms) = pseudonyms {
            event.record_request(request, pseudonyms);
        }
        event
    }
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
    trace_ids(
        headers
            .get(&crate::access::TRACEPARENT)
            .and_then(|v| v.to_str().ok())?,
    )
}

/// The trace id and parent span id of a valid W3C `traceparent` value.
fn trace_ids(value: &str) -> Option<(String, String)> {
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
