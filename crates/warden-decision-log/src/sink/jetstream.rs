//! NATS JetStream: at-least-once, acknowledged, the record id as the message id.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Record, ShipFuture, Sink, SinkError};

/// Publishes each record to `<subject prefix>.<outcome>` on a JetStream stream and waits for
/// every acknowledgement. The record id is the `Nats-Msg-Id`, so a batch shipped again after a
/// lost acknowledgement is stored once (within the stream's duplicate window).
///
/// The stream (subjects `<prefix>.>`) is created on the first batch if it does not exist; the
/// client reconnects by itself, so the sink can be made while the server is down.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use warden_decision_log::JetStreamSink;
///
/// let sink = JetStreamSink::connect("nats://127.0.0.1:4222", "WARDEN_DECISIONS", "warden.decisions").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JetStreamSink {
    js: jetstream::Context,
    stream: String,
    prefix: String,
    duplicate_window: Duration,
    /// Whether the stream is known to exist; cleared by a failed batch, so that a stream
    /// removed meanwhile is made again.
    ready: AtomicBool,
}

impl JetStreamSink {
    /// Connects to `url`; the stream is `stream` with subjects `<prefix>.>`.
    pub async fn connect(url: &str, stream: &str, prefix: &str) -> Result<Self, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| SinkError::new("jetstream", e))?;
        Ok(Self::with_client(client, stream, prefix))
    }

    /// Uses a connected client.
    pub fn with_client(client: async_nats::Client, stream: &str, prefix: &str) -> Self {
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        Self {
            js,
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            duplicate_window: Duration::from_secs(10 * 60),
            ready: AtomicBool::new(false),
        }
    }

    /// How long to wait for the server's acknowledgement of a message (default 5 s); a batch
    /// not acknowledged in time is shipped again.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.js.set_timeout(timeout);
        self
    }

    /// How long the stream remembers message ids to drop redeliveries (default 10 minutes;
    /// applies when the sink creates the stream).
    #[must_use]
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    async fn ensure_stream(&self) -> Result<(), SinkError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                duplicate_window: self.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| SinkError::new("jetstream", e))?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn publish(&self, batch: &[Record]) -> Result<(), SinkError> {
        self.ensure_stream().await?;
        let mut acks = Vec::with_capacity(batch.len());
        for record in batch {
            let publish = PublishMessage::build()
                .message_id(&record.id)
                .payload(record.body.clone().into_bytes().into());
            let subject = format!("{}.{}", self.prefix, subject_token(&record.outcome));
            let ack = self
                .js
                .send_publish(subject, publish)
                .await
                .map_err(|e| SinkError::new("jetstream", e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| SinkError::new("jetstream", e))?;
        }
        Ok(())
    }
}

impl Sink for JetStreamSink {
    fn name(&self) -> &str {
        "jetstream"
    }

    fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a> {
        Box::pin(async move {
            let result = self.publish(batch).await;
            if result.is_err() {
                self.ready.store(false, Ordering::Release);
            }
            result
        })
    }
}

/// A subject token: the outcome, with anything a subject cannot hold replaced.
fn subject_token(outcome: &str) -> String {
    let token: String = outcome
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "unknown".into()
    } else {
        token
    }
}
