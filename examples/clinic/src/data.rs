//! The clinic's data access through Warden's SQL PEP.
//!
//! Every statement a handler sends goes through a `SqlPolicyLayer` over the sqlx SQLite pool:
//! it is analysed, decided by the `policies/clinic-data` package (and the service's own rules in
//! `examples/clinic/policy/clinic_service.rego`) and rewritten, so the caller only ever reads
//! and writes the rows and values the data policy allows — whatever the statement asks for.
//!
//! | subject | what the database gives |
//! |---|---|
//! | a nurse of clinic `c` | patients and visits of `c`; `ssn` last four, birth dates as the year, no notes |
//! | a doctor of clinic `c` | patients and visits of `c`, unmasked; visits recorded in `c` only |
//! | an admin | everything |
//! | an auditor | the audit log, nothing else |
//! | the service itself | the clinic directory; appends to the audit log |

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sqlx::SqlitePool;
use tower::{Layer as _, Service as _, ServiceExt as _};
use tower_warden::rego::RegoPdp;
use tower_warden::sql::adapters::{DriverError, SqlxSqlite};
use tower_warden::sql::{
    Dialect, SqlError, SqlPolicy, SqlPolicyLayer, SqlPolicyService, SqlRequest, SqlResponse,
    SqlServiceError,
};
use tower_warden::telemetry::Telemetry;
use tower_warden::{Combined, Combining, Pdp, Subject};

use crate::BoxError;

/// The data policy package shipped with the repository.
pub fn data_policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/clinic-data")
}

/// The service's own rules for its database (doctors, the service itself).
const SERVICE_POLICY: &str = include_str!("../policy/clinic_service.rego");

/// The id of the subject the service uses for its own statements (the clinic directory, the
/// audit log). Callers never get it: [`caller`] always builds a `user`.
pub const SERVICE_ID: &str = "clinic-service";

/// The PDP of the SQL PEP: `policies/clinic-data` and the service's own rules, a permit of
/// either winning with its obligations.
pub fn data_pdp() -> Result<Arc<dyn Pdp>, BoxError> {
    let data = RegoPdp::from_dir(data_policy_dir())?;
    let service = RegoPdp::builder()
        .policy_id("clinic-service")
        .policy("clinic_service.rego", SERVICE_POLICY)
        .entrypoint("data.clinic_service.decision")
        .build()?;
    Ok(Arc::new(
        Combined::new(Combining::PermitOverrides)
            .with(Arc::new(data))
            .with(Arc::new(service)),
    ))
}

// ANCHOR: sql
/// The clinic database behind the SQL PEP. Cheap to clone.
#[derive(Clone)]
pub struct Data {
    service: SqlPolicyService<SqlxSqlite, Arc<dyn Pdp>>,
}

impl Data {
    /// Guards `pool` with the clinic's data policy ([`data_pdp`]).
    pub async fn open(pool: SqlitePool) -> Result<Self, BoxError> {
        Self::with_pdp(pool, data_pdp()?).await
    }

    /// Guards `pool` with the clinic's data policy and reports every statement's decisions to
    /// `telemetry` (events and metrics with `pep="sql"`, beside the HTTP PEP's).
    pub async fn open_with_telemetry(
        pool: SqlitePool,
        telemetry: Telemetry,
    ) -> Result<Self, BoxError> {
        Self::build(pool, data_pdp()?, Some(telemetry)).await
    }

    /// Guards `pool` with `pdp`. The schema catalog (the columns masks need) is read from the
    /// database once, here.
    pub async fn with_pdp(pool: SqlitePool, pdp: Arc<dyn Pdp>) -> Result<Self, BoxError> {
        Self::build(pool, pdp, None).await
    }

    async fn build(
        pool: SqlitePool,
        pdp: Arc<dyn Pdp>,
        telemetry: Option<Telemetry>,
    ) -> Result<Self, BoxError> {
        let db = SqlxSqlite::new(pool);
        let catalog = db.load_catalog().await?;
        let policy = SqlPolicy::builder(Dialect::Sqlite)
            .catalog(catalog)
            .build()?;
        let mut layer = SqlPolicyLayer::new(pdp, policy);
        if let Some(telemetry) = telemetry {
            layer = layer.telemetry(telemetry);
        }
        Ok(Self {
            service: layer.layer(db),
        })
    }

    /// Runs one statement for `request.subject`: decided, rewritten, then run — or refused.
    pub fn run(
        &self,
        request: SqlRequest,
    ) -> impl Future<Output = Result<SqlResponse, DataError>> + Send + 'static {
        // Wait for readiness, then call the ready instance. Both futures own what they use,
        // so a handler's future stays `Send` whatever the PDP borrows while deciding.
        let ready = self.service.clone().ready_oneshot();
        async move {
            let mut service = ready.await.map_err(DataError::from)?;
            service.call(request).await.map_err(DataError::from)
        }
    }

    /// Runs one statement and returns its rows as JSON objects (column → value).
    pub fn rows(
        &self,
        request: SqlRequest,
    ) -> impl Future<Output = Result<Vec<Map<String, Value>>, DataError>> + Send + 'static {
        let run = self.run(request);
        async move {
            let SqlResponse { columns, rows, .. } = run.await?;
            Ok(rows
                .into_iter()
                .map(|row| columns.iter().cloned().zip(row).collect())
                .collect())
        }
    }
}

/// The SQL subject of a caller, from the claims of its verified token: its id and `role`, and
/// a `clinic` only where the token grants one. With `route_clinic` (the route's `clinic_id`),
/// that clinic if the `clinics` claim lists it, else none; without, the only clinic the claim
/// lists, else none. A route parameter narrows what the token grants, never widens it; a
/// nurse or doctor without a clinic is refused by the data policy.
pub fn caller(token_subject: &Subject, route_clinic: Option<&str>) -> Subject {
    let claims = &token_subject.properties;
    let mut subject = Subject::user(token_subject.id.clone());
    if let Some(role) = claims.get("role").and_then(Value::as_str) {
        subject = subject.with_property("role", role);
    }
    let clinics: Vec<&str> = claims
        .get("clinics")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let clinic = match (route_clinic, clinics.as_slice()) {
        (Some(route), granted) => granted.contains(&route).then_some(route),
        (None, [only]) => Some(*only),
        (None, _) => None,
    };
    if let Some(clinic) = clinic {
        subject = subject.with_property("clinic", clinic);
    }
    subject
}

/// The subject of the service's own statements.
pub fn service() -> Subject {
    Subject::new("service", SERVICE_ID)
}
// ANCHOR_END: sql

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data").finish_non_exhaustive()
    }
}

impl From<SqlServiceError<DriverError>> for DataError {
    fn from(e: SqlServiceError<DriverError>) -> Self {
        match e {
            SqlServiceError::Denied(e) => Self::Denied(e),
            SqlServiceError::Database { error_id } => {
                Self::Db(DriverError::new(format!("database error {error_id}")))
            }
            SqlServiceError::Service(e) => Self::Db(e),
        }
    }
}

/// Why a statement did not run, or failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The SQL PEP refused it; the database never saw it.
    #[error(transparent)]
    Denied(SqlError),
    /// The database failed.
    #[error(transparent)]
    Db(DriverError),
}
