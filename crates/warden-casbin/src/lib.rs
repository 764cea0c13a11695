//! A [casbin] model and policy as a Warden policy decision point.
//!
//! A service that enforces its rules with `axum-casbin` keeps them: [`CasbinPdp`] loads the same
//! `model.conf` and `policy.csv` (ACL, RBAC, RBAC with domains — any model casbin reads) and
//! decides Warden's access requests with them, as a [`Pdp`] that plugs into `PolicyLayer`, the
//! combiners and the resilience wrappers like any other. The rules can then move to Rego or
//! Cedar one at a time, with `warden replay` comparing the two on recorded traffic.
//!
//! # From access request to casbin request
//!
//! Each token of the model's `request_definition` (`r = sub, dom, obj, act`) is read from the
//! access request at a path:
//!
//! | token | default path | |
//! |---|---|---|
//! | `sub` | `subject.id` | the user; `g` lines give it roles |
//! | `obj` | `resource.path` | the route template with its parameters filled in (`/clinics/c1/patients`), the path axum-casbin matched |
//! | `act` | `action.name` | the HTTP method (or SQL operation) |
//! | any other | — | must be mapped: [`CasbinPdpBuilder::request_value`] |
//!
//! A path is `subject.id`, `subject.type`, `action.name`, `resource.id` (the route template),
//! `resource.type`, `resource.path`, or a member under `subject.properties.`,
//! `resource.properties.`, `action.properties.` or `context.` (`resource.properties.params.clinic_id`).
//! A value that is missing or not a string, number or boolean is a deny with a policy error —
//! never a guess. Casbin has no obligations: a permit carries none.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use warden_casbin::CasbinPdp;
//! use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
//!
//! let pdp = CasbinPdp::builder()
//!     .model(r#"
//!         [request_definition]
//!         r = sub, obj, act
//!         [policy_definition]
//!         p = sub, obj, act
//!         [policy_effect]
//!         e = some(where (p.eft == allow))
//!         [matchers]
//!         m = r.sub == p.sub && keyMatch2(r.obj, p.obj) && r.act == p.act
//!     "#)
//!     .policy("p, alice, /reports/:id, GET")
//!     .build()
//!     .await
//!     .unwrap();
//! let read = |who: &str| AccessRequest::new(
//!     Subject::user(who),
//!     Action::new("GET"),
//!     Resource::new("route", "/reports/{id}")
//!         .with_property("params", serde_json::json!({"id": "7"})),
//! );
//! assert!(pdp.decide(&read("alice")).await.unwrap().allowed);
//! assert!(!pdp.decide(&read("bob")).await.unwrap().allowed);
//! # });
//! ```
//!
//! # A package
//!
//! [`CasbinPdpBuilder::directory`] reads a package folder: `model.conf`, `policy.csv` and an
//! optional manifest `warden.toml` — the manifest every Warden package has (id, version, status,
//! regulations, exceptions, enforced as for Rego and Cedar) with a `[casbin.request]` table
//! mapping request tokens:
//!
//! ```toml
//! id = "clinic-casbin"
//! version = "1.0.0"
//! status = "active"
//!
//! [casbin.request]
//! dom = "resource.properties.params.clinic_id"
//! ```
//!
//! [casbin]: https://casbin.org

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use serde_json::Value;
use sha2::{Digest, Sha256};
use warden_decision::{AccessRequest, Decision, ErrorClass, Pdp, PdpFuture, PolicyRevision};

/// Why a casbin model and policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No model was given.
    #[error("no casbin model: give `model` or `model_file`")]
    NoModel,
    /// The model has no `request_definition`.
    #[error("the casbin model has no `r = …` line under `[request_definition]`")]
    NoRequestDefinition,
    /// A request token has no path to read it from.
    #[error("request token `{0}` has no mapping: call `request_value(\"{0}\", \"<path>\")`")]
    Unmapped(String),
    /// A mapping names a path Warden does not know.
    #[error("`{path}` (for request token `{token}`) is not a path of an access request")]
    BadPath {
        /// The token.
        token: String,
        /// The path.
        path: String,
    },
    /// The manifest is invalid.
    #[error("manifest `{path}` is invalid: {message}")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Casbin refused the model or the policy.
    #[error("casbin refused the model or policy: {0}")]
    Casbin(String),
}

/// Where a request token's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    SubjectId,
    SubjectType,
    ActionName,
    ResourceId,
    ResourceType,
    /// The route template with its `params` filled in.
    ResourcePath,
    /// Members under a map of the request.
    Under(Root, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Subject,
    Action,
    Resource,
    Context,
}

impl Source {
    fn parse(path: &str) -> Option<Self> {
        Some(match path {
            "subject.id" => Self::SubjectId,
            "subject.type" => Self::SubjectType,
            "action.name" => Self::ActionName,
            "resource.id" => Self::ResourceId,
            "resource.type" => Self::ResourceType,
            "resource.path" => Self::ResourcePath,
            _ => {
                let (root, rest) = if let Some(rest) = path.strip_prefix("subject.properties.") {
                    (Root::Subject, rest)
                } else if let Some(rest) = path.strip_prefix("action.properties.") {
                    (Root::Action, rest)
                } else if let Some(rest) = path.strip_prefix("resource.properties.") {
                    (Root::Resource, rest)
                } else if let Some(rest) = path.strip_prefix("context.") {
                    (Root::Context, rest)
                } else {
                    return None;
                };
                let members: Vec<String> = rest.split('.').map(str::to_owned).collect();
                if members.iter().any(String::is_empty) {
                    return None;
                }
                Self::Under(root, members)
            }
        })
    }

    fn read(&self, request: &AccessRequest) -> Option<String> {
        match self {
            Self::SubjectId => Some(request.subject.id.clone()),
            Self::SubjectType => Some(request.subject.kind.clone()),
            Self::ActionName => Some(request.action.name.clone()),
            Self::ResourceId => Some(request.resource.id.clone()),
            Self::ResourceType => Some(request.resource.kind.clone()),
            Self::ResourcePath => Some(fill(&request.resource.id, &request.resource.properties)),
            Self::Under(root, members) => {
                let map = match root {
                    Root::Subject => &request.subject.properties,
                    Root::Action => &request.action.properties,
                    Root::Resource => &request.resource.properties,
                    Root::Context => &request.context,
                };
                let (first, rest) = members.split_first()?;
                let mut value = map.get(first.as_str())?;
                for member in rest {
                    value = value.get(member.as_str())?;
                }
                match value {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }
            }
        }
    }
}

/// `/clinics/{clinic_id}/patients` with `params.clinic_id = "c1"` is `/clinics/c1/patients`.
/// A parameter that is missing or not a string leaves its `{name}` in place.
fn fill(template: &str, properties: &warden_decision::Properties) -> String {
    let params = properties.get("params").and_then(Value::as_object);
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let (name, tail) = after.split_at(close + 1);
        let key = name.trim_start_matches('{').trim_end_matches('}');
        let key = key.trim_start_matches('*');
        match params.and_then(|p| p.get(key)).and_then(Value::as_str) {
            Some(value) => out.push_str(value),
            None => out.push_str(name),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Builds a [`CasbinPdp`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CasbinPdpBuilder {
    model: Option<Text>,
    policy: Vec<Text>,
    mappings: Vec<(String, String)>,
    policy_id: Option<String>,
    manifest: Option<PathBuf>,
    status: Option<warden_decision::PackageStatus>,
}

#[derive(Debug, Clone)]
enum Text {
    Inline(String),
    File(PathBuf),
}

impl Text {
    fn read(&self) -> Result<String, LoadError> {
        match self {
            Self::Inline(text) => Ok(text.clone()),
            Self::File(path) => std::fs::read_to_string(path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            }),
        }
    }
}

impl CasbinPdpBuilder {
    /// The model, as the text of a `model.conf`.
    pub fn model(mut self, conf: impl Into<String>) -> Self {
        self.model = Some(Text::Inline(conf.into()));
        self
    }

    /// The model from a file.
    pub fn model_file(mut self, path: impl AsRef<Path>) -> Self {
        self.model = Some(Text::File(path.as_ref().to_owned()));
        self
    }

    /// Policy lines (`p, …` and `g, …`), as the text of a `policy.csv`; may be given several times.
    pub fn policy(mut self, csv: impl Into<String>) -> Self {
        self.policy.push(Text::Inline(csv.into()));
        self
    }

    /// Policy lines from a file; may be given several times.
    pub fn policy_file(mut self, path: impl AsRef<Path>) -> Self {
        self.policy.push(Text::File(path.as_ref().to_owned()));
        self
    }

    /// `model.conf`, `policy.csv` and, when there is one, the manifest `warden.toml` of a
    /// package folder.
    pub fn directory(mut self, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let manifest = dir.join("warden.toml");
        if manifest.is_file() {
            self.manifest = Some(manifest);
        }
        self.model_file(dir.join("model.conf"))
            .policy_file(dir.join("policy.csv"))
    }

    /// Decides with `status` instead of the manifest's (`warden test` and `warden replay`
    /// evaluate a package as if it were active).
    pub fn status(mut self, status: warden_decision::PackageStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Reads request token `token` (as the model names it: `dom`, `sub`, …) from `path` of the
    /// access request (see the crate docs).
    pub fn request_value(mut self, token: impl Into<String>, path: impl Into<String>) -> Self {
        self.mappings.push((token.into(), path.into()));
        self
    }

    /// The policy id reported in decisions (default `casbin`).
    pub fn policy_id(mut self, id: impl Into<String>) -> Self {
        self.policy_id = Some(id.into());
        self
    }

    /// Loads the model and policy and checks every request token is mapped.
    pub async fn build(self) -> Result<CasbinPdp, LoadError> {
        let (package, mut mappings) = match &self.manifest {
            Some(path) => read_manifest(path)?,
            None => (None, Vec::new()),
        };
        mappings.extend(self.mappings.iter().cloned());
        let gate = match &package {
            Some(package) => warden_decision::PackageGate::new(package).map_err(|message| {
                LoadError::Manifest {
                    path: self.manifest.clone().unwrap_or_default(),
                    message,
                }
            })?,
            None => warden_decision::PackageGate::default(),
        };
        let gate = match self.status {
            Some(status) => gate.with_status(status),
            None => gate,
        };
        let model_text = self.model.as_ref().ok_or(LoadError::NoModel)?.read()?;
        let mut policy_text = String::new();
        for part in &self.policy {
            policy_text.push_str(&part.read()?);
            policy_text.push('\n');
        }
        let mut sources = Vec::new();
        for token in request_tokens(&model_text).ok_or(LoadError::NoRequestDefinition)? {
            let path = mappings
                .iter()
                .rev()
                .find(|(t, _)| *t == token)
                .map(|(_, p)| p.as_str())
                .or(match token.as_str() {
                    "sub" => Some("subject.id"),
                    "obj" => Some("resource.path"),
                    "act" => Some("action.name"),
                    _ => None,
                })
                .ok_or_else(|| LoadError::Unmapped(token.clone()))?;
            let source = Source::parse(path).ok_or_else(|| LoadError::BadPath {
                token: token.clone(),
                path: path.to_owned(),
            })?;
            sources.push((token, source));
        }
        let model = DefaultModel::from_str(&model_text)
            .await
            .map_err(|e| LoadError::Casbin(e.to_string()))?;
        let enforcer = Enforcer::new(model, StringAdapter::new(policy_text.clone()))
            .await
            .map_err(|e| LoadError::Casbin(e.to_string()))?;
        let mut hash = Sha256::new();
        hash.update((model_text.len() as u64).to_le_bytes());
        hash.update(model_text.as_bytes());
        hash.update(policy_text.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let id = self
            .policy_id
            .clone()
            .or_else(|| {
                package
                    .as_ref()
                    .map(|p| p.id.clone())
                    .filter(|id| !id.is_empty())
            })
            .unwrap_or_else(|| "casbin".into());
        let revision = match package.as_ref().map(|p| p.version.as_str()) {
            Some(version) if !version.is_empty() => format!("{version}+sha256.{hex}"),
            _ => format!("sha256.{hex}"),
        };
        let revision = gate.stamp(PolicyRevision::new(id, revision));
        Ok(CasbinPdp {
            enforcer,
            sources,
            revision,
            gate,
        })
    }
}

/// A manifest as every engine reads it, and its `[casbin.request]` mappings.
type Manifest = (
    Option<warden_decision::PackageManifest>,
    Vec<(String, String)>,
);

/// The manifest as every engine reads it, and its `[casbin.request]` mappings.
fn read_manifest(path: &Path) -> Result<Manifest, LoadError> {
    let invalid = |message: String| LoadError::Manifest {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let package: warden_decision::PackageManifest =
        toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))?;
    let mut mappings = Vec::new();
    if let Some(casbin) = table.get("casbin") {
        let casbin = casbin
            .as_table()
            .ok_or_else(|| invalid("`casbin` must be a table".into()))?;
        for key in casbin.keys() {
            if key != "request" {
                return Err(invalid(format!(
                    "unknown key `casbin.{key}` (expected `request`)"
                )));
            }
        }
        if let Some(request) = casbin.get("request") {
            let request = request
                .as_table()
                .ok_or_else(|| invalid("`casbin.request` must be a table".into()))?;
            for (token, path) in request {
                let path = path.as_str().ok_or_else(|| {
                    invalid(format!("`casbin.request.{token}` must be a path string"))
                })?;
                mappings.push((token.clone(), path.to_owned()));
            }
        }
    }
    Ok((Some(package), mappings))
}

/// The tokens of the `r = …` line under `[request_definition]`, without their `r.` prefix.
fn request_tokens(conf: &str) -> Option<Vec<String>> {
    let mut in_section = false;
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[request_definition]";
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim() == "r"
        {
            let tokens: Vec<String> = value
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            return (!tokens.is_empty()).then_some(tokens);
        }
    }
    None
}

/// A casbin enforcer as a [`Pdp`]. Safe under concurrent use (`enforce` takes `&self`).
pub struct CasbinPdp {
    enforcer: Enforcer,
    sources: Vec<(String, Source)>,
    revision: PolicyRevision,
    gate: warden_decision::PackageGate,
}

impl fmt::Debug for CasbinPdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasbinPdp")
            .field("revision", &self.revision)
            .field(
                "request",
                &self.sources.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CasbinPdp {
    /// A builder.
    pub fn builder() -> CasbinPdpBuilder {
        CasbinPdpBuilder::default()
    }

    /// The `model.conf` and `policy.csv` of `dir`, with the default mappings.
    pub async fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::builder().directory(dir).build().await
    }

    fn decide_now(&self, request: &AccessRequest) -> Decision {
        let deny = |message: String| Decision::deny().with_error(ErrorClass::PolicyError, message);
        let mut values = Vec::with_capacity(self.sources.len());
        for (token, source) in &self.sources {
            match source.read(request) {
                Some(value) => values.push(value),
                None => {
                    return deny(format!("the request has no value for casbin's `{token}`"))
                        .with_policy(self.revision.clone());
                }
            }
        }
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| self.enforcer.enforce(values)));
        let decision = match answer {
            Ok(Ok(true)) => Decision::permit(),
            Ok(Ok(false)) => Decision::deny(),
            Ok(Err(e)) => deny(format!("casbin failed: {e}")),
            Err(_) => deny("casbin panicked".into()),
        };
        decision.with_policy(self.revision.clone())
    }
}

impl Pdp for CasbinPdp {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        // The manifest's status and exceptions apply around the evaluation.
        let decision = self
            .gate
            .decide(request, self.revision.clone(), || self.decide_now(request));
        Box::pin(std::future::ready(Ok(decision)))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(self.revision.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_filled_with_their_parameters() {
        let mut props = warden_decision::Properties::new();
        props.insert("params".into(), json!({"clinic_id": "c1", "rest": "a/b"}));
        assert_eq!(
            fill("/clinics/{clinic_id}/patients", &props),
            "/clinics/c1/patients"
        );
        assert_eq!(fill("/files/{*rest}", &props), "/files/a/b");
        assert_eq!(fill("/x/{missing}", &props), "/x/{missing}");
        assert_eq!(fill("/x/{open", &props), "/x/{open");
    }

    #[test]
    fn paths_are_checked() {
        assert!(Source::parse("subject.properties.role").is_some());
        assert!(Source::parse("resource.properties.params.clinic_id").is_some());
        assert!(Source::parse("subject.name").is_none());
        assert!(Source::parse("context.").is_none());
        assert!(Source::parse("context..x").is_none());
    }

    #[test]
    fn request_tokens_come_from_the_request_definition() {
        let conf =
            "[request_definition]\nr = sub, dom, obj, act\n[policy_definition]\np = sub, obj\n";
        assert_eq!(request_tokens(conf).unwrap(), ["sub", "dom", "obj", "act"]);
        assert!(request_tokens("[policy_definition]\np = a\n").is_none());
    }
}
