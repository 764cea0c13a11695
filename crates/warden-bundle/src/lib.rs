//! Signed policy bundles for a fleet of Warden PDPs.
//!
//! A **bundle** is the packages of a catalog in one gzip-compressed tar archive, with a
//! manifest naming the revision and every file's SHA-256, signed with Ed25519 (see
//! [`format`]). [`BundleBuilder`] writes one (`warden build`); [`Verifier`] checks one before
//! anything of it is used: a bundle that is truncated, whose files do not match their digests,
//! whose signature does not verify, or that is unsigned while a key is configured, is refused.
//!
//! # Example
//!
//! ```
//! use warden_bundle::{BundleBuilder, BundleError, SecretKey, Verifier};
//!
//! let key = SecretKey::generate().unwrap();
//! let clinic = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
//! let signed = BundleBuilder::new(1).package(clinic).unwrap().build(Some(&key)).unwrap();
//! let unsigned = BundleBuilder::new(1).package(clinic).unwrap().build(None).unwrap();
//!
//! let verifier = Verifier::new(vec![key.public_key()]);
//! assert_eq!(verifier.verify(&signed).unwrap().revision(), 1);
//! assert!(matches!(verifier.verify(&unsigned), Err(BundleError::Unsigned)));
//! assert!(matches!(verifier.verify(&signed[..signed.len() / 2]), Err(BundleError::Archive(_))));
//! ```

pub mod agent;
mod build;
mod error;
pub mod format;
mod keys;
pub mod source;
pub mod status;
mod verify;

pub use agent::{Activate, Activation, Agent, AgentConfig, Offered};
pub use build::BundleBuilder;
pub use error::BundleError;
pub use format::{FileEntry, Manifest, PackageEntry, Scope};
pub use keys::{PublicKey, SecretKey};
pub use source::{BundleSource, SourceError};
pub use status::InstanceStatus;
pub use verify::{Bundle, Verifier};

#[cfg(test)]
mod tests;
