//! Verifying a bundle before it is activated: archive, manifest, every file's digest, the
//! signature.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Component, Path};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::format::{
    FORMAT, MANIFEST_PATH, MAX_ARCHIVE_BYTES, MAX_CONTENT_BYTES, MAX_FILES, MAX_PATH_LEN, Manifest,
    PackageEntry, SIGNATURE_PATH, SIGNING_CONTEXT, Scope, SignatureEntry, valid_id,
};
use crate::keys::hex;
use crate::{BundleError, PublicKey};

/// Checks bundles against a set of trusted keys.
///
/// With keys, a bundle must carry a signature one of them made; without keys
/// ([`Verifier::unsigned`]), signatures are not checked at all, and every bundle is taken on
/// its digests alone.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<PublicKey>,
}

impl Verifier {
    /// A verifier that accepts bundles signed by any of `keys`, and nothing else.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// A verifier that checks digests and structure but no signature.
    pub fn unsigned() -> Self {
        Self { keys: Vec::new() }
    }

    /// Whether signatures are required.
    pub fn requires_signature(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Reads and checks the archive in `bytes`: it must be a complete gzip-compressed tar,
    /// hold only regular files at safe paths, a well-formed manifest that lists exactly the
    /// files it holds with their digests, and (when keys are configured) a signature over the
    /// manifest by one of them.
    pub fn verify(&self, bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_ARCHIVE_BYTES {
            return Err(BundleError::TooLarge(format!(
                "archive of {} bytes, the limit is {MAX_ARCHIVE_BYTES}",
                bytes.len()
            )));
        }
        let mut entries = read_archive(bytes)?;
        let manifest_bytes = entries
            .remove(MANIFEST_PATH)
            .ok_or_else(|| BundleError::Manifest(format!("no `{MANIFEST_PATH}`")))?;
        let signature = entries.remove(SIGNATURE_PATH);
        // The signature first: nothing of an unsigned or forged manifest is interpreted
        // beyond the archive's structure.
        let signed_by = match (&signature, self.keys.is_empty()) {
            (None, false) => return Err(BundleError::Unsigned),
            (None, true) => None,
            (Some(_), true) => None,
            (Some(bytes), false) => Some(self.check_signature(bytes, &manifest_bytes)?),
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| BundleError::Manifest(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(BundleError::Manifest(format!(
                "format {} (this version reads format {FORMAT})",
                manifest.format
            )));
        }
        check_packages(&manifest.packages)?;
        let mut files = BTreeMap::new();
        for entry in &manifest.files {
            let Some(content) = entries.remove(&entry.path) else {
                return Err(BundleError::Manifest(format!(
                    "names `{}`, which the archive does not hold",
                    entry.path
                )));
            };
            if content.len() as u64 != entry.size
                || !hex(&Sha256::digest(&content)).eq_ignore_ascii_case(&entry.sha256)
            {
                return Err(BundleError::Digest {
                    path: entry.path.clone(),
                });
            }
            let package = entry.path.split('/').next().unwrap_or_default();
            if !manifest.packages.iter().any(|p| p.id == package) {
                return Err(BundleError::Manifest(format!(
                    "file `{}` belongs to no package",
                    entry.path
                )));
            }
            if files.insert(entry.path.clone(), content).is_some() {
                return Err(BundleError::Manifest(format!(
                    "lists `{}` twice",
                    entry.path
                )));
            }
        }
        if let Some(extra) = entries.keys().next() {
            return Err(BundleError::Manifest(format!(
                "the archive holds `{extra}`, which the manifest does not list"
            )));
        }
        Ok(Bundle {
            digest: hex(&Sha256::digest(&manifest_bytes)),
            manifest,
            signed_by,
            files,
            bytes: bytes.to_vec(),
        })
    }

    fn check_signature(&self, bytes: &[u8], manifest: &[u8]) -> Result<String, BundleError> {
        let entry: SignatureEntry = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Signature(format!("malformed signature file: {e}")))?;
        if entry.algorithm != "ed25519" {
            return Err(BundleError::Signature(format!(
                "algorithm `{}` (only ed25519 is accepted)",
                entry.algorithm
            )));
        }
        let signature = STANDARD
            .decode(entry.signature.as_bytes())
            .map_err(|_| BundleError::Signature("the signature is not base64".into()))?;
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(manifest);
        // The key id only picks the key to try; the signature decides.
        let key = self
            .keys
            .iter()
            .find(|k| k.id() == entry.key_id)
            .ok_or_else(|| {
                BundleError::Signature(format!(
                    "made by key `{}`, which is not a configured key",
                    entry.key_id
                ))
            })?;
        key.verify(&message, &signature)
            .map_err(BundleError::Signature)?;
        Ok(key.id())
    }
}

fn check_packages(packages: &[PackageEntry]) -> Result<(), BundleError> {
    if packages.is_empty() {
        return Err(BundleError::Manifest("no packages".into()));
    }
    for (i, package) in packages.iter().enumerate() {
        if !valid_id(&package.id) {
            return Err(BundleError::Manifest(format!(
                "package id `{}` is not a valid name",
                package.id
            )));
        }
        if packages.iter().take(i).any(|p| p.id == package.id) {
            return Err(BundleError::Manifest(format!(
                "package `{}` is listed twice",
                package.id
            )));
        }
        if package.engine != "rego" && package.engine != "cedar" {
            return Err(BundleError::Manifest(format!(
                "package `{}` has engine `{}` (expected rego or cedar)",
                package.id, package.engine
            )));
        }
    }
    Ok(())
}

/// Every file of the archive, by path. Refuses anything but regular files and directories,
/// unsafe paths, duplicates, and archives over the limits.
fn read_archive(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let archive_error = |e: std::io::Error| BundleError::Archive(e.to_string());
    let mut gz = flate2::read::GzDecoder::new(bytes);
    let mut tar_bytes = Vec::new();
    (&mut gz)
        .take(MAX_CONTENT_BYTES + 64 * 1024 * 1024)
        .read_to_end(&mut tar_bytes)
        .map_err(archive_error)?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let mut ended = false;
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(archive_error)?.into_owned();
        let name = safe_path(&path)?;
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(BundleError::Archive(format!(
                "`{name}` is not a regular file (links and devices are refused)"
            )));
        }
        let size = entry.header().size().map_err(archive_error)?;
        total = total.saturating_add(size);
        if total > MAX_CONTENT_BYTES {
            return Err(BundleError::TooLarge(format!(
                "more than {MAX_CONTENT_BYTES} bytes of files"
            )));
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(archive_error)?;
        if content.len() as u64 != size {
            return Err(BundleError::Archive(format!("`{name}` is cut short")));
        }
        if files.insert(name.clone(), content).is_some() {
            return Err(BundleError::Archive(format!(
                "`{name}` is in the archive twice"
            )));
        }
        if files.len() > MAX_FILES + 2 {
            return Err(BundleError::TooLarge(format!(
                "more than {MAX_FILES} files"
            )));
        }
        ended = true;
    }
    if !ended {
        return Err(BundleError::Archive("the archive holds no files".into()));
    }
    // A tar archive ends with two zero blocks; a stream cut at an entry boundary lacks them.
    let trailer = tar_bytes.len() >= 1024
        && tar_bytes
            .get(tar_bytes.len() - 1024..)
            .is_some_and(|end| end.iter().all(|b| *b == 0));
    if !trailer {
        return Err(BundleError::Archive("the archive is cut short".into()));
    }
    Ok(files)
}

fn safe_path(path: &Path) -> Result<String, BundleError> {
    let text = path
        .to_str()
        .ok_or_else(|| BundleError::Archive("a path that is not UTF-8".into()))?;
    let unsafe_path = || BundleError::Archive(format!("unsafe path `{text}`"));
    if text.len() > MAX_PATH_LEN || text.contains('\\') {
        return Err(unsafe_path());
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(unsafe_path)?),
            Component::CurDir => {}
            _ => return Err(unsafe_path()),
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path());
    }
    Ok(parts.join("/"))
}

/// A verified bundle: its manifest, digest, signer, and files, in memory.
#[derive(Clone)]
pub struct Bundle {
    manifest: Manifest,
    digest: String,
    signed_by: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("revision", &self.manifest.revision)
            .field("digest", &self.digest)
            .field("signed_by", &self.signed_by)
            .field("files", &self.files.len())
            .finish()
    }
}

impl Bundle {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The revision.
    pub fn revision(&self) -> u64 {
        self.manifest.revision
    }

    /// The bundle digest: the SHA-256 of the manifest, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The id of the key whose signature was verified; `None` when no key was configured.
    pub fn signed_by(&self) -> Option<&str> {
        self.signed_by.as_deref()
    }

    /// The archive as received (what is persisted for a cold start).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packages that apply to `scope`.
    pub fn packages_for<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a PackageEntry> {
        self.manifest.packages.iter().filter(|p| scope.includes(p))
    }

    /// Writes the files of `package` into `dir` (which must not exist yet, or be empty), and
    /// returns nothing else: the caller loads `dir` as a policy directory.
    pub fn extract_package(&self, package: &str, dir: &Path) -> Result<(), BundleError> {
        let prefix = format!("{package}/");
        std::fs::create_dir_all(dir).map_err(|e| BundleError::io("create", dir, e))?;
        for (path, content) in self.files.range(prefix.clone()..) {
            let Some(relative) = path.strip_prefix(&prefix) else {
                break;
            };
            let target = dir.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| BundleError::io("create", parent, e))?;
            }
            std::fs::write(&target, content).map_err(|e| BundleError::io("write", &target, e))?;
        }
        Ok(())
    }
}
