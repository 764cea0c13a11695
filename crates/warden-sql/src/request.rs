//! The request and response types of a SQL service.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warden_decision::{AccessRequest, Decision, Literal, Obligation, Properties, Subject};

/// A bind parameter value.
///
/// In JSON: `null`, a boolean, a number (integers stay integers), a string, or
/// `{"bytes": "<hex>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes {
        /// The bytes, hex-encoded in JSON.
        #[serde(with = "hex_bytes")]
        bytes: Vec<u8>,
    },
}

impl SqlValue {
    /// The literal a row-filter check compares (bytes have none).
    pub(crate) fn literal(&self) -> Option<Literal> {
        Some(match self {
            Self::Null => Literal::Null,
            Self::Bool(b) => Literal::Bool(*b),
            Self::Int(i) => Literal::Int(*i),
            Self::Float(f) => Literal::Float(*f),
            Self::Text(s) => Literal::String(s.clone()),
            Self::Bytes { .. } => return None,
        })
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl From<bool> for SqlValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let hex = String::deserialize(d)?;
        if hex.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}

/// One statement to run on behalf of a subject.
///
/// ```
/// use warden_decision::Subject;
/// use warden_sql::SqlRequest;
///
/// let request = SqlRequest::new("SELECT name FROM patients WHERE id = $1", Subject::user("nina"))
///     .bind(42_i64)
///     .with_context("request_id", "r-1");
/// assert_eq!(request.params.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlRequest {
    /// The statement, in the dialect of the database.
    pub statement: String,
    /// Its bind parameters, in order (`$1` is the first, and so is the first `?`).
    #[serde(default)]
    pub params: Vec<SqlValue>,
    /// Who runs it.
    pub subject: Subject,
    /// The context of the access requests (time, client address, request id).
    #[serde(default)]
    pub context: Properties,
}

impl SqlRequest {
    /// A request without parameters or context.
    pub fn new(statement: impl Into<String>, subject: Subject) -> Self {
        Self {
            statement: statement.into(),
            params: Vec::new(),
            subject,
            context: Properties::new(),
        }
    }

    /// Appends a bind parameter.
    #[must_use]
    pub fn bind(mut self, value: impl Into<SqlValue>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Adds one context attribute.
    #[must_use]
    pub fn with_context(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }
}

/// What a database service returns: the rows (values as JSON) and how many rows a write
/// changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SqlResponse {
    /// The column names of the result.
    pub columns: Vec<String>,
    /// The rows, each value as JSON (`null`, booleans, numbers, strings; dates and times as
    /// ISO 8601 strings; bytes as hex strings).
    pub rows: Vec<Vec<serde_json::Value>>,
    /// The rows a write inserted, changed or deleted.
    pub rows_affected: u64,
}

/// The outcome of [`SqlPolicy::enforce`](crate::SqlPolicy::enforce): the statement to run
/// instead of the caller's, with the requests and decisions behind it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Enforcement {
    /// The rewritten statement.
    pub statement: Arc<str>,
    /// The parameters to bind with `statement`: the request's, with any the rewrite binds of
    /// its own (the `hash` mask's key pads) in their places. Bind these, not the request's.
    pub params: Vec<SqlValue>,
    /// The access requests, one per (relation, operation).
    pub requests: Vec<AccessRequest>,
    /// The decisions, in the order of the requests (all permits).
    pub decisions: Vec<Decision>,
    /// The obligations carried out (merged across decisions).
    pub obligations: Vec<Obligation>,
    /// Whether the rewrite came from the cache.
    pub cache_hit: bool,
}
