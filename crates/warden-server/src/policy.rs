//! Policy directories: which engine, loading, reloading, and noticing changes.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden_decision::{Pdp, PolicyRevision};
use warden_rego::RegoPdp;

/// The engine a policy directory is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Rego (`*.rego` files), evaluated by regorus.
    Rego,
    /// Cedar (`*.cedar` files), evaluated by cedar-policy.
    Cedar,
}

impl PolicyKind {
    /// `rego` or `cedar`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rego => "rego",
            Self::Cedar => "cedar",
        }
    }

    /// The engine of the policies in `dir`: Rego when it holds `.rego` files, Cedar when it holds
    /// `.cedar` files. Both, or neither, is an error.
    pub fn detect(dir: &Path) -> Result<Self, PolicyError> {
        let files = files(dir).map_err(|e| PolicyError::new(dir, e))?;
        let has = |ext: &str| {
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == ext))
        };
        match (has("rego"), has("cedar")) {
            (true, false) => Ok(Self::Rego),
            (false, true) => Ok(Self::Cedar),
            (true, true) => Err(PolicyError::new(
                dir,
                "holds both .rego and .cedar files; a policy directory is written for one engine",
            )),
            (false, false) => Err(PolicyError::new(dir, "holds no .rego or .cedar files")),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy directory could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy directory `{}`: {message}", path.display())]
pub struct PolicyError {
    /// The directory.
    pub path: PathBuf,
    /// What went wrong, with the file and position when the engine gave them.
    pub message: String,
}

impl PolicyError {
    fn new(path: &Path, message: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

#[derive(Clone)]
enum Engine {
    Rego(Arc<RegoPdp>),
    #[cfg(feature = "cedar")]
    Cedar(Arc<warden_cedar::CedarPdp>),
}

/// A loaded policy directory: a [`Pdp`] for its policies, and the means to reload them.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
/// use warden_server::{PolicyDir, PolicyKind};
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
/// let policy = PolicyDir::open(dir).unwrap();
/// assert_eq!(policy.kind(), PolicyKind::Rego);
/// assert_eq!(policy.opa_path().as_deref(), Some("clinic/decision"));
///
/// let health = AccessRequest::new(
///     Subject::new("anonymous", "anonymous"),
///     Action::new("GET"),
///     Resource::new("route", "/health"),
/// );
/// assert!(policy.pdp().decide(&health).await.unwrap().allowed);
/// # });
/// ```
#[derive(Clone)]
pub struct PolicyDir {
    path: PathBuf,
    kind: PolicyKind,
    engine: Engine,
}

impl fmt::Debug for PolicyDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyDir")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("revision", &self.revision())
            .finish()
    }
}

impl PolicyDir {
    /// Loads the policies in `dir`, with the engine [`PolicyKind::detect`] finds.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = dir.as_ref().to_owned();
        let kind = PolicyKind::detect(&path)?;
        let engine = match kind {
            PolicyKind::Rego => Engine::Rego(Arc::new(
                RegoPdp::from_dir(&path).map_err(|e| PolicyError::new(&path, e))?,
            )),
            #[cfg(feature = "cedar")]
            PolicyKind::Cedar => Engine::Cedar(Arc::new(
                warden_cedar::CedarPdp::from_dir(&path).map_err(|e| PolicyError::new(&path, e))?,
            )),
            #[cfg(not(feature = "cedar"))]
            PolicyKind::Cedar => {
                return Err(PolicyError::new(
                    &path,
                    "is a Cedar policy, and this build has no Cedar engine (feature `cedar`)",
                ));
            }
        };
        Ok(Self { path, kind, engine })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The engine.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The decision point for the policies, shared with the directory: a [`reload`](Self::reload)
    /// changes what it decides with.
    pub fn pdp(&self) -> Arc<dyn Pdp> {
        match &self.engine {
            Engine::Rego(pdp) => pdp.clone(),
            #[cfg(feature = "cedar")]
            Engine::Cedar(pdp) => pdp.clone(),
        }
    }

    /// The revision the policies are at.
    pub fn revision(&self) -> Option<PolicyRevision> {
        match &self.engine {
            Engine::Rego(pdp) => pdp.revision(),
            #[cfg(feature = "cedar")]
            Engine::Cedar(pdp) => pdp.revision(),
        }
    }

    /// The OPA Data API path of the decision document (`clinic/decision` for the entrypoint
    /// `data.clinic.decision`); `None` for engines without one.
    pub fn opa_path(&self) -> Option<String> {
        match &self.engine {
            Engine::Rego(pdp) => Some(
                pdp.entrypoint()
                    .trim_start_matches("data.")
                    .replace('.', "/"),
            ),
            #[cfg(feature = "cedar")]
            Engine::Cedar(_) => None,
        }
    }

    /// The entrypoint's Rego document for `request`, as OPA's Data API returns it (`Ok(None)`
    /// when it is undefined); `None` for engines without documents (Cedar).
    pub(crate) fn document(
        &self,
        request: &warden_decision::AccessRequest,
    ) -> Option<Result<Option<serde_json::Value>, warden_decision::PdpError>> {
        match &self.engine {
            Engine::Rego(pdp) => Some(pdp.evaluate_raw(request)),
            #[cfg(feature = "cedar")]
            Engine::Cedar(_) => None,
        }
    }

    /// Loads the directory again and swaps the new policies in atomically. When they fail to
    /// load, the old ones stay in force and the error says why.
    pub fn reload(&self) -> Result<PolicyRevision, PolicyError> {
        match &self.engine {
            Engine::Rego(pdp) => pdp.reload().map_err(|e| PolicyError::new(&self.path, e)),
            #[cfg(feature = "cedar")]
            Engine::Cedar(pdp) => pdp.reload().map_err(|e| PolicyError::new(&self.path, e)),
        }
    }
}

/// A fingerprint of every file under `dir` (names, sizes and contents), to notice changes.
pub(crate) fn fingerprint(dir: &Path) -> Result<u64, String> {
    let mut hasher = DefaultHasher::new();
    for file in files(dir)? {
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        file.hash(&mut hasher);
        bytes.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

/// Every regular file under `dir`, sorted, skipping hidden entries (editors' swap files).
fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let entries =
            std::fs::read_dir(&next).map_err(|e| format!("cannot read {}: {e}", next.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", next.display()))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}
