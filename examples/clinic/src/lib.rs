//! The clinic example: an axum service whose every route is guarded by Warden's `PolicyLayer`
//! and the Rego policy in `policies/clinic`, and whose every query goes through Warden's SQL
//! PEP and the data policy in `policies/clinic-data` (see [`data`]).
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

pub mod data;
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
use serde_json::{Map, Value, json};
use tower_warden::http::{Authorized, JwtVerifier, PolicyLayer};
use tower_warden::rego::RegoPdp;
use tower_warden::sql::SqlRequest;
use tower_warden::telemetry::Telemetry;
use tower_warden::{DecisionId, Masker, Pdp};

pub use data::{Data, DataError};

/// The clinic policy package shipped with the repository.
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic")
}

/// Everything the example can fail with at start-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ANCHOR: app
/// The clinic service: its routes behind a `PolicyLayer` that verifies bearer tokens and asks
/// the policy decision point (the embedded Rego policy here; a remote PDP in the `remote-pdp`
/// example). The handlers reach the database only through `db`, the SQL PEP
/// ([`Data::open`]).
pub fn app(
    db: Data,
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

/// Errors of the handlers, answered as RFC 9457 problems the way the HTTP PEP answers its own
/// refusals: a statement the SQL PEP refuses is a 403 (a 503 when the data policy could not
/// decide), a database error a 500. The body carries a `decision_id` and nothing of the
/// statement — no table, no column, no value; the reason is logged under that id (target
/// `warden::decision`), where support finds it.
#[derive(Debug)]
pub enum AppError {
    /// Nothing there.
    NotFound,
    /// The statement was refused, or the database failed.
    Data(DataError),
}

impl From<DataError> for AppError {
    fn from(e: DataError) -> Self {
        Self::Data(e)
    }
}

/// An `application/problem+json` response.
fn problem(status: StatusCode, detail: &str, decision_id: Option<DecisionId>) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let (Some(id), Some(fields)) = (decision_id, body.as_object_mut()) {
        fields.insert("decision_id".into(), id.to_string().into());
    }
    (
        status,
        [(CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let id = DecisionId::new();
        match self {
            Self::NotFound => problem(StatusCode::NOT_FOUND, "not found", None),
            Self::Data(DataError::Denied(e)) if e.code() == "pdp_error" => {
                tracing::warn!(
                    target: "warden::decision",
                    decision_id = %id, pep = "sql", code = e.code(), reason = %e,
                    "the data policy could not decide"
                );
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no policy decision could be made; try again later",
                    Some(id),
                )
            }
            Self::Data(DataError::Denied(e)) => {
                tracing::info!(
                    target: "warden::decision",
                    decision_id = %id, pep = "sql", code = e.code(), reason = %e,
                    "statement refused by the data policy"
                );
                problem(
                    StatusCode::FORBIDDEN,
                    "the request was denied by policy",
                    Some(id),
                )
            }
            Self::Data(DataError::Db(e)) => {
                tracing::error!(decision_id = %id, error = %e, "database error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    Some(id),
                )
            }
        }
    }
}

type Result<T> = std::result::Result<T, AppError>;

/// A row as a JSON object.
type Row = Map<String, Value>;

#[derive(Debug, Deserialize)]
struct ClinicParams {
    clinic_id: String,
}

#[derive(Debug, Deserialize)]
struct PatientParams {
    clinic_id: String,
    patient_id: String,
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The clinic directory is the service's to show (the HTTP policy decides who may ask).
async fn clinics(State(db): State<Data>) -> Result<Json<Vec<Row>>> {
    let request = SqlRequest::new("SELECT id, name FROM clinics ORDER BY id", data::service());
    Ok(Json(db.rows(request).await?))
}

// ANCHOR: patients
/// Every field of every patient of the clinic: which rows and values reach the handler is the
/// data policy's business (row filter, column masks in SQL), what a route shows of them the
/// HTTP policy's (its `redact` obligations) — not the handler's.
async fn patients(
    State(db): State<Data>,
    Params(p): Params<ClinicParams>,
    authorized: Authorized,
) -> Result<Json<Vec<Row>>> {
    // The SQL subject: the caller's id and role, and the route's clinic if the token grants it.
    let subject = data::caller(&authorized.request().subject, Some(&p.clinic_id));
    let request = SqlRequest::new(
        "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients
         WHERE clinic_id = ? ORDER BY id",
        subject,
    )
    .bind(p.clinic_id);
    Ok(Json(db.rows(request).await?))
}
// ANCHOR_END: patients

/// One patient of the clinic, as the caller may see it.
async fn one_patient(db: &Data, authorized: &Authorized, p: &PatientParams) -> Result<Row> {
    let subject = data::caller(&authorized.request().subject, Some(&p.clinic_id));
    let request = SqlRequest::new(
        "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients
         WHERE clinic_id = ? AND id = ?",
        subject,
    )
    .bind(p.clinic_id.as_str())
    .bind(p.patient_id.as_str());
    db.rows(request)
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)
}

async fn patient(
    State(db): State<Data>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<Json<Row>> {
    Ok(Json(one_patient(&db, &authorized, &p).await?))
}

async fn record(
    State(db): State<Data>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<Json<Row>> {
    let record = one_patient(&db, &authorized, &p).await?;
    audit(&db, &authorized, &format!("patient:{}", p.patient_id)).await?;
    Ok(Json(record))
}

async fn visits(
    State(db): State<Data>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<Json<Vec<Row>>> {
    let subject = data::caller(&authorized.request().subject, Some(&p.clinic_id));
    let request = SqlRequest::new(
        "SELECT v.id, v.patient_id, v.at, v.doctor, v.summary
         FROM visits v JOIN patients p ON p.id = v.patient_id
         WHERE p.clinic_id = ? AND p.id = ? ORDER BY v.at",
        subject,
    )
    .bind(p.clinic_id)
    .bind(p.patient_id);
    Ok(Json(db.rows(request).await?))
}

/// The body of `POST …/visits`.
#[derive(Debug, Deserialize)]
pub struct NewVisit {
    /// What happened.
    pub summary: String,
}

async fn add_visit(
    State(db): State<Data>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
    Json(visit): Json<NewVisit>,
) -> Result<(StatusCode, Json<Row>)> {
    let subject = data::caller(&authorized.request().subject, Some(&p.clinic_id));
    let doctor = subject.id.clone();
    // The visit belongs to the patient's clinic; the SQL PEP inserts it only if that clinic
    // passes the caller's row filter on `visits` (an `INSERT … SELECT` is filtered).
    let request = SqlRequest::new(
        "INSERT INTO visits (patient_id, clinic_id, at, doctor, summary)
         SELECT id, clinic_id, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), ?, ? FROM patients
         WHERE clinic_id = ? AND id = ?
         RETURNING id, patient_id, at, doctor, summary",
        subject,
    )
    .bind(doctor)
    .bind(visit.summary)
    .bind(p.clinic_id.as_str())
    .bind(p.patient_id.as_str());
    let row = db
        .rows(request)
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound)?;
    let id = row.get("id").cloned().unwrap_or(Value::Null);
    audit(&db, &authorized, &format!("visit:{id}")).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

async fn delete_patient(
    State(db): State<Data>,
    Params(p): Params<PatientParams>,
    authorized: Authorized,
) -> Result<StatusCode> {
    let subject = data::caller(&authorized.request().subject, Some(&p.clinic_id));
    let request = SqlRequest::new(
        "DELETE FROM patients WHERE clinic_id = ? AND id = ?",
        subject,
    )
    .bind(p.clinic_id.as_str())
    .bind(p.patient_id.as_str());
    if db.run(request).await?.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    audit(&db, &authorized, &format!("patient:{}", p.patient_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit_log(State(db): State<Data>, authorized: Authorized) -> Result<Json<Vec<Row>>> {
    let subject = data::caller(&authorized.request().subject, None);
    let request = SqlRequest::new(
        "SELECT id, at, subject, action, resource, decision_id FROM audit_log ORDER BY id",
        subject,
    );
    Ok(Json(db.rows(request).await?))
}

// ANCHOR: audit
/// Records who did what under which decision. The service writes its audit log as itself: a
/// caller's own permissions on `audit_log` do not matter here.
async fn audit(db: &Data, authorized: &Authorized, resource: &str) -> Result<()> {
    let request = authorized.request();
    let insert = SqlRequest::new(
        "INSERT INTO audit_log (subject, action, resource, decision_id) VALUES (?, ?, ?, ?)",
        data::service(),
    )
    .bind(request.subject.id.as_str())
    .bind(request.action.name.as_str())
    .bind(resource)
    .bind(authorized.decision().id.to_string());
    db.run(insert).await?;
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
