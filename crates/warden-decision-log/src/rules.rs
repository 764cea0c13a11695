//! Masking, dropping and outcome filters, applied to an event before anything is written.
//!
//! ```
//! use serde_json::json;
//! use warden_decision_log::{Rules, Mask};
//! use warden_telemetry::Outcome;
//!
//! let rules = Rules::new()
//!     .outcomes([Outcome::Deny, Outcome::Unavailable])
//!     .mask("/attributes/email", Mask::Replace(json!("[MASKED]")))
//!     .mask("/attributes/claims/*/phone", Mask::Remove)
//!     .drop_when("/resource", json!("/health"));
//! let mut event = json!({"outcome": "deny", "resource": "/p",
//!     "attributes": {"email": "a@b.c", "claims": [{"phone": "555"}]}});
//! assert!(rules.apply(&mut event));
//! assert_eq!(event["attributes"], json!({"email": "[MASKED]", "claims": [{}]}));
//! assert!(!rules.apply(&mut json!({"outcome": "permit", "resource": "/p"})), "permits are filtered out");
//! assert!(!rules.apply(&mut json!({"outcome": "deny", "resource": "/health"})), "dropped");
//! ```

use serde::Deserialize;
use serde_json::Value;
use warden_telemetry::Outcome;

/// What a mask does to the values at its path.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// Removes the member (or array element).
    Remove,
    /// Replaces the value.
    Replace(Value),
}

/// The rules of a decision log: which outcomes it keeps, which events it drops, which values it
/// masks. An event passes the outcome filter, then the drop rules, then is masked.
///
/// Paths are JSON Pointers (RFC 6901) into the event as it is written (`/attributes/email`,
/// `/subject`), where a segment `*` matches every member of an object or element of an array.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    outcomes: Option<Vec<String>>,
    drops: Vec<(Vec<String>, Value)>,
    masks: Vec<(Vec<String>, Mask)>,
}

impl Rules {
    /// No rules: every event is kept as it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only events with these outcomes (e.g. denies and errors only).
    #[must_use]
    pub fn outcomes(mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.outcomes = Some(
            outcomes
                .into_iter()
                .map(|o| o.as_str().to_owned())
                .collect(),
        );
        self
    }

    /// Drops events whose value at `path` equals `value`.
    #[must_use]
    pub fn drop_when(mut self, path: &str, value: Value) -> Self {
        self.drops.push((segments(path), value));
        self
    }

    /// Masks the values at `path`.
    #[must_use]
    pub fn mask(mut self, path: &str, mask: Mask) -> Self {
        self.masks.push((segments(path), mask));
        self
    }

    /// Whether any drop rule or mask needs the event as a JSON tree.
    pub(crate) fn needs_tree(&self) -> bool {
        !self.drops.is_empty() || !self.masks.is_empty()
    }

    /// Whether the outcome filter keeps `outcome`.
    pub(crate) fn keeps(&self, outcome: &str) -> bool {
        self.outcomes
            .as_ref()
            .is_none_or(|kept| kept.iter().any(|o| o == outcome))
    }

    /// Applies the rules to an event's JSON: `false` when the event is filtered out or dropped,
    /// else `true` with the masks applied.
    pub fn apply(&self, event: &mut Value) -> bool {
        if let Some(outcomes) = &self.outcomes {
            let outcome = event.get("outcome").and_then(Value::as_str).unwrap_or("");
            if !outcomes.iter().any(|o| o == outcome) {
                return false;
            }
        }
        for (path, value) in &self.drops {
            let mut found = false;
            visit(event, path, &mut |v| found |= v == value);
            if found {
                return false;
            }
        }
        for (path, mask) in &self.masks {
            apply_mask(event, path, mask);
        }
        true
    }
}

/// The rules as a configuration file writes them.
///
/// ```toml
/// outcomes = ["deny", "unavailable"]
/// [[mask]]
/// path = "/attributes/email"
/// with = "[MASKED]"      # absent: the member is removed
/// [[drop]]
/// path = "/resource"
/// equals = "/health"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RulesConfig {
    /// The outcomes kept (all when absent).
    #[serde(default)]
    pub outcomes: Option<Vec<Outcome>>,
    /// The masks.
    #[serde(default)]
    pub mask: Vec<MaskConfig>,
    /// The drop rules.
    #[serde(default)]
    pub drop: Vec<DropConfig>,
}

/// One `[[mask]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MaskConfig {
    /// The JSON Pointer (with `*` segments).
    pub path: String,
    /// The replacement; the member is removed when absent.
    #[serde(default)]
    pub with: Option<Value>,
}

/// One `[[drop]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DropConfig {
    /// The JSON Pointer (with `*` segments).
    pub path: String,
    /// The value that drops the event.
    pub equals: Value,
}

impl From<RulesConfig> for Rules {
    fn from(config: RulesConfig) -> Self {
        let mut rules = Rules::new();
        if let Some(outcomes) = config.outcomes {
            rules = rules.outcomes(outcomes);
        }
        for m in config.mask {
            let mask = m.with.map_or(Mask::Remove, Mask::Replace);
            rules = rules.mask(&m.path, mask);
        }
        for d in config.drop {
            rules = rules.drop_when(&d.path, d.equals);
        }
        rules
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn visit(value: &Value, path: &[String], f: &mut dyn FnMut(&Value)) {
    let Some((first, rest)) = path.split_first() else {
        f(value);
        return;
    };
    match value {
        Value::Object(map) if first == "*" => map.values().for_each(|v| visit(v, rest, f)),
        Value::Object(map) => {
            if let Some(v) = map.get(first) {
                visit(v, rest, f);
            }
        }
        Value::Array(items) if first == "*" => items.iter().for_each(|v| visit(v, rest, f)),
        Value::Array(items) => {
            if let Some(v) = first.parse::<usize>().ok().and_then(|i| items.get(i)) {
                visit(v, rest, f);
            }
        }
        _ => {}
    }
}

fn apply_mask(value: &mut Value, path: &[String], mask: &Mask) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = if first == "*" {
                map.keys().cloned().collect()
            } else if map.contains_key(first) {
                vec![first.clone()]
            } else {
                Vec::new()
            };
            for key in keys {
                if last {
                    match mask {
                        Mask::Remove => {
                            map.remove(&key);
                        }
                        Mask::Replace(with) => {
                            map.insert(key, with.clone());
                        }
                    }
                } else if let Some(v) = map.get_mut(&key) {
                    apply_mask(v, rest, mask);
                }
            }
        }
        Value::Array(items) => {
            let indexes: Vec<usize> = if first == "*" {
                (0..items.len()).collect()
            } else {
                first
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < items.len())
                    .into_iter()
                    .collect()
            };
            if last {
                match mask {
                    Mask::Remove => {
                        for i in indexes.into_iter().rev() {
                            items.remove(i);
                        }
                    }
                    Mask::Replace(with) => {
                        for i in indexes {
                            if let Some(item) = items.get_mut(i) {
                                *item = with.clone();
                            }
                        }
                    }
                }
            } else {
                for i in indexes {
                    if let Some(item) = items.get_mut(i) {
                        apply_mask(item, rest, mask);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_reach_every_depth_and_escaped_names() {
        let rules = Rules::new()
            .mask("/attributes/*/ssn", Mask::Replace(json!("***")))
            .mask("/attributes/a~1b", Mask::Remove)
            .mask("/attributes/list/1", Mask::Remove);
        let mut event = json!({"outcome": "permit", "attributes": {
            "p1": {"ssn": "123"}, "p2": {"ssn": "456", "name": "x"}, "a/b": 1, "list": [0, 1, 2]}});
        assert!(rules.apply(&mut event));
        let text = event.to_string();
        assert!(!text.contains("123") && !text.contains("456"), "{text}");
        assert_eq!(event["attributes"]["list"], json!([0, 2]));
        assert!(event["attributes"].get("a/b").is_none());
        assert_eq!(event["attributes"]["p2"]["name"], "x");
    }

    #[test]
    fn an_event_without_an_outcome_is_filtered_out_when_outcomes_are_set() {
        let rules = Rules::new().outcomes([Outcome::Deny]);
        assert!(!rules.apply(&mut json!({"resource": "/x"})));
    }

    #[test]
    fn rules_read_from_toml() {
        let config: RulesConfig = toml::from_str(
            "outcomes = [\"deny\"]\n[[mask]]\npath = \"/subject\"\nwith = \"anon\"\n[[drop]]\npath = \"/action\"\nequals = \"OPTIONS\"\n",
        )
        .unwrap();
        let rules = Rules::from(config);
        let mut event = json!({"outcome": "deny", "subject": "alice", "action": "GET"});
        assert!(rules.apply(&mut event));
        assert_eq!(event["subject"], "anon");
        assert!(!rules.apply(&mut json!({"outcome": "deny", "action": "OPTIONS"})));
        assert!(toml::from_str::<RulesConfig>("outcomes = [\"maybe\"]").is_err());
        assert!(toml::from_str::<RulesConfig>("[[mask]]\npth = \"/x\"").is_err());
    }
}
