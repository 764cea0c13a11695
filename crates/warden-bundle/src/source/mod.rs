//! Where bundles come from: a file, an HTTP(S) URL, or a NATS JetStream object store.
//!
//! | `--bundle` | source |
//! |---|---|
//! | `bundle.tar.gz`, `file:bundle.tar.gz` | a file, checked for changes every second |
//! | `https://host/bundles/prod.tar.gz` | HTTP(S) with `ETag` / `If-None-Match` and long polling (`Prefer: wait=N`) |
//! | `nats://127.0.0.1:4222/production` | the object `production` of the JetStream object store `warden-bundles`, with change notifications (`?bucket=NAME` for another bucket) |
//!
//! Every source is also reconciled periodically: [`BundleSource::poll`] returns after at most
//! the wait it is given, having checked the source itself, so a missed notification costs one
//! interval at most.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod file;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "nats")]
mod nats;

pub use file::FileSource;
#[cfg(feature = "http")]
pub use http::HttpSource;
#[cfg(feature = "nats")]
pub use nats::{Channel, DEFAULT_BUNDLE_BUCKET, DEFAULT_STATUS_BUCKET, Head, NatsSource};

/// A source could not be reached or answered with something unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// What [`BundleSource::poll`] returns.
pub type PollFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, SourceError>> + Send + 'a>>;

/// A place bundles arrive from.
pub trait BundleSource: Send {
    /// The source, for logs and status (`nats://127.0.0.1:4222/production`).
    fn describe(&self) -> String;

    /// Waits up to `wait` for a change, then checks the source; returns the bundle's bytes
    /// when they differ from what this source returned last, `None` when nothing changed.
    /// With a zero `wait` it checks at once.
    fn poll(&mut self, wait: Duration) -> PollFuture<'_>;
}

/// Parses a `--bundle` argument (see the table above).
pub fn open(spec: &str) -> Result<Box<dyn BundleSource>, SourceError> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        #[cfg(feature = "http")]
        return Ok(Box::new(HttpSource::new(spec)?));
        #[cfg(not(feature = "http"))]
        return Err(SourceError(
            "this build has no HTTP source (feature `http`)".into(),
        ));
    }
    if spec.starts_with("nats://") {
        #[cfg(feature = "nats")]
        return Ok(Box::new(NatsSource::parse(spec)?));
        #[cfg(not(feature = "nats"))]
        return Err(SourceError(
            "this build has no NATS source (feature `nats`)".into(),
        ));
    }
    if spec.contains("://") {
        return Err(SourceError(format!(
            "unknown bundle source `{spec}` (expected a file, http(s):// or nats://)"
        )));
    }
    let path = spec.strip_prefix("file:").unwrap_or(spec);
    Ok(Box::new(FileSource::new(path)))
}
