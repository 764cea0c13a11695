//! A bundle served over HTTP(S), fetched with `If-None-Match` and long polling.

use std::time::{Duration, Instant};

use super::{BundleSource, PollFuture, SourceError};
use crate::format::MAX_ARCHIVE_BYTES;

/// A bundle at an HTTP(S) URL.
///
/// Each poll sends `If-None-Match` with the last `ETag` and `Prefer: wait=<seconds>`; a server
/// that long-polls holds the request until the bundle changes or the wait is over (`304`), one
/// that does not answers at once, and the source then waits out the rest of the interval
/// before asking again.
#[derive(Debug)]
pub struct HttpSource {
    url: String,
    client: reqwest::Client,
    etag: Option<String>,
}

impl HttpSource {
    /// The bundle at `url`.
    pub fn new(url: &str) -> Result<Self, SourceError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SourceError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            etag: None,
        })
    }

    async fn fetch(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, SourceError> {
        let mut request = self
            .client
            .get(&self.url)
            .timeout(wait + Duration::from_secs(10));
        if let Some(etag) = &self.etag {
            request = request.header("if-none-match", etag);
        }
        if !wait.is_zero() {
            request = request.header("prefer", format!("wait={}", wait.as_secs().max(1)));
        }
        let failed = |e: reqwest::Error| SourceError(format!("`{}`: {e}", self.url));
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(SourceError(format!("`{}` answered {status}", self.url)));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ARCHIVE_BYTES as u64)
        {
            return Err(SourceError(format!(
                "`{}` offers a bundle over {MAX_ARCHIVE_BYTES} bytes",
                self.url
            )));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_ARCHIVE_BYTES {
                return Err(SourceError(format!(
                    "`{}` sent a bundle over {MAX_ARCHIVE_BYTES} bytes",
                    self.url
                )));
            }
        }
        let changed = etag.is_none() || etag != self.etag;
        self.etag = etag;
        Ok(changed.then_some(bytes))
    }
}

impl BundleSource for HttpSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn poll(&mut self, wait: Duration) -> PollFuture<'_> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.fetch(wait).await?;
            if result.is_none() {
                // A server that does not long-poll answered at once: wait out the interval.
                let spent = started.elapsed();
                if spent < wait {
                    tokio::time::sleep(wait - spent).await;
                }
            }
            Ok(result)
        })
    }
}
