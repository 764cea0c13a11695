//! Rollback: the last good revisions of a policy directory, kept in memory, and the switch back
//! to one of them.
//!
//! Every revision the server loads successfully from its policy directory is remembered, files
//! and all (the last [`DEFAULT_KEPT_REVISIONS`]). [`Server::rollback`] — or an authenticated
//! `POST /v1/admin/rollback` — loads a kept revision from its remembered files and puts it in
//! force atomically; the switch is logged (target `warden::rollback`, from, to and who). The
//! rolled-back revision stays in force until the policy directory changes again: the next
//! change is loaded as usual, from the directory.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /v1/admin/revisions` | the revision in force and the kept ones, newest first |
//! | `POST /v1/admin/rollback` `{"revision": "1.0.0+sha256.…"}` | switches; without `revision`, to the newest kept one that is not in force |
//!
//! Both need an authenticated caller (a bearer token or a client certificate configured on the
//! server); a server without caller authentication answers `403`: switching policies is never
//! open to anyone.
//!
//! ```
//! use warden_server::Server;
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
//! let server = Server::builder().policy_dir(dir).build();
//! let loaded = server.load().unwrap();
//! assert_eq!(server.kept_revisions()[0].revision, loaded.revision);
//! // Nothing older to go back to yet.
//! assert!(server.rollback(None, "docs").is_err());
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_decision::PolicyRevision;

use crate::{Loaded, PolicyDir, Server, State};

/// How many good revisions a server keeps unless told otherwise.
pub const DEFAULT_KEPT_REVISIONS: usize = 5;

/// The largest policy directory a kept revision may hold, in bytes.
const MAX_KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// A revision the server can roll back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptRevision {
    /// The policy id.
    pub id: String,
    /// The revision.
    pub revision: String,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
}

/// Why a rollback did not happen. The revision in force stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The server decides with a PDP it was given, not a policy directory.
    #[error("the server serves no policy directory")]
    NoDirectory,
    /// No kept revision other than the one in force.
    #[error("no kept revision to roll back to")]
    NothingKept,
    /// The revision asked for is not kept.
    #[error("revision `{0}` is not kept")]
    Unknown(String),
    /// The kept files no longer load.
    #[error("kept revision `{revision}` does not load: {message}")]
    Load {
        /// The revision.
        revision: String,
        /// Why.
        message: String,
    },
}

/// The kept revisions of a server.
#[derive(Debug)]
pub(crate) struct Kept {
    max: AtomicUsize,
    revisions: Mutex<VecDeque<Snapshot>>,
    /// Where kept revisions are written to be loaded again.
    scratch: PathBuf,
    next: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Snapshot {
    kept: KeptRevision,
    /// The directory's name (a package without a manifest is named by it).
    name: String,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Default for Kept {
    fn default() -> Self {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        Self {
            max: AtomicUsize::new(DEFAULT_KEPT_REVISIONS),
            revisions: Mutex::new(VecDeque::new()),
            scratch: std::env::temp_dir().join(format!(
                "warden-kept-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, Ordering::Relaxed)
            )),
            next: AtomicUsize::new(0),
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Kept {
    /// Remembers the files of `dir` as `revision`, newest first; a revision already kept moves
    /// to the front. A directory that cannot be read whole is not kept (and logged).
    pub(crate) fn remember(&self, dir: &Path, revision: &PolicyRevision) {
        let mut revisions = self
            .revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = revisions
            .iter()
            .position(|s| s.kept.revision == revision.revision && s.kept.id == revision.id)
        {
            if let Some(snapshot) = revisions.remove(i) {
                revisions.push_front(snapshot);
            }
            return;
        }
        let files = match read_all(dir) {
            Ok(files) => files,
            Err(message) => {
                tracing::warn!(%message, "the loaded revision cannot be kept for rollback");
                return;
            }
        };
        revisions.push_front(Snapshot {
            kept: KeptRevision {
                id: revision.id.clone(),
                revision: revision.revision.clone(),
                loaded_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            },
            name: dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "policy".into()),
            files,
        });
        revisions.truncate(self.max.load(Ordering::Relaxed).max(1));
    }

    fn list(&self) -> Vec<KeptRevision> {
        self.revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| s.kept.clone())
            .collect()
    }

    /// Writes `snapshot` to a fresh folder and loads it.
    fn load(&self, snapshot: &Snapshot) -> Result<PolicyDir, RollbackError> {
        let fail = |message: String| RollbackError::Load {
            revision: snapshot.kept.revision.clone(),
            message,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.join(n.to_string()).join(&snapshot.name);
        for (relative, bytes) in &snapshot.files {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            std::fs::write(&path, bytes).map_err(|e| fail(e.to_string()))?;
        }
        let policies = PolicyDir::open(&dir).map_err(|e| fail(e.message))?;
        let revision = policies.revision().unwrap_or_default();
        if revision.revision != snapshot.kept.revision {
            return Err(fail(format!(
                "its files load as revision `{}`",
                revision.revision
            )));
        }
        Ok(policies)
    }
}

/// Every regular file under `dir` with its contents, skipping hidden entries.
fn read_all(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        let entries =
            std::fs::read_dir(&here).map_err(|e| format!("cannot read {}: {e}", here.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", here.display()))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            let name = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(name);
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())
                    .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
                total += bytes.len() as u64;
                if total > MAX_KEPT_BYTES {
                    return Err(format!(
                        "{} holds more than {MAX_KEPT_BYTES} bytes",
                        dir.display()
                    ));
                }
                out.push((name, bytes));
            }
        }
    }
    Ok(out)
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollback {
    /// The revision that was in force.
    pub from: Option<PolicyRevision>,
    /// The revision in force now.
    pub to: PolicyRevision,
}

impl Server {
    /// Keeps the last `n` good revisions (at least one; default [`DEFAULT_KEPT_REVISIONS`]).
    #[must_use]
    pub fn keep_revisions(self, n: usize) -> Self {
        self.state.kept.max.store(n.max(1), Ordering::Relaxed);
        self
    }

    /// The kept revisions, newest first.
    pub fn kept_revisions(&self) -> Vec<KeptRevision> {
        self.state.kept.list()
    }

    /// Puts kept revision `to` in force (by its revision string), or without `to` the newest
    /// kept revision that is not in force; atomically, and logged with `by`, who asked.
    pub fn rollback(&self, to: Option<&str>, by: &str) -> Result<Rollback, RollbackError> {
        rollback(&self.state, to, by)
    }
}

fn rollback(state: &State, to: Option<&str>, by: &str) -> Result<Rollback, RollbackError> {
    if !matches!(state.source, crate::Source::Dir(_)) {
        return Err(RollbackError::NoDirectory);
    }
    let current = state.current.load_full();
    let from = current.as_ref().and_then(|l| l.pdp.revision());
    let snapshot = {
        let revisions = state
            .kept
            .revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match to {
            Some(to) => revisions
                .iter()
                .find(|s| s.kept.revision == to)
                .cloned()
                .ok_or_else(|| RollbackError::Unknown(to.to_owned()))?,
            None => revisions
                .iter()
                .find(|s| from.as_ref().is_none_or(|f| f.revision != s.kept.revision))
                .cloned()
                .ok_or(RollbackError::NothingKept)?,
        }
    };
    let policies = state.kept.load(&snapshot)?;
    let revision = policies.revision().unwrap_or_default();
    let opa_path = current
        .as_ref()
        .map(|l| l.opa_path.clone())
        .or_else(|| policies.opa_path())
        .unwrap_or_else(|| crate::DEFAULT_OPA_PATH.to_owned());
    let entities = current
        .as_ref()
        .map(|l| l.entities.clone())
        .unwrap_or_default();
    state.current.store(Some(Arc::new(Loaded {
        pdp: policies.pdp(),
        dir: Some(policies),
        opa_path,
        entities,
    })));
    tracing::warn!(
        target: "warden::rollback",
        policy = %revision.id,
        from = from.as_ref().map_or("", |f| f.revision.as_str()),
        to = %revision.revision,
        by,
        "policy rolled back"
    );
    Ok(Rollback { from, to: revision })
}

/// `GET /v1/admin/revisions` and `POST /v1/admin/rollback`.
pub(crate) fn routes(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/admin/revisions", get(list))
        .route("/v1/admin/rollback", post(switch))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    revision: Option<String>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Admin endpoints are never open: without caller authentication configured, `403`. (With it,
/// the authentication layer has already refused unknown callers.)
fn refuse_if_open(state: &State) -> Option<Response> {
    (!state.callers.required()).then(|| {
        answer(
            StatusCode::FORBIDDEN,
            json!({"error": "admin endpoints need caller authentication (a bearer token or client certificates) on the server"}),
        )
    })
}

async fn list(Extract(state): Extract<Arc<State>>) -> Response {
    if let Some(refused) = refuse_if_open(&state) {
        return refused;
    }
    let current = state.current.load().as_ref().and_then(|l| l.pdp.revision());
    answer(
        StatusCode::OK,
        json!({"current": current, "kept": state.kept.list()}),
    )
}

async fn switch(Extract(state): Extract<Arc<State>>, body: axum::body::Bytes) -> Response {
    if let Some(refused) = refuse_if_open(&state) {
        return refused;
    }
    let body: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("the body is not {{\"revision\": …}}: {e}")}),
                );
            }
        }
    };
    let worker = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        rollback(&worker, body.revision.as_deref(), "admin endpoint")
    })
    .await;
    match result {
        Ok(Ok(done)) => answer(StatusCode::OK, json!(done)),
        Ok(Err(error)) => {
            let status = match error {
                RollbackError::Unknown(_) => StatusCode::NOT_FOUND,
                RollbackError::NothingKept | RollbackError::NoDirectory => StatusCode::CONFLICT,
                RollbackError::Load { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            answer(status, json!({"error": error.to_string()}))
        }
        Err(_) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "the rollback failed"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    use super::*;

    /// A copy of the clinic package's files in a fresh folder.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warden-rollback-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic");
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        dir
    }

    /// The clinic package with nurses no longer reading patients: a bad release.
    fn break_nurses(dir: &Path) {
        let path = dir.join("data.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            r#""care_roles": ["doctor", "nurse"]"#,
            r#""care_roles": ["doctor"]"#,
        );
        std::fs::write(path, text).unwrap();
    }

    async fn call(
        server: &Server,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = server
            .router()
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    const NURSE: &str = r#"{"subject": {"type": "user", "id": "nina", "properties": {"role": "nurse", "clinics": ["c1"]}},
        "action": {"name": "GET"},
        "resource": {"type": "route", "id": "/clinics/{clinic_id}/patients/{patient_id}",
                     "properties": {"params": {"clinic_id": "c1", "patient_id": "p1"}}}}"#;

    async fn nurse_permitted(server: &Server) -> bool {
        let (status, body) = call(
            server,
            "POST",
            "/access/v1/evaluation",
            Some("admin-token"),
            NURSE,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["decision"] == true
    }

    #[tokio::test]
    async fn rollback_puts_the_previous_good_revision_in_force_and_a_new_change_wins_again() {
        let dir = scratch("switch");
        let server = Server::builder()
            .policy_dir(&dir)
            .bearer_token("admin-token")
            .build();
        let good = server.load().unwrap();
        assert!(nurse_permitted(&server).await);
        break_nurses(&dir);
        let bad = server.load().unwrap();
        assert_ne!(good.revision, bad.revision);
        assert!(
            !nurse_permitted(&server).await,
            "the bad release is in force"
        );

        // Without a token: refused by authentication; with one, switched.
        let (status, _) = call(&server, "POST", "/v1/admin/rollback", None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(
            &server,
            "GET",
            "/v1/admin/revisions",
            Some("admin-token"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["current"]["revision"], bad.revision.as_str());
        assert_eq!(body["kept"][1]["revision"], good.revision.as_str());
        let (status, body) = call(
            &server,
            "POST",
            "/v1/admin/rollback",
            Some("admin-token"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["from"]["revision"], bad.revision.as_str());
        assert_eq!(body["to"]["revision"], good.revision.as_str());
        assert_eq!(server.revision().unwrap().revision, good.revision);
        assert!(
            nurse_permitted(&server).await,
            "the good revision decides again"
        );

        // Back to the bad one by name, then an unknown name.
        let rolled = server.rollback(Some(&bad.revision), "test").unwrap();
        assert_eq!(rolled.to.revision, bad.revision);
        let (status, _) = call(
            &server,
            "POST",
            "/v1/admin/rollback",
            Some("admin-token"),
            r#"{"revision": "9.9.9+sha256.0000000000000000"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(
            &server,
            "POST",
            "/v1/admin/rollback",
            Some("admin-token"),
            "{\"to\": 1}",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            server.revision().unwrap().revision,
            bad.revision,
            "a refused rollback changes nothing"
        );

        // A fix of the directory is loaded from the directory, not from the kept copy.
        server.rollback(Some(&good.revision), "test").unwrap();
        let text = std::fs::read_to_string(dir.join("data.json")).unwrap();
        std::fs::write(
            dir.join("data.json"),
            text.replace(r#"["doctor"]"#, r#"["doctor", "nurse"]"#) + " ",
        )
        .unwrap();
        let fixed = server.load().unwrap();
        assert_ne!(fixed.revision, good.revision);
        assert_eq!(server.revision().unwrap().revision, fixed.revision);
        assert!(nurse_permitted(&server).await);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn admin_endpoints_are_closed_on_a_server_without_caller_authentication() {
        let dir = scratch("open");
        let server = Server::builder().policy_dir(&dir).build();
        server.load().unwrap();
        break_nurses(&dir);
        server.load().unwrap();
        for (method, path) in [
            ("POST", "/v1/admin/rollback"),
            ("GET", "/v1/admin/revisions"),
        ] {
            let (status, _) = call(&server, method, path, None, "").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_last_n_good_revisions_are_kept() {
        let dir = scratch("keep");
        let server = Server::builder().policy_dir(&dir).build().keep_revisions(2);
        let mut revisions = Vec::new();
        for n in 0..3 {
            std::fs::write(
                dir.join("extra.rego"),
                format!("package clinic\n\nextra_{n} := {n}\n"),
            )
            .unwrap();
            revisions.push(server.load().unwrap().revision);
        }
        // A directory that does not load is not kept.
        std::fs::write(dir.join("extra.rego"), "package clinic\n\nnot rego").unwrap();
        assert!(server.load().is_err());
        let kept: Vec<String> = server
            .kept_revisions()
            .into_iter()
            .map(|k| k.revision)
            .collect();
        assert_eq!(kept, [revisions[2].clone(), revisions[1].clone()]);
        assert_eq!(
            server.rollback(Some(&revisions[0]), "test"),
            Err(RollbackError::Unknown(revisions[0].clone()))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
