//! The W3C trace context of the request being decided, carried to remote PDPs.
//!
//! A PEP that knows the trace of the request it guards (the HTTP PEP reads the incoming
//! `traceparent` header) runs the decision inside [`TraceContext::scope`]. A remote PDP client reads
//! [`TraceContext::current`] and sends a `traceparent` header naming a new child span, so the PDP's
//! own spans join the caller's trace.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use warden_decision::TraceContext;
//!
//! let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let context = TraceContext::parse(incoming).unwrap();
//! let outgoing = context
//!     .scope(async { TraceContext::current().map(|c| c.child().traceparent()) })
//!     .await
//!     .unwrap();
//! assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert!(outgoing.ends_with("-01"));
//! assert_ne!(outgoing, incoming);
//! assert!(TraceContext::current().is_none());
//! # });
//! ```

use std::fmt;
use std::future::Future;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context (`traceparent`, version 00) and the request id that goes with it.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    span_id: String,
    flags: String,
    request_id: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` header value. Returns `None` for anything that is not a valid
    /// version-00-compatible header (wrong lengths, upper-case hex, all-zero ids, version `ff`).
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut fields = traceparent.trim().split('-');
        let (Some(version), Some(trace_id), Some(span_id), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && fields.next().is_some() {
            return None;
        }
        let valid = is_hex(version, 2)
            && version != "ff"
            && is_hex(trace_id, 32)
            && is_hex(span_id, 16)
            && is_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        valid.then(|| Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
            request_id: None,
        })
    }

    /// A new trace (random trace and span ids, sampled).
    pub fn new_root() -> Self {
        Self {
            trace_id: uuid::Uuid::now_v7().simple().to_string(),
            span_id: random_span_id(),
            flags: "01".to_owned(),
            request_id: None,
        }
    }

    /// The same trace with a request id (sent as `X-Request-ID`).
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// A child span of this one: same trace id and flags, a new span id.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_span_id(),
            flags: self.flags.clone(),
            request_id: self.request_id.clone(),
        }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The 16-hex-digit span id.
    pub fn span_id(&self) -> &str {
        &self.span_id
    }

    /// The request id, if one was attached.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The `traceparent` header value (version 00).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }

    /// The trace context of the decision being made on this task, if a PEP set one.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this trace context as [`TraceContext::current`].
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 16 hex digits from the random half of a UUIDv7, never all zeros.
fn random_span_id() -> String {
    let bytes = uuid::Uuid::now_v7().into_bytes();
    let mut id = u64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    if id == 0 {
        id = 1;
    }
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn parses_valid_and_refuses_invalid_headers() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(valid);
        assert_eq!(parsed.map(|c| c.traceparent()).as_deref(), Some(valid));
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(invalid).is_none(), "{invalid:?}");
        }
    }

    #[test]
    fn children_keep_the_trace_and_change_the_span() {
        let root = TraceContext::new_root();
        assert_eq!(root.trace_id().len(), 32);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert!(TraceContext::parse(&child.traceparent()).is_some());
    }

    #[tokio::test]
    async fn current_is_scoped_to_the_future() {
        assert!(TraceContext::current().is_none());
        let context = TraceContext::new_root().with_request_id("req-1");
        let seen = context
            .clone()
            .scope(async { TraceContext::current() })
            .await;
        assert_eq!(seen, Some(context));
        assert!(TraceContext::current().is_none());
    }
}
