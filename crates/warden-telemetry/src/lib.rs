//! Decision events of the Warden PEPs: one schema, a bounded asynchronous sink that never blocks
//! a request, redaction of sensitive attributes, and Prometheus metrics.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::{Arc, Mutex};
//! use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let telemetry = Telemetry::builder()
//!     .writer(move |event: &DecisionEvent| sink.lock().unwrap().push(event.outcome))
//!     .build()
//!     .unwrap();
//! let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/health", Outcome::Permit);
//! event.attributes.insert("password".into(), "hunter2".into());
//! telemetry.emit(event);
//! telemetry.flush().await;
//! assert_eq!(*seen.lock().unwrap(), vec![Outcome::Permit]);
//! assert!(telemetry.metrics().render_prometheus().contains(r#"warden_decisions_total{pep="http",outcome="permit"} 1"#));
//! # });
//! ```
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `otel` | OpenTelemetry metrics of the decisions: `TelemetryBuilder::meter` registers `warden.decision.duration`, `warden.decisions`, `warden.cache.hits`, `warden.cache.misses`, `warden.pdp.errors`, `warden.fallbacks` and `warden.events.dropped` on an `opentelemetry::metrics::Meter` (see the `otel` module) | no |
//!
//! The `warden.decide` span of each decision is not made here: the PEPs open it with `tracing`,
//! and a binary exports it with a `tracing-opentelemetry` layer (see the clinic example).

mod event;
mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod pending;
mod recorded;
mod sink;

pub use event::{DecisionEvent, Outcome, Pep};
pub use metrics::Metrics;
pub use pending::{EventCounts, PendingEvent};
pub use recorded::{
    DEFAULT_PSEUDONYM_PATHS, MIN_PSEUDONYM_KEY_LEN, PSEUDONYM_PREFIX, Pseudonymizer,
    RECORDED_REQUEST, ShortKey, recorded_request,
};
pub use sink::{
    DEFAULT_SENSITIVE_KEYS, DRAIN_EVERY, EventWriter, Telemetry, TelemetryBuilder, TelemetryError,
};

/// The JSON Schema of [`DecisionEvent`].
pub const DECISION_EVENT_SCHEMA: &str = include_str!("../decision-event.schema.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_event_matches_the_json_schema() {
        let schema: serde_json::Value = serde_json::from_str(DECISION_EVENT_SCHEMA).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let mut event = DecisionEvent::new(Pep::Grpc, "POST", "rpc", "/a.B/C", Outcome::StepUp);
        event.decision_id = Some("01a2".into());
        event.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        event.span_id = Some("b7ad6b7169203331".into());
        event.subject = Some("alice".into());
        event.obligations = vec!["step_up".into()];
        event.policy = Some(warden_decision::PolicyRevision::new("clinic", "1.0.0"));
        event.fallback = Some("stale".into());
        event.error_class = Some("violation".into());
        event.attributes.insert("role".into(), "doctor".into());
        let json = serde_json::to_value(&event).unwrap();
        let members = json.as_object().unwrap();
        for key in members.keys() {
            assert!(properties.contains_key(key), "`{key}` is not in the schema");
        }
        for required in schema["required"].as_array().unwrap() {
            assert!(
                members.contains_key(required.as_str().unwrap()),
                "{required} missing"
            );
        }
        for (key, enumerated) in [
            ("pep", "grpc"),
            ("outcome", "step_up"),
            ("fallback", "stale"),
            ("error_class", "violation"),
        ] {
            assert!(
                properties[key]["enum"]
                    .as_array()
                    .unwrap()
                    .contains(&enumerated.into()),
                "{key}"
            );
            assert_eq!(json[key], enumerated);
        }
        for outcome in Outcome::ALL {
            assert!(
                properties["outcome"]["enum"]
                    .as_array()
                    .unwrap()
                    .contains(&outcome.as_str().into())
            );
        }
        let back: DecisionEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
