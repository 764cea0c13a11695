//! The clinic example: an axum service whose every route is guarded by Warden's `PolicyLayer`
//! and the Rego policy in `policies/clinic`.
//!
//! Routes (the policy decides who may call which):
//!
//! | route | who |
//! |---|---|
//! | `GET /health` | anyone |
//! | `GET /clinics` | staff |
//! | `GET /clinics/{clinic_id}/patients[/{patient_id}[/visits]]` | doctors and nurses of the clinic, admins |
//! | `POST /clinics/{clinic_id}/patients/{patient_id}/visits` | doctors of the clinic |
//! | `GET /clinics/{clinic_id}/patients/{patient_id}/record` | doctors of the clinic, after a recent MFA (step-up) |
//! | `DELETE /clinics/{clinic_id}/patients/{patient_id}` | admins |
//! | `GET /audit-log` | auditors and admins |
//! | `GET /metrics` | admins (Prometheus text) |

pub mod db;
pub mod otel;

use std::path::{Path, PathBuf};

use axum::extract::{Path as Params, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sqlx::SqlitePool;
use warden::http::{Authorized, JwtVerifier, PolicyLayer};
use warden::rego::RegoPdp;
use warden::telemetry::Telemetry;
use warden::{Masker, Pdp};

/// The clinic policy package shipped with the repository.
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic")
}

/// Everything the example can fail with at start-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ANCHOR: app
/// The clinic service: its routes behind a `PolicyLayer` that verifies bearer tokens and asks
/// the policy decision point (the embedded Rego policy here; a remote PDP in the `remote-pdp`
/// example).
pub fn app(
    db: SqlitePool,
    pdp: impl Pdp + 'static,
    jwt: JwtVerifier,
    masker: Masker,
    telemetry: Telemetry,
) -> Router {
    let metrics = telemetry.clone();
    Router::new()
        .route("/health", get(health))
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.metrics().render_prometheus(),
                )
            }),
        )
        .route("/clinics", get(clinics))
        .route("/clinics/{clinic_id}/patients", get(patients))
        .route(
            "/clinics/{clinic_id}/patients/{patient_id}",
            get(patient).delete(delete_patient),
        )
        .route(
            "/clinics/{clinic_id}/patients/{patient_id}/visits",
            get(visits).post(add_visit),
        )
        .route(
            "/clinics/{clinic_id}/patients/{patient_id}/record",
            get(record),
        )
        .route("/audit-log", get(audit_log))
        .layer(
            PolicyLayer::new(pdp)
                .jwt(jwt)
                .allow_anonymous()
                .masker(masker)
                .telemetry(telemetry),
        )
        // Outermost: every request runs in an `http.request` span, parent of `warden.decide`.
        .layer(middleware::from_fn(otel::request_span))
        .with_state(db)
}
// ANCHOR_END: app

/// Errors of the handlers: a database error is a 500 (logged, not shown).
#[derive(Debug)]
pub enum AppError {
    /// Nothing there.
    NotFound,
    /// The database failed.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))),
            Self::Db(e) => {
                tracing::error!(error = %e, "database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal error"})),
                )
            }
        }
        .into_response()
    }
}

type Result<T> = std::result::Result<T, AppError>;

#[derive(Debug, Deserialize)]
struct ClinicParams {
    clinic_id: String,
}

#[derive(Debug, Deserialize)]
struct PatientParams {
    clinic_id: String,
    patient_id: String,
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn clinics(State(db): State<SqlitePool>) -> Result<Json<Vec<db::Clinic>>> {
    let rows = sqlx::query_as("SELECT id, name FROM clinics ORDER BY id")
        .fetch_all(&db)
        .await?;
    Ok(Json(rows))
}

// ANCHOR: patients
/// Every field of every patient of the clinic: what a caller may see of them is the policy's
/// business (its `redact` obligations), not the handler's.
async fn patients(
    State(db): State<SqlitePool>,
    Params(p): Params<ClinicParams>,
) -> Result<Json<Vec<db::Record>>> {
    // The policy decided on the clinic in the path; the query stays within that clinic.
    let rows = sqlx::query_as(
        "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients
         WHERE clinic_id = ? ORDER BY id",
    )
    .bind(&p.clinic_id)
    .fetch_all(&db)
    .await?;
    Ok(Json(rows))
}
// ANCHOR_END: patients

async fn patient(
    State(db): State<SqlitePool>,
    Params(p): Params<PatientParams>,
) -> Result<Json<db::Record>> {
    sqlx::query_as(
        "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients
         WHERE clinic_id = ? AND id = ?",
    )
    .bind(&p.clinic_id)
    .bind(&p.patient_id)
    .fetch_optional(&db)
    .await?
    .map(Json)
    .ok_or(AppError::NotFound)
}

async fn record(
    State(db): State<SqlitePool>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<Json<db::Record>> {
    let record: db::Record = sqlx::query_as(
        "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients
         WHERE clinic_id = ? AND id = ?",
    )
    .bind(&p.clinic_id)
    .bind(&p.patient_id)
    .fetch_optional(&db)
    .await?
    .ok_or(AppError::NotFound)?;
    audit(&db, &authorized, &format!("patient:{}", p.patient_id)).await?;
    Ok(Json(record))
}

async fn visits(
    State(db): State<SqlitePool>,
    Params(p): Params<PatientParams>,
) -> Result<Json<Vec<db::Visit>>> {
    let rows = sqlx::query_as(
        "SELECT v.id, v.patient_id, v.at, v.doctor, v.summary
         FROM visits v JOIN patients p ON p.id = v.patient_id
         WHERE p.clinic_id = ? AND p.id = ? ORDER BY v.at",
    )
    .bind(&p.clinic_id)
    .bind(&p.patient_id)
    .fetch_all(&db)
    .await?;
    Ok(Json(rows))
}

/// The body of `POST …/visits`.
#[derive(Debug, Deserialize)]
pub struct NewVisit {
    /// What happened.
    pub summary: String,
}

async fn add_visit(
    State(db): State<SqlitePool>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
    Json(visit): Json<NewVisit>,
) -> Result<(StatusCode, Json<db::Visit>)> {
    let doctor = authorized.request().subject.id.clone();
    let row: Option<db::Visit> = sqlx::query_as(
        "INSERT INTO visits (patient_id, at, doctor, summary)
         SELECT id, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), ?, ? FROM patients
         WHERE clinic_id = ? AND id = ?
         RETURNING id, patient_id, at, doctor, summary",
    )
    .bind(&doctor)
    .bind(&visit.summary)
    .bind(&p.clinic_id)
    .bind(&p.patient_id)
    .fetch_optional(&db)
    .await?;
    let row = row.ok_or(AppError::NotFound)?;
    audit(&db, &authorized, &format!("visit:{}", row.id)).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

async fn delete_patient(
    State(db): State<SqlitePool>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<StatusCode> {
    let done = sqlx::query("DELETE FROM patients WHERE clinic_id = ? AND id = ?")
        .bind(&p.clinic_id)
        .bind(&p.patient_id)
        .execute(&db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    audit(&db, &authorized, &format!("patient:{}", p.patient_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit_log(State(db): State<SqlitePool>) -> Result<Json<Vec<db::AuditEntry>>> {
    let rows = sqlx::query_as(
        "SELECT id, at, subject, action, resource, decision_id FROM audit_log ORDER BY id",
    )
    .fetch_all(&db)
    .await?;
    Ok(Json(rows))
}

// ANCHOR: audit
/// Records who did what under which decision.
async fn audit(db: &SqlitePool, authorized: &Authorized, resource: &str) -> Result<()> {
    let request = authorized.request();
    sqlx::query(
        "INSERT INTO audit_log (subject, action, resource, decision_id) VALUES (?, ?, ?, ?)",
    )
    .bind(&request.subject.id)
    .bind(&request.action.name)
    .bind(resource)
    .bind(authorized.decision().id.to_string())
    .execute(db)
    .await?;
    Ok(())
}
// ANCHOR_END: audit

// ANCHOR: setup
/// Loads the policy and builds the token verifier the example uses: HS256 with the test secret
/// of `warden-test` (a real deployment verifies RS256/ES256 tokens of its identity provider).
pub fn policy_and_verifier() -> std::result::Result<(RegoPdp, JwtVerifier), BoxError> {
    let pdp = RegoPdp::from_dir(policy_dir())?;
    let jwt = JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)?
        .leeway(30);
    Ok((pdp, jwt))
}

/// The masker of the example's `redact` obligations. `hash` is keyed: the key comes from
/// `CLINIC_HASH_KEY` (at least 16 bytes), or is a fixed demonstration key.
pub fn masker() -> std::result::Result<Masker, BoxError> {
    let key = std::env::var("CLINIC_HASH_KEY")
        .unwrap_or_else(|_| "clinic-demo-hash-key-not-secret".into());
    Ok(Masker::with_hash_key(key)?)
}
// ANCHOR_END: setup
