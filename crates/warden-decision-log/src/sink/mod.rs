//! Where decision events go: the [`Sink`] trait and the sinks Warden ships.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "jetstream")]
mod jetstream;
#[cfg(feature = "http")]
mod otlp;

#[cfg(feature = "http")]
pub use http::HttpBatchSink;
#[cfg(feature = "jetstream")]
pub use jetstream::JetStreamSink;
#[cfg(feature = "http")]
pub use otlp::OtlpLogsSink;

/// One event ready for a sink: masked, serialized, with the id that deduplicates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message id: the decision id, or an id given when the event had none.
    pub id: String,
    /// The event's outcome (`deny`, `permit`, ...).
    pub outcome: String,
    /// The event as one line of JSON.
    pub body: String,
}

/// The future a [`Sink`] returns.
pub type ShipFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// Why a batch was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decision log sink `{sink}` failed: {message}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

impl SinkError {
    /// An error of sink `sink`.
    pub fn new(sink: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            sink: sink.into(),
            message: message.to_string(),
        }
    }
}

/// A destination of decision events. `ship` returns `Ok` only once every record of the batch is
/// acknowledged (written, stored, accepted); on an error the whole batch is shipped again, so a
/// sink sees a record at least once and deduplicates by [`Record::id`] where it can.
pub trait Sink: Send + Sync + 'static {
    /// The sink's name in metrics and errors.
    fn name(&self) -> &str;

    /// Ships a batch.
    fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a>;
}

/// JSON lines: one event per line, to a file (appended) or to standard output.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use warden_decision_log::{JsonLinesSink, Record, Sink};
///
/// let path = std::env::temp_dir().join(format!("warden-doc-{}.jsonl", std::process::id()));
/// let sink = JsonLinesSink::file(&path).unwrap();
/// let record = Record { id: "1".into(), outcome: "deny".into(), body: r#"{"outcome":"deny"}"#.into() };
/// sink.ship(&[record]).await.unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"outcome\":\"deny\"}\n");
/// # std::fs::remove_file(&path).unwrap();
/// # });
/// ```
pub struct JsonLinesSink {
    out: Mutex<Box<dyn Write + Send>>,
    name: String,
}

impl JsonLinesSink {
    /// Appends to the file at `path` (created if missing).
    pub fn file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.as_ref())?;
        Ok(Self {
            out: Mutex::new(Box::new(file)),
            name: "file".into(),
        })
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::stdout())),
            name: "stdout".into(),
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a> {
        Box::pin(async move {
            let mut text = String::with_capacity(batch.iter().map(|r| r.body.len() + 1).sum());
            for record in batch {
                text.push_str(&record.body);
                text.push('\n');
            }
            let mut out = self
                .out
                .lock()
                .map_err(|_| SinkError::new(&self.name, "writer poisoned"))?;
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| SinkError::new(&self.name, e))
        })
    }
}
