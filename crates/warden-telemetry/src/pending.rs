//! Events the writer task builds: the request path hands over what it already holds.

use crate::event::{DecisionEvent, Outcome, Pep};
use crate::recorded::Pseudonymizer;

/// What the metrics count of one event, known on the request path before the event is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCounts<'a> {
    /// Which PEP.
    pub pep: Pep,
    /// What the PEP did.
    pub outcome: Outcome,
    /// Microseconds from the request reaching the PEP to its verdict.
    pub latency_us: u64,
    /// Whether a decision cache served the decision.
    pub cache_hit: bool,
    /// Whether a decision was made (the event will carry a decision id).
    pub decided: bool,
    /// The event's error class, if any.
    pub error_class: Option<&'a str>,
    /// The fallback that served the decision, if any.
    pub fallback: Option<&'a str>,
}

impl DecisionEvent {
    /// What the metrics count of this event.
    pub fn counts(&self) -> EventCounts<'_> {
        EventCounts {
            pep: self.pep,
            outcome: self.outcome,
            latency_us: self.latency_us,
            cache_hit: self.cache_hit,
            decided: self.decision_id.is_some(),
            error_class: self.error_class.as_deref(),
            fallback: self.fallback.as_deref(),
        }
    }
}

/// A decision event not built yet: what a PEP already holds (shared requests and decisions,
/// the time as a clock reading), turned into a [`DecisionEvent`] by the writer task, off the
/// request path. [`Telemetry::emit_pending`](crate::Telemetry::emit_pending) counts it in the
/// metrics at once, from [`counts`](Self::counts), and queues it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::{Arc, Mutex};
/// use warden_telemetry::{DecisionEvent, EventCounts, Outcome, PendingEvent, Pep, Pseudonymizer, Telemetry};
///
/// struct Health(u64);
/// impl PendingEvent for Health {
///     fn counts(&self) -> EventCounts<'_> {
///         EventCounts { pep: Pep::Http, outcome: Outcome::Permit, latency_us: self.0,
///                       cache_hit: false, decided: false, error_class: None, fallback: None }
///     }
///     fn build(self: Box<Self>, _: Option<&Pseudonymizer>) -> DecisionEvent {
///         let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/health", Outcome::Permit);
///         event.latency_us = self.0;
///         event
///     }
/// }
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let telemetry = Telemetry::builder()
///     .writer(move |event: &DecisionEvent| sink.lock().unwrap().push(event.latency_us))
///     .build()
///     .unwrap();
/// telemetry.emit_pending(Health(42));
/// telemetry.flush().await;
/// assert_eq!(*seen.lock().unwrap(), vec![42]);
/// assert_eq!(telemetry.metrics().decisions(Pep::Http, Outcome::Permit), 1);
/// # });
/// ```
pub trait PendingEvent: Send + 'static {
    /// What the metrics count of the event; must agree with what [`build`](Self::build) makes.
    fn counts(&self) -> EventCounts<'_>;

    /// The event, with its request recorded (see
    /// [`record_requests`](crate::TelemetryBuilder::record_requests)) when `pseudonyms` is
    /// given.
    fn build(self: Box<Self>, pseudonyms: Option<&Pseudonymizer>) -> DecisionEvent;
}
