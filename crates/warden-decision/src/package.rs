//! The manifest of a policy package (`warden.toml`) and what it means at decision time.
//!
//! Every engine reads the same manifest: id, version, owner, description, status, scope,
//! regulatory mappings, exceptions and remediation. Three of them act on every decision,
//! whatever the engine, through [`PackageGate`]:
//!
//! * **status** — `active` decides; `shadow` is evaluated and logged (target `warden::shadow`)
//!   but its decision is never enforced: the PDP answers *not applicable*, which combining
//!   skips, so the enforcing package beside it decides; `disabled` decides nothing (not
//!   applicable) and is not evaluated.
//! * **exceptions** — an exception with a `permit` scope turns the package's deny of a matching
//!   request into a permit with an `audit` obligation tagged `exception:<id>`, until it expires;
//!   from its `expires` instant on it no longer applies (a warning is logged in the days before).
//! * **regulations** — stamped on every decision's [`PolicyRevision`], so decision events can be
//!   filtered by control.
//!
//! ```toml
//! id = "clinic"
//! version = "1.0.0"
//! owner = "clinic-platform@example.com"
//! status = "shadow"                       # active | shadow | disabled
//!
//! [[regulations]]
//! framework = "HIPAA"
//! reference = "164.312(b)"
//!
//! [[exceptions]]
//! id = "EX-7"
//! reason = "on-call account during the migration"
//! expires = "2027-01-31"                  # a date (its start, UTC) or an RFC 3339 instant
//! permit = { subject = "user:oncall", action = "GET", resource = "route:/clinics" }
//! ```
//!
//! # Example
//!
//! ```
//! use warden_decision::{AccessRequest, Action, Decision, PackageGate, PackageManifest,
//!     PackageStatus, PolicyRevision, Resource, Subject};
//!
//! let manifest: PackageManifest = serde_json::from_value(serde_json::json!({
//!     "id": "clinic", "version": "1.0.0", "status": "disabled",
//!     "regulations": [{"framework": "HIPAA", "reference": "164.312(b)"}],
//! })).unwrap();
//! assert_eq!(manifest.status(), PackageStatus::Disabled);
//! let gate = PackageGate::new(&manifest).unwrap();
//! let request = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
//! let revision = PolicyRevision::new("clinic", "1.0.0");
//! let decision = gate.decide(&request, revision, || Decision::permit());
//! assert!(!decision.allowed && decision.not_applicable);
//! assert_eq!(decision.policy.regulations, ["HIPAA 164.312(b)"]);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Diagnostic, PolicyRevision, Reason};
use crate::obligation::{Audit, AuditLevel, Obligation};
use crate::request::AccessRequest;

/// How long before an exception expires the gate starts warning.
pub const EXCEPTION_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Whether a package decides, is only observed, or is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageStatus {
    /// Decides and is enforced (the default when the manifest says nothing).
    #[default]
    Active,
    /// Evaluated and logged, never enforced: answers not applicable.
    Shadow,
    /// Not evaluated: answers not applicable.
    Disabled,
}

impl PackageStatus {
    /// `active`, `shadow` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Shadow => "shadow",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for PackageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A regulatory control a package enforces, e.g. HIPAA `164.312(b)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Regulation {
    /// The framework: `HIPAA`, `GDPR`, `SOC2`, ...
    #[serde(default)]
    pub framework: String,
    /// The control within it: `164.312(b)`, `Art. 32`, ...
    #[serde(default)]
    pub reference: String,
    /// The control's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Regulation {
    /// `HIPAA 164.312(b)`.
    pub fn label(&self) -> String {
        format!("{} {}", self.framework, self.reference)
    }
}

/// What a package applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scope {
    /// The enforcement points: `http`, `grpc`, `sql`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pep: Vec<String>,
    /// The resource types its requests name: `route`, `table`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// In words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A time-limited exception to a package's rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Exception {
    /// A stable id (`EX-7`), quoted in the audit tag of the decisions it permits.
    #[serde(default)]
    pub id: String,
    /// Why it was granted.
    #[serde(default)]
    pub reason: String,
    /// When it stops applying: `2027-01-31` (the start of that day, UTC) or an RFC 3339 instant.
    #[serde(default)]
    pub expires: String,
    /// Who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The regulation it waives, as `framework reference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regulation: Option<String>,
    /// The requests it permits; without one the exception is a documented waiver only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit: Option<ExceptionScope>,
}

/// The requests an exception permits: each member must match exactly (`*` matches any id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionScope {
    /// `type:id` of the subject, e.g. `user:oncall` or `service:*`.
    pub subject: String,
    /// The action's name, or `*`.
    pub action: String,
    /// `type:id` of the resource, e.g. `route:/clinics/{clinic_id}/patients`.
    pub resource: String,
}

impl Exception {
    /// The instant it stops applying.
    pub fn expiry(&self) -> Result<SystemTime, String> {
        parse_instant(&self.expires).map_err(|e| format!("exception `{}`: `expires` {e}", self.id))
    }
}

/// Parses `2027-01-31` (its start, UTC) or an RFC 3339 instant.
pub fn parse_instant(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is missing".into());
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|e| format!("`{text}` is not a date or an RFC 3339 instant: {e}"))
}

/// The manifest `warden.toml` of a policy package, as every engine and tool reads it. Keys of
/// one engine (`entrypoint`, `[cedar]`) are tolerated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PackageManifest {
    /// The package id.
    #[serde(default)]
    pub id: String,
    /// Its version (semantic versioning).
    #[serde(default)]
    pub version: String,
    /// Who answers for it (a team address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What it decides, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Active, shadow or disabled; absent means active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PackageStatus>,
    /// What it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The controls it enforces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regulations: Vec<Regulation>,
    /// Its time-limited exceptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
    /// What to do when it denies, for the people denied (a runbook link, a contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// The Rego entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// The regions it applies to: a PDP started with `--region` activates it only in these
    /// (and one started without a region not at all). Empty means every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The environments it applies to (`staging`, `production`, ...), as `regions`. Empty means
    /// every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

impl PackageManifest {
    /// The status in force (active when absent).
    pub fn status(&self) -> PackageStatus {
        self.status.unwrap_or_default()
    }

    /// The regulations as labels (`HIPAA 164.312(b)`).
    pub fn regulation_labels(&self) -> Vec<String> {
        self.regulations.iter().map(Regulation::label).collect()
    }
}

/// An exception ready to be matched.
#[derive(Debug, Clone)]
struct Granted {
    id: String,
    expires: SystemTime,
    scope: Option<ExceptionScope>,
}

/// What a package's manifest does to its decisions: status, exceptions, regulations. Built
/// when the package loads; a reload builds a new one, so a status change takes effect on
/// reload.
#[derive(Debug, Clone, Default)]
pub struct PackageGate {
    status: PackageStatus,
    regulations: Vec<String>,
    exceptions: Vec<Granted>,
}

impl PackageGate {
    /// The gate of `manifest`. An exception without a valid `id` or `expires` is an error: an
    /// exception that cannot expire is not an exception.
    pub fn new(manifest: &PackageManifest) -> Result<Self, String> {
        let mut exceptions = Vec::new();
        for exception in &manifest.exceptions {
            if exception.id.trim().is_empty() {
                return Err("an exception has no `id`".into());
            }
            let expires = exception.expiry()?;
            if let Some(scope) = &exception.permit {
                for (name, value) in [("subject", &scope.subject), ("resource", &scope.resource)] {
                    if !value.contains(':') {
                        return Err(format!(
                            "exception `{}`: `permit.{name}` must be `type:id`, not `{value}`",
                            exception.id
                        ));
                    }
                }
            }
            warn_if_expiring(&exception.id, expires, SystemTime::now());
            exceptions.push(Granted {
                id: exception.id.clone(),
                expires,
                scope: exception.permit.clone(),
            });
        }
        Ok(Self {
            status: manifest.status(),
            regulations: manifest.regulation_labels(),
            exceptions,
        })
    }

    /// The gate with `status` in force instead of the manifest's: tools that test or replay a
    /// package decide as if it were active.
    #[must_use]
    pub fn with_status(mut self, status: PackageStatus) -> Self {
        self.status = status;
        self
    }

    /// The status.
    pub fn status(&self) -> PackageStatus {
        self.status
    }

    /// The regulation labels stamped on decisions.
    pub fn regulations(&self) -> &[String] {
        &self.regulations
    }

    /// The decision of the package for `request`: `evaluate` runs the engine (not called for a
    /// disabled package), then status and exceptions apply, at the current time.
    pub fn decide(
        &self,
        request: &AccessRequest,
        revision: PolicyRevision,
        evaluate: impl FnOnce() -> Decision,
    ) -> Decision {
        // The clock is read only when an exception needs it.
        let now = if self.exceptions.is_empty() {
            SystemTime::UNIX_EPOCH
        } else {
            SystemTime::now()
        };
        self.decide_at(request, revision, evaluate, now)
    }

    /// `revision` with the package's regulations (engines stamp their revision once, at load).
    pub fn stamp(&self, mut revision: PolicyRevision) -> PolicyRevision {
        revision.regulations.clone_from(&self.regulations);
        revision
    }

    /// [`decide`](Self::decide) at `now`.
    pub fn decide_at(
        &self,
        request: &AccessRequest,
        mut revision: PolicyRevision,
        evaluate: impl FnOnce() -> Decision,
        now: SystemTime,
    ) -> Decision {
        if revision.regulations.is_empty() && !self.regulations.is_empty() {
            revision.regulations.clone_from(&self.regulations);
        }
        if self.status == PackageStatus::Disabled {
            let mut decision = Decision::not_applicable().with_policy(revision);
            decision.diagnostics.push(Diagnostic {
                error: None,
                message: "the package is disabled: it decides nothing".into(),
            });
            return decision;
        }
        let decision = self.with_exceptions(request, evaluate(), now);
        if self.status == PackageStatus::Shadow {
            let would = if decision.allowed { "permit" } else { "deny" };
            tracing::info!(
                target: "warden::shadow",
                policy = %revision.id,
                revision = %revision.revision,
                would,
                not_applicable = decision.not_applicable,
                obligations = decision.obligations.len(),
                subject = %request.subject.id,
                action = %request.action.name,
                resource = %request.resource.id,
                "shadow decision (not enforced)"
            );
            let mut shadow = Decision::not_applicable().with_policy(revision);
            shadow.id = decision.id;
            shadow.diagnostics.push(Diagnostic {
                error: None,
                message: format!("the package is in shadow mode: it would {would}; not enforced"),
            });
            return shadow;
        }
        decision.with_policy(revision)
    }

    fn with_exceptions(
        &self,
        request: &AccessRequest,
        decision: Decision,
        now: SystemTime,
    ) -> Decision {
        // Only a policy's deny is excepted: never an engine error, never a not-applicable.
        if decision.allowed || decision.not_applicable || decision.error_class().is_some() {
            return decision;
        }
        for granted in &self.exceptions {
            let Some(scope) = &granted.scope else {
                continue;
            };
            if !matches(scope, request) {
                continue;
            }
            if now >= granted.expires {
                tracing::warn!(
                    exception = %granted.id,
                    "an expired exception matched the request; it no longer applies"
                );
                continue;
            }
            warn_if_expiring(&granted.id, granted.expires, now);
            let mut permit = Decision::permit().with_obligation(Obligation::Audit(Audit {
                level: AuditLevel::High,
                tags: vec![format!("exception:{}", granted.id)],
            }));
            permit.id = decision.id;
            permit.reasons.push(Reason {
                code: Some(format!("exception:{}", granted.id)),
                message: "permitted by an exception of the package".into(),
            });
            return permit;
        }
        decision
    }
}

fn warn_if_expiring(id: &str, expires: SystemTime, now: SystemTime) {
    if let Ok(left) = expires.duration_since(now)
        && left < EXCEPTION_WARNING
    {
        tracing::warn!(
            exception = %id,
            days_left = left.as_secs() / 86_400,
            "an exception expires soon"
        );
    }
}

fn matches(scope: &ExceptionScope, request: &AccessRequest) -> bool {
    let typed = |pattern: &str, kind: &str, id: &str| match pattern.split_once(':') {
        Some((t, i)) => t == kind && (i == "*" || i == id),
        None => false,
    };
    typed(&scope.subject, &request.subject.kind, &request.subject.id)
        && (scope.action == "*" || scope.action == request.action.name)
        && typed(
            &scope.resource,
            &request.resource.kind,
            &request.resource.id,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Action, Resource, Subject};

    fn manifest(status: &str, expires: &str) -> PackageManifest {
        serde_json::from_value(serde_json::json!({
            "id": "p", "version": "1.0.0", "status": status,
            "regulations": [{"framework": "GDPR", "reference": "Art. 32"}],
            "exceptions": [{"id": "EX-1", "reason": "r", "expires": expires,
                "permit": {"subject": "user:oncall", "action": "GET", "resource": "route:/x"}}],
        }))
        .unwrap()
    }

    fn request(subject: &str, action: &str, resource: &str) -> AccessRequest {
        AccessRequest::new(
            Subject::user(subject),
            Action::new(action),
            Resource::new("route", resource),
        )
    }

    fn at(text: &str) -> SystemTime {
        parse_instant(text).unwrap()
    }

    #[test]
    fn disabled_package_is_not_applicable_and_not_evaluated() {
        let gate = PackageGate::new(&manifest("disabled", "2030-01-01")).unwrap();
        let d = gate.decide(
            &request("a", "GET", "/x"),
            PolicyRevision::default(),
            || panic!("a disabled package must not be evaluated"),
        );
        assert!(!d.allowed && d.not_applicable);
        assert_eq!(d.policy.regulations, ["GDPR Art. 32"]);
    }

    #[test]
    fn shadow_permit_is_never_enforced() {
        let gate = PackageGate::new(&manifest("shadow", "2030-01-01")).unwrap();
        let d = gate.decide(
            &request("a", "GET", "/x"),
            PolicyRevision::default(),
            Decision::permit,
        );
        assert!(!d.allowed && d.not_applicable && d.obligations.is_empty());
        assert!(d.diagnostics[0].message.contains("would permit"));
    }

    #[test]
    fn active_package_decides() {
        let gate = PackageGate::new(&manifest("active", "2030-01-01")).unwrap();
        let d = gate.decide(
            &request("a", "GET", "/x"),
            PolicyRevision::default(),
            Decision::permit,
        );
        assert!(d.allowed && !d.not_applicable);
    }

    #[test]
    fn exception_permits_until_it_expires() {
        let gate = PackageGate::new(&manifest("active", "2027-01-31")).unwrap();
        let req = request("oncall", "GET", "/x");
        let before = gate.decide_at(
            &req,
            PolicyRevision::default(),
            Decision::deny,
            at("2027-01-30T23:59:59Z"),
        );
        assert!(before.allowed);
        assert_eq!(before.obligations[0].type_name(), "audit");
        let after = gate.decide_at(
            &req,
            PolicyRevision::default(),
            Decision::deny,
            at("2027-01-31T00:00:00Z"),
        );
        assert!(!after.allowed);
    }

    #[test]
    fn exception_matches_only_its_scope_and_never_an_error() {
        let gate = PackageGate::new(&manifest("active", "2099-01-01")).unwrap();
        let now = at("2027-01-01T00:00:00Z");
        for req in [
            request("oncall", "POST", "/x"),
            request("other", "GET", "/x"),
            request("oncall", "GET", "/x/"),
            AccessRequest::new(
                Subject::new("service", "oncall"),
                Action::new("GET"),
                Resource::new("route", "/x"),
            ),
        ] {
            let d = gate.decide_at(&req, PolicyRevision::default(), Decision::deny, now);
            assert!(!d.allowed, "{req:?}");
        }
        let error = || {
            Decision::deny().with_error(crate::decision::ErrorClass::PolicyError, "broken policy")
        };
        let d = gate.decide_at(
            &request("oncall", "GET", "/x"),
            PolicyRevision::default(),
            error,
            now,
        );
        assert!(!d.allowed, "an engine error is never excepted");
        let d = gate.decide_at(
            &request("oncall", "GET", "/x"),
            PolicyRevision::default(),
            Decision::not_applicable,
            now,
        );
        assert!(!d.allowed, "a not-applicable is never excepted");
    }

    #[test]
    fn exception_without_valid_expiry_is_refused() {
        for expires in ["", "soon", "2027-13-01"] {
            assert!(
                PackageGate::new(&manifest("active", expires)).is_err(),
                "{expires}"
            );
        }
        let mut m = manifest("active", "2030-01-01");
        if let Some(scope) = m.exceptions[0].permit.as_mut() {
            scope.subject = "oncall".into();
        }
        assert!(PackageGate::new(&m).is_err());
    }
}
