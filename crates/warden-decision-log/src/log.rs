//! The decision log: rules, the buffer of its mode, the shipping task and its counters.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use warden_telemetry::{DecisionEvent, EventWriter};

use crate::rules::Rules;
use crate::sink::{Record, Sink, SinkError};
use crate::wal::Wal;

/// How many records a batch holds at most.
const BATCH: usize = 512;
/// The largest event logged, in bytes of JSON: a larger one is dropped and counted, so that
/// no event can exceed what a sink accepts (JetStream's default payload limit is 1 MiB) and
/// stop the events behind it.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// The longest pause between two attempts at a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where events wait between the request and the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// A bounded queue in memory: [`DecisionLog::log`] never blocks; when the queue is full the
    /// event is dropped and counted. A crash loses what is queued.
    Memory {
        /// How many events may wait.
        capacity: usize,
    },
    /// A bounded write-ahead file: [`DecisionLog::log`] returns once the event is in the file,
    /// so it survives a crash or `kill -9` and is shipped when the process (or the sink) is
    /// back; when the file would exceed `max_bytes` the oldest events are dropped and counted.
    Disk {
        /// The directory of the file (one decision log per directory).
        dir: PathBuf,
        /// The disk budget in bytes.
        max_bytes: u64,
    },
}

/// Why a decision log could not start, or an event was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// It must be built inside a Tokio runtime (its shipper runs in a task).
    #[error("a decision log must be built inside a Tokio runtime")]
    NoRuntime,
    /// The write-ahead file could not be opened or written.
    #[error("decision log file `{dir}`: {source}")]
    Disk {
        /// Its directory.
        dir: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The sink did not acknowledge the event.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The event is larger than [`MAX_EVENT_BYTES`].
    #[error("the decision event is {0} bytes, more than a decision log takes")]
    TooLarge(usize),
    /// The sink did not acknowledge the event in time.
    #[error("decision log sink did not acknowledge within {}ms", .0.as_millis())]
    Timeout(Duration),
}

/// The counters of a decision log.
#[derive(Debug, Default)]
pub struct LogMetrics {
    shipped: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    filtered: AtomicU64,
    queued: AtomicU64,
}

impl LogMetrics {
    /// Events the sink acknowledged.
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }
    /// Events lost: the queue or the disk budget was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Attempts to ship an event that failed (retried in the buffered modes; refused in the
    /// synchronous one).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Events the outcome filter or a drop rule left out.
    pub fn filtered(&self) -> u64 {
        self.filtered.load(Ordering::Relaxed)
    }
}

struct Inner {
    rules: Rules,
    regulations: HashMap<String, Vec<String>>,
    sink: Arc<dyn Sink>,
    buffer: Buffer,
    metrics: LogMetrics,
    sync_timeout: Duration,
    wake: Arc<Notify>,
    idle: Notify,
}

enum Buffer {
    Memory(mpsc::Sender<Record>),
    Disk(Wal),
}

/// Builds a [`DecisionLog`].
#[must_use]
pub struct DecisionLogBuilder {
    sink: Arc<dyn Sink>,
    mode: Mode,
    rules: Rules,
    regulations: HashMap<String, Vec<String>>,
    sync_timeout: Duration,
}

impl fmt::Debug for DecisionLogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLogBuilder")
            .field("sink", &self.sink.name())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl DecisionLogBuilder {
    /// The mode (default: memory, 4096 events).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The masking, drop and outcome rules.
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// The regulatory mappings of a policy package (e.g. `HIPAA 164.312(a)(1)`), added as
    /// `regulations` to every event its decisions make.
    pub fn regulations(
        mut self,
        package: impl Into<String>,
        mappings: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.regulations.insert(
            package.into(),
            mappings.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// The regulatory mappings a package manifest declares (`[[regulations]]`).
    pub fn package(self, manifest: &warden_decision::PackageManifest) -> Self {
        let labels = manifest.regulation_labels();
        self.regulations(manifest.id.clone(), labels)
    }

    /// How long [`DecisionLog::log_sync`] waits for the acknowledgement (default 2 s).
    pub fn sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// Opens the buffer and starts the shipping task.
    pub fn build(self) -> Result<DecisionLog, LogError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LogError::NoRuntime)?;
        let (buffer, rx, recovered) = match &self.mode {
            Mode::Memory { capacity } => {
                let (tx, rx) = mpsc::channel((*capacity).max(1));
                (Buffer::Memory(tx), Some(rx), 0)
            }
            Mode::Disk { dir, max_bytes } => {
                let (wal, pending) =
                    Wal::open(dir, *max_bytes).map_err(|source| LogError::Disk {
                        dir: dir.display().to_string(),
                        source,
                    })?;
                (Buffer::Disk(wal), None, pending)
            }
        };
        let inner = Arc::new(Inner {
            rules: self.rules,
            regulations: self.regulations,
            sink: self.sink,
            buffer,
            metrics: LogMetrics::default(),
            sync_timeout: self.sync_timeout,
            wake: Arc::new(Notify::new()),
            idle: Notify::new(),
        });
        inner.metrics.queued.store(recovered, Ordering::Relaxed);
        let weak = Arc::downgrade(&inner);
        runtime.spawn(ship_loop(weak, rx));
        Ok(DecisionLog { inner })
    }
}

/// A decision log: cheap to clone, shared by the PEPs (and the PDP server) of a process.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use warden_decision_log::{DecisionLog, JsonLinesSink, Mode, Rules};
/// use warden_telemetry::{DecisionEvent, Outcome, Pep};
///
/// let path = std::env::temp_dir().join(format!("warden-log-doc-{}.jsonl", std::process::id()));
/// let log = DecisionLog::builder(JsonLinesSink::file(&path).unwrap())
///     .mode(Mode::Memory { capacity: 1024 })
///     .rules(Rules::new().outcomes([Outcome::Deny]))
///     .regulations("clinic", ["HIPAA 164.312(a)(1)"])
///     .build()
///     .unwrap();
/// let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/patients/{id}", Outcome::Deny);
/// event.policy = Some(warden_decision::PolicyRevision::new("clinic", "1.0.0"));
/// log.log(&event);
/// log.log(&DecisionEvent::new(Pep::Http, "GET", "route", "/health", Outcome::Permit));
/// log.flush(std::time::Duration::from_secs(5)).await;
/// let written = std::fs::read_to_string(&path).unwrap();
/// assert!(written.contains(r#""regulations":["HIPAA 164.312(a)(1)"]"#));
/// assert_eq!(written.lines().count(), 1, "the permit was filtered out");
/// assert_eq!(log.metrics().shipped(), 1);
/// # std::fs::remove_file(&path).unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct DecisionLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionLog")
            .field("sink", &self.inner.sink.name())
            .field("queued", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

/// What became of a logged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Buffered for the sink.
    Queued,
    /// Left out by the outcome filter or a drop rule.
    Filtered,
    /// Lost: the buffer was full or could not be written (counted).
    Dropped,
}

impl DecisionLog {
    /// A builder shipping to `sink`.
    pub fn builder(sink: impl Sink) -> DecisionLogBuilder {
        Self::builder_arc(Arc::new(sink))
    }

    /// A builder shipping to a shared sink.
    pub fn builder_arc(sink: Arc<dyn Sink>) -> DecisionLogBuilder {
        DecisionLogBuilder {
            sink,
            mode: Mode::Memory { capacity: 4096 },
            rules: Rules::new(),
            regulations: HashMap::new(),
            sync_timeout: Duration::from_secs(2),
        }
    }

    /// Applies the rules to an event and makes its record (`None`: filtered out or dropped).
    pub fn record(&self, event: &DecisionEvent) -> Option<Record> {
        let outcome = event.outcome.as_str();
        // The package's regulatory mappings, at the top of every event whichever sink it goes
        // to: those configured for the package, else those the decision named.
        let mappings = event.policy.as_ref().and_then(|policy| {
            let mappings = self
                .inner
                .regulations
                .get(&policy.id)
                .filter(|m| !m.is_empty())
                .unwrap_or(&policy.regulations);
            (!mappings.is_empty()).then_some(mappings)
        });
        let rules = &self.inner.rules;
        let body = if rules.needs_tree() {
            let mut value = serde_json::to_value(event).ok()?;
            if let (Some(mappings), Value::Object(map)) = (mappings, &mut value) {
                map.insert("regulations".into(), mappings.clone().into());
            }
            if !rules.apply(&mut value) {
                return None;
            }
            value.to_string()
        } else {
            // No mask or drop rule: the event is written as it serializes, without a tree.
            if !rules.keeps(outcome) {
                return None;
            }
            let mut text = serde_json::to_string(event).ok()?;
            if let Some(mappings) = mappings
                && text.ends_with('}')
            {
                text.pop();
                text.push_str(",\"regulations\":");
                text.push_str(&serde_json::to_string(mappings).ok()?);
                text.push('}');
            }
            text
        };
        let id = event
            .decision_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Some(Record {
            id,
            outcome: outcome.to_owned(),
            body,
        })
    }

    /// Logs an event without waiting for the sink: queued in memory, or written to the file
    /// before this returns in the disk mode.
    pub fn log(&self, event: &DecisionEvent) -> Logged {
        let Some(record) = self.record(event) else {
            self.inner.metrics.filtered.fetch_add(1, Ordering::Relaxed);
            return Logged::Filtered;
        };
        let metrics = &self.inner.metrics;
        if record.body.len() > MAX_EVENT_BYTES {
            tracing::warn!(
                bytes = record.body.len(),
                "decision event too large to log: dropped"
            );
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
            return Logged::Dropped;
        }
        let logged = match &self.inner.buffer {
            Buffer::Memory(tx) => match tx.try_send(record) {
                Ok(()) => {
                    metrics.queued.fetch_add(1, Ordering::Relaxed);
                    Logged::Queued
                }
                Err(_) => {
                    metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    Logged::Dropped
                }
            },
            Buffer::Disk(wal) => match wal.append(&record) {
                Ok(lost) => {
                    metrics.dropped.fetch_add(lost, Ordering::Relaxed);
                    metrics.queued.store(wal.pending(), Ordering::Relaxed);
                    Logged::Queued
                }
                Err(error) => {
                    tracing::warn!(%error, "decision log file not written");
                    metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    Logged::Dropped
                }
            },
        };
        if matches!(self.inner.buffer, Buffer::Disk(_)) {
            self.inner.wake.notify_one();
        }
        logged
    }

    /// Ships an event and waits for the sink's acknowledgement, at most the sync timeout:
    /// an error means the event is not known to be logged, and the caller fails closed.
    /// An event the rules leave out is `Ok` at once.
    pub async fn log_sync(&self, event: &DecisionEvent) -> Result<(), LogError> {
        let Some(record) = self.record(event) else {
            self.inner.metrics.filtered.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let metrics = &self.inner.metrics;
        if record.body.len() > MAX_EVENT_BYTES {
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(LogError::TooLarge(record.body.len()));
        }
        let timeout = self.inner.sync_timeout;
        match tokio::time::timeout(timeout, self.inner.sink.ship(std::slice::from_ref(&record)))
            .await
        {
            Ok(Ok(())) => {
                metrics.shipped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(error)) => {
                metrics.failed.fetch_add(1, Ordering::Relaxed);
                Err(error.into())
            }
            Err(_) => {
                metrics.failed.fetch_add(1, Ordering::Relaxed);
                Err(LogError::Timeout(timeout))
            }
        }
    }

    /// Events buffered and not yet acknowledged.
    pub fn queue_depth(&self) -> u64 {
        match &self.inner.buffer {
            Buffer::Disk(wal) => wal.pending(),
            Buffer::Memory(_) => self.inner.metrics.queued.load(Ordering::Relaxed),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.metrics
    }

    /// Waits until the buffer is empty or `timeout` passed; `true` when it is empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.queue_depth() == 0 {
                return true;
            }
            self.inner.wake.notify_one();
            let idle = self.inner.idle.notified();
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.queue_depth() == 0;
            }
        }
    }

    /// The counters in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        let m = &self.inner.metrics;
        let sink = self.inner.sink.name();
        let mut out = String::new();
        for (name, help, value) in [
            (
                "shipped",
                "Decision events the sink acknowledged",
                m.shipped(),
            ),
            (
                "dropped",
                "Decision events lost to a full buffer",
                m.dropped(),
            ),
            (
                "failed",
                "Attempts to ship a decision event that failed",
                m.failed(),
            ),
            (
                "filtered",
                "Decision events left out by the rules",
                m.filtered(),
            ),
        ] {
            out.push_str(&format!(
                "# HELP warden_decision_log_{name}_total {help}.\n# TYPE warden_decision_log_{name}_total counter\nwarden_decision_log_{name}_total{{sink=\"{sink}\"}} {value}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP warden_decision_log_queue_depth Decision events buffered for the sink.\n# TYPE warden_decision_log_queue_depth gauge\nwarden_decision_log_queue_depth{{sink=\"{sink}\"}} {}\n",
            self.queue_depth()
        ));
        out
    }

    /// A writer for `warden_telemetry::TelemetryBuilder::durable_writer`: every event the PEPs
    /// emit is logged before `emit` returns, so in the disk mode it is in the file before the
    /// response leaves (use this one with [`Mode::Disk`]).
    pub fn durable_writer(&self) -> impl Fn(&DecisionEvent) + Send + Sync + use<> {
        let log = self.clone();
        move |event: &DecisionEvent| {
            log.log(event);
        }
    }

    /// An [`EventWriter`] for `warden_telemetry::TelemetryBuilder::writer`: every event the
    /// PEPs emit is logged from the telemetry's writer task (off the request path; with
    /// [`Mode::Memory`]).
    pub fn writer(&self) -> impl EventWriter + use<> {
        let log = self.clone();
        move |event: &DecisionEvent| {
            log.log(event);
        }
    }
}

impl Inner {
    fn read_disk(&self) -> std::io::Result<Option<crate::wal::Batch>> {
        match &self.buffer {
            Buffer::Disk(wal) => {
                let batch = wal.read(BATCH);
                self.metrics.queued.store(wal.pending(), Ordering::Relaxed);
                batch
            }
            Buffer::Memory(_) => Ok(None),
        }
    }
}

async fn ship_loop(inner: std::sync::Weak<Inner>, mut rx: Option<mpsc::Receiver<Record>>) {
    let mut backoff = Duration::from_millis(20);
    let mut pending: Vec<Record> = Vec::new();
    loop {
        let Some(log) = inner.upgrade() else { return };
        // Gather a batch.
        let mut disk_batch = None;
        let is_memory = matches!(log.buffer, Buffer::Memory(_));
        match (is_memory, rx.as_mut()) {
            (true, Some(rx)) => {
                if pending.is_empty() {
                    log.idle.notify_waiters();
                    drop(log);
                    let Some(first) = rx.recv().await else { return };
                    pending.push(first);
                    while pending.len() < BATCH {
                        match rx.try_recv() {
                            Ok(record) => pending.push(record),
                            Err(_) => break,
                        }
                    }
                    continue;
                }
            }
            (false, _) => match log.read_disk() {
                Ok(Some(batch)) => {
                    if batch.unreadable > 0 {
                        log.metrics
                            .failed
                            .fetch_add(batch.unreadable, Ordering::Relaxed);
                    }
                    disk_batch = Some(batch);
                }
                Ok(None) => {
                    log.idle.notify_waiters();
                    let wake = log.wake.clone();
                    drop(log);
                    let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "decision log file not read");
                    drop(log);
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            },
            (true, None) => return,
        }
        let records: &[Record] = match &disk_batch {
            Some(batch) => &batch.records,
            None => &pending,
        };
        let result = if records.is_empty() {
            Ok(())
        } else {
            log.sink.ship(records).await
        };
        let n = records.len() as u64;
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(20);
                log.metrics.shipped.fetch_add(n, Ordering::Relaxed);
                match (&log.buffer, &disk_batch) {
                    (Buffer::Disk(wal), Some(batch)) => {
                        if let Err(error) = wal.commit(batch) {
                            tracing::warn!(%error, "decision log cursor not saved");
                        }
                        log.metrics.queued.store(wal.pending(), Ordering::Relaxed);
                    }
                    _ => {
                        log.metrics.queued.fetch_sub(n, Ordering::Relaxed);
                        pending.clear();
                    }
                }
            }
            Err(error) => {
                log.metrics.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(%error, records = n, "decision log batch not shipped, retrying");
                drop(log);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Mask;
    use warden_telemetry::{Outcome, Pep};

    #[derive(Debug)]
    struct Nowhere;
    impl Sink for Nowhere {
        fn name(&self) -> &str {
            "nowhere"
        }
        fn ship<'a>(&'a self, _: &'a [Record]) -> crate::sink::ShipFuture<'a> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn an_event_is_written_alike_with_and_without_a_json_tree() {
        let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/p", Outcome::Deny);
        event.policy = Some(warden_decision::PolicyRevision::new("clinic", "1"));
        event.attributes.insert("role".into(), "nurse".into());
        let plain = DecisionLog::builder(Nowhere)
            .regulations("clinic", ["HIPAA 164.312(b)"])
            .build()
            .unwrap();
        // A mask of a member the event does not have: the tree path, the same result.
        let tree = DecisionLog::builder(Nowhere)
            .regulations("clinic", ["HIPAA 164.312(b)"])
            .rules(Rules::new().mask("/nothing", Mask::Remove))
            .build()
            .unwrap();
        let a: Value = serde_json::from_str(&plain.record(&event).unwrap().body).unwrap();
        let b: Value = serde_json::from_str(&tree.record(&event).unwrap().body).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["regulations"], serde_json::json!(["HIPAA 164.312(b)"]));
        let filtered = DecisionLog::builder(Nowhere)
            .rules(Rules::new().outcomes([Outcome::Permit]))
            .build()
            .unwrap();
        assert!(filtered.record(&event).is_none());
    }
}
