//! The life of a policy package: `warden test`, `warden check`, `warden catalog`,
//! `warden replay` and `warden rollback`.
//!
//! A package is a folder with a manifest (`warden.toml`), the policies of one engine (`.rego`,
//! `.cedar`, or a casbin `model.conf` with its `policy.csv`) and test cases (`cases.json`, `cases.yaml`, or files under `tests/`). A
//! directory given to these commands is either a package itself or a folder of packages
//! (searched to any depth, in name order).

pub(crate) mod cases;
pub(crate) mod catalog;
pub(crate) mod check;
pub(crate) mod coverage;
pub(crate) mod junit;
pub(crate) mod replay;
pub(crate) mod rollback;
pub(crate) mod test;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden_casbin::CasbinPdp;
use warden_cedar::CedarPdp;
use warden_decision::{PackageManifest, PackageStatus, Pdp, PolicyRevision};
use warden_rego::RegoPdp;
use warden_server::PolicyKind;

use crate::exit::Exit;

/// The directories the commands look at when none is given.
pub(crate) const DEFAULT_DIR: &str = "policies";

/// The deepest a folder of packages is searched.
const MAX_DEPTH: usize = 8;

/// One package folder, found but not yet loaded.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The folder, as given or found (relative paths stay relative for the output).
    pub(crate) dir: PathBuf,
}

impl Found {
    /// The folder as it is printed.
    pub(crate) fn display(&self) -> String {
        self.dir.display().to_string()
    }
}

/// The package folders under `dirs` (or [`DEFAULT_DIR`]): a folder with a manifest or policy
/// files is a package; any other folder is searched for packages. A missing directory is a
/// usage error.
pub(crate) fn find(dirs: &[PathBuf]) -> Result<Vec<Found>, (Exit, String)> {
    let dirs: Vec<PathBuf> = if dirs.is_empty() {
        vec![PathBuf::from(DEFAULT_DIR)]
    } else {
        dirs.to_vec()
    };
    let mut found = Vec::new();
    for dir in dirs {
        if !dir.is_dir() {
            return Err((
                Exit::Usage,
                format!("`{}` is not a directory", dir.display()),
            ));
        }
        search(&dir, 0, &mut found).map_err(|e| (Exit::Usage, e))?;
    }
    if found.is_empty() {
        return Err((Exit::Config, "no policy packages found".into()));
    }
    Ok(found)
}

fn search(dir: &Path, depth: usize, found: &mut Vec<Found>) -> Result<(), String> {
    if is_package(dir)? {
        found.push(Found {
            dir: dir.to_path_buf(),
        });
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        search(&child, depth + 1, found)?;
    }
    Ok(())
}

fn is_package(dir: &Path) -> Result<bool, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "warden.toml"
            || name == "model.conf"
            || name.ends_with(".rego")
            || name.ends_with(".cedar")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The manifest of a package, read as every engine reads it; `None` without one.
pub(crate) fn manifest(dir: &Path) -> Result<Option<(PackageManifest, String)>, String> {
    let path = dir.join("warden.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    let manifest: PackageManifest = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", line_of(&text, s.start)))
            .unwrap_or_default();
        format!("{}{at}: {}", path.display(), e.message())
    })?;
    Ok(Some((manifest, text)))
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The engine of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Rego,
    Cedar,
    /// A casbin model and policy (`model.conf`, `policy.csv`).
    Casbin,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rego => "rego",
            Self::Cedar => "cedar",
            Self::Casbin => "casbin",
        })
    }
}

/// A package loaded for testing or replay: decided as if active, whatever its manifest says.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) kind: Engine,
    pub(crate) pdp: Arc<dyn Pdp>,
    pub(crate) cedar: Option<Arc<CedarPdp>>,
    pub(crate) revision: PolicyRevision,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("kind", &self.kind)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// Loads the package in `dir` with its engine, decided as `active`.
pub(crate) async fn load(dir: &Path) -> Result<Loaded, String> {
    let prefix = |e: &dyn std::fmt::Display| format!("policy directory `{}`: {e}", dir.display());
    if dir.join("model.conf").is_file() {
        let pdp = CasbinPdp::builder()
            .directory(dir)
            .status(PackageStatus::Active)
            .build()
            .await
            .map_err(|e| prefix(&e))?;
        let revision = pdp.revision().unwrap_or_default();
        return Ok(Loaded {
            kind: Engine::Casbin,
            pdp: Arc::new(pdp),
            cedar: None,
            revision,
        });
    }
    let kind = PolicyKind::detect(dir).map_err(|e| e.to_string())?;
    match kind {
        PolicyKind::Rego => {
            let pdp = RegoPdp::builder()
                .directory(dir)
                .status(PackageStatus::Active)
                .build()
                .map_err(|e| prefix(&e))?;
            let revision = pdp.revision().unwrap_or_default();
            Ok(Loaded {
                kind: Engine::Rego,
                pdp: Arc::new(pdp),
                cedar: None,
                revision,
            })
        }
        PolicyKind::Cedar => {
            let pdp = Arc::new(
                CedarPdp::builder()
                    .directory(dir)
                    .status(PackageStatus::Active)
                    .build()
                    .map_err(|e| prefix(&e))?,
            );
            let revision = pdp.revision().unwrap_or_default();
            Ok(Loaded {
                kind: Engine::Cedar,
                pdp: pdp.clone(),
                cedar: Some(pdp),
                revision,
            })
        }
    }
}
