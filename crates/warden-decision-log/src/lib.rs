//! Durable decision logs of the Warden policy enforcement points and of `warden serve`.
//!
//! A [`DecisionLog`] takes the [`DecisionEvent`](warden_telemetry::DecisionEvent)s the PEPs
//! emit (or that [`LoggedPdp`] makes of a PDP's decisions), applies its [`Rules`] — outcome
//! filter, drop rules, masks — *before anything is written*, adds the regulatory mappings of
//! the deciding package, and ships the events to a [`Sink`]:
//!
//! | sink | delivery |
//! |---|---|
//! | [`JetStreamSink`] | NATS JetStream, acknowledged, at least once, the decision id as `Nats-Msg-Id` so redeliveries are stored once |
//! | [`HttpBatchSink`] | OPA-style gzip JSON arrays POSTed to an HTTP endpoint |
//! | [`OtlpLogsSink`] | OpenTelemetry logs over OTLP/HTTP (JSON encoding), trace and span ids on each record |
//! | [`JsonLinesSink`] | JSON lines to a file or standard output |
//!
//! in one of the [`Mode`]s: a bounded queue in memory (never blocks, drops counted), or a
//! bounded write-ahead file on disk (survives a crash and `kill -9`, oldest dropped and counted
//! only when the disk budget is full); and, for the requests an operator marks,
//! synchronously ([`DecisionLog::log_sync`], [`LoggedPdp::synchronous_when`]): the decision waits
//! for the acknowledgement and fails closed when it does not come in time.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::{Arc, Mutex};
//! use warden_decision_log::{DecisionLog, Mask, Record, Rules, ShipFuture, Sink};
//! use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};
//!
//! /// A sink that keeps what it is given.
//! #[derive(Default)]
//! struct Keep(Mutex<Vec<Record>>);
//! impl Sink for Keep {
//!     fn name(&self) -> &str { "keep" }
//!     fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a> {
//!         self.0.lock().unwrap().extend_from_slice(batch);
//!         Box::pin(async { Ok(()) })
//!     }
//! }
//!
//! let sink = Arc::new(Keep::default());
//! let log = DecisionLog::builder_arc(sink.clone())
//!     .rules(Rules::new().mask("/subject", Mask::Replace("anonymous".into())))
//!     .build()
//!     .unwrap();
//! // The PEPs' telemetry writes every event it emits to the decision log.
//! let telemetry = Telemetry::builder().writer(log.writer()).build().unwrap();
//! let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/patients/{id}", Outcome::Deny);
//! event.subject = Some("alice".into());
//! event.decision_id = Some("0190a3d2-0000-7000-8000-000000000001".into());
//! telemetry.emit(event);
//! telemetry.flush().await;
//! assert!(log.flush(std::time::Duration::from_secs(5)).await);
//! let records = sink.0.lock().unwrap();
//! assert_eq!(records[0].id, "0190a3d2-0000-7000-8000-000000000001");
//! assert!(records[0].body.contains(r#""subject":"anonymous""#));
//! # });
//! ```
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `jetstream` | [`JetStreamSink`] (async-nats) | yes |
//! | `http` | [`HttpBatchSink`] and [`OtlpLogsSink`] (reqwest, flate2) | yes |

mod config;
mod log;
mod pdp;
mod rules;
mod sink;
mod wal;

pub use config::{ConfigError, LogConfig, ModeConfig, SinkConfig};
pub use log::{
    DecisionLog, DecisionLogBuilder, LogError, LogMetrics, Logged, MAX_EVENT_BYTES, Mode,
};
pub use pdp::LoggedPdp;
pub use rules::{DropConfig, Mask, MaskConfig, Rules, RulesConfig};
#[cfg(feature = "jetstream")]
pub use sink::JetStreamSink;
#[cfg(feature = "http")]
pub use sink::{HttpBatchSink, OtlpLogsSink};
pub use sink::{JsonLinesSink, Record, ShipFuture, Sink, SinkError};
