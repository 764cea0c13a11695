//! Redaction of JSON bodies by RFC 9535 JSONPath, and the plan a decision's `redact` obligations
//! make.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use serde_json::Value;
use warden_decision::{MaskStrategy, Masked, Masker, Obligation, Redact};

/// How many compiled JSONPath expressions a layer keeps.
const PATH_CACHE_SIZE: usize = 1024;

/// Compiled JSONPath expressions, shared by every request of a layer.
#[derive(Debug, Default)]
pub(crate) struct PathCache(RwLock<HashMap<String, Arc<Query>>>);

impl PathCache {
    fn get(&self, path: &str) -> Result<Arc<Query>, String> {
        if let Some(compiled) = self.0.read().ok().and_then(|m| m.get(path).cloned()) {
            return Ok(compiled);
        }
        let compiled = Arc::new(Query::parse(path)?);
        if let Ok(mut map) = self.0.write() {
            if map.len() >= PATH_CACHE_SIZE {
                map.clear();
            }
            map.insert(path.to_owned(), compiled.clone());
        }
        Ok(compiled)
    }
}

/// What must be hidden in one response: JSON values by path, and headers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    paths: Vec<(Arc<Query>, MaskStrategy)>,
    pub(crate) headers: Vec<HeaderName>,
}

impl Plan {
    /// Adds one `redact` obligation; an invalid path, header name or a strategy the masker
    /// cannot apply makes the obligation impossible to carry out.
    pub(crate) fn add(
        &mut self,
        redact: &Redact,
        cache: &PathCache,
        masker: &Masker,
    ) -> Result<(), String> {
        if !masker.supports(redact.with) {
            return Err(format!(
                "the `{}` mask strategy is not configured on this layer",
                redact.with
            ));
        }
        for path in &redact.paths {
            self.paths.push((cache.get(path)?, redact.with));
        }
        for header in &redact.headers {
            let name = HeaderName::try_from(header.as_str())
                .map_err(|_| format!("invalid header name `{header}`"))?;
            self.headers.push(name);
        }
        Ok(())
    }

    /// Whether the body must be redacted (or only headers removed).
    pub(crate) fn has_paths(&self) -> bool {
        !self.paths.is_empty()
    }

    /// Applies the plan to a document in place.
    pub(crate) fn apply(&self, document: &mut Value, masker: &Masker) -> Result<(), String> {
        if let Some(walk) = self.walk() {
            return walk.apply(document, masker);
        }
        self.select_then_mask(document, masker)
    }

    /// The plan as one walk of the document, when every path is simple.
    fn walk(&self) -> Option<walk::Walk<'_>> {
        let paths = self
            .paths
            .iter()
            .map(|(query, strategy)| query.steps().map(|steps| (steps, *strategy)))
            .collect::<Option<Vec<_>>>()?;
        Some(walk::Walk { paths })
    }

    /// Selects every node first, then masks them: the general way, for any path.
    fn select_then_mask(&self, document: &mut Value, masker: &Masker) -> Result<(), String> {
        // Every node any path selects, by its address in the document, with the strictest
        // strategy asked for it. Nodes do not move until the walk below mutates them.
        let mut targets: Targets = HashMap::default();
        for (path, strategy) in &self.paths {
            path.select(document, &mut |node| {
                targets
                    .entry(address(node))
                    .and_modify(|s| *s = s.stricter(*strategy))
                    .or_insert(*strategy);
            });
        }
        if targets.is_empty() {
            return Ok(());
        }
        if visit(document, &targets, masker)? {
            *document = Value::Null;
        }
        Ok(())
    }
}

/// Selected nodes by address. Addresses need no collision-resistant hash: a multiplicative one
/// is enough and several times cheaper than SipHash on the hot walk.
type Targets = HashMap<usize, MaskStrategy, std::hash::BuildHasherDefault<AddressHasher>>;

#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_right(29);
    }
}

fn address(value: &Value) -> usize {
    std::ptr::from_ref(value) as usize
}

/// Masks the selected nodes of a subtree, children before their parent; returns whether the
/// node itself is to be removed. A container removes its children only after visiting them
/// all, so that no node moves before it is visited.
fn visit(value: &mut Value, targets: &Targets, masker: &Masker) -> Result<bool, String> {
    let here = address(value);
    match value {
        Value::Array(items) => {
            let mut doomed = Vec::new();
            for (i, item) in items.iter_mut().enumerate() {
                if visit(item, targets, masker)? {
                    doomed.push(i);
                }
            }
            if !doomed.is_empty() {
                let mut index = 0;
                let mut doomed = doomed.into_iter().peekable();
                items.retain(|_| {
                    let remove = doomed.next_if_eq(&index).is_some();
                    index += 1;
                    !remove
                });
            }
        }
        Value::Object(members) => {
            let mut doomed = Vec::new();
            for (key, member) in members.iter_mut() {
                if visit(member, targets, masker)? {
                    doomed.push(key.clone());
                }
            }
            for key in doomed {
                members.remove(&key);
            }
        }
        _ => {}
    }
    let Some(strategy) = targets.get(&here) else {
        return Ok(false);
    };
    match masker.mask(*strategy, value).map_err(|e| e.to_string())? {
        Masked::Remove => Ok(true),
        Masked::Value(masked) => {
            *value = masked;
            Ok(false)
        }
    }
}

/// The headers that would let a client get around a redaction, removed from the request.
const REQUEST_HEADERS_TO_DROP: [HeaderName; 4] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];

/// Validators and digests of the original body, removed from a redacted response.
const RESPONSE_HEADERS_TO_DROP: [&str; 9] = [
    "etag",
    "last-modified",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
    "accept-ranges",
    "content-range",
    "content-length",
];

/// Applies `redact` obligations to JSON documents outside of a response: the same code the
/// [`PolicyLayer`](crate::PolicyLayer) runs on response bodies.
///
/// ```
/// use warden_decision::{Masker, Obligation};
/// use warden_http::Redactor;
///
/// let obligation = Obligation::from_json(serde_json::json!({
///     "type": "redact", "paths": ["$.patients[*].ssn"], "with": "last4"
/// })).unwrap();
/// let redactor = Redactor::new(&[obligation], Masker::new()).unwrap();
/// let out = redactor.redact_json(br#"{"patients": [{"ssn": "123-45-6789"}]}"#).unwrap();
/// assert_eq!(out, br#"{"patients":[{"ssn":"***-**-6789"}]}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Redactor {
    plan: Plan,
    masker: Masker,
}

/// Why a redaction could not be prepared or carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedactError(String);

impl Redactor {
    /// A redactor for the `redact` obligations among `obligations` (others are ignored).
    pub fn new(obligations: &[Obligation], masker: Masker) -> Result<Self, RedactError> {
        let cache = PathCache::default();
        let mut plan = Plan::default();
        for obligation in obligations {
            if let Obligation::Redact(redact) = obligation {
                plan.add(redact, &cache, &masker).map_err(RedactError)?;
            }
        }
        Ok(Self { plan, masker })
    }

    /// Redacts a JSON document in place.
    pub fn redact_value(&self, document: &mut Value) -> Result<(), RedactError> {
        self.plan.apply(document, &self.masker).map_err(RedactError)
    }

    /// Parses, redacts and serializes a JSON body.
    pub fn redact_json(&self, body: &[u8]) -> Result<Vec<u8>, RedactError> {
        let mut document: Value = serde_json::from_slice(body)
            .map_err(|e| RedactError(format!("the body is not valid JSON: {e}")))?;
        self.redact_value(&mut document)?;
        serialize(&document, body.len()).map_err(RedactError)
    }
}

/// Prepares a request whose response will be redacted: no partial or conditional responses, and
/// an identity encoding, so that the handler returns a full, plain body.
pub(crate) fn prepare_request(parts: &mut http::request::Parts) {
    for name in &REQUEST_HEADERS_TO_DROP {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// Whether the request asks to switch protocols: an HTTP/1.1 `Upgrade` (WebSocket and others)
/// or a `CONNECT` (HTTP/2 extended CONNECT, RFC 8441, and tunnels). What goes over the
/// switched connection never passes the PEP, so no response obligation can be carried out on it.
pub(crate) fn asks_to_switch_protocols(parts: &http::request::Parts) -> bool {
    parts.method == http::Method::CONNECT
        || parts.headers.contains_key(header::UPGRADE)
        || parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// A redaction due on a response.
#[derive(Debug, Clone)]
pub(crate) struct Redaction {
    pub(crate) plan: Plan,
    pub(crate) masker: Masker,
    pub(crate) limit: usize,
    pub(crate) head: bool,
    /// Bodies larger than this are redacted off the runtime's worker threads.
    pub(crate) blocking_threshold: usize,
}

/// What to do with a response before reading its body.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No body to redact: stream the response (its headers already cleaned).
    Pass,
    /// A response without a body (`HEAD`, 204): send it with an empty body.
    Empty,
    /// Read the body (up to the limit), then redact it.
    Buffer { gzip: bool },
    /// Never send this body.
    Withhold(String),
}

impl Redaction {
    /// Cleans the headers of the response and decides what to do with its body.
    pub(crate) fn inspect(&self, parts: &mut http::response::Parts) -> Verdict {
        for name in &self.plan.headers {
            parts.headers.remove(name);
        }
        let status = parts.status;
        // After a 101 the connection carries whatever the handler writes, past any inspection;
        // another 1xx as the final response has no body to inspect either.
        if status.is_informational() {
            return Verdict::Withhold(format!(
                "a {status} response cannot be inspected for the redaction it is due"
            ));
        }
        if !self.plan.has_paths() {
            return Verdict::Pass;
        }
        if status == StatusCode::PARTIAL_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Verdict::Withhold(format!("a {status} response cannot be redacted"));
        }
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        for name in RESPONSE_HEADERS_TO_DROP {
            parts.headers.remove(name);
        }
        if self.head || status == StatusCode::NO_CONTENT {
            return Verdict::Empty;
        }
        if declared_length.is_some_and(|n| n > self.limit as u64) {
            return Verdict::Withhold(format!(
                "the body is larger than the redaction limit of {} bytes",
                self.limit
            ));
        }
        if !is_json(parts.headers.get(header::CONTENT_TYPE)) {
            return Verdict::Withhold("the body is not JSON".into());
        }
        let encodings: Vec<String> = parts
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("unknown").split(','))
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty() && e != "identity")
            .collect();
        match encodings.as_slice() {
            [] => Verdict::Buffer { gzip: false },
            [one] if one == "gzip" || one == "x-gzip" => Verdict::Buffer { gzip: true },
            _ => Verdict::Withhold(format!(
                "the body has a content encoding the PEP cannot decode: {}",
                encodings.join(", ")
            )),
        }
    }

    /// Redacts a complete body; the bytes to send instead, or why nothing may be sent.
    pub(crate) fn redact_body(&self, body: &[u8], gzip: bool) -> Result<Vec<u8>, String> {
        tracing::trace!(target: "warden::redaction", bytes = body.len(), gzip, "redacting a body");
        let decoded;
        let body = if gzip {
            decoded = gunzip(body, self.limit)?;
            decoded.as_slice()
        } else {
            body
        };
        let mut document: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        self.plan.apply(&mut document, &self.masker)?;
        serialize(&document, body.len())
    }
}

/// Serializes a redacted document into a buffer the size of the body it came from (a redacted
/// body is seldom larger), as `serde_json::to_vec` would.
fn serialize(document: &Value, capacity: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, document)
        .map_err(|e| format!("the redacted body does not serialize: {e}"))?;
    Ok(out)
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip body does not decode: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "the decoded body is larger than the redaction limit of {limit} bytes"
        ));
    }
    Ok(out)
}

/// `application/json` or any `+json` type, parameters ignored, case-insensitive.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "application" && (subtype == "json" || subtype.ends_with("+json"))
}

mod offload;
mod query;
#[cfg(test)]
mod tests;
mod walk;

pub use offload::DEFAULT_REDACTION_BLOCKING_THRESHOLD;
pub(crate) use offload::Redacting;
use query::Query;
