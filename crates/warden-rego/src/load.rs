//! Reading a policy directory and compiling it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regorus::rvm::RegoVM;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The most files a policy directory may hold.
const MAX_FILES: usize = 10_000;

/// Why policies could not be loaded. The PDP keeps its last good revision when a reload fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A policy does not parse.
    #[error("policy `{path}` does not parse: {message}")]
    Policy {
        /// The policy's path (or name, for inline policies).
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A data document is not a JSON object or conflicts with another.
    #[error("data `{path}` is invalid: {message}")]
    Data {
        /// The data file's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest is invalid.
    #[error("manifest `{path}` is invalid: {message}")]
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// There are no policies.
    #[error("no `.rego` policies in `{0}`")]
    NoPolicies(String),
    /// The directory holds more files than a policy bundle may.
    #[error("`{0}` holds more than {MAX_FILES} files")]
    TooManyFiles(PathBuf),
    /// The entrypoint does not compile.
    #[error("entrypoint `{entrypoint}` does not compile: {message}")]
    Compile {
        /// The entrypoint.
        entrypoint: String,
        /// The compiler's message.
        message: String,
    },
}

/// The manifest `warden.toml` of a policy package.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) id: String,
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) entrypoint: Option<String>,
}

/// Policies and data read from somewhere, with their content hash.
pub(crate) struct Bundle {
    pub(crate) manifest: Option<Manifest>,
    /// The manifest as every engine reads it (status, regulations, exceptions).
    pub(crate) package: Option<warden_decision::PackageManifest>,
    name: String,
    policies: Vec<(String, String)>,
    data: Vec<(String, serde_json::Value)>,
    hash: Sha256,
}

impl Bundle {
    pub(crate) fn inline(
        policies: &[(String, String)],
        data: &[serde_json::Value],
    ) -> Result<Self, LoadError> {
        let mut hash = Sha256::new();
        for (name, source) in policies {
            hash_entry(&mut hash, name, source.as_bytes());
        }
        let data: Vec<(String, serde_json::Value)> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("data[{i}]"), d.clone()))
            .collect();
        for (name, document) in &data {
            hash_entry(&mut hash, name, document.to_string().as_bytes());
        }
        if policies.is_empty() {
            return Err(LoadError::NoPolicies("inline policies".into()));
        }
        Ok(Self {
            manifest: None,
            package: None,
            name: "inline".into(),
            policies: policies.to_vec(),
            data,
            hash,
        })
    }

    pub(crate) fn read_dir(dir: &Path) -> Result<Self, LoadError> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        files.sort();
        let mut bundle = Self {
            manifest: None,
            package: None,
            name: dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "policy".into()),
            policies: Vec::new(),
            data: Vec::new(),
            hash: Sha256::new(),
        };
        for relative in files {
            let path = dir.join(&relative);
            let display = relative.to_string_lossy().replace('\\', "/");
            let bytes = fs::read(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            let name = relative
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let extension = relative.extension().and_then(|e| e.to_str());
            if relative.as_os_str() == "warden.toml" {
                let text = String::from_utf8(bytes.clone()).map_err(|_| LoadError::Manifest {
                    path: path.clone(),
                    message: "not UTF-8".into(),
                })?;
                let manifest: Manifest =
                    toml::from_str(&text).map_err(|e| LoadError::Manifest {
                        path: path.clone(),
                        message: e.message().to_owned(),
                    })?;
                let package: warden_decision::PackageManifest =
                    toml::from_str(&text).map_err(|e| LoadError::Manifest {
                        path: path.clone(),
                        message: e.message().to_owned(),
                    })?;
                bundle.manifest = Some(manifest);
                bundle.package = Some(package);
            } else if extension == Some("rego") {
                let source = String::from_utf8(bytes.clone()).map_err(|_| LoadError::Policy {
                    path: display.clone(),
                    message: "not UTF-8".into(),
                })?;
                bundle.policies.push((display.clone(), source));
            } else if name == "data.json" {
                let document: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| LoadError::Data {
                        path: display.clone(),
                        message: e.to_string(),
                    })?;
                let document = nest_at_folder(&relative, document);
                bundle.data.push((display.clone(), document));
            } else {
                continue;
            }
            hash_entry(&mut bundle.hash, &display, &bytes);
        }
        if bundle.policies.is_empty() {
            return Err(LoadError::NoPolicies(dir.display().to_string()));
        }
        Ok(bundle)
    }

    /// What the manifest does to decisions: status, exceptions, regulations (nothing without
    /// a manifest).
    pub(crate) fn gate(&self, dir: &Path) -> Result<warden_decision::PackageGate, LoadError> {
        match &self.package {
            Some(package) => {
                warden_decision::PackageGate::new(package).map_err(|message| LoadError::Manifest {
                    path: dir.join("warden.toml"),
                    message,
                })
            }
            None => Ok(warden_decision::PackageGate::default()),
        }
    }

    pub(crate) fn default_id(&self) -> &str {
        self.manifest.as_ref().map_or(&self.name, |m| &m.id)
    }

    /// `<version>+sha256.<hash>` with a manifest, `sha256.<hash>` without.
    pub(crate) fn revision(&self) -> String {
        let digest = self.hash.clone().finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        match &self.manifest {
            Some(m) => format!("{}+sha256.{hex}", m.version),
            None => format!("sha256.{hex}"),
        }
    }
}

fn hash_entry(hash: &mut Sha256, name: &str, bytes: &[u8]) {
    hash.update((name.len() as u64).to_le_bytes());
    hash.update(name.as_bytes());
    hash.update((bytes.len() as u64).to_le_bytes());
    hash.update(bytes);
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if file_type.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_path_buf());
            if out.len() > MAX_FILES {
                return Err(LoadError::TooManyFiles(root.to_path_buf()));
            }
        }
    }
    Ok(())
}

/// `a/b/data.json` holding `{...}` becomes `{"a": {"b": {...}}}`.
fn nest_at_folder(relative: &Path, document: serde_json::Value) -> serde_json::Value {
    let folders: Vec<String> = relative
        .parent()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    folders.into_iter().rev().fold(document, |inner, folder| {
        let mut map = serde_json::Map::new();
        map.insert(folder, inner);
        serde_json::Value::Object(map)
    })
}

/// A compiled entrypoint, ready to be evaluated by VMs or interpreters.
pub(crate) struct Compiled {
    pub(crate) engine: regorus::Engine,
    policy: regorus::CompiledPolicy,
    program: Arc<regorus::rvm::Program>,
    data: regorus::Value,
}

impl Compiled {
    pub(crate) fn new_vm(&self, max_instructions: usize) -> Result<RegoVM, String> {
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(self.program.clone());
        vm.set_max_instructions(max_instructions);
        vm.set_data(self.data.clone()).map_err(|e| e.to_string())?;
        Ok(vm)
    }
}

pub(crate) fn compile(bundle: &Bundle, entrypoint: &str) -> Result<Compiled, LoadError> {
    let mut engine = regorus::Engine::new();
    for (path, source) in &bundle.policies {
        engine
            .add_policy(path.clone(), source.clone())
            .map_err(|e| LoadError::Policy {
                path: path.clone(),
                message: e.to_string(),
            })?;
    }
    for (path, document) in &bundle.data {
        if !document.is_object() {
            return Err(LoadError::Data {
                path: path.clone(),
                message: "a data document must be a JSON object".into(),
            });
        }
        engine
            .add_data(regorus::Value::from(document.clone()))
            .map_err(|e| LoadError::Data {
                path: path.clone(),
                message: e.to_string(),
            })?;
    }
    let compile_error = |message: String| LoadError::Compile {
        entrypoint: entrypoint.to_owned(),
        message,
    };
    let rule: regorus::Rc<str> = regorus::Rc::from(entrypoint);
    let policy = engine
        .compile_with_entrypoint(&rule)
        .map_err(|e| compile_error(e.to_string()))?;
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy(&policy, &[entrypoint])
            .map_err(|e| compile_error(e.to_string()))?;
    let data = engine.get_data();
    let compiled = Compiled {
        engine,
        policy,
        program,
        data,
    };
    // One VM now, so that a program the VM rejects fails the load, not a request.
    compiled.new_vm(1).map_err(compile_error)?;
    Ok(compiled)
}

/// Which lines of one Rego file a set of requests evaluated.
#[cfg(feature = "coverage")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCoverage {
    /// The file, relative to the policy directory.
    pub path: String,
    /// The lines (1-based) that were evaluated.
    pub covered: Vec<u32>,
    /// The lines (1-based) of rules and expressions that were never evaluated.
    pub not_covered: Vec<u32>,
    /// The file's lines, to show the ones not covered.
    pub source: Vec<String>,
}

/// The line coverage of the Rego files in `dir` when its entrypoint (`entrypoint`, or the
/// manifest's, or [`DEFAULT_ENTRYPOINT`](crate::DEFAULT_ENTRYPOINT)) is evaluated for each of
/// `requests`, by regorus' interpreter. Evaluation errors are not coverage's concern: the
/// decisions themselves are checked by the PDP.
///
/// ```
/// use warden_decision::{AccessRequest, Action, Resource, Subject};
///
/// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
/// let health = AccessRequest::new(
///     Subject::new("anonymous", "anonymous"),
///     Action::new("GET"),
///     Resource::new("route", "/health"),
/// );
/// let files = warden_rego::line_coverage(dir, None, &[health]).unwrap();
/// assert!(files.iter().any(|f| !f.covered.is_empty() && !f.not_covered.is_empty()));
/// ```
#[cfg(feature = "coverage")]
pub fn line_coverage(
    dir: impl AsRef<Path>,
    entrypoint: Option<&str>,
    requests: &[warden_decision::AccessRequest],
) -> Result<Vec<FileCoverage>, LoadError> {
    let bundle = Bundle::read_dir(dir.as_ref())?;
    let entrypoint = entrypoint
        .map(str::to_owned)
        .or_else(|| bundle.manifest.as_ref().and_then(|m| m.entrypoint.clone()))
        .unwrap_or_else(|| crate::DEFAULT_ENTRYPOINT.to_owned());
    let compiled = compile(&bundle, &entrypoint)?;
    let mut engine = compiled.engine.clone();
    engine.set_enable_coverage(true);
    for request in requests {
        // The request as JSON is the input the PDP builds: the AuthZEN shape.
        let Ok(input) = serde_json::to_value(request) else {
            continue;
        };
        engine.set_input(regorus::Value::from(input));
        // A panic inside the engine must not take the tool down either.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.eval_rule(entrypoint.clone())
        }));
    }
    let report = engine
        .get_coverage_report()
        .map_err(|e| LoadError::Compile {
            entrypoint: entrypoint.clone(),
            message: e.to_string(),
        })?;
    let mut files: Vec<FileCoverage> = report
        .files
        .into_iter()
        .map(|f| FileCoverage {
            source: f.code.lines().map(str::to_owned).collect(),
            path: f.path,
            covered: f.covered.into_iter().collect(),
            not_covered: f.not_covered.into_iter().collect(),
        })
        .collect();
    // A file none of whose rules was evaluated is not in regorus' report: every line of code
    // in it is uncovered.
    for (path, source) in &bundle.policies {
        if files.iter().any(|f| &f.path == path) {
            continue;
        }
        let not_covered = source
            .lines()
            .zip(1u32..)
            .filter(|(line, _)| {
                let line = line.trim();
                !line.is_empty()
                    && !line.starts_with('#')
                    && !line.starts_with("package ")
                    && !line.starts_with("import ")
            })
            .map(|(_, n)| n)
            .collect();
        files.push(FileCoverage {
            path: path.clone(),
            covered: Vec::new(),
            not_covered,
            source: source.lines().map(str::to_owned).collect(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
