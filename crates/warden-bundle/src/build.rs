//! Building a bundle from package directories (`warden build`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use warden_decision::PackageManifest;

use crate::format::{
    FORMAT, FileEntry, MANIFEST_PATH, MAX_FILES, Manifest, PackageEntry, SIGNATURE_PATH,
    SIGNING_CONTEXT, SignatureEntry, valid_id,
};
use crate::keys::hex;
use crate::{BundleError, SecretKey};

/// A file of a package: its path in the archive, its content.
type NamedFile = (String, Vec<u8>);

/// Builds a bundle: packages in, the archive's bytes out.
///
/// ```
/// use warden_bundle::{BundleBuilder, SecretKey, Verifier};
///
/// let key = SecretKey::generate().unwrap();
/// let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
/// let bytes = BundleBuilder::new(7).package(policies).unwrap().build(Some(&key)).unwrap();
///
/// let bundle = Verifier::new(vec![key.public_key()]).verify(&bytes).unwrap();
/// assert_eq!(bundle.revision(), 7);
/// assert_eq!(bundle.manifest().packages[0].id, "clinic");
/// ```
#[derive(Debug)]
pub struct BundleBuilder {
    revision: u64,
    created: u64,
    packages: Vec<(PackageEntry, Vec<NamedFile>)>,
}

impl BundleBuilder {
    /// A bundle at `revision`, built now.
    pub fn new(revision: u64) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            revision,
            created,
            packages: Vec::new(),
        }
    }

    /// Sets the build time (seconds since the Unix epoch), for reproducible bundles.
    #[must_use]
    pub fn created(mut self, seconds: u64) -> Self {
        self.created = seconds;
        self
    }

    /// Adds the package in `dir`: its `warden.toml` (id, version, and optional `regions` and
    /// `environments`) and every file under it except hidden ones.
    pub fn package(mut self, dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref();
        let error = |message: String| BundleError::Package {
            path: dir.to_owned(),
            message,
        };
        let manifest_path = dir.join("warden.toml");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| BundleError::io("read", &manifest_path, e))?;
        let manifest: PackageManifest =
            toml::from_str(&text).map_err(|e| error(format!("warden.toml: {}", e.message())))?;
        if !valid_id(&manifest.id) {
            return Err(error(format!(
                "package id `{}` may hold only letters, digits, `-`, `_` and `.`, and may not start with `.`",
                manifest.id
            )));
        }
        if self.packages.iter().any(|(p, _)| p.id == manifest.id) {
            return Err(error(format!(
                "package `{}` is in the bundle twice",
                manifest.id
            )));
        }
        for name in manifest.regions.iter().chain(&manifest.environments) {
            if name.trim().is_empty() {
                return Err(error("an empty region or environment name".into()));
            }
        }
        let mut relative = Vec::new();
        collect(dir, dir, &mut relative)?;
        relative.sort();
        let has = |ext: &str| {
            relative
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == ext))
        };
        let engine = match (has("rego"), has("cedar")) {
            (true, false) => "rego",
            (false, true) => "cedar",
            (true, true) => return Err(error("holds both .rego and .cedar files".into())),
            (false, false) => return Err(error("holds no .rego or .cedar files".into())),
        };
        let mut files = Vec::new();
        for path in relative {
            let full = dir.join(&path);
            let bytes = std::fs::read(&full).map_err(|e| BundleError::io("read", &full, e))?;
            let name = path
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((format!("{}/{name}", manifest.id), bytes));
        }
        self.packages.push((
            PackageEntry {
                id: manifest.id,
                version: manifest.version,
                engine: engine.to_owned(),
                regions: manifest.regions,
                environments: manifest.environments,
            },
            files,
        ));
        Ok(self)
    }

    /// Writes the archive, signed with `key` when one is given.
    pub fn build(self, key: Option<&SecretKey>) -> Result<Vec<u8>, BundleError> {
        if self.packages.is_empty() {
            return Err(BundleError::Manifest(
                "a bundle needs at least one package".into(),
            ));
        }
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut packages = Vec::new();
        for (package, files) in self.packages {
            packages.push(package);
            entries.extend(files);
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if entries.len() > MAX_FILES {
            return Err(BundleError::TooLarge(format!(
                "more than {MAX_FILES} files"
            )));
        }
        let manifest = Manifest {
            format: FORMAT,
            revision: self.revision,
            created: self.created,
            packages,
            files: entries
                .iter()
                .map(|(path, bytes)| FileEntry {
                    path: path.clone(),
                    sha256: hex(&Sha256::digest(bytes)),
                    size: bytes.len() as u64,
                })
                .collect(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BundleError::Manifest(e.to_string()))?;
        let mut head = vec![(MANIFEST_PATH.to_owned(), manifest_bytes.clone())];
        if let Some(key) = key {
            let mut message = SIGNING_CONTEXT.to_vec();
            message.extend_from_slice(&manifest_bytes);
            let signature = SignatureEntry {
                algorithm: "ed25519".into(),
                key_id: key.public_key().id(),
                signature: STANDARD.encode(key.sign(&message)),
            };
            let bytes = serde_json::to_vec_pretty(&signature)
                .map_err(|e| BundleError::Manifest(e.to_string()))?;
            head.push((SIGNATURE_PATH.to_owned(), bytes));
        }
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (path, bytes) in head.iter().chain(&entries) {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(self.created);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, bytes.as_slice())
                .map_err(|e| BundleError::Archive(e.to_string()))?;
        }
        let mut gz = tar
            .into_inner()
            .map_err(|e| BundleError::Archive(e.to_string()))?;
        gz.flush()
            .map_err(|e| BundleError::Archive(e.to_string()))?;
        gz.finish().map_err(|e| BundleError::Archive(e.to_string()))
    }
}

/// Every regular file under `dir`, relative to `root`, skipping hidden entries. A symbolic
/// link is refused: a bundle holds what the directory holds, nothing it points at.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BundleError::io("read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::io("read", dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| BundleError::io("read", &path, e))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            if name.to_str().is_none() {
                return Err(BundleError::Package {
                    path: path.clone(),
                    message: "a file name that is not UTF-8".into(),
                });
            }
            if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_owned());
            }
            if out.len() > MAX_FILES {
                return Err(BundleError::TooLarge(format!(
                    "`{}` holds more than {MAX_FILES} files",
                    root.display()
                )));
            }
        } else {
            return Err(BundleError::Package {
                path,
                message: "is neither a file nor a directory (a bundle takes no links)".into(),
            });
        }
    }
    Ok(())
}
