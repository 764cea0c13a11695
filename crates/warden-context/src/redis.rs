//! Attributes and session history in Redis.

use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::provider::{FetchError, FetchFuture, Provider, parse_json};

/// A Redis connection made on first use and made again after a failure.
#[derive(Debug)]
struct Connection {
    client: redis::Client,
    live: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Connection {
    fn new(url: &str) -> Result<Self, FetchError> {
        let client =
            redis::Client::open(url).map_err(|e| FetchError::Unavailable(e.to_string()))?;
        Ok(Self {
            client,
            live: Mutex::new(None),
        })
    }

    async fn get(&self) -> Result<redis::aio::MultiplexedConnection, FetchError> {
        let mut live = self.live.lock().await;
        if let Some(connection) = live.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        *live = Some(connection.clone());
        Ok(connection)
    }

    async fn failed(&self) {
        *self.live.lock().await = None;
    }
}

/// What a [`RedisProvider`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisRead {
    /// `GET <prefix><key>`: the value is JSON; a missing key is `null`.
    Json,
    /// `HGETALL <prefix><key>`: an object of strings; a missing key is `{}`.
    Hash,
    /// The number of denials of the subject `<key>` within the window, from the
    /// [`SessionHistory`] with the same prefix.
    RecentDenials {
        /// How far back.
        window: Duration,
    },
}

/// Reads attributes from Redis.
///
/// ```
/// use warden_context::{Attribute, KeyBy, RedisProvider, RedisRead};
///
/// let sensitivity = RedisProvider::new("redis://127.0.0.1:6379", "inventory:", RedisRead::Json).unwrap();
/// let attribute = Attribute::new("sensitivity", KeyBy::Resource, sensitivity);
/// assert!(RedisProvider::new("mysql://nope", "x:", RedisRead::Json).is_err());
/// ```
#[derive(Debug)]
pub struct RedisProvider {
    connection: Connection,
    prefix: String,
    read: RedisRead,
}

impl RedisProvider {
    /// A provider on the server at `url` (`redis://host:port/db`); nothing is connected yet.
    pub fn new(url: &str, prefix: &str, read: RedisRead) -> Result<Self, FetchError> {
        Ok(Self {
            connection: Connection::new(url)?,
            prefix: prefix.to_owned(),
            read,
        })
    }

    async fn read(&self, key: &str) -> Result<Value, FetchError> {
        let mut connection = self.connection.get().await?;
        let name = format!("{}{key}", self.prefix);
        let result = match &self.read {
            RedisRead::Json => connection
                .get::<_, Option<String>>(&name)
                .await
                .map(|text| text.map_or(Ok(Value::Null), |t| parse_json(&t))),
            RedisRead::Hash => connection
                .hgetall::<_, std::collections::BTreeMap<String, String>>(&name)
                .await
                .map(|map| {
                    Ok(Value::Object(
                        map.into_iter()
                            .map(|(k, v)| (k, Value::String(v)))
                            .collect(),
                    ))
                }),
            RedisRead::RecentDenials { window } => {
                let since = now_ms().saturating_sub(millis(*window));
                let name = history_key(&self.prefix, "deny", key);
                connection
                    .zcount::<_, _, _, u64>(&name, since, "+inf")
                    .await
                    .map(|n| Ok(Value::from(n)))
            }
        };
        match result {
            Ok(value) => value,
            Err(error) => {
                if error.kind() == redis::ErrorKind::Client
                    || error.kind() == redis::ErrorKind::UnexpectedReturnType
                {
                    // The connection is fine; the key holds something else.
                    Err(FetchError::Garbage(error.to_string()))
                } else {
                    self.connection.failed().await;
                    Err(FetchError::Unavailable(error.to_string()))
                }
            }
        }
    }
}

impl Provider for RedisProvider {
    fn fetch<'a>(&'a self, key: &'a str) -> FetchFuture<'a> {
        Box::pin(self.read(key))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn history_key(prefix: &str, outcome: &str, subject: &str) -> String {
    format!("{prefix}{outcome}:{subject}")
}

/// The recent outcomes of each subject, in Redis: one sorted set per subject and outcome
/// (`<prefix><outcome>:<subject>`, members the decision ids, scores the times in ms), trimmed
/// to the window at each write and expiring with it — shared by every replica that writes to
/// the same server. A [`RedisProvider`] with [`RedisRead::RecentDenials`] and the same prefix
/// reads the count back for the policy.
///
/// ```no_run
/// # async fn run() -> Result<(), warden_context::FetchError> {
/// use std::time::Duration;
/// use warden_context::SessionHistory;
///
/// let history = SessionHistory::new("redis://127.0.0.1:6379", "warden:history:", Duration::from_secs(900))?;
/// history.record("alice", "deny", "0190a3d2-0000-7000-8000-000000000001").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SessionHistory {
    connection: Connection,
    prefix: String,
    window: Duration,
}

impl SessionHistory {
    /// The history on the server at `url`, keys under `prefix`, kept for `window`.
    pub fn new(url: &str, prefix: &str, window: Duration) -> Result<Self, FetchError> {
        Ok(Self {
            connection: Connection::new(url)?,
            prefix: prefix.to_owned(),
            window,
        })
    }

    /// Records an outcome (`deny`, `permit`, ...) of a subject.
    pub async fn record(&self, subject: &str, outcome: &str, id: &str) -> Result<(), FetchError> {
        let mut connection = self.connection.get().await?;
        let now = now_ms();
        let name = history_key(&self.prefix, outcome, subject);
        let window = millis(self.window);
        let result: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .zadd(&name, id, now)
            .ignore()
            .zrembyscore(&name, 0, now.saturating_sub(window))
            .ignore()
            .pexpire(&name, i64::try_from(window).unwrap_or(i64::MAX))
            .ignore()
            .query_async(&mut connection)
            .await;
        if let Err(error) = result {
            self.connection.failed().await;
            return Err(FetchError::Unavailable(error.to_string()));
        }
        Ok(())
    }

    /// An event writer for `warden_telemetry::TelemetryBuilder::writer`: each event the PEPs
    /// emit is recorded, in a task of the current runtime (off the request path; a failed
    /// write is logged and the event not recorded). Must be called inside a Tokio runtime.
    pub fn writer(
        self: std::sync::Arc<Self>,
    ) -> Result<impl warden_telemetry::EventWriter, FetchError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| FetchError::Unavailable("no Tokio runtime".into()))?;
        Ok(move |event: &warden_telemetry::DecisionEvent| {
            let history = self.clone();
            let event = event.clone();
            runtime.spawn(async move {
                if let Err(error) = history.record_event(&event).await {
                    tracing::warn!(%error, "session history not recorded");
                }
            });
        })
    }

    /// Records the outcome of a decision event (its subject and decision id); events without
    /// a subject are not recorded.
    pub async fn record_event(
        &self,
        event: &warden_telemetry::DecisionEvent,
    ) -> Result<(), FetchError> {
        let Some(subject) = &event.subject else {
            return Ok(());
        };
        let id = event
            .decision_id
            .clone()
            .unwrap_or_else(|| event.time.clone());
        self.record(subject, event.outcome.as_str(), &id).await
    }
}
