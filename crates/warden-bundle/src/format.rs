//! The bundle format: a gzip-compressed tar archive holding the packages' files, a manifest
//! and a signature.
//!
//! ```text
//! .warden/manifest.json    format, revision, packages (id, version, engine, regions,
//!                          environments), and every file with its SHA-256 and size
//! .warden/signature.json   {"algorithm": "ed25519", "key_id": "…", "signature": "<base64>"}
//! <package id>/…           the package's files (warden.toml, policies, data, schema)
//! ```
//!
//! The signature is made over `warden-bundle-v1\n` followed by the manifest's exact bytes; the
//! manifest names every file's digest, so the signature covers every byte of every file. The
//! bundle digest is the SHA-256 of the manifest's bytes: two bundles with the same digest hold
//! the same files at the same revision, which is what promotion publishes.

use serde::{Deserialize, Serialize};

/// The version of the format this crate writes and reads.
pub const FORMAT: u32 = 1;
/// Where the manifest sits in the archive.
pub const MANIFEST_PATH: &str = ".warden/manifest.json";
/// Where the signature sits in the archive.
pub const SIGNATURE_PATH: &str = ".warden/signature.json";
/// What the signature is made over, before the manifest's bytes.
pub(crate) const SIGNING_CONTEXT: &[u8] = b"warden-bundle-v1\n";

/// The largest compressed bundle accepted.
pub const MAX_ARCHIVE_BYTES: usize = 64 * 1024 * 1024;
/// The largest total size of a bundle's files, uncompressed.
pub const MAX_CONTENT_BYTES: u64 = 256 * 1024 * 1024;
/// The most files a bundle may hold.
pub const MAX_FILES: usize = 10_000;
/// The longest path inside a bundle.
pub const MAX_PATH_LEN: usize = 512;

/// The manifest of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The revision: a number that grows with every bundle published to a channel. A PDP never
    /// activates a revision lower than the one in force.
    pub revision: u64,
    /// When the bundle was built, in seconds since the Unix epoch.
    pub created: u64,
    /// The packages.
    pub packages: Vec<PackageEntry>,
    /// Every file of every package, sorted by path.
    pub files: Vec<FileEntry>,
}

/// A package of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageEntry {
    /// The package id (from its `warden.toml`); also the folder holding its files.
    pub id: String,
    /// The package version (from its `warden.toml`).
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
    /// The regions the package applies to; empty means every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The environments the package applies to; empty means every environment.
    #[serde(default)]
    pub environments: Vec<String>,
}

/// A file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The path inside the archive, `<package id>/<path in the package>`.
    pub path: String,
    /// The SHA-256 of the content, in hex.
    pub sha256: String,
    /// The size in bytes.
    pub size: u64,
}

/// The signature file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The id of the key that signed (see [`PublicKey::id`](crate::PublicKey::id)).
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
}

/// Where an instance runs: the region and environment a PDP was started with.
///
/// A package applies to an instance when its `regions` is empty or names the instance's region,
/// and its `environments` is empty or names the instance's environment. A package restricted to
/// some regions does not apply to an instance that names no region (fail closed).
///
/// ```
/// use warden_bundle::{PackageEntry, Scope};
///
/// let eu_only = PackageEntry {
///     id: "gdpr".into(), version: "1".into(), engine: "rego".into(),
///     regions: vec!["eu-west".into()], environments: vec![],
/// };
/// assert!(Scope::new(Some("eu-west"), Some("production")).includes(&eu_only));
/// assert!(!Scope::new(Some("us-east"), Some("production")).includes(&eu_only));
/// assert!(!Scope::default().includes(&eu_only));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The region, if the instance names one.
    pub region: Option<String>,
    /// The environment, if the instance names one.
    pub environment: Option<String>,
}

impl Scope {
    /// A scope.
    pub fn new(region: Option<&str>, environment: Option<&str>) -> Self {
        Self {
            region: region.map(str::to_owned),
            environment: environment.map(str::to_owned),
        }
    }

    /// Whether `package` applies here.
    pub fn includes(&self, package: &PackageEntry) -> bool {
        let matches = |allowed: &[String], mine: &Option<String>| {
            allowed.is_empty()
                || mine
                    .as_ref()
                    .is_some_and(|m| allowed.iter().any(|a| a == m))
        };
        matches(&package.regions, &self.region) && matches(&package.environments, &self.environment)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "region `{}`, environment `{}`",
            self.region.as_deref().unwrap_or("(none)"),
            self.environment.as_deref().unwrap_or("(none)")
        )
    }
}

/// Whether `id` can name a package (and its folder in the archive).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
