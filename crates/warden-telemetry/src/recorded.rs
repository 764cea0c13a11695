//! Recorded requests: what a decision event keeps of the access request so that `warden replay`
//! can decide it again, with sensitive values replaced by keyed, deterministic pseudonyms.
//!
//! A [`Pseudonymizer`] holds an HMAC-SHA-256 key and the paths of the values to replace
//! (`subject.id`, `subject.properties.email`, `resource.properties.params.*`, ...). The same
//! value always becomes the same pseudonym under the same key, so a policy that compares two
//! recorded values (a claim with a route parameter, a subject with an owner) decides the
//! replayed request as it decided the original, while the log holds no raw value and nobody
//! without the key can test a guess. A value at a path that names an array or object has each
//! of its scalars replaced, so membership (`clinic_id in clinics`) survives too. Pseudonyms are
//! strings: policies that compare a replaced value with a literal, or order numbers, replay
//! differently — leave such paths out.
//!
//! The recorded request goes into the event's `attributes.request`
//! ([`DecisionEvent::record_request`]); [`recorded_request`] reads it back.
//!
//! # Example
//!
//! ```
//! use warden_decision::{AccessRequest, Action, Resource, Subject};
//! use warden_telemetry::{DecisionEvent, Outcome, Pep, Pseudonymizer, recorded_request};
//!
//! let pseudonyms = Pseudonymizer::new(b"a key of at least thirty-two bytes!!").unwrap()
//!     .path("subject.properties.clinics")
//!     .path("resource.properties.params.clinic_id");
//! let request = AccessRequest::new(
//!     Subject::user("nina").with_property("role", "nurse").with_property("clinics", serde_json::json!(["c1"])),
//!     Action::new("GET"),
//!     Resource::new("route", "/clinics/{clinic_id}")
//!         .with_property("params", serde_json::json!({"clinic_id": "c1"})),
//! );
//! let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/clinics/{clinic_id}", Outcome::Permit);
//! event.record_request(&request, &pseudonyms);
//!
//! let replayed = recorded_request(&event).unwrap().unwrap();
//! assert_ne!(replayed.subject.id, "nina");                        // subject.id by default
//! assert_eq!(replayed.subject.properties["role"], "nurse");       // not listed: kept
//! let clinic = &replayed.resource.properties["params"]["clinic_id"];
//! assert_ne!(clinic, "c1");
//! assert_eq!(&replayed.subject.properties["clinics"][0], clinic); // equal values stay equal
//! ```

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use warden_decision::AccessRequest;

use crate::event::DecisionEvent;

/// The shortest key a [`Pseudonymizer`] accepts, in bytes.
pub const MIN_PSEUDONYM_KEY_LEN: usize = 32;

/// The prefix of every pseudonym.
pub const PSEUDONYM_PREFIX: &str = "~p:";

/// The attribute of a decision event that holds the recorded request.
pub const RECORDED_REQUEST: &str = "request";

/// The paths pseudonymised unless others are chosen: who the subject is and how to reach them.
pub const DEFAULT_PSEUDONYM_PATHS: &[&str] = &[
    "subject.id",
    "subject.properties.sub",
    "subject.properties.email",
    "subject.properties.name",
    "subject.properties.phone",
    "context.client_ip",
];

/// Replaces the values at chosen paths of a request with keyed, deterministic pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    paths: Vec<Vec<String>>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// The key is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pseudonym key needs at least {MIN_PSEUDONYM_KEY_LEN} bytes, this one has {0}")]
pub struct ShortKey(pub usize);

impl Pseudonymizer {
    /// A pseudonymizer with `key` and the [`DEFAULT_PSEUDONYM_PATHS`].
    pub fn new(key: &[u8]) -> Result<Self, ShortKey> {
        if key.len() < MIN_PSEUDONYM_KEY_LEN {
            return Err(ShortKey(key.len()));
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| ShortKey(key.len()))?;
        let mut this = Self {
            mac,
            paths: Vec::new(),
        };
        for path in DEFAULT_PSEUDONYM_PATHS {
            this = this.path(path);
        }
        Ok(this)
    }

    /// Also pseudonymise the value at `path`: members separated by dots, `*` for any member
    /// (`resource.properties.params.*`).
    #[must_use]
    pub fn path(mut self, path: &str) -> Self {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if !self.paths.contains(&segments) {
            self.paths.push(segments);
        }
        self
    }

    /// Pseudonymise only the given paths (none of the defaults).
    #[must_use]
    pub fn only(mut self, paths: &[&str]) -> Self {
        self.paths.clear();
        for path in paths {
            self = self.path(path);
        }
        self
    }

    /// The pseudonym of a scalar value: `~p:` and 24 hex digits of HMAC-SHA-256 over its JSON
    /// text (so `"1"` and `1` differ).
    pub fn pseudonym(&self, value: &Value) -> String {
        let mut mac = self.mac.clone();
        mac.update(value.to_string().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 24);
        out.push_str(PSEUDONYM_PREFIX);
        for byte in digest.iter().take(12) {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// The request as JSON, with the values at the paths pseudonymised.
    pub fn record(&self, request: &AccessRequest) -> Value {
        let mut value = serde_json::to_value(request).unwrap_or(Value::Null);
        for path in &self.paths {
            self.replace(&mut value, path);
        }
        value
    }

    fn replace(&self, value: &mut Value, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.replace_all(value);
            return;
        };
        match value {
            Value::Object(map) if first == "*" => {
                for child in map.values_mut() {
                    self.replace(child, rest);
                }
            }
            Value::Object(map) => {
                if let Some(child) = map.get_mut(first.as_str()) {
                    self.replace(child, rest);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.replace(item, path);
                }
            }
            _ => {}
        }
    }

    fn replace_all(&self, value: &mut Value) {
        match value {
            Value::Null => {}
            Value::Object(map) => map.values_mut().for_each(|v| self.replace_all(v)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.replace_all(v)),
            scalar => {
                // A value that is already a pseudonym stays as it is: recording twice is
                // recording once.
                if scalar
                    .as_str()
                    .is_some_and(|s| s.starts_with(PSEUDONYM_PREFIX))
                {
                    return;
                }
                *scalar = Value::String(self.pseudonym(scalar));
            }
        }
    }
}

impl DecisionEvent {
    /// Records `request` in `attributes.request`, pseudonymised by `pseudonyms`, so that
    /// `warden replay` can decide it again.
    pub fn record_request(&mut self, request: &AccessRequest, pseudonyms: &Pseudonymizer) {
        self.attributes
            .insert(RECORDED_REQUEST.into(), pseudonyms.record(request));
    }
}

/// The request recorded in `event` (`None` when it has none), as the PDP will see it again.
pub fn recorded_request(event: &DecisionEvent) -> Option<Result<AccessRequest, String>> {
    event.attributes.get(RECORDED_REQUEST).map(|value| {
        serde_json::from_value(value.clone())
            .map_err(|e| format!("the recorded request is invalid: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_decision::{Action, Resource, Subject};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn request() -> AccessRequest {
        let mut r = AccessRequest::new(
            Subject::user("nina")
                .with_property("email", "nina@example.com")
                .with_property("clinics", json!(["c1", "c2"]))
                .with_property("role", "nurse"),
            Action::new("GET"),
            Resource::new("route", "/p/{id}").with_property("params", json!({"id": "p1"})),
        );
        r.context.insert("client_ip".into(), "10.0.0.7".into());
        r
    }

    #[test]
    fn listed_values_leave_no_trace_and_equal_values_stay_equal() {
        let p = Pseudonymizer::new(KEY)
            .unwrap()
            .path("subject.properties.clinics")
            .path("resource.properties.params.*");
        let recorded = p.record(&request());
        let text = recorded.to_string();
        for secret in ["nina", "10.0.0.7", "\"c1\"", "\"p1\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(recorded["subject"]["properties"]["role"], "nurse");
        assert_eq!(recorded["resource"]["id"], "/p/{id}");
        let again = p.record(&request());
        assert_eq!(recorded, again, "deterministic");
        let other = Pseudonymizer::new(b"another key, also thirty-two bytes long")
            .unwrap()
            .record(&request());
        assert_ne!(recorded["subject"]["id"], other["subject"]["id"], "keyed");
        assert_eq!(
            p.record(&p.record_as_request(&recorded)),
            recorded,
            "idempotent"
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(Pseudonymizer::new(b"short").unwrap_err(), ShortKey(5));
    }

    #[test]
    fn types_are_kept_apart() {
        let p = Pseudonymizer::new(KEY).unwrap();
        assert_ne!(p.pseudonym(&json!("1")), p.pseudonym(&json!(1)));
    }

    impl Pseudonymizer {
        fn record_as_request(&self, value: &Value) -> AccessRequest {
            serde_json::from_value(value.clone()).unwrap()
        }
    }
}
