//! Redaction of JSON bodies by RFC 9535 JSONPath, and the plan a decision's `redact` obligations
//! make.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use serde_json::Value;
use serde_json_path::JsonPath;
use warden_core::{MaskStrategy, Masked, Masker, Redact};

/// How many compiled JSONPath expressions a layer keeps.
const PATH_CACHE_SIZE: usize = 1024;

/// Compiled JSONPath expressions, shared by every request of a layer.
#[derive(Debug, Default)]
pub(crate) struct PathCache(RwLock<HashMap<String, Arc<JsonPath>>>);

impl PathCache {
    fn get(&self, path: &str) -> Result<Arc<JsonPath>, String> {
        if let Some(compiled) = self.0.read().ok().and_then(|m| m.get(path).cloned()) {
            return Ok(compiled);
        }
        let compiled =
            Arc::new(JsonPath::parse(path).map_err(|e| format!("invalid JSONPath `{path}`: {e}"))?);
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
    paths: Vec<(Arc<JsonPath>, MaskStrategy)>,
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
        // Every location any path selects, with the strictest strategy asked for it.
        let mut targets: BTreeMap<Vec<Step>, MaskStrategy> = BTreeMap::new();
        for (path, strategy) in &self.paths {
            for location in path.query_located(document).locations() {
                let steps: Vec<Step> = location
                    .iter()
                    .map(|element| match element.as_index() {
                        Some(i) => Step::Index(i),
                        None => Step::Key(element.as_name().unwrap_or_default().to_owned()),
                    })
                    .collect();
                targets
                    .entry(steps)
                    .and_modify(|s| *s = s.stricter(*strategy))
                    .or_insert(*strategy);
            }
        }
        // Reverse document order: children before their parents, later array elements before
        // earlier ones, so that removals never shift a location still to be visited.
        for (steps, strategy) in targets.iter().rev() {
            let Some((last, parent)) = steps.split_last() else {
                // `$` itself.
                *document = match masker
                    .mask(*strategy, document)
                    .map_err(|e| e.to_string())?
                {
                    Masked::Remove => Value::Null,
                    Masked::Value(v) => v,
                };
                continue;
            };
            let Some(container) = walk(document, parent) else {
                continue;
            };
            match (container, last) {
                (Value::Object(members), Step::Key(key)) => {
                    let Some(value) = members.get_mut(key) else {
                        continue;
                    };
                    match masker.mask(*strategy, value).map_err(|e| e.to_string())? {
                        Masked::Remove => {
                            members.remove(key);
                        }
                        Masked::Value(v) => *value = v,
                    }
                }
                (Value::Array(items), Step::Index(i)) => {
                    let Some(value) = items.get_mut(*i) else {
                        continue;
                    };
                    match masker.mask(*strategy, value).map_err(|e| e.to_string())? {
                        Masked::Remove => {
                            items.remove(*i);
                        }
                        Masked::Value(v) => *value = v,
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// One step of a normalized path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Index(usize),
    Key(String),
}

fn walk<'v>(mut value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    for step in steps {
        value = match (value, step) {
            (Value::Object(members), Step::Key(key)) => members.get_mut(key)?,
            (Value::Array(items), Step::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
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

/// A redaction due on a response.
#[derive(Debug, Clone)]
pub(crate) struct Redaction {
    pub(crate) plan: Plan,
    pub(crate) masker: Masker,
    pub(crate) limit: usize,
    pub(crate) head: bool,
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
        if !self.plan.has_paths() {
            return Verdict::Pass;
        }
        let status = parts.status;
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
        if self.head || status.is_informational() || status == StatusCode::NO_CONTENT {
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
        serde_json::to_vec(&document)
            .map_err(|e| format!("the redacted body does not serialize: {e}"))
    }
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

#[cfg(test)]
mod tests;
