//! What an instance reports about itself: served at `/status`, pushed to the channel, read by
//! `warden status`.

use serde::{Deserialize, Serialize};

/// The status of one PDP instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance's name (unique in the fleet).
    pub instance: String,
    /// Its region, if it names one.
    #[serde(default)]
    pub region: Option<String>,
    /// Its environment, if it names one.
    #[serde(default)]
    pub environment: Option<String>,
    /// Where it receives bundles from.
    pub source: String,
    /// The revision of the bundle in force.
    #[serde(default)]
    pub revision: Option<u64>,
    /// The digest of the bundle in force.
    #[serde(default)]
    pub digest: Option<String>,
    /// The key that signed the bundle in force, when signatures are checked.
    #[serde(default)]
    pub signed_by: Option<String>,
    /// The packages in force (those of the bundle that apply to this region and environment).
    #[serde(default)]
    pub packages: Vec<ActivePackage>,
    /// When the bundle in force was activated, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub activated_at: Option<u64>,
    /// Whether the bundle in force came from the persisted copy (a cold start with the source
    /// down), not from the source.
    #[serde(default)]
    pub from_persisted: bool,
    /// The last error (a refused bundle, an unreachable source), if the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When that error happened, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_error_at: Option<u64>,
    /// Bundles activated since the start.
    #[serde(default)]
    pub activations: u64,
    /// Bundles refused since the start.
    #[serde(default)]
    pub refusals: u64,
    /// Starts served from the persisted bundle (0 or 1).
    #[serde(default)]
    pub cold_starts: u64,
    /// When this status was written, in milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// A package in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePackage {
    /// The package id.
    pub id: String,
    /// The package version.
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
