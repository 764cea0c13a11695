//! Policies put in force from outside the server, and `/status`.
//!
//! A server built with [`ServerBuilder::external`] loads nothing itself: something else — the
//! bundle agent of `warden serve --bundle`, which verifies each bundle before anything of it is
//! used — calls [`Server::activate_dirs`] with the package directories of a verified bundle.
//! Until the first activation the server is not ready (`/health` and every decision endpoint
//! answer `503`). A set of packages that fails to load leaves the packages in force in force.
//!
//! `GET /status` says what the server runs: readiness, the revision in force, the last load
//! error, and the status document its bundle agent keeps up to date with
//! [`Server::set_status`] (revision, digest, source, packages, last activation, last error).
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tower::ServiceExt;
//! use warden_server::Server;
//!
//! let server = Server::builder().external().build();
//! let get = || axum::http::Request::get("/health").body(axum::body::Body::empty()).unwrap();
//! assert_eq!(server.router().oneshot(get()).await.unwrap().status(), 503);
//!
//! let clinic = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
//! server.activate_dirs(&[clinic.into()]).unwrap();
//! assert_eq!(server.router().oneshot(get()).await.unwrap().status(), 200);
//! # });
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warden_decision::{Combined, Combining, Pdp, PolicyRevision};

use crate::routes::Shared;
use crate::{DEFAULT_OPA_PATH, Loaded, PolicyDir, PolicyError, Server, ServerBuilder};

impl ServerBuilder {
    /// Serve policies that [`Server::activate_dirs`] puts in force (a bundle agent's), instead
    /// of a directory the server loads and watches itself.
    #[must_use]
    pub fn external(mut self) -> Self {
        self.external = true;
        self
    }
}

impl Server {
    /// Loads the packages in `dirs` and puts them in force together, atomically: one package
    /// decides alone, several decide as one with deny-overrides. When any of them fails to
    /// load, nothing changes and the error says why (and `/health` shows it).
    pub fn activate_dirs(&self, dirs: &[PathBuf]) -> Result<PolicyRevision, PolicyError> {
        let result = self.open_all(dirs);
        self.state.metrics.reload(result.is_ok());
        let mut last_error = self
            .state
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(loaded) => {
                let revision = loaded.pdp.revision().ok_or_else(|| PolicyError {
                    path: PathBuf::new(),
                    message: "the policies name no revision".into(),
                })?;
                self.state.current.store(Some(Arc::new(loaded)));
                tracing::info!(policy = %revision.id, revision = %revision.revision, "policies activated");
                *last_error = None;
                Ok(revision)
            }
            Err(error) => {
                tracing::warn!(%error, "policies failed to load; the previous revision stays in force");
                *last_error = Some(error.to_string());
                Err(error)
            }
        }
    }

    fn open_all(&self, dirs: &[PathBuf]) -> Result<Loaded, PolicyError> {
        let mut opened = Vec::new();
        for dir in dirs {
            opened.push(PolicyDir::open(dir)?);
        }
        let opa_path = self.state.opa_path.clone().unwrap_or_else(|| {
            opened
                .iter()
                .find_map(PolicyDir::opa_path)
                .unwrap_or_else(|| DEFAULT_OPA_PATH.to_owned())
        });
        match opened.as_slice() {
            [] => Err(PolicyError {
                path: PathBuf::new(),
                message: "no package to activate".into(),
            }),
            [only] => Ok(Loaded {
                pdp: only.pdp(),
                entities: Arc::new(crate::entities::load(only.path())?),
                dir: None,
                opa_path,
            }),
            several => {
                let combined = several
                    .iter()
                    .fold(Combined::new(Combining::DenyOverrides), |combined, dir| {
                        combined.with(dir.pdp())
                    });
                let pdp: Arc<dyn Pdp> = Arc::new(combined);
                Ok(Loaded {
                    pdp,
                    entities: Arc::default(),
                    dir: None,
                    opa_path,
                })
            }
        }
    }

    /// Replaces the status document `/status` shows under `bundle`.
    pub fn set_status(&self, status: Value) {
        if let Ok(mut slot) = self.state.fleet_status.lock() {
            *slot = Some(status);
        }
    }
}

/// The bundle agent's counters for `/metrics`, when there is an agent.
pub(crate) fn metrics(state: &crate::State) -> String {
    use std::fmt::Write as _;
    let Some(status) = state.fleet_status.lock().ok().and_then(|s| s.clone()) else {
        return String::new();
    };
    let number = |key: &str| status.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "warden_bundle_revision",
            "gauge",
            "The revision of the bundle in force (0: none).",
            number("revision"),
        ),
        (
            "warden_bundle_activations_total",
            "counter",
            "Bundles activated since the start.",
            number("activations"),
        ),
        (
            "warden_bundle_refusals_total",
            "counter",
            "Bundles refused since the start (verification, revision, load).",
            number("refusals"),
        ),
        (
            "warden_bundle_cold_starts_total",
            "counter",
            "Starts served from the persisted bundle because the source was down.",
            number("cold_starts"),
        ),
        (
            "warden_bundle_from_persisted",
            "gauge",
            "1 while the bundle in force is the persisted one.",
            u64::from(
                status
                    .get("from_persisted")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
        ),
        (
            "warden_bundle_last_activation_timestamp_seconds",
            "gauge",
            "When the bundle in force was activated.",
            number("activated_at") / 1000,
        ),
        (
            "warden_bundle_source_error",
            "gauge",
            "1 while the last attempt (source or bundle) failed.",
            u64::from(status.get("last_error").is_some_and(|e| !e.is_null())),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

/// `GET /status`.
pub(crate) async fn status(axum::extract::State(state): Shared) -> Response {
    let loaded = state.current.load();
    let revision = loaded.as_ref().and_then(|l| l.pdp.revision());
    let last_error = state.last_error.lock().ok().and_then(|e| e.clone());
    let bundle = state.fleet_status.lock().ok().and_then(|s| s.clone());
    let body = json!({
        "ready": loaded.is_some(),
        "policy": revision.as_ref().map(|r| json!({"id": r.id, "revision": r.revision})),
        "last_error": last_error,
        "bundle": bundle.unwrap_or(Value::Null),
    });
    state.metrics.request("status", 200);
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    const CLINIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic-data");

    async fn get(server: &Server, path: &str) -> (u16, Value) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = server.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn an_external_server_is_not_ready_until_activated_and_keeps_its_packages_on_failure() {
        let server = Server::builder().external().build();
        assert_eq!(get(&server, "/health").await.0, 503);
        let (code, status) = get(&server, "/status").await;
        assert_eq!(code, 200);
        assert_eq!(status["ready"], false);

        let revision = server.activate_dirs(&[CLINIC.into()]).unwrap();
        assert_eq!(revision.id, "clinic");
        assert_eq!(get(&server, "/health").await.0, 200);

        let broken =
            std::env::temp_dir().join(format!("warden-server-broken-{}", std::process::id()));
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("p.rego"), "package p\nthis is not rego\n").unwrap();
        assert!(server.activate_dirs(std::slice::from_ref(&broken)).is_err());
        assert_eq!(server.revision().unwrap().id, "clinic");
        let (_, status) = get(&server, "/status").await;
        assert_eq!(status["policy"]["id"], "clinic");
        assert!(status["last_error"].as_str().unwrap().contains("p.rego"));
        std::fs::remove_dir_all(&broken).unwrap();

        server.set_status(
            json!({"revision": 4, "digest": "abc", "cold_starts": 1, "from_persisted": true}),
        );
        let (_, status) = get(&server, "/status").await;
        assert_eq!(status["bundle"]["revision"], 4);
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = server.router().oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains("\nwarden_bundle_revision 4\n"), "{text}");
        assert!(
            text.contains("\nwarden_bundle_cold_starts_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nwarden_bundle_from_persisted 1\n"),
            "{text}"
        );
        assert!(server.activate_dirs(&[]).is_err());
    }

    #[tokio::test]
    async fn several_packages_decide_together() {
        let server = Server::builder().external().build();
        let revision = server.activate_dirs(&[CLINIC.into(), DATA.into()]).unwrap();
        assert_eq!(revision.id, "clinic+clinic-data");
    }
}
