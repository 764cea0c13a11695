//! Signed policy bundles for a fleet of Warden PDPs.
//!
//! A **bundle** is the packages of a catalog in one gzip-compressed tar archive, with a
//! manifest naming the revision and every file's SHA-256, signed with Ed25519 (see
//! [`format`](mod@format)). [`BundleBuilder`] writes one (`warden build`); [`Verifier`] checks one before
//! anything of it is used: a bundle that is truncated, whose files do not match their digests,
//! whose signature does not verify, or that is unsigned while a key is configured, is refused.
//!
//! | feature | description | default |
//! |---|---|---|
//! | `http` | the HTTP(S) source ([`source::HttpSource`]: `ETag`, long polling) | yes |
//! | `nats` | the NATS JetStream source and channel ([`source::NatsSource`], [`source::Channel`]: bundles, change notifications, status) | yes |
//!
//! The book's chapter "Running a fleet" describes the format, the sources and the failure
//! modes; `warden build`, `verify`, `publish`, `status` and `warden serve --bundle` use this
//! crate.
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
//!
//! # Receiving bundles
//!
//! An [`Agent`] takes bundles from a [`source`] (a file, HTTP(S), NATS JetStream), verifies
//! each, refuses anything older than the bundle in force, extracts the packages that apply to its
//! [`Scope`] (region and environment) and hands them to an [`Activate`] — `warden serve
//! --bundle` loads them into the server; an embedded PDP loads them itself:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::{Arc, Mutex};
//! use warden_bundle::source::FileSource;
//! use warden_bundle::{Activation, Agent, AgentConfig, BundleBuilder, SecretKey, Verifier};
//! use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
//! use warden_rego::RegoPdp;
//!
//! let key = SecretKey::generate().unwrap();
//! let clinic = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
//! let bundle = BundleBuilder::new(1).package(clinic).unwrap().build(Some(&key)).unwrap();
//!
//! // The PDP the service decides with, replaced on every activation.
//! let current: Arc<Mutex<Option<Arc<RegoPdp>>>> = Arc::default();
//! let slot = current.clone();
//! let activate = move |activation: &Activation<'_>| {
//!     let (_, dir) = activation.packages.first().ok_or_else(|| "no package".to_owned())?;
//!     let pdp = RegoPdp::from_dir(dir).map_err(|e| e.to_string())?;
//!     *slot.lock().unwrap() = Some(Arc::new(pdp));
//!     Ok(())
//! };
//! let state = std::env::temp_dir().join(format!("warden-bundle-doc-{}", std::process::id()));
//! let config = AgentConfig::new("orders-1", Verifier::new(vec![key.public_key()]), &state);
//! let mut agent = Agent::new(Box::new(FileSource::new("bundle.tar.gz")), config, activate);
//! // A service runs `tokio::spawn(agent.run())`; here the bundle is offered by hand.
//! agent.offer(&bundle).unwrap();
//!
//! let pdp = current.lock().unwrap().clone().unwrap();
//! let health = AccessRequest::new(Subject::new("anonymous", "anonymous"), Action::new("GET"),
//!     Resource::new("route", "/health"));
//! assert!(pdp.decide(&health).await.unwrap().allowed);
//! # std::fs::remove_dir_all(&state).unwrap();
//! # });
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
