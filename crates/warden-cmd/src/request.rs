//! The JSON arguments every subcommand reads the same way: `--request`, `--subject`, `--action`,
//! `--resource`, `--context`.
//!
//! * A value is JSON, or `@path` to read it from a file (`@-` reads stdin).
//! * A subject is `{"id": …}` with an optional `type` (default `user`) and `properties`.
//! * An action is a bare name (`GET`, `select`) or `{"name": …, "properties": …}`.
//! * A resource is `{"type": …, "id": …}` with optional `properties`.
//! * A context is a JSON object.

use std::io::Read as _;

use serde_json::{Map, Value};
use warden_decision::{AccessRequest, Action, Properties, Resource, Subject};

/// The text of a JSON argument: inline, `@file`, or `@-` for stdin.
pub(crate) fn text(flag: &str, value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some("-") => stdin(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{path}` (given to `{flag}`): {e}")),
        None => Ok(value.to_owned()),
    }
}

/// Everything on standard input.
pub(crate) fn stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(text)
}

fn json(flag: &str, value: &str) -> Result<Value, String> {
    let text = text(flag, value)?;
    warden_decision::numbers::check(text.as_bytes()).map_err(|e| format!("`{flag}`: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("`{flag}` is not JSON: {e}"))
}

/// A subject: `type` defaults to `user`.
pub(crate) fn subject(flag: &str, value: &str) -> Result<Subject, String> {
    subject_from(flag, json(flag, value)?)
}

fn subject_from(flag: &str, mut value: Value) -> Result<Subject, String> {
    let Value::Object(fields) = &mut value else {
        return Err(format!(
            "`{flag}` is not a subject: give an object such as {{\"id\": \"nina\"}}"
        ));
    };
    fields
        .entry("type")
        .or_insert_with(|| Value::String("user".into()));
    serde_json::from_value(value).map_err(|e| format!("`{flag}` is not a subject: {e}"))
}

/// An action: a bare name or an object.
pub(crate) fn action(flag: &str, value: &str) -> Result<Action, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('@') {
        serde_json::from_value(json(flag, value)?)
            .map_err(|e| format!("`{flag}` is not an action: {e}"))
    } else if trimmed.is_empty() {
        Err(format!(
            "`{flag}` is empty: give an action name such as `GET`"
        ))
    } else {
        Ok(Action::new(trimmed))
    }
}

/// A resource: `type` and `id` are required.
pub(crate) fn resource(flag: &str, value: &str) -> Result<Resource, String> {
    serde_json::from_value(json(flag, value)?)
        .map_err(|e| format!("`{flag}` is not a resource: {e}"))
}

/// A context: a JSON object.
pub(crate) fn context(flag: &str, value: &str) -> Result<Properties, String> {
    match json(flag, value)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(format!("`{flag}` is not a JSON object")),
    }
}

/// The members of an access request given one by one, over an optional whole request.
#[derive(Debug, Default)]
pub(crate) struct RequestArgs<'a> {
    /// `--request`: the whole request.
    pub(crate) request: Option<&'a str>,
    /// `--subject`.
    pub(crate) subject: Option<&'a str>,
    /// `--action`.
    pub(crate) action: Option<&'a str>,
    /// `--resource`.
    pub(crate) resource: Option<&'a str>,
    /// `--context`.
    pub(crate) context: Option<&'a str>,
}

impl RequestArgs<'_> {
    /// Builds the access request: `--request` (or standard input when no member is given at
    /// all), with each member given on its own replacing the request's.
    pub(crate) fn build(&self) -> Result<AccessRequest, String> {
        let members = [self.subject, self.action, self.resource, self.context];
        let mut base: Map<String, Value> = match self.request {
            Some(value) => match json("--request", value)? {
                Value::Object(fields) => fields,
                _ => return Err("`--request` is not a JSON object".into()),
            },
            None if members.iter().all(Option::is_none) => {
                let text = stdin()?;
                warden_decision::numbers::check(text.as_bytes())
                    .map_err(|e| format!("the request on standard input: {e}"))?;
                match serde_json::from_str(&text) {
                    Ok(Value::Object(fields)) => fields,
                    Ok(_) => {
                        return Err("the request on standard input is not a JSON object: pass \
                                    `--request`, or `--subject`, `--action` and `--resource`"
                            .into());
                    }
                    Err(e) => {
                        return Err(format!("the request on standard input is not JSON: {e}"));
                    }
                }
            }
            None => Map::new(),
        };
        if let Some(value) = self.subject {
            let subject = subject("--subject", value)?;
            base.insert("subject".into(), to_value(&subject)?);
        } else if let Some(given) = base.remove("subject") {
            // The same rule as `--subject`: `type` defaults to `user`.
            base.insert(
                "subject".into(),
                to_value(&subject_from("--request", given)?)?,
            );
        }
        if let Some(value) = self.action {
            base.insert("action".into(), to_value(&action("--action", value)?)?);
        }
        if let Some(value) = self.resource {
            base.insert(
                "resource".into(),
                to_value(&resource("--resource", value)?)?,
            );
        }
        if let Some(value) = self.context {
            base.insert(
                "context".into(),
                Value::Object(context("--context", value)?),
            );
        }
        for (member, flag) in [
            ("subject", "--subject"),
            ("action", "--action"),
            ("resource", "--resource"),
        ] {
            if !base.contains_key(member) {
                return Err(format!(
                    "the request has no {member}: pass `{flag}` or a `--request` that has one"
                ));
            }
        }
        serde_json::from_value(Value::Object(base))
            .map_err(|e| format!("the request is not an AuthZEN access request: {e}"))
    }
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot build the request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_build_a_request_with_the_default_subject_type() {
        let args = RequestArgs {
            subject: Some(r#"{"id": "nina", "properties": {"role": "nurse"}}"#),
            action: Some("GET"),
            resource: Some(r#"{"type": "route", "id": "/clinics"}"#),
            context: Some(r#"{"acr": "urn:mfa"}"#),
            ..RequestArgs::default()
        };
        let request = args.build().unwrap();
        assert_eq!(request.subject.kind, "user");
        assert_eq!(request.action.name, "GET");
        assert_eq!(request.resource.id, "/clinics");
        assert_eq!(request.context["acr"], "urn:mfa");
    }

    #[test]
    fn members_replace_those_of_the_request_and_the_subject_rule_is_the_same() {
        let args = RequestArgs {
            request: Some(
                r#"{"subject": {"id": "a"}, "action": {"name": "GET"},
                    "resource": {"type": "route", "id": "/x"}}"#,
            ),
            action: Some(r#"{"name": "POST", "properties": {"m": 1}}"#),
            ..RequestArgs::default()
        };
        let request = args.build().unwrap();
        assert_eq!(
            request.subject.kind, "user",
            "type defaults in --request too"
        );
        assert_eq!(request.action.name, "POST");
    }

    #[test]
    fn errors_name_the_flag() {
        let cases = [
            (
                RequestArgs {
                    subject: Some("nina"),
                    ..RequestArgs::default()
                },
                "`--subject` is not JSON",
            ),
            (
                RequestArgs {
                    subject: Some(r#"{"id": "a"}"#),
                    action: Some("GET"),
                    ..RequestArgs::default()
                },
                "pass `--resource`",
            ),
            (
                RequestArgs {
                    subject: Some(r#"{"id": "a"}"#),
                    action: Some(""),
                    ..RequestArgs::default()
                },
                "`--action` is empty",
            ),
            (
                RequestArgs {
                    subject: Some("[1]"),
                    ..RequestArgs::default()
                },
                "`--subject` is not a subject",
            ),
            (
                RequestArgs {
                    context: Some("[1]"),
                    ..RequestArgs::default()
                },
                "`--context` is not a JSON object",
            ),
            (
                RequestArgs {
                    resource: Some(r#"{"id": "x"}"#),
                    ..RequestArgs::default()
                },
                "`--resource` is not a resource",
            ),
        ];
        for (args, message) in cases {
            let error = args.build().unwrap_err();
            assert!(error.contains(message), "{error}");
        }
    }
}
