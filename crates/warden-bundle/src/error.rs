//! The errors of building, verifying and receiving bundles.

use std::path::PathBuf;

/// A bundle could not be built, or was refused.
///
/// Every refusal leaves the bundle in force (if any) in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A package directory cannot go into a bundle.
    #[error("package `{}`: {message}", path.display())]
    Package {
        /// The package directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The bytes are not a complete gzip-compressed tar archive (truncated, corrupted, not a
    /// bundle at all).
    #[error("not a complete bundle archive: {0}")]
    Archive(String),
    /// The archive is over a limit (size, file count, path length).
    #[error("bundle over a limit: {0}")]
    TooLarge(String),
    /// The manifest is missing or malformed, or names files the archive does not hold.
    #[error("bundle manifest is invalid: {0}")]
    Manifest(String),
    /// A file's content does not match the digest the manifest gives for it.
    #[error("digest of `{path}` does not match the manifest")]
    Digest {
        /// The file, inside the bundle.
        path: String,
    },
    /// The bundle carries no signature, and a key is configured.
    #[error("bundle is not signed, and a verification key is configured")]
    Unsigned,
    /// The signature does not verify with any configured key.
    #[error("signature does not verify: {0}")]
    Signature(String),
    /// The bundle's revision is older than the one in force (or the same revision with other
    /// content): activating it would go back in time.
    #[error("bundle revision {offered} is not newer than revision {active} in force{detail}")]
    Stale {
        /// The offered revision.
        offered: u64,
        /// The revision in force.
        active: u64,
        /// More detail (same revision, different digest).
        detail: &'static str,
    },
    /// No package of the bundle applies to this instance's region and environment.
    #[error("no package of bundle revision {revision} applies to {scope}")]
    NoPackage {
        /// The bundle's revision.
        revision: u64,
        /// The region and environment, as text.
        scope: String,
    },
    /// A key file is malformed.
    #[error("key `{}`: {message}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl BundleError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
