//! An embedded Rego policy decision point for Warden, on [regorus].
//!
//! [`RegoPdp`] loads a directory of `.rego` policies and JSON data, compiles the configured
//! entrypoint once (to regorus' VM by default) and evaluates it for every access request, with
//! the AuthZEN-shaped request as `input`. The entrypoint (default `data.warden.decision`) returns
//! either a boolean or a decision object:
//!
//! ```rego
//! package warden
//!
//! default decision := {"allow": false}
//!
//! decision := {"allow": true, "obligations": [{"type": "audit", "level": "high"}]} if {
//!     input.subject.properties.role == "admin"
//! }
//! ```
//!
//! | member        | type                        | meaning                                            |
//! |---------------|-----------------------------|----------------------------------------------------|
//! | `allow`       | boolean, required           | permit or deny                                     |
//! | `obligations` | array or set of objects     | validated; one malformed obligation ⇒ deny        |
//! | `reasons`     | array of strings or objects | `{"code", "message"}`; kept for logs, never shown  |
//! | `advice`      | array of objects            | `{"type", …}`                                      |
//!
//! Any other member, a value of another type, or an evaluation error is a *policy error*: the
//! decision is a deny with a diagnostic, never a panic. An undefined entrypoint is a
//! not-applicable deny.
//!
//! # Directory layout
//!
//! Every `.rego` file under the directory is a policy. `data.json` files are data documents,
//! placed at the path of their folder (`roles/data.json` becomes `data.roles`), as in OPA
//! bundles. An optional `warden.toml` manifest names the policy and its version:
//!
//! ```toml
//! id = "clinic"
//! version = "1.4.0"
//! entrypoint = "data.clinic.decision"   # optional
//! ```
//!
//! The policy revision is the manifest version with a content hash
//! (`1.4.0+sha256.3f9a…`), or the content hash alone without a manifest, so a revision changes
//! whenever any file does.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
//! use warden_rego::RegoPdp;
//!
//! let pdp = RegoPdp::builder()
//!     .policy("authz.rego", r#"
//!         package warden
//!         decision := {"allow": true, "reasons": ["reader"]} if input.action.name == "GET"
//!     "#)
//!     .build()
//!     .unwrap();
//! let get = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
//! assert!(pdp.decide(&get).await.unwrap().allowed);
//! let post = AccessRequest::new(Subject::user("a"), Action::new("POST"), Resource::new("route", "/"));
//! let d = pdp.decide(&post).await.unwrap();
//! assert!(!d.allowed && d.not_applicable);
//! # });
//! ```
//!
//! [regorus]: https://docs.rs/regorus

mod input;
mod load;
mod result;
mod verify;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use regorus::rvm::RegoVM;
use warden_decision::{
    AccessRequest, Decision, ErrorClass, Pdp, PdpError, PdpFuture, PolicyRevision,
};

pub use load::LoadError;
#[cfg(feature = "coverage")]
pub use load::{FileCoverage, line_coverage};

/// The entrypoint evaluated when none is configured.
pub const DEFAULT_ENTRYPOINT: &str = "data.warden.decision";

/// The default bound on VM instructions per evaluation.
pub const DEFAULT_MAX_INSTRUCTIONS: usize = 1_000_000;

/// Which regorus evaluator runs the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evaluator {
    /// The compiled RVM program (fast; the default).
    #[default]
    Vm,
    /// The tree-walking interpreter (slower, every builtin).
    Interpreter,
}

/// Builds a [`RegoPdp`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RegoPdpBuilder {
    entrypoint: Option<String>,
    evaluator: Evaluator,
    max_instructions: usize,
    policy_id: Option<String>,
    status: Option<warden_decision::PackageStatus>,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Inline {
        policies: Vec<(String, String)>,
        data: Vec<serde_json::Value>,
    },
    Dir(PathBuf),
}

impl RegoPdpBuilder {
    /// The rule to evaluate (default [`DEFAULT_ENTRYPOINT`], or the manifest's `entrypoint`).
    pub fn entrypoint(mut self, rule: impl Into<String>) -> Self {
        self.entrypoint = Some(rule.into());
        self
    }

    /// The evaluator (default [`Evaluator::Vm`]).
    pub fn evaluator(mut self, evaluator: Evaluator) -> Self {
        self.evaluator = evaluator;
        self
    }

    /// The most VM instructions one evaluation may run; past it the decision is a deny.
    pub fn max_instructions(mut self, max: usize) -> Self {
        self.max_instructions = max;
        self
    }

    /// The policy id reported in decisions (default: the manifest's `id`, the directory name,
    /// or `inline`).
    pub fn policy_id(mut self, id: impl Into<String>) -> Self {
        self.policy_id = Some(id.into());
        self
    }

    /// Decides with `status` instead of the manifest's (`warden test` and `warden replay`
    /// evaluate a package as if it were active).
    pub fn status(mut self, status: warden_decision::PackageStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Adds a policy from source text (instead of a directory).
    pub fn policy(mut self, name: impl Into<String>, rego: impl Into<String>) -> Self {
        match &mut self.source {
            Source::Inline { policies, .. } => policies.push((name.into(), rego.into())),
            Source::Dir(_) => {
                self.source = Source::Inline {
                    policies: vec![(name.into(), rego.into())],
                    data: Vec::new(),
                }
            }
        }
        self
    }

    /// Adds a data document (a JSON object merged into `data`).
    pub fn data(mut self, document: serde_json::Value) -> Self {
        match &mut self.source {
            Source::Inline { data, .. } => data.push(document),
            Source::Dir(_) => {
                self.source = Source::Inline {
                    policies: Vec::new(),
                    data: vec![document],
                }
            }
        }
        self
    }

    /// Loads policies and data from a directory (see the crate docs for the layout).
    pub fn directory(mut self, dir: impl AsRef<Path>) -> Self {
        self.source = Source::Dir(dir.as_ref().to_path_buf());
        self
    }

    /// Loads and compiles the policies.
    pub fn build(self) -> Result<RegoPdp, LoadError> {
        let loaded = self.load()?;
        Ok(RegoPdp {
            state: ArcSwap::from_pointee(loaded),
            builder: self,
        })
    }

    fn load(&self) -> Result<Loaded, LoadError> {
        let bundle = match &self.source {
            Source::Inline { policies, data } => load::Bundle::inline(policies, data)?,
            Source::Dir(dir) => load::Bundle::read_dir(dir)?,
        };
        let entrypoint = self
            .entrypoint
            .clone()
            .or_else(|| bundle.manifest.as_ref().and_then(|m| m.entrypoint.clone()))
            .unwrap_or_else(|| DEFAULT_ENTRYPOINT.to_owned());
        let policy_id = self
            .policy_id
            .clone()
            .unwrap_or_else(|| bundle.default_id().to_owned());
        let gate = match &self.source {
            Source::Dir(dir) => bundle.gate(dir)?,
            Source::Inline { .. } => warden_decision::PackageGate::default(),
        };
        let gate = match self.status {
            Some(status) => gate.with_status(status),
            None => gate,
        };
        let revision = gate.stamp(PolicyRevision::new(policy_id, bundle.revision()));
        let compiled = load::compile(&bundle, &entrypoint)?;
        let confirm = self.evaluator == Evaluator::Vm
            && verify::entrypoint_may_fail(&compiled.engine, &entrypoint);
        Ok(Loaded {
            confirm,
            entrypoint,
            revision,
            gate,
            evaluator: self.evaluator,
            max_instructions: self.max_instructions,
            compiled,
            vms: Pool::new(),
            engines: Pool::new(),
            results: result::Interpreted::default(),
        })
    }
}

/// An embedded Rego PDP. Cheap to share (`Arc`), safe under concurrent use from many tasks:
/// each evaluation takes a prepared VM from a pool.
pub struct RegoPdp {
    state: ArcSwap<Loaded>,
    builder: RegoPdpBuilder,
}

impl fmt::Debug for RegoPdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loaded = self.state.load();
        f.debug_struct("RegoPdp")
            .field("entrypoint", &loaded.entrypoint)
            .field("revision", &loaded.revision)
            .field("evaluator", &loaded.evaluator)
            .finish()
    }
}

impl RegoPdp {
    /// A builder with the defaults: entrypoint `data.warden.decision`, the VM evaluator.
    pub fn builder() -> RegoPdpBuilder {
        RegoPdpBuilder {
            entrypoint: None,
            evaluator: Evaluator::default(),
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
            policy_id: None,
            status: None,
            source: Source::Inline {
                policies: Vec::new(),
                data: Vec::new(),
            },
        }
    }

    /// Loads a policy directory with the defaults.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        Self::builder().directory(dir).build()
    }

    /// Reloads the policies from their directory and swaps them in atomically. On error the
    /// PDP keeps deciding with the revision it had.
    pub fn reload(&self) -> Result<PolicyRevision, LoadError> {
        let loaded = self.builder.load()?;
        let revision = loaded.revision.clone();
        let previous = self.state.swap(Arc::new(loaded));
        if previous.revision != revision {
            tracing::info!(
                policy = %revision.id,
                from = %previous.revision.revision,
                to = %revision.revision,
                "rego policy reloaded"
            );
        }
        Ok(revision)
    }

    /// The entrypoint the PDP evaluates.
    pub fn entrypoint(&self) -> String {
        self.state.load().entrypoint.clone()
    }

    /// Evaluates the entrypoint for `request` and returns the raw result as JSON (`None` when
    /// undefined). For tests and tools; enforcement uses [`Pdp::decide`].
    pub fn evaluate_raw(
        &self,
        request: &AccessRequest,
    ) -> Result<Option<serde_json::Value>, PdpError> {
        let loaded = self.state.load();
        let value = loaded.evaluate(request).map_err(PdpError::policy)?;
        if value == regorus::Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&value)
            .map(Some)
            .map_err(|e| PdpError::policy(e.to_string()))
    }

    fn decide_now(&self, request: &AccessRequest) -> Decision {
        let loaded = self.state.load();
        // The manifest's status and exceptions apply around the evaluation.
        loaded.gate.decide(request, loaded.revision.clone(), || {
            match loaded.evaluate(request) {
                Ok(value) => loaded.results.interpret(value),
                Err(message) => Decision::deny().with_error(
                    ErrorClass::PolicyError,
                    format!("evaluation of `{}` failed: {message}", loaded.entrypoint),
                ),
            }
        })
    }
}

impl Pdp for RegoPdp {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        let decision = self.decide_now(request);
        Box::pin(std::future::ready(Ok(decision)))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(self.state.load().revision.clone())
    }
}

struct Loaded {
    /// The VM's answers that could permit are confirmed by the interpreter (see `verify`).
    confirm: bool,
    entrypoint: String,
    revision: PolicyRevision,
    gate: warden_decision::PackageGate,
    evaluator: Evaluator,
    max_instructions: usize,
    compiled: load::Compiled,
    vms: Pool<RegoVM>,
    engines: Pool<regorus::Engine>,
    results: result::Interpreted,
}

/// How many prepared evaluators a pool keeps when they come back.
const POOL_SIZE: usize = 64;

impl Loaded {
    fn evaluate(&self, request: &AccessRequest) -> Result<regorus::Value, String> {
        let input = input::input(request)?;
        match self.evaluator {
            Evaluator::Vm if self.confirm => {
                let value = self.evaluate_vm(input.clone())?;
                if verify::plain_deny(&value) {
                    return Ok(value);
                }
                let confirmed = self.evaluate_interpreter(input)?;
                if confirmed != value {
                    return Err(
                        "the VM and the interpreter disagree on this input (a rule conflict the \
                         VM answers as undefined?)"
                            .to_owned(),
                    );
                }
                Ok(value)
            }
            Evaluator::Vm => self.evaluate_vm(input),
            Evaluator::Interpreter => self.evaluate_interpreter(input),
        }
    }

    fn evaluate_vm(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        let mut vm = match self.vms.take() {
            Some(vm) => vm,
            None => self.compiled.new_vm(self.max_instructions)?,
        };
        vm.set_input(input);
        let result = guarded(|| vm.execute_entry_point_by_name(&self.entrypoint))?;
        vm.set_input(regorus::Value::Null);
        self.vms.put(vm);
        result.map_err(|e| e.to_string())
    }

    fn evaluate_interpreter(&self, input: regorus::Value) -> Result<regorus::Value, String> {
        let mut engine = self
            .engines
            .take()
            .unwrap_or_else(|| self.compiled.engine.clone());
        engine.set_input(input);
        let result = guarded(|| engine.eval_rule(self.entrypoint.clone()))?;
        engine.set_input(regorus::Value::Null);
        self.engines.put(engine);
        result.map_err(|e| e.to_string())
    }
}

/// Runs an engine call so that a panic inside the engine cannot take the request down: the
/// evaluator that panicked is dropped (never returned to its pool) and the decision is a policy
/// error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| "the policy engine panicked".to_owned())
}

/// Prepared evaluators, reused across decisions (regorus evaluation needs `&mut`).
struct Pool<T>(Mutex<Vec<T>>);

impl<T> Pool<T> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn take(&self) -> Option<T> {
        self.0.lock().ok().and_then(|mut pool| pool.pop())
    }

    fn put(&self, item: T) {
        if let Ok(mut pool) = self.0.lock()
            && pool.len() < POOL_SIZE
        {
            pool.push(item);
        }
    }
}

#[cfg(test)]
mod tests;
