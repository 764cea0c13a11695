//! What the loopback benches `pdp_server` and `latency` share: keep-alive HTTP/1 client
//! connections and latency histograms.

use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1 connection to `addr` (`TCP_NODELAY` on); its driver runs as a task of
/// the current runtime and ends when the sender is dropped.
pub(crate) async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1 handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends `request` on `sender` once it is ready and reads the whole answer: its status and body.
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Latencies in nanoseconds, from 1 ns to 60 s, three significant digits (an HDR histogram:
/// the error of a percentile is at most 0.1 % of its value).
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Self(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"))
    }

    /// Counts one latency; one beyond 60 s counts as 60 s.
    pub(crate) fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(nanos.max(1));
    }

    /// Adds the counts of `other`.
    pub(crate) fn merge(&mut self, other: &Self) {
        // Both have the same bounds, so no value of `other` is out of range.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q` (0.5 = p50), or zero when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.0.value_at_quantile(q))
    }

    /// `p50 … µs, p99 … µs, p99.9 … µs, max … µs`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "p50 {}, p99 {}, p99.9 {}, max {}",
            micros(self.quantile(0.50)),
            micros(self.quantile(0.99)),
            micros(self.quantile(0.999)),
            micros(Duration::from_nanos(self.0.max())),
        )
    }
}

/// `123 µs` (whole microseconds from 100 µs on, one decimal below).
pub(crate) fn micros(latency: Duration) -> String {
    let us = latency.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// `a / b` of two latencies.
pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
