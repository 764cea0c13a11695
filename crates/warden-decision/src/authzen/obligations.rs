//! Obligations on the wire as the AuthZEN Obligations Profile 1.0 (draft 1) has them:
//! `context.obligations` is an array of `{"id", "type", "properties"}`.
//!
//! | Warden obligation | profile obligation |
//! |---|---|
//! | `step_up` | `step-up`: `acr_value` (the first of `acr_values`), with `acr_values` and `max_age` as Warden wrote them |
//! | `redact`, `filter_rows`, `mask_columns`, `audit`, a custom type | `custom` with `properties.vendor` = `"warden"` and the Warden obligation's members (its `type` included) |
//!
//! Reading is stricter than writing. A `step-up` that names `amr_values`, a `notification`, a
//! `session_termination`, a `custom` of another vendor, or any other type becomes an obligation
//! no Warden PEP carries out unless a handler for it is registered: the PEP denies, as the
//! profile requires of a PEP that cannot comply. A malformed obligation object (no `id`, no
//! `type`, `properties` not an object) is an error, never dropped.
//!
//! ```
//! use warden_decision::Obligation;
//! use warden_decision::authzen::{obligation_from_profile, obligation_to_profile};
//!
//! let redact = Obligation::from_json(serde_json::json!({"type": "redact", "paths": ["$.ssn"]})).unwrap();
//! let wire = obligation_to_profile(0, &redact);
//! assert_eq!(wire["type"], "custom");
//! assert_eq!(wire["properties"]["vendor"], "warden");
//! assert_eq!(obligation_from_profile(wire).unwrap(), redact);
//! ```

use serde_json::{Map, Value, json};

use crate::obligation::{CustomObligation, Obligation};

/// The `properties.vendor` of Warden's obligations carried as the profile's `custom` type.
pub const VENDOR: &str = "warden";

/// The obligation types the Warden PDP server issues: its `supported_obligations` metadata.
pub const SUPPORTED_OBLIGATIONS: [&str; 2] = ["step-up", "custom"];

/// The profile type an obligation travels as.
pub fn profile_type(obligation: &Obligation) -> &'static str {
    match obligation {
        Obligation::StepUp(_) => "step-up",
        _ => "custom",
    }
}

/// The profile object of a Warden obligation; `index` makes its `id` (`obl-1`, `obl-2`, …)
/// unique within the response.
pub fn obligation_to_profile(index: usize, obligation: &Obligation) -> Value {
    let id = format!("obl-{}", index.saturating_add(1));
    let members = match obligation.to_json() {
        Value::Object(members) => members,
        _ => Map::new(),
    };
    match obligation {
        Obligation::StepUp(step_up) => {
            let mut properties = Map::new();
            let first = step_up
                .acr_values
                .split_ascii_whitespace()
                .next()
                .unwrap_or_default();
            properties.insert("acr_value".into(), Value::String(first.to_owned()));
            properties.insert(
                "acr_values".into(),
                Value::String(step_up.acr_values.clone()),
            );
            if let Some(max_age) = step_up.max_age {
                properties.insert("max_age".into(), json!(max_age));
            }
            json!({"id": id, "type": "step-up", "properties": properties})
        }
        _ => {
            let mut properties = Map::new();
            properties.insert("vendor".into(), Value::String(VENDOR.to_owned()));
            properties.extend(members);
            json!({"id": id, "type": "custom", "properties": properties})
        }
    }
}

/// Whether an element of `context.obligations` is a profile object rather than a Warden
/// obligation as earlier servers sent them (`{"type": "redact", "paths": […]}`).
pub fn is_profile_object(value: &Value) -> bool {
    value.get("id").is_some() && value.get("properties").is_some()
}

/// The Warden obligation a profile object asks for. Types Warden cannot carry out become a
/// [`CustomObligation`] named after the profile type, which a PEP without a handler for it
/// refuses.
pub fn obligation_from_profile(value: Value) -> Result<Obligation, String> {
    let Value::Object(mut object) = value else {
        return Err("an obligation is not a JSON object".into());
    };
    match object.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => {}
        _ => return Err("an obligation has no string `id`".into()),
    }
    let kind = match object.remove("type") {
        Some(Value::String(kind)) if !kind.is_empty() => kind,
        _ => return Err("an obligation has no string `type`".into()),
    };
    let Some(Value::Object(mut properties)) = object.remove("properties") else {
        return Err(format!(
            "the `{kind}` obligation's `properties` is not an object"
        ));
    };
    let unenforceable = |kind: &str, properties: Map<String, Value>| {
        Ok(Obligation::Custom(CustomObligation {
            kind: kind.to_owned(),
            fields: properties,
        }))
    };
    match kind.as_str() {
        "step-up" => {
            let acr_value = match properties.get("acr_value") {
                Some(Value::String(acr)) if !acr.is_empty() => acr.clone(),
                _ => return Err("the `step-up` obligation has no string `acr_value`".into()),
            };
            if properties.contains_key("amr_values") {
                // Warden's step-up challenge names classes, not methods: it cannot demand these.
                return unenforceable("step-up", properties);
            }
            let acr_values = match properties.remove("acr_values") {
                Some(Value::String(values)) => values,
                None => acr_value,
                Some(_) => {
                    return Err("the `step-up` obligation's `acr_values` is not a string".into());
                }
            };
            let mut warden = Map::new();
            warden.insert("type".into(), Value::String("step_up".into()));
            warden.insert("acr_values".into(), Value::String(acr_values));
            if let Some(max_age) = properties.remove("max_age") {
                warden.insert("max_age".into(), max_age);
            }
            Obligation::from_json(Value::Object(warden)).map_err(|e| e.0)
        }
        "custom" if properties.get("vendor") == Some(&Value::String(VENDOR.to_owned())) => {
            properties.remove("vendor");
            Obligation::from_json(Value::Object(properties)).map_err(|e| e.0)
        }
        _ => unenforceable(&kind, properties),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn warden(value: Value) -> Obligation {
        Obligation::from_json(value).unwrap()
    }

    #[test]
    fn every_warden_obligation_round_trips_with_a_unique_id() {
        let obligations = [
            warden(json!({"type": "redact", "paths": ["$..ssn"], "with": "last4"})),
            warden(json!({"type": "audit", "level": "high", "tags": ["hipaa"]})),
            warden(json!({"type": "step_up", "acr_values": "urn:a urn:b", "max_age": 300})),
            warden(
                json!({"type": "mask_columns", "table": "patients", "columns": {"ssn": "last4"}}),
            ),
            warden(json!({"type": "watermark", "text": "x"})),
        ];
        let wire: Vec<Value> = obligations
            .iter()
            .enumerate()
            .map(|(i, o)| obligation_to_profile(i, o))
            .collect();
        let ids: std::collections::BTreeSet<&str> =
            wire.iter().map(|w| w["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), wire.len());
        for item in &wire {
            assert!(item["properties"].is_object());
            assert!(is_profile_object(item));
        }
        assert_eq!(wire[2]["type"], "step-up");
        assert_eq!(wire[2]["properties"]["acr_value"], "urn:a");
        for (o, w) in obligations.iter().zip(wire) {
            assert_eq!(&obligation_from_profile(w).unwrap(), o);
        }
    }

    #[test]
    fn types_warden_cannot_carry_out_are_custom_obligations_a_pep_refuses() {
        for (value, kind) in [
            (
                json!({"id": "1", "type": "notification", "properties": {"to": "a@example.com", "body": "x"}}),
                "notification",
            ),
            (
                json!({"id": "1", "type": "session_termination", "properties": {"subject": "jdoe"}}),
                "session_termination",
            ),
            (
                json!({"id": "1", "type": "custom", "properties": {"vendor": "example-dlp", "action": "watermark"}}),
                "custom",
            ),
            (
                json!({"id": "1", "type": "custom", "properties": {"action": "watermark"}}),
                "custom",
            ),
            (
                json!({"id": "1", "type": "step-up", "properties": {"acr_value": "urn:a", "amr_values": ["hwk"]}}),
                "step-up",
            ),
        ] {
            match obligation_from_profile(value.clone()).unwrap() {
                Obligation::Custom(custom) => assert_eq!(custom.kind, kind, "{value}"),
                other => panic!("{value} became {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_obligation_objects_are_errors() {
        for value in [
            json!({"type": "step-up", "properties": {"acr_value": "a"}}),
            json!({"id": "", "type": "custom", "properties": {}}),
            json!({"id": "1", "properties": {}}),
            json!({"id": "1", "type": "custom", "properties": []}),
            json!({"id": "1", "type": "custom"}),
            json!({"id": "1", "type": "step-up", "properties": {}}),
            json!({"id": "1", "type": "step-up", "properties": {"acr_value": 3}}),
            json!({"id": "1", "type": "custom", "properties": {"vendor": "warden", "type": "redact"}}),
            json!("obl"),
        ] {
            assert!(obligation_from_profile(value.clone()).is_err(), "{value}");
        }
    }
}
