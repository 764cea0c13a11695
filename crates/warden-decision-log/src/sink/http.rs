//! OPA-style decision log batches: a gzip-compressed JSON array POSTed to an HTTP endpoint.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{Record, ShipFuture, Sink, SinkError};

/// POSTs each batch as a gzip-compressed JSON array of events (`Content-Encoding: gzip`,
/// `Content-Type: application/json`), as OPA's decision log plugin does; any 2xx answer
/// acknowledges the batch.
///
/// ```
/// use warden_decision_log::HttpBatchSink;
///
/// let sink = HttpBatchSink::new("http://127.0.0.1:8181/logs").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HttpBatchSink {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpBatchSink {
    /// Posts to `url`, with a 10 s timeout per batch.
    pub fn new(url: &str) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(url).map_err(|e| SinkError::new("http", e))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SinkError::new("http", e))?;
        Ok(Self { client, url })
    }
}

/// The gzip-compressed JSON array of a batch.
fn gzip_array(batch: &[Record]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(b"[")?;
    for (i, record) in batch.iter().enumerate() {
        if i > 0 {
            gz.write_all(b",")?;
        }
        gz.write_all(record.body.as_bytes())?;
    }
    gz.write_all(b"]")?;
    gz.finish()
}

impl Sink for HttpBatchSink {
    fn name(&self) -> &str {
        "http"
    }

    fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a> {
        Box::pin(async move {
            let body = gzip_array(batch).map_err(|e| SinkError::new("http", e))?;
            let response = self
                .client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .map_err(|e| SinkError::new("http", e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(SinkError::new(
                    "http",
                    format!("answered {}", response.status()),
                ))
            }
        })
    }
}
