//! The bounded, asynchronous event sink.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::event::{DecisionEvent, Outcome, Pep};
use crate::metrics::Metrics;
use crate::pending::PendingEvent;

/// Attribute names redacted by default (matched case-insensitively, as substrings).
pub const DEFAULT_SENSITIVE_KEYS: [&str; 12] = [
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "cookie",
    "ssn",
    "social_security",
    "api_key",
    "apikey",
    "credit_card",
    "card_number",
];

/// Where events go once they leave the request path.
pub trait EventWriter: Send + 'static {
    /// Writes one event.
    fn write(&mut self, event: &DecisionEvent);
}

impl<F: FnMut(&DecisionEvent) + Send + 'static> EventWriter for F {
    fn write(&mut self, event: &DecisionEvent) {
        self(event)
    }
}

/// Why telemetry could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TelemetryError {
    /// It must be built inside a Tokio runtime (its writer runs in a task).
    NoRuntime,
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("telemetry must be built inside a Tokio runtime")
    }
}

impl std::error::Error for TelemetryError {}

enum Message {
    Event(Box<DecisionEvent>),
    /// Built by the writer task.
    Pending(Box<dyn PendingEvent>),
    Flush(oneshot::Sender<()>),
}

/// Builds a [`Telemetry`].
#[must_use]
pub struct TelemetryBuilder {
    capacity: usize,
    sensitive: Vec<String>,
    writer: Option<Box<dyn EventWriter>>,
    durable: Option<Durable>,
    pseudonyms: Option<crate::Pseudonymizer>,
    #[cfg(feature = "otel")]
    meter: Option<opentelemetry::metrics::Meter>,
}

/// A writer called on the request path, before `emit` returns.
type Durable = Arc<dyn Fn(&DecisionEvent) + Send + Sync>;

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("TelemetryBuilder");
        f.field("capacity", &self.capacity)
            .field("sensitive", &self.sensitive);
        #[cfg(feature = "otel")]
        f.field("meter", &self.meter.is_some());
        f.finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// How many events may wait for the writer (default 4096); past that, events are dropped
    /// and counted.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Redacts one more attribute name (case-insensitive substring).
    pub fn sensitive_key(mut self, key: impl Into<String>) -> Self {
        self.sensitive.push(key.into().to_ascii_lowercase());
        self
    }

    /// Where events are written (default: one JSON line per event as a `tracing` event with
    /// target `warden::decision_event`).
    pub fn writer(mut self, writer: impl EventWriter) -> Self {
        self.writer = Some(Box::new(writer));
        self
    }

    /// Also hands every event, redacted, to `write` *before* [`Telemetry::emit`] returns — on
    /// the request path, so `write` must be quick: a decision log's write-ahead file (the disk
    /// mode of `warden-decision-log`), which must hold the event before the response leaves
    /// for the event to survive a crash. The queued writer still gets every event.
    pub fn durable_writer(
        mut self,
        write: impl Fn(&DecisionEvent) + Send + Sync + 'static,
    ) -> Self {
        self.durable = Some(Arc::new(write));
        self
    }

    /// Records each decided request in its event (`attributes.request`), the values at the
    /// paths of `pseudonyms` replaced by keyed pseudonyms, for `warden replay` (see
    /// [`Pseudonymizer`](crate::Pseudonymizer)). Off by default: recording costs a few
    /// microseconds per decision.
    pub fn record_requests(mut self, pseudonyms: crate::Pseudonymizer) -> Self {
        self.pseudonyms = Some(pseudonyms);
        self
    }

    /// Also reports the decisions as OpenTelemetry metrics on `meter`: the instruments
    /// `warden.decision.duration`, `warden.decisions`, `warden.cache.hits`,
    /// `warden.cache.misses`, `warden.pdp.errors`, `warden.fallbacks` and
    /// `warden.events.dropped` (see [`otel`](crate::otel) for their attributes).
    ///
    /// Nothing is added to the request path: the counters are observable counters the SDK reads
    /// from the atomics [`Metrics`] already keeps, and the duration histogram is recorded by the
    /// writer task. Give each `Telemetry` its own meter.
    #[cfg(feature = "otel")]
    pub fn meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Starts the writer task. It writes the queued events every [`DRAIN_EVERY`]; the queue
    /// holds [`capacity`](Self::capacity) events, so a service that decides more than
    /// `capacity / DRAIN_EVERY` times a second (400,000 with the defaults) drops events, and
    /// counts the drops.
    pub fn build(self) -> Result<Telemetry, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let (tx, mut rx) = mpsc::channel::<Message>(self.capacity);
        let mut writer = self.writer.unwrap_or_else(|| Box::new(json_lines));
        let metrics = Arc::new(Metrics::default());
        #[cfg(feature = "otel")]
        let instruments = self
            .meter
            .map(|meter| crate::otel::Instruments::new(&meter, &metrics));
        let sensitive = self.sensitive;
        let durable = self.durable.map(|write| (write, sensitive.clone()));
        let pseudonyms = self.pseudonyms.clone();
        runtime.spawn(async move {
            // The writer drains the queue on a clock rather than waiting on it: a sender then
            // never wakes the writer, which on a multi-threaded runtime would cost every
            // request a cross-thread wake-up.
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                loop {
                    let mut event = match rx.try_recv() {
                        Ok(Message::Event(event)) => *event,
                        Ok(Message::Pending(pending)) => pending.build(pseudonyms.as_ref()),
                        Ok(Message::Flush(done)) => {
                            let _ = done.send(());
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    };
                    // Redacted here, off the request path, before the event leaves.
                    redact(&mut event.attributes, &sensitive);
                    #[cfg(feature = "otel")]
                    if let Some(instruments) = &instruments {
                        instruments.record(&event);
                    }
                    writer.write(&event);
                }
            }
        });
        Ok(Telemetry {
            inner: Arc::new(Inner {
                tx,
                metrics,
                durable,
                pseudonyms: self.pseudonyms,
            }),
        })
    }
}

fn json_lines(event: &DecisionEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        tracing::info!(target: "warden::decision_event", "{line}");
    }
}

struct Inner {
    tx: mpsc::Sender<Message>,
    /// Shared with the OpenTelemetry instruments, which read it at each collection.
    metrics: Arc<Metrics>,
    /// The durable writer and the names it redacts.
    durable: Option<(Durable, Vec<String>)>,
    /// Set when requests are recorded in their events.
    pseudonyms: Option<crate::Pseudonymizer>,
}

/// The decision telemetry of a service: cheap to clone, shared by its PEPs.
///
/// [`emit`](Self::emit) never blocks and never waits: it counts the event in the metrics and
/// queues it for the writer task, which redacts sensitive attributes before the writer sees the
/// event; when the queue is full the event is dropped and counted
/// (`warden_events_dropped_total`).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("dropped", &self.inner.metrics.dropped())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// A builder with the defaults.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            capacity: 4096,
            sensitive: DEFAULT_SENSITIVE_KEYS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
            writer: None,
            durable: None,
            pseudonyms: None,
            #[cfg(feature = "otel")]
            meter: None,
        }
    }

    /// Records `request` in `event` when [`TelemetryBuilder::record_requests`] asked for it;
    /// the PEPs call it for every decided request.
    pub fn record_request(
        &self,
        event: &mut DecisionEvent,
        request: &warden_decision::AccessRequest,
    ) {
        if let Some(pseudonyms) = &self.inner.pseudonyms {
            event.record_request(request, pseudonyms);
        }
    }

    /// Records one event.
    pub fn emit(&self, event: DecisionEvent) {
        self.inner.metrics.record(event.counts());
        self.queue(event);
    }

    /// Records one event that the writer task builds (see [`PendingEvent`]): the request path
    /// pays for the metrics and the queue, not for formatting or copying the event. With a
    /// [durable writer](TelemetryBuilder::durable_writer) the event is built at once, since
    /// that writer must have it before this returns.
    pub fn emit_pending(&self, event: impl PendingEvent) {
        self.inner.metrics.record(event.counts());
        if self.inner.durable.is_some() {
            let event = Box::new(event).build(self.inner.pseudonyms.as_ref());
            return self.queue(event);
        }
        if self
            .inner
            .tx
            .try_send(Message::Pending(Box::new(event)))
            .is_err()
        {
            self.inner.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a built, counted event to the durable writer and queues it for the writer task.
    fn queue(&self, event: DecisionEvent) {
        if let Some((write, sensitive)) = &self.inner.durable {
            let mut redacted = event.clone();
            redact(&mut redacted.attributes, sensitive);
            write(&redacted);
        }
        if self
            .inner
            .tx
            .try_send(Message::Event(Box::new(event)))
            .is_err()
        {
            self.inner.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every event queued so far is written (for tests and shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// How often the writer task writes the queued events.
pub const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// What a redacted attribute value becomes.
const REDACTED: &str = "[REDACTED]";

/// Replaces the values of sensitive attributes (at any depth) with `"[REDACTED]"`.
fn redact(map: &mut Map<String, Value>, sensitive: &[String]) {
    for (key, value) in map.iter_mut() {
        let lower = key.to_ascii_lowercase();
        if sensitive.iter().any(|s| lower.contains(s.as_str())) {
            *value = Value::String(REDACTED.to_owned());
        } else {
            redact_value(value, sensitive);
        }
    }
}

fn redact_value(value: &mut Value, sensitive: &[String]) {
    match value {
        Value::Object(map) => redact(map, sensitive),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, sensitive)),
        _ => {}
    }
}

impl DecisionEvent {
    /// An event with the required fields; the time is now.
    pub fn new(
        pep: Pep,
        action: impl Into<String>,
        resource_type: impl Into<String>,
        resource: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self::new_at(
            SystemTime::now(),
            pep,
            action,
            resource_type,
            resource,
            outcome,
        )
    }

    /// An event with the required fields, at `time` (a [`PendingEvent`] read the clock on the
    /// request path; the writer task formats it).
    pub fn new_at(
        time: SystemTime,
        pep: Pep,
        action: impl Into<String>,
        resource_type: impl Into<String>,
        resource: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            decision_id: None,
            time: rfc3339(time),
            trace_id: None,
            span_id: None,
            pep,
            subject: None,
            action: action.into(),
            resource_type: resource_type.into(),
            resource: resource.into(),
            outcome,
            obligations: Vec::new(),
            policy: None,
            latency_us: 0,
            fallback: None,
            cache_hit: false,
            decision_age_ms: None,
            error_class: None,
            attributes: Map::new(),
        }
    }

    /// Redacts, at any depth of the attributes, the values of members named `names` (exact,
    /// case-insensitive). A PEP calls it with the member names of the paths a decision redacts,
    /// so what the response hides does not reappear in the decision log.
    pub fn redact_attributes<S: AsRef<str>>(&mut self, names: &[S]) {
        let names: Vec<String> = names
            .iter()
            .map(|n| n.as_ref().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if !names.is_empty() {
            redact_exact(&mut self.attributes, &names);
        }
    }
}

fn redact_exact(map: &mut Map<String, Value>, names: &[String]) {
    for (key, value) in map.iter_mut() {
        if names.iter().any(|n| key.eq_ignore_ascii_case(n)) {
            *value = Value::String(REDACTED.to_owned());
        } else {
            redact_exact_value(value, names);
        }
    }
}

fn redact_exact_value(value: &mut Value, names: &[String]) {
    match value {
        Value::Object(map) => redact_exact(map, names),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_exact_value(v, names)),
        _ => {}
    }
}

/// RFC 3339 in UTC with microseconds, without a date library (civil-from-days).
fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(1_798_588_800_000_042)),
            "2026-12-30T00:00:00.000042Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[tokio::test]
    async fn sensitive_attributes_are_redacted_before_they_leave() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let telemetry = Telemetry::builder()
            .sensitive_key("diagnosis")
            .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/p", Outcome::Permit);
        event.attributes = json!({
            "role": "nurse", "Access_Token": "eyJ...", "nested": {"patient_ssn": "123-45-6789", "list": [{"Password": "x"}]},
            "Diagnosis_Code": "F32"
        })
        .as_object()
        .unwrap()
        .clone();
        telemetry.emit(event);
        telemetry.flush().await;
        let out = serde_json::to_string(&seen.lock().unwrap()[0]).unwrap();
        for secret in ["eyJ", "123-45-6789", "\"x\"", "F32"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("nurse"));
    }

    #[tokio::test]
    async fn the_durable_writer_has_the_redacted_event_before_emit_returns() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let telemetry = Telemetry::builder()
            .durable_writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/p", Outcome::Deny);
        event.attributes.insert("api_key".into(), "k-123".into());
        telemetry.emit(event);
        // No flush, no yield: it is there already.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].attributes["api_key"], "[REDACTED]");
    }

    /// A pending event that records how it was built.
    struct Deferred {
        latency_us: u64,
        built_on: std::sync::mpsc::Sender<std::thread::ThreadId>,
    }

    impl PendingEvent for Deferred {
        fn counts(&self) -> crate::EventCounts<'_> {
            crate::EventCounts {
                pep: Pep::Http,
                outcome: Outcome::Deny,
                latency_us: self.latency_us,
                cache_hit: true,
                decided: true,
                error_class: Some("violation"),
                fallback: None,
            }
        }

        fn build(self: Box<Self>, pseudonyms: Option<&crate::Pseudonymizer>) -> DecisionEvent {
            let _ = self.built_on.send(std::thread::current().id());
            let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/p", Outcome::Deny);
            event.latency_us = self.latency_us;
            event.cache_hit = true;
            event.decision_id = Some("d".into());
            event.error_class = Some("violation".into());
            event.attributes.insert("api_key".into(), "k-123".into());
            event
                .attributes
                .insert("pseudonyms".into(), pseudonyms.is_some().into());
            event
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn pending_events_are_counted_at_once_and_built_by_the_writer_task() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let key = [7_u8; crate::MIN_PSEUDONYM_KEY_LEN];
        let telemetry = Telemetry::builder()
            .record_requests(crate::Pseudonymizer::new(&key).unwrap())
            .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let (built_on, built) = std::sync::mpsc::channel();
        telemetry.emit_pending(Deferred {
            latency_us: 30,
            built_on,
        });
        assert_eq!(telemetry.metrics().decisions(Pep::Http, Outcome::Deny), 1);
        assert_eq!(telemetry.metrics().cache_hits(), 1);
        assert!(built.try_recv().is_err(), "not built on the request path");
        telemetry.flush().await;
        assert_ne!(built.recv().unwrap(), std::thread::current().id());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].latency_us, 30);
        assert_eq!(seen[0].attributes["api_key"], "[REDACTED]");
        assert_eq!(seen[0].attributes["pseudonyms"], true);
    }

    #[tokio::test]
    async fn a_durable_writer_has_pending_events_built_before_emit_returns() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let queued = Arc::new(Mutex::new(Vec::new()));
        let queue = queued.clone();
        let telemetry = Telemetry::builder()
            .durable_writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
            .writer(move |e: &DecisionEvent| queue.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let (built_on, built) = std::sync::mpsc::channel();
        telemetry.emit_pending(Deferred {
            latency_us: 5,
            built_on,
        });
        assert_eq!(built.try_recv().unwrap(), std::thread::current().id());
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(seen.lock().unwrap()[0].attributes["api_key"], "[REDACTED]");
        assert_eq!(seen.lock().unwrap()[0].attributes["pseudonyms"], false);
        telemetry.flush().await;
        assert_eq!(*queued.lock().unwrap(), *seen.lock().unwrap());
        assert_eq!(telemetry.metrics().decisions(Pep::Http, Outcome::Deny), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_sink_drops_and_counts_but_never_blocks() {
        let gate = Arc::new(std::sync::Barrier::new(2));
        let writer_gate = gate.clone();
        let mut first = true;
        let telemetry = Telemetry::builder()
            .capacity(4)
            .writer(move |_: &DecisionEvent| {
                if first {
                    first = false;
                    writer_gate.wait();
                }
            })
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..100 {
            telemetry.emit(DecisionEvent::new(
                Pep::Sql,
                "select",
                "table",
                "public.t",
                Outcome::Deny,
            ));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "emit never waits"
        );
        let dropped = telemetry.metrics().dropped();
        assert!(dropped >= 90, "{dropped}");
        assert_eq!(
            telemetry.metrics().decisions(Pep::Sql, Outcome::Deny),
            100,
            "counted even when dropped"
        );
        gate.wait();
        let prometheus = telemetry.metrics().render_prometheus();
        assert!(
            prometheus.contains(&format!("warden_events_dropped_total {dropped}")),
            "{prometheus}"
        );
    }
}
