//! Test cases: one format for Rego and Cedar packages, in JSON or YAML.
//!
//! A case file is a list of cases (or `{"cases": [...]}`): `cases.json`, `cases.yaml` or
//! `cases.yml` in the package folder, and every `.json`, `.yaml` or `.yml` file under its
//! `tests/` folder.
//!
//! ```yaml
//! - name: nurse reads a patient of her clinic
//!   request:                       # an access request; subject.type defaults to `user`
//!     subject: {id: nina, properties: {role: nurse, clinics: [c1]}}
//!     action: {name: GET}
//!     resource: {type: route, id: "/clinics/{clinic_id}/patients/{patient_id}"}
//!   expect:
//!     allow: true                  # required: permit (true) or deny (false)
//!     obligations: [redact, {type: redact, paths: ["$..ssn"], with: last4}]
//!     reasons: [not_clinic_member] # optional: codes (or messages) of the reasons
//!     not_applicable: false        # optional
//! ```
//!
//! `obligations` lists every obligation the decision must carry: a bare type matches any
//! obligation of that type, an object must equal one exactly; an obligation the list does not
//! name fails the case, and so does an absent list on a decision with obligations. `reasons`,
//! when given, is the exact set of reason codes (a reason without a code by its message).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use warden_decision::{AccessRequest, Decision, Obligation};

/// The most bytes a case file may hold.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// One case, as read.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) name: String,
    /// The file it came from, relative to the package.
    pub(crate) file: String,
    pub(crate) request: AccessRequest,
    pub(crate) expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    #[serde(alias = "decision")]
    pub(crate) allow: bool,
    #[serde(default)]
    pub(crate) obligations: Vec<Value>,
    #[serde(default)]
    pub(crate) reasons: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) not_applicable: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    request: Value,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFile {
    List(Vec<RawCase>),
    Object { cases: Vec<RawCase> },
}

/// The case files of the package in `dir`, in name order.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in ["cases.json", "cases.yaml", "cases.yml"] {
        let path = dir.join(name);
        if path.is_file() {
            out.push(path);
        }
    }
    let tests = dir.join("tests");
    if let Ok(entries) = std::fs::read_dir(&tests) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_case_file(p))
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

fn is_case_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    !hidden
        && path
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
}

/// Every case of the package in `dir`. A file that does not parse is an error naming it.
pub(crate) fn read(dir: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for path in files(dir) {
        let relative = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
            .len();
        if size > MAX_FILE {
            return Err(format!(
                "`{}` is larger than {MAX_FILE} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let yaml = path.extension().is_some_and(|e| e != "json");
        let raw: RawFile = if yaml {
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            serde_json::from_str(&text)
                .map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?
        };
        let raw = match raw {
            RawFile::List(list) | RawFile::Object { cases: list } => list,
        };
        for case in raw {
            let request = request(case.request)
                .map_err(|e| format!("{}: case `{}`: {e}", path.display(), case.name))?;
            for obligation in &case.expect.obligations {
                expected_obligation(obligation)
                    .map_err(|e| format!("{}: case `{}`: {e}", path.display(), case.name))?;
            }
            cases.push(Case {
                name: case.name,
                file: relative.clone(),
                request,
                expect: case.expect,
            });
        }
    }
    Ok(cases)
}

/// An access request from a case: `subject.type` defaults to `user`, as on the command line.
pub(crate) fn request(mut value: Value) -> Result<AccessRequest, String> {
    if let Some(Value::Object(subject)) = value.get_mut("subject") {
        subject
            .entry("type")
            .or_insert_with(|| Value::String("user".into()));
    }
    serde_json::from_value(value).map_err(|e| format!("the request is invalid: {e}"))
}

/// What an entry of `expect.obligations` asks for.
enum Wanted {
    Type(String),
    Exact(Obligation),
}

fn expected_obligation(value: &Value) -> Result<Wanted, String> {
    match value {
        Value::String(kind) => Ok(Wanted::Type(kind.clone())),
        Value::Object(_) => Obligation::from_json(value.clone())
            .map(Wanted::Exact)
            .map_err(|e| format!("expected obligation {value} is invalid: {e}")),
        other => Err(format!(
            "an expected obligation is a type name or an object, not {other}"
        )),
    }
}

/// A reason as cases name it: its code, or its message without one.
pub(crate) fn reason_key(reason: &warden_decision::Reason) -> String {
    reason
        .code
        .clone()
        .unwrap_or_else(|| reason.message.clone())
}

/// How `decision` differs from `expect`: one line per difference, empty when it matches.
pub(crate) fn compare(expect: &Expect, decision: &Decision) -> Vec<String> {
    let mut diff = Vec::new();
    let word = |allowed: bool| if allowed { "permit" } else { "deny" };
    if expect.allow != decision.allowed {
        diff.push(format!(
            "decision     want {}, got {}",
            word(expect.allow),
            word(decision.allowed)
        ));
    }
    if let Some(want) = expect.not_applicable
        && want != decision.not_applicable
    {
        diff.push(format!(
            "applicable   want not_applicable {want}, got {}",
            decision.not_applicable
        ));
    }
    // Exact obligations first, then types, each matching one actual obligation.
    let mut left: Vec<&Obligation> = decision.obligations.iter().collect();
    let mut missing = Vec::new();
    let wanted: Vec<Wanted> = expect
        .obligations
        .iter()
        .filter_map(|v| expected_obligation(v).ok())
        .collect();
    for want in &wanted {
        if let Wanted::Exact(obligation) = want {
            match left.iter().position(|o| *o == obligation) {
                Some(i) => {
                    left.remove(i);
                }
                None => missing.push(obligation.to_json().to_string()),
            }
        }
    }
    for want in &wanted {
        if let Wanted::Type(kind) = want {
            match left.iter().position(|o| o.type_name() == kind) {
                Some(i) => {
                    left.remove(i);
                }
                None => missing.push(kind.clone()),
            }
        }
    }
    if !missing.is_empty() || !left.is_empty() {
        let mut line = String::from("obligations ");
        if !missing.is_empty() {
            let _ = write!(line, " missing {}", missing.join(", "));
        }
        if !left.is_empty() {
            if !missing.is_empty() {
                line.push(';');
            }
            let extra: Vec<String> = left.iter().map(|o| o.to_json().to_string()).collect();
            let _ = write!(line, " unexpected {}", extra.join(", "));
        }
        diff.push(line);
    }
    if let Some(want) = &expect.reasons {
        let mut want = want.clone();
        want.sort();
        let mut got: Vec<String> = decision.reasons.iter().map(reason_key).collect();
        got.sort();
        if want != got {
            diff.push(format!(
                "reasons      want [{}], got [{}]",
                want.join(", "),
                got.join(", ")
            ));
        }
    }
    if !diff.is_empty() {
        for diagnostic in &decision.diagnostics {
            let class = diagnostic.error.map_or("note", |c| c.as_str());
            diff.push(format!("{class:<12} {}", diagnostic.message));
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(value: Value) -> Expect {
        serde_json::from_value(value).unwrap()
    }

    fn redact(path: &str) -> Obligation {
        Obligation::from_json(json!({"type": "redact", "paths": [path], "with": "last4"})).unwrap()
    }

    #[test]
    fn matching_decision_has_no_difference() {
        let d = Decision::permit().with_obligation(redact("$..ssn"));
        assert!(
            compare(
                &expect(json!({"allow": true, "obligations": ["redact"]})),
                &d
            )
            .is_empty()
        );
        let exact = json!({"allow": true, "obligations": [
            {"type": "redact", "paths": ["$..ssn"], "with": "last4"}]});
        assert!(compare(&expect(exact), &d).is_empty());
    }

    #[test]
    fn every_difference_is_reported() {
        let d = Decision::deny().with_reason("nope");
        let diff = compare(
            &expect(json!({"allow": true, "obligations": ["redact"], "reasons": ["other"]})),
            &d,
        );
        assert_eq!(diff.len(), 3, "{diff:?}");
        assert!(diff[0].contains("want permit, got deny"));
        assert!(diff[1].contains("missing redact"));
        assert!(diff[2].contains("want [other], got [nope]"));
    }

    #[test]
    fn unlisted_obligation_fails_the_case() {
        let d = Decision::permit().with_obligation(redact("$..ssn"));
        let diff = compare(&expect(json!({"allow": true})), &d);
        assert!(diff[0].contains("unexpected"), "{diff:?}");
        // A type listed once matches one obligation, not two.
        let two = d.clone().with_obligation(redact("$..notes"));
        assert_eq!(
            compare(
                &expect(json!({"allow": true, "obligations": ["redact"]})),
                &two
            )
            .len(),
            1
        );
        // An exact obligation with other members does not match.
        let other = json!({"allow": true, "obligations": [
            {"type": "redact", "paths": ["$..notes"], "with": "last4"}]});
        assert!(!compare(&expect(other), &d).is_empty());
    }

    #[test]
    fn malformed_expectations_are_refused() {
        assert!(serde_json::from_value::<Expect>(json!({"obligations": []})).is_err());
        assert!(serde_json::from_value::<Expect>(json!({"allow": true, "alow": 1})).is_err());
        assert!(expected_obligation(&json!(3)).is_err());
        assert!(expected_obligation(&json!({"type": "redact"})).is_err());
    }

    #[test]
    fn subject_type_defaults_to_user() {
        let r = request(json!({"subject": {"id": "a"}, "action": {"name": "GET"},
            "resource": {"type": "route", "id": "/"}}))
        .unwrap();
        assert_eq!(r.subject.kind, "user");
    }
}
