//! A decision log as a configuration file writes it (`warden serve --decision-log FILE`).
//!
//! ```
//! use warden_decision_log::LogConfig;
//!
//! let config = LogConfig::from_toml(r#"
//! synchronous = ["/patients/{id}"]
//! sync_timeout_ms = 500
//!
//! [sink]
//! type = "jetstream"
//! url = "nats://127.0.0.1:4222"
//! stream = "WARDEN_DECISIONS"
//! subject = "warden.decisions"
//!
//! [mode]
//! type = "disk"
//! dir = "/var/lib/warden/decision-log"
//! max_bytes = 104857600
//!
//! [rules]
//! outcomes = ["deny", "unavailable"]
//! [[rules.mask]]
//! path = "/attributes/email"
//! "#).unwrap();
//! assert_eq!(config.synchronous, ["/patients/{id}"]);
//! assert!(LogConfig::from_toml("[sink]\ntype = \"carrier-pigeon\"").is_err());
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::log::{DecisionLog, DecisionLogBuilder, LogError, Mode};
use crate::rules::{Rules, RulesConfig};

/// The decision log configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// Where events go.
    pub sink: SinkConfig,
    /// Where they wait (memory by default).
    #[serde(default)]
    pub mode: ModeConfig,
    /// Masks, drops and the outcome filter.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Resource ids (e.g. route templates) whose decisions are logged synchronously; `"*"`
    /// marks every request.
    #[serde(default)]
    pub synchronous: Vec<String>,
    /// How long a synchronous log waits for the acknowledgement (default 2000).
    #[serde(default = "default_sync_timeout")]
    pub sync_timeout_ms: u64,
}

fn default_sync_timeout() -> u64 {
    2000
}

/// The `[sink]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SinkConfig {
    /// NATS JetStream.
    Jetstream {
        /// The server, e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// The stream (created if missing).
        #[serde(default = "default_stream")]
        stream: String,
        /// The subject prefix: events go to `<subject>.<outcome>`.
        #[serde(default = "default_subject")]
        subject: String,
    },
    /// OPA-style gzip batches over HTTP.
    Http {
        /// The endpoint.
        url: String,
    },
    /// OpenTelemetry logs over OTLP/HTTP.
    Otlp {
        /// The collector, e.g. `http://127.0.0.1:4318`.
        endpoint: String,
        /// The `service.name` of the records (default `warden`).
        #[serde(default = "default_service")]
        service: String,
    },
    /// JSON lines appended to a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// JSON lines to standard output.
    Stdout,
}

fn default_service() -> String {
    "warden".into()
}

fn default_stream() -> String {
    "WARDEN_DECISIONS".into()
}

fn default_subject() -> String {
    "warden.decisions".into()
}

/// The `[mode]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ModeConfig {
    /// A bounded queue in memory.
    Memory {
        /// How many events may wait (default 4096).
        #[serde(default = "default_capacity")]
        capacity: usize,
    },
    /// A bounded write-ahead file.
    Disk {
        /// Its directory.
        dir: PathBuf,
        /// The disk budget (default 100 MiB).
        #[serde(default = "default_max_bytes")]
        max_bytes: u64,
    },
}

impl Default for ModeConfig {
    fn default() -> Self {
        Self::Memory {
            capacity: default_capacity(),
        }
    }
}

fn default_capacity() -> usize {
    4096
}

fn default_max_bytes() -> u64 {
    100 << 20
}

/// A configuration that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("decision log configuration: {0}")]
pub struct ConfigError(String);

impl LogConfig {
    /// Reads a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        if config.sync_timeout_ms == 0 {
            return Err(ConfigError("`sync_timeout_ms` must be above 0".into()));
        }
        Ok(config)
    }

    /// Whether the decision of a request on `resource` is logged synchronously.
    pub fn is_synchronous(&self, resource: &str) -> bool {
        self.synchronous.iter().any(|r| r == "*" || r == resource)
    }

    /// Connects the sink, opens the buffer and starts shipping.
    pub async fn build(&self) -> Result<DecisionLog, LogError> {
        self.builder().await?.build()
    }

    /// Connects the sink; the builder has the mode, rules and sync timeout of the file (add
    /// the packages' regulations to it, then build).
    pub async fn builder(&self) -> Result<DecisionLogBuilder, LogError> {
        let sink: std::sync::Arc<dyn crate::Sink> = match &self.sink {
            #[cfg(feature = "jetstream")]
            SinkConfig::Jetstream {
                url,
                stream,
                subject,
            } => std::sync::Arc::new(crate::JetStreamSink::connect(url, stream, subject).await?),
            #[cfg(feature = "http")]
            SinkConfig::Http { url } => std::sync::Arc::new(crate::HttpBatchSink::new(url)?),
            #[cfg(feature = "http")]
            SinkConfig::Otlp { endpoint, service } => {
                std::sync::Arc::new(crate::OtlpLogsSink::new(endpoint, service)?)
            }
            SinkConfig::File { path } => {
                std::sync::Arc::new(crate::JsonLinesSink::file(path).map_err(|source| {
                    LogError::Disk {
                        dir: path.display().to_string(),
                        source,
                    }
                })?)
            }
            SinkConfig::Stdout => std::sync::Arc::new(crate::JsonLinesSink::stdout()),
            #[cfg_attr(
                all(feature = "jetstream", feature = "http"),
                expect(unreachable_patterns, reason = "the sinks behind features")
            )]
            _ => {
                return Err(LogError::Sink(crate::SinkError::new(
                    "config",
                    "this sink is not compiled in",
                )));
            }
        };
        let mode = match &self.mode {
            ModeConfig::Memory { capacity } => Mode::Memory {
                capacity: *capacity,
            },
            ModeConfig::Disk { dir, max_bytes } => Mode::Disk {
                dir: dir.clone(),
                max_bytes: *max_bytes,
            },
        };
        Ok(DecisionLog::builder_arc(sink)
            .mode(mode)
            .rules(Rules::from(self.rules.clone()))
            .sync_timeout(Duration::from_millis(self.sync_timeout_ms)))
    }
}
