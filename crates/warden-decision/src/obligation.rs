//! Obligations: what a PEP must carry out when it enforces a decision.
//!
//! The set of types is closed for a PEP (an obligation it has no handler for turns the decision
//! into a deny) and open for extension (a PEP may register a handler for a custom type; see
//! [`CustomObligation`]).
//!
//! ```
//! use warden_decision::{MaskStrategy, Obligation};
//!
//! let o: Obligation = serde_json::from_value(serde_json::json!({
//!     "type": "mask_columns", "table": "patients",
//!     "columns": {"ssn": "last4", "notes": "null"}
//! })).unwrap();
//! let Obligation::MaskColumns(mask) = &o else { unreachable!() };
//! assert_eq!(mask.columns["ssn"], MaskStrategy::Last4);
//!
//! // A known type with a misspelt field is malformed, not silently ignored.
//! let bad = serde_json::json!({"type": "redact", "path": ["$.ssn"]});
//! assert!(serde_json::from_value::<Obligation>(bad).is_err());
//! ```

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::mask::MaskStrategy;
use crate::predicate::{MAX_PREDICATE_DEPTH, Predicate};

/// Something a PEP must do for the decision to hold.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Obligation {
    /// Redact fields of a JSON response (and response headers).
    Redact(Redact),
    /// Only rows of `table` that match the predicate may be read or written.
    FilterRows(FilterRows),
    /// Columns of `table` must be masked.
    MaskColumns(MaskColumns),
    /// The caller must authenticate more strongly (RFC 9470).
    StepUp(StepUp),
    /// An audit record must be written.
    Audit(Audit),
    /// A type this crate does not know; a PEP carries it out only with a registered handler.
    Custom(CustomObligation),
}

impl Obligation {
    /// The obligation's `type` in JSON.
    pub fn type_name(&self) -> &str {
        match self {
            Self::Redact(_) => "redact",
            Self::FilterRows(_) => "filter_rows",
            Self::MaskColumns(_) => "mask_columns",
            Self::StepUp(_) => "step_up",
            Self::Audit(_) => "audit",
            Self::Custom(custom) => &custom.kind,
        }
    }

    /// Parses and validates one obligation from the JSON a policy returned.
    pub fn from_json(value: Value) -> Result<Self, ObligationError> {
        Self::parse(value).map_err(ObligationError)
    }

    fn parse(value: Value) -> Result<Self, String> {
        let Value::Object(mut fields) = value else {
            return Err("an obligation must be a JSON object".into());
        };
        let kind = match fields.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => return Err("obligation `type` must be a string".into()),
            None => return Err("obligation has no `type`".into()),
        };
        fn body<T: serde::de::DeserializeOwned>(
            kind: &str,
            fields: Map<String, Value>,
        ) -> Result<T, String> {
            serde_json::from_value(Value::Object(fields))
                .map_err(|e| format!("malformed `{kind}` obligation: {e}"))
        }
        let obligation = match kind.as_str() {
            "redact" => Self::Redact(body(&kind, fields)?),
            "filter_rows" => Self::FilterRows(body(&kind, fields)?),
            "mask_columns" => Self::MaskColumns(body(&kind, fields)?),
            "step_up" => Self::StepUp(body(&kind, fields)?),
            "audit" => Self::Audit(body(&kind, fields)?),
            "" => return Err("obligation `type` is empty".into()),
            _ => Self::Custom(CustomObligation { kind, fields }),
        };
        obligation.validate()?;
        Ok(obligation)
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Redact(r) => {
                if r.paths.is_empty() && r.headers.is_empty() {
                    return Err("`redact` obligation names no paths and no headers".into());
                }
                if let Some(p) = r.paths.iter().find(|p| !p.starts_with('$')) {
                    return Err(format!("`redact` path `{p}` does not start with `$`"));
                }
                if let Some(h) = r.headers.iter().find(|h| !is_token(h)) {
                    return Err(format!("`redact` header `{h}` is not a header name"));
                }
            }
            Self::FilterRows(f) => {
                if f.table.is_empty() {
                    return Err("`filter_rows` obligation has an empty `table`".into());
                }
                if f.predicate.depth() > MAX_PREDICATE_DEPTH {
                    return Err(format!(
                        "`filter_rows` predicate is deeper than {MAX_PREDICATE_DEPTH}"
                    ));
                }
            }
            Self::MaskColumns(m) => {
                if m.table.is_empty() {
                    return Err("`mask_columns` obligation has an empty `table`".into());
                }
                if m.columns.is_empty() {
                    return Err("`mask_columns` obligation names no columns".into());
                }
            }
            Self::StepUp(s) => {
                let acr = s.acr_values.trim();
                if acr.is_empty() {
                    return Err("`step_up` obligation has empty `acr_values`".into());
                }
                // The value goes into a quoted-string of `WWW-Authenticate`: keep it to
                // visible ASCII without quotes or backslashes.
                if !s
                    .acr_values
                    .bytes()
                    .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
                {
                    return Err(
                        "`step_up` `acr_values` holds characters a header cannot carry".into(),
                    );
                }
            }
            Self::Audit(a) => {
                if let Some(t) = a.tags.iter().find(|t| t.is_empty()) {
                    return Err(format!("`audit` obligation has an empty tag `{t}`"));
                }
            }
            Self::Custom(_) => {}
        }
        Ok(())
    }

    /// The obligation as JSON, with its `type`.
    pub fn to_json(&self) -> Value {
        fn with_type<T: Serialize>(kind: &str, body: &T) -> Value {
            let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut value {
                fields.insert("type".into(), Value::String(kind.into()));
            }
            value
        }
        match self {
            Self::Redact(r) => with_type("redact", r),
            Self::FilterRows(f) => with_type("filter_rows", f),
            Self::MaskColumns(m) => with_type("mask_columns", m),
            Self::StepUp(s) => with_type("step_up", s),
            Self::Audit(a) => with_type("audit", a),
            Self::Custom(c) => with_type(&c.kind, &c.fields),
        }
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The error for an obligation a policy returned that cannot be carried out as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ObligationError(pub String);

impl Serialize for Obligation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Obligation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::parse(value).map_err(D::Error::custom)
    }
}

/// `{"type": "redact", "paths": [...], "with": "last4", "headers": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redact {
    /// RFC 9535 JSONPath expressions selecting the values to hide.
    #[serde(default)]
    pub paths: Vec<String>,
    /// How to hide them (default `remove`).
    #[serde(default = "default_redact_strategy")]
    pub with: MaskStrategy,
    /// Response headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

fn default_redact_strategy() -> MaskStrategy {
    MaskStrategy::Remove
}

/// `{"type": "filter_rows", "table": "patients", "where": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRows {
    /// The table, as the PEP names it (`patients` or `public.patients`).
    pub table: String,
    /// The rows that may be seen and written.
    #[serde(rename = "where")]
    pub predicate: Predicate,
}

/// `{"type": "mask_columns", "table": "patients", "columns": {"ssn": "last4"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskColumns {
    /// The table.
    pub table: String,
    /// Column name to strategy.
    pub columns: BTreeMap<String, MaskStrategy>,
}

/// `{"type": "step_up", "acr_values": "urn:example:mfa", "max_age": 300}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUp {
    /// Space-separated authentication context class references, any of which satisfies.
    pub acr_values: String,
    /// The most seconds since the user last authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

impl StepUp {
    /// Whether an authentication with class `acr` at `auth_time` (Unix seconds) satisfies the
    /// obligation at `now` (Unix seconds).
    pub fn is_satisfied_by(&self, acr: Option<&str>, auth_time: Option<u64>, now: u64) -> bool {
        let Some(acr) = acr else { return false };
        if !self.acr_values.split_ascii_whitespace().any(|v| v == acr) {
            return false;
        }
        match self.max_age {
            None => true,
            Some(max_age) => auth_time
                .is_some_and(|t| t <= now.saturating_add(60) && now.saturating_sub(t) <= max_age),
        }
    }
}

/// How important an audit record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    /// Routine.
    Low,
    /// Noteworthy.
    #[default]
    Medium,
    /// Must be reviewed.
    High,
}

/// `{"type": "audit", "level": "high", "tags": ["hipaa-164.312(b)"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// How important the record is.
    #[serde(default)]
    pub level: AuditLevel,
    /// Free-form tags, e.g. regulatory references.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An obligation of a type this crate does not define.
///
/// A PEP that receives one denies, unless a handler for `kind` was registered with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomObligation {
    /// The obligation's `type`.
    pub kind: String,
    /// Its other members.
    pub fields: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Obligation, ObligationError> {
        Obligation::from_json(v)
    }

    #[test]
    fn parses_every_design_example_and_round_trips() {
        for wire in [
            json!({"type": "redact", "paths": ["$.patients[*].ssn"], "with": "last4"}),
            json!({"type": "filter_rows", "table": "patients", "where": {"eq": [{"column": "clinic_id"}, {"value": "c1"}]}}),
            json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "last4", "notes": "null", "email": "hash"}}),
            json!({"type": "step_up", "acr_values": "urn:example:mfa", "max_age": 300}),
            json!({"type": "audit", "level": "high", "tags": ["hipaa-164.312(b)"]}),
            json!({"type": "x-watermark", "text": "confidential"}),
        ] {
            let o = parse(wire.clone()).unwrap();
            assert_eq!(o.to_json(), wire, "{wire}");
            assert_eq!(serde_json::to_value(&o).unwrap(), wire);
        }
    }

    #[test]
    fn refuses_the_mask_prefix_and_defaults_redact_to_remove() {
        let e = parse(json!({"type": "redact", "paths": ["$.a"], "with": "mask:last4"}));
        assert!(e.unwrap_err().to_string().contains("write `last4`"));
        let o = parse(json!({"type": "redact", "paths": ["$.a"], "with": "last4"})).unwrap();
        assert!(matches!(
            o,
            Obligation::Redact(Redact {
                with: MaskStrategy::Last4,
                ..
            })
        ));
        let o = parse(json!({"type": "redact", "paths": ["$.a"]})).unwrap();
        assert!(matches!(
            o,
            Obligation::Redact(Redact {
                with: MaskStrategy::Remove,
                ..
            })
        ));
    }

    #[test]
    fn rejects_malformed_obligations_with_a_clear_message() {
        let cases = [
            (json!("redact"), "must be a JSON object"),
            (json!({"paths": ["$.a"]}), "has no `type`"),
            (json!({"type": 3}), "must be a string"),
            (json!({"type": ""}), "is empty"),
            (
                json!({"type": "redact", "paths": ["$.a"], "with": "rot13"}),
                "unknown mask strategy `rot13`",
            ),
            (
                json!({"type": "redact", "path": ["$.a"]}),
                "unknown field `path`",
            ),
            (json!({"type": "redact", "paths": []}), "names no paths"),
            (
                json!({"type": "redact", "paths": ["a.b"]}),
                "does not start with `$`",
            ),
            (
                json!({"type": "redact", "headers": ["bad header"]}),
                "not a header name",
            ),
            (
                json!({"type": "mask_columns", "table": "t", "columns": {"ssn": "plain"}}),
                "unknown mask strategy",
            ),
            (
                json!({"type": "mask_columns", "table": "t", "columns": {}}),
                "names no columns",
            ),
            (
                json!({"type": "filter_rows", "table": "t", "where": "1=1"}),
                "malformed `filter_rows`",
            ),
            (
                json!({"type": "step_up", "acr_values": ""}),
                "empty `acr_values`",
            ),
            (
                json!({"type": "step_up", "acr_values": "x\", evil=\"y"}),
                "cannot carry",
            ),
            (
                json!({"type": "step_up", "acr_values": "mfa", "max_age": -1}),
                "malformed `step_up`",
            ),
            (
                json!({"type": "audit", "level": "urgent"}),
                "malformed `audit`",
            ),
        ];
        for (wire, want) in cases {
            let err = parse(wire.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{wire}: {err}");
        }
    }

    #[test]
    fn rejects_a_predicate_deeper_than_the_limit() {
        let mut p = json!({"const": true});
        for _ in 0..MAX_PREDICATE_DEPTH {
            p = json!({"not": p});
        }
        let err = parse(json!({"type": "filter_rows", "table": "t", "where": p})).unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }

    #[test]
    fn step_up_is_satisfied_only_by_a_listed_acr_within_max_age() {
        let s = StepUp {
            acr_values: "urn:mfa urn:hwk".into(),
            max_age: Some(300),
        };
        assert!(s.is_satisfied_by(Some("urn:hwk"), Some(1_000), 1_200));
        assert!(!s.is_satisfied_by(Some("urn:hwk"), Some(1_000), 1_301));
        assert!(!s.is_satisfied_by(Some("urn:pwd"), Some(1_000), 1_000));
        assert!(!s.is_satisfied_by(None, Some(1_000), 1_000));
        assert!(!s.is_satisfied_by(Some("urn:mfa"), None, 1_000));
        assert!(
            !s.is_satisfied_by(Some("urn:mfa"), Some(5_000), 1_000),
            "auth_time in the future"
        );
        assert!(
            !s.is_satisfied_by(Some("urn:mf"), Some(1_000), 1_000),
            "prefix is not a match"
        );
        let no_age = StepUp {
            acr_values: "urn:mfa".into(),
            max_age: None,
        };
        assert!(no_age.is_satisfied_by(Some("urn:mfa"), None, 1_000));
    }
}
