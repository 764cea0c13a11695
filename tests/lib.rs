//! Shared helpers of Warden's end-to-end tests.

use std::path::PathBuf;

use serde::Deserialize;
use warden_decision::AccessRequest;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The clinic policy package.
pub fn clinic_policy_dir() -> PathBuf {
    root().join("policies/clinic")
}

/// One case of a policy's case table.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// What the case checks.
    pub name: String,
    /// The access request.
    pub request: AccessRequest,
    /// The decision it must get.
    pub expect: Expect,
}

/// The expected decision of a case.
#[derive(Debug, Clone, Deserialize)]
pub struct Expect {
    /// Permit or deny.
    pub allow: bool,
    /// The types of the obligations, sorted.
    #[serde(default)]
    pub obligations: Vec<String>,
}

/// Reads the case table of a policy package (`cases.json`).
#[expect(
    clippy::panic,
    reason = "a test helper: a missing or broken table fails the test"
)]
pub fn cases(dir: &std::path::Path) -> Vec<Case> {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
