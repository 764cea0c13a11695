//! Reading a policy package (files or inline sources) and compiling it: schema, policies with
//! their ids and annotations, strict validation, entities.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{
    Effect, Entities, Policy, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode,
    Validator,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use warden_decision::{Advice, Obligation, Reason};

/// The most files a policy directory may hold.
const MAX_FILES: usize = 10_000;

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line.
    pub line: usize,
    /// The column, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub(crate) fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset = offset.saturating_sub(1);
        }
        let before = text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Self { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// ` at 3:14` or nothing.
fn at(position: &Option<Position>) -> String {
    position.map(|p| format!(" at {p}")).unwrap_or_default()
}

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
    /// A policy file does not parse.
    #[error("policy file `{path}` does not parse{}: {message}", at(.position))]
    Syntax {
        /// The file's path (or name, for inline policies).
        path: String,
        /// Where the first error is.
        position: Option<Position>,
        /// Cedar's message.
        message: String,
    },
    /// A policy does not validate against the schema (strict mode).
    #[error("policy `{policy}` in `{path}`{} does not validate against the schema: {message}", at(.position))]
    Validation {
        /// The file's path.
        path: String,
        /// The policy's id.
        policy: String,
        /// Where the error is.
        position: Option<Position>,
        /// Cedar's message.
        message: String,
    },
    /// A Warden annotation (`@obligation`, `@advice`, `@reason`) is malformed.
    #[error("policy `{policy}` in `{path}`{} has a malformed `@{annotation}` annotation: {message}", at(.position))]
    Annotation {
        /// The file's path.
        path: String,
        /// The policy's id.
        policy: String,
        /// The annotation's name.
        annotation: String,
        /// Where the annotation is.
        position: Option<Position>,
        /// What is wrong.
        message: String,
    },
    /// Two policies have the same id.
    #[error("policy id `{id}` is used twice, in `{first}` and `{second}`")]
    DuplicateId {
        /// The id.
        id: String,
        /// The file of the first policy.
        first: String,
        /// The file of the second policy.
        second: String,
    },
    /// A file holds a policy template; only static policies are supported.
    #[error("`{path}` holds a policy template{}; only static policies are supported", at(.position))]
    Template {
        /// The file's path.
        path: String,
        /// Where the template is.
        position: Option<Position>,
    },
    /// The schema does not parse or is inconsistent.
    #[error("schema `{path}` is invalid{}: {message}", at(.position))]
    Schema {
        /// The schema file's path.
        path: String,
        /// Where the error is, when Cedar says.
        position: Option<Position>,
        /// Cedar's message.
        message: String,
    },
    /// The entities do not parse or do not conform to the schema.
    #[error("entities `{path}` are invalid: {message}")]
    Entities {
        /// The entities file's path.
        path: String,
        /// Cedar's message.
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
    /// The namespace or an entity type mapping is not a valid Cedar name.
    #[error("entity type mapping is invalid: {0}")]
    Mapping(String),
    /// The Cedar engine failed while loading the package.
    #[error("the Cedar engine failed while loading: {0}")]
    Engine(String),
    /// There are no policies.
    #[error("no `.cedar` policies in `{0}`")]
    NoPolicies(String),
    /// The directory holds more files than a policy package may.
    #[error("`{0}` holds more than {MAX_FILES} files")]
    TooManyFiles(PathBuf),
}

/// The manifest `warden.toml` of a policy package. Keys other engines or tools use (owner,
/// regulations, entrypoint, ...) are tolerated.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) id: String,
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) cedar: CedarManifest,
}

/// The `[cedar]` table of a manifest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CedarManifest {
    /// The namespace of the mapped entity types and actions.
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    /// Explicit `kind = "Cedar::Type"` mappings.
    #[serde(default)]
    pub(crate) entity_types: HashMap<String, String>,
}

/// A schema source.
#[derive(Debug, Clone)]
pub(crate) enum SchemaText {
    /// Cedar schema syntax (`.cedarschema`).
    Cedar(String),
    /// JSON schema syntax (`.cedarschema.json`).
    Json(String),
}

/// Policies, schemas and entities read from somewhere, with their content hash.
pub(crate) struct Bundle {
    pub(crate) manifest: Option<Manifest>,
    /// The manifest as every engine reads it (status, regulations, exceptions).
    pub(crate) package: Option<warden_decision::PackageManifest>,
    name: String,
    policies: Vec<(String, String)>,
    schemas: Vec<(String, SchemaText)>,
    entities: Vec<(String, String)>,
    hash: Sha256,
}

impl Bundle {
    pub(crate) fn inline(
        policies: &[(String, String)],
        schemas: &[SchemaText],
        entities: &[serde_json::Value],
    ) -> Result<Self, LoadError> {
        let mut hash = Sha256::new();
        for (name, source) in policies {
            hash_entry(&mut hash, name, source.as_bytes());
        }
        let schemas: Vec<(String, SchemaText)> = schemas
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let name = match s {
                    SchemaText::Cedar(_) => format!("schema[{i}].cedarschema"),
                    SchemaText::Json(_) => format!("schema[{i}].cedarschema.json"),
                };
                (name, s.clone())
            })
            .collect();
        for (name, schema) in &schemas {
            let (SchemaText::Cedar(text) | SchemaText::Json(text)) = schema;
            hash_entry(&mut hash, name, text.as_bytes());
        }
        let entities: Vec<(String, String)> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("entities[{i}]"), e.to_string()))
            .collect();
        for (name, text) in &entities {
            hash_entry(&mut hash, name, text.as_bytes());
        }
        if policies.is_empty() {
            return Err(LoadError::NoPolicies("inline policies".into()));
        }
        Ok(Self {
            manifest: None,
            package: None,
            name: "inline".into(),
            policies: policies.to_vec(),
            schemas,
            entities,
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
            schemas: Vec::new(),
            entities: Vec::new(),
            hash: Sha256::new(),
        };
        for relative in files {
            let path = dir.join(&relative);
            let display = relative.to_string_lossy().replace('\\', "/");
            let name = relative
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = if relative.as_os_str() == "warden.toml" {
                FileKind::Manifest
            } else if name.ends_with(".cedarschema.json") {
                FileKind::SchemaJson
            } else if name.ends_with(".cedarschema") {
                FileKind::SchemaCedar
            } else if name.ends_with(".cedar") {
                FileKind::Policy
            } else if name == "entities.json" {
                FileKind::Entities
            } else {
                continue;
            };
            let bytes = fs::read(&path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            hash_entry(&mut bundle.hash, &display, &bytes);
            let text = String::from_utf8(bytes).map_err(|_| LoadError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
            })?;
            match kind {
                FileKind::Manifest => {
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
                }
                FileKind::SchemaJson => bundle.schemas.push((display, SchemaText::Json(text))),
                FileKind::SchemaCedar => bundle.schemas.push((display, SchemaText::Cedar(text))),
                FileKind::Policy => bundle.policies.push((display, text)),
                FileKind::Entities => bundle.entities.push((display, text)),
            }
        }
        if bundle.policies.is_empty() {
            return Err(LoadError::NoPolicies(dir.display().to_string()));
        }
        Ok(bundle)
    }

    /// What the manifest does to decisions: status, exceptions, regulations (nothing without
    /// a manifest).
    pub(crate) fn gate(
        &self,
        dir: Option<&Path>,
    ) -> Result<warden_decision::PackageGate, LoadError> {
        match &self.package {
            Some(package) => {
                warden_decision::PackageGate::new(package).map_err(|message| LoadError::Manifest {
                    path: dir.map(|d| d.join("warden.toml")).unwrap_or_default(),
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

enum FileKind {
    Manifest,
    SchemaJson,
    SchemaCedar,
    Policy,
    Entities,
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
        if entry.file_name().to_string_lossy().starts_with('.') {
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

/// What Warden reads from one policy's annotations.
#[derive(Debug, Clone)]
pub(crate) struct PolicyMeta {
    pub(crate) id: String,
    pub(crate) forbid: bool,
    pub(crate) obligations: Vec<Obligation>,
    pub(crate) advice: Vec<Advice>,
    pub(crate) reasons: Vec<Reason>,
}

/// A compiled policy package.
pub(crate) struct Compiled {
    pub(crate) policies: PolicySet,
    pub(crate) schema: Option<Schema>,
    /// The stored entities (with the schema's action entities when it declares action groups).
    pub(crate) entities: Entities,
    /// Annotations by policy, in load order (file order, then order within the file).
    pub(crate) meta: Vec<PolicyMeta>,
    /// Policy id to its index in `meta`.
    pub(crate) index: HashMap<String, usize, crate::entities::FxBuild>,
    /// How many decisions each policy (by index in `meta`) determined since the load.
    pub(crate) determined: Vec<std::sync::atomic::AtomicU64>,
}

pub(crate) fn compile(bundle: &Bundle) -> Result<Compiled, LoadError> {
    let schema = compile_schema(&bundle.schemas)?;
    let mut policies = PolicySet::new();
    let mut meta = Vec::new();
    let mut index = HashMap::default();
    // Policy id to the file that holds it (and the file's text, for positions).
    let mut origin: HashMap<String, (&str, &str)> = HashMap::new();
    for (path, text) in &bundle.policies {
        for (n, (policy, offset)) in parse_file(path, text)?.into_iter().enumerate() {
            let id = match policy.annotation("id") {
                Some(id) => id.to_owned(),
                None => format!("{}.{n}", file_stem(path)),
            };
            if let Some((first, _)) = origin.get(&id) {
                return Err(LoadError::DuplicateId {
                    id,
                    first: (*first).to_owned(),
                    second: path.clone(),
                });
            }
            let entry = read_annotations(&policy, &id, path, text, offset)?;
            let policy = policy.new_id(PolicyId::new(&id));
            policies.add(policy).map_err(|e| LoadError::DuplicateId {
                id: format!("{id} ({e})"),
                first: path.clone(),
                second: path.clone(),
            })?;
            origin.insert(id.clone(), (path.as_str(), text.as_str()));
            index.insert(id, meta.len());
            meta.push(entry);
        }
    }
    if let Some(schema) = &schema {
        validate(schema, &policies, &origin)?;
    }
    let entities = compile_entities(&bundle.entities, schema.as_ref())?;
    let determined = meta
        .iter()
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    Ok(Compiled {
        policies,
        schema,
        entities,
        meta,
        index,
        determined,
    })
}

/// `policies/clinic.cedar` → `clinic`.
fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".cedar").unwrap_or(name)
}

/// Parses one file into its static policies, in source order, each with its byte offset.
fn parse_file(path: &str, text: &str) -> Result<Vec<(Policy, usize)>, LoadError> {
    let set = PolicySet::from_str(text).map_err(|e| {
        let detail = DetailedError::from(&e);
        let position = detail
            .source_locations
            .first()
            .map(|l| Position::of(text, l.loc.start));
        LoadError::Syntax {
            path: path.to_owned(),
            position,
            message: one_line(&detail),
        }
    })?;
    if let Some(template) = set.templates().next() {
        let position = locate(text, 0, &template.to_cedar()).map(|o| Position::of(text, o));
        return Err(LoadError::Template {
            path: path.to_owned(),
            position,
        });
    }
    // `PolicySet::from_str` names the policies `policy0`, `policy1`, ... in source order.
    let mut numbered: Vec<(usize, Policy)> = set
        .policies()
        .map(|p| {
            let id: &str = p.id().as_ref();
            let n = id
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            (n, p.clone())
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let mut cursor = 0;
    let mut out = Vec::with_capacity(numbered.len());
    for (_, policy) in numbered {
        let offset = policy
            .to_cedar()
            .and_then(|source: String| {
                let found = locate(text, cursor, &source);
                if let Some(o) = found {
                    cursor = o + source.len();
                }
                found
            })
            .unwrap_or(cursor);
        out.push((policy, offset));
    }
    Ok(out)
}

/// The offset of `needle` in `text` at or after `from`.
fn locate(text: &str, from: usize, needle: &str) -> Option<usize> {
    text.get(from..)?.find(needle).map(|i| i + from)
}

/// Cedar's message with its help, on one line.
fn one_line(detail: &DetailedError) -> String {
    let mut message = detail.message.replace('\n', " ");
    if let Some(help) = &detail.help {
        message.push_str(" (");
        message.push_str(&help.replace('\n', " "));
        message.push(')');
    }
    message
}

/// The annotations Warden reads.
pub(crate) const OBLIGATION: &str = "obligation";
pub(crate) const ADVICE: &str = "advice";
pub(crate) const REASON: &str = "reason";
pub(crate) const REASON_CODE: &str = "reason_code";

fn read_annotations(
    policy: &Policy,
    id: &str,
    path: &str,
    text: &str,
    offset: usize,
) -> Result<PolicyMeta, LoadError> {
    let error = |annotation: &str, message: String| {
        let source = policy.to_cedar().unwrap_or_default();
        let within = source.find(&format!("@{annotation}")).unwrap_or(0);
        LoadError::Annotation {
            path: path.to_owned(),
            policy: id.to_owned(),
            annotation: annotation.to_owned(),
            position: Some(Position::of(text, offset + within)),
            message,
        }
    };
    let mut meta = PolicyMeta {
        id: id.to_owned(),
        forbid: policy.effect() == Effect::Forbid,
        obligations: Vec::new(),
        advice: Vec::new(),
        reasons: Vec::new(),
    };
    for (key, value) in policy.annotations() {
        match key {
            OBLIGATION if meta.forbid => {
                return Err(error(
                    key,
                    "a `forbid` policy denies: its obligations would never apply".into(),
                ));
            }
            OBLIGATION => {
                let json: serde_json::Value = serde_json::from_str(value)
                    .map_err(|e| error(key, format!("not JSON: {e}")))?;
                let obligation =
                    Obligation::from_json(json).map_err(|e| error(key, e.to_string()))?;
                meta.obligations.push(obligation);
            }
            ADVICE => {
                let json: serde_json::Value = serde_json::from_str(value)
                    .map_err(|e| error(key, format!("not JSON: {e}")))?;
                let advice: Advice = serde_json::from_value(json)
                    .map_err(|e| error(key, format!("not an advice object: {e}")))?;
                if advice.kind.is_empty() {
                    return Err(error(key, "advice `type` is empty".into()));
                }
                meta.advice.push(advice);
            }
            REASON => {
                if value.trim().is_empty() {
                    return Err(error(key, "the reason is empty".into()));
                }
                meta.reasons.push(Reason {
                    code: policy.annotation(REASON_CODE).map(str::to_owned),
                    message: value.to_owned(),
                });
            }
            REASON_CODE if policy.annotation(REASON).is_none() => {
                return Err(error(key, "`@reason_code` needs a `@reason`".into()));
            }
            // Likely misspellings of Warden's annotations: an obligation that is silently
            // ignored would weaken enforcement.
            "obligations" | "advices" | "reasons" | "reasoncode" => {
                let want = key.trim_end_matches('s');
                let want = if want == "reasoncode" {
                    REASON_CODE
                } else {
                    want
                };
                return Err(error(
                    key,
                    format!("unknown annotation (did you mean `@{want}`?)"),
                ));
            }
            _ => {}
        }
    }
    Ok(meta)
}

fn compile_schema(schemas: &[(String, SchemaText)]) -> Result<Option<Schema>, LoadError> {
    if schemas.is_empty() {
        return Ok(None);
    }
    let mut fragments = Vec::with_capacity(schemas.len());
    for (path, schema) in schemas {
        let fragment = match schema {
            SchemaText::Cedar(text) => {
                let (fragment, warnings) =
                    SchemaFragment::from_cedarschema_str(text).map_err(|e| {
                        let detail = DetailedError::from(&e);
                        LoadError::Schema {
                            path: path.clone(),
                            position: detail
                                .source_locations
                                .first()
                                .map(|l| Position::of(text, l.loc.start)),
                            message: one_line(&detail),
                        }
                    })?;
                for warning in warnings {
                    tracing::warn!(schema = %path, "cedar schema warning: {warning}");
                }
                fragment
            }
            SchemaText::Json(text) => {
                SchemaFragment::from_json_str(text).map_err(|e| LoadError::Schema {
                    path: path.clone(),
                    position: None,
                    message: one_line(&DetailedError::from(&e)),
                })?
            }
        };
        fragments.push(fragment);
    }
    let names: Vec<&str> = schemas.iter().map(|(p, _)| p.as_str()).collect();
    Schema::from_schema_fragments(fragments)
        .map(Some)
        .map_err(|e| LoadError::Schema {
            path: names.join(", "),
            position: None,
            message: one_line(&DetailedError::from(&e)),
        })
}

fn validate(
    schema: &Schema,
    policies: &PolicySet,
    origin: &HashMap<String, (&str, &str)>,
) -> Result<(), LoadError> {
    let validator = Validator::new(schema.clone());
    let result = validator.validate(policies, ValidationMode::Strict);
    for warning in result.validation_warnings() {
        tracing::warn!("cedar validation warning: {warning}");
    }
    let mut errors: Vec<LoadError> = result
        .validation_errors()
        .map(|e| {
            let policy = e.policy_id().to_string();
            let (path, text) = origin.get(&policy).copied().unwrap_or(("", ""));
            let detail = DetailedError::from(e);
            LoadError::Validation {
                path: path.to_owned(),
                position: detail
                    .source_locations
                    .first()
                    .map(|l| Position::of(text, l.loc.start)),
                policy,
                message: one_line(&detail),
            }
        })
        .collect();
    let count = errors.len();
    // The first error in file order; the message says how many more there are.
    errors.sort_by_key(|e| match e {
        LoadError::Validation { path, position, .. } => {
            (path.clone(), position.map(|p| (p.line, p.column)))
        }
        _ => (String::new(), None),
    });
    match errors.into_iter().next() {
        None => Ok(()),
        Some(LoadError::Validation {
            path,
            policy,
            position,
            mut message,
        }) if count > 1 => {
            message.push_str(&format!(" (and {} more validation errors)", count - 1));
            Err(LoadError::Validation {
                path,
                policy,
                position,
                message,
            })
        }
        Some(first) => Err(first),
    }
}

fn compile_entities(
    files: &[(String, String)],
    schema: Option<&Schema>,
) -> Result<Entities, LoadError> {
    let mut entities = match schema {
        // Action entities matter only for action groups (`action in Action::"read"`).
        Some(schema) if schema.action_groups().next().is_some() => {
            schema.action_entities().map_err(|e| LoadError::Schema {
                path: "schema".into(),
                position: None,
                message: one_line(&DetailedError::from(&e)),
            })?
        }
        _ => Entities::empty(),
    };
    for (path, text) in files {
        let error = |message: String| LoadError::Entities {
            path: path.clone(),
            message,
        };
        let parsed = Entities::from_json_str(text, schema)
            .map_err(|e| error(one_line(&DetailedError::from(&e))))?;
        // The schema's action entities come with every parsed file: keep the first copy.
        let fresh: Vec<_> = parsed
            .into_iter()
            .filter(|e| entities.get(&e.uid()).is_none() || !is_action(e))
            .collect();
        entities = entities
            .add_entities(fresh, None)
            .map_err(|e| error(one_line(&DetailedError::from(&e))))?;
    }
    Ok(entities)
}

fn is_action(entity: &cedar_policy::Entity) -> bool {
    entity.uid().type_name().basename() == "Action"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 3), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 7), Position { line: 2, column: 4 });
        // Inside a multi-byte character, and past the end: clamped.
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 3 });
        assert_eq!(Position::of(text, 99), Position { line: 3, column: 2 });
    }

    #[test]
    fn default_ids_count_policies_within_their_file() {
        let bundle = Bundle::inline(
            &[
                ("a.cedar".into(), "permit(principal, action, resource);\n@id(\"named\") permit(principal, action, resource);\nforbid(principal, action, resource);".into()),
                ("dir/b.cedar".into(), "permit(principal, action, resource);".into()),
            ],
            &[],
            &[],
        )
        .unwrap();
        let compiled = compile(&bundle).unwrap();
        let ids: Vec<&str> = compiled.meta.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a.0", "named", "a.2", "b.0"]);
        assert!(compiled.meta[2].forbid);
    }
}
