//! The SQL policy enforcement point of Warden: row filters, column masks and a statement
//! allow-list, by rewriting queries.
//!
//! A service wraps its database client with [`SqlPolicyLayer`]; every statement it sends is
//! analysed, decided by a [`Pdp`](warden_core::Pdp) and rewritten so that the caller only ever
//! reads and writes the rows and values the policy allows. See [`SqlPolicy`] for the steps.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use serde_json::json;
//! use warden_core::{Decision, Obligation, Subject};
//! use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};
//! use warden_test::StaticPdp;
//!
//! let policy = SqlPolicy::builder(Dialect::Postgres)
//!     .catalog(Catalog::new().with_table("public.patients", ["id", "clinic_id", "name", "ssn"]))
//!     .build()
//!     .unwrap();
//! // A nurse of clinic c1: her clinic's rows, the SSN masked.
//! let pdp = StaticPdp::new(
//!     Decision::permit()
//!         .with_obligation(Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
//!             "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}})).unwrap())
//!         .with_obligation(Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
//!             "columns": {"ssn": "null"}})).unwrap()),
//! );
//! let nurse = Subject::user("nina").with_property("clinic", "c1");
//! let request = SqlRequest::new("SELECT name FROM patients WHERE ssn = '123-45-6789'", nurse);
//! let enforced = policy.enforce(&pdp, &request).await.unwrap();
//! assert_eq!(
//!     &*enforced.statement,
//!     "SELECT name FROM (SELECT warden_source.\"name\" AS \"name\", CAST(NULL AS TEXT) AS \"ssn\" \
//!      FROM patients AS warden_source WHERE warden_source.\"clinic_id\" = 'c1' OFFSET 0) AS patients \
//!      WHERE ssn = '123-45-6789'"
//! );
//! assert_eq!(enforced.requests[0].resource.id, "public.patients");
//!
//! // Anything it cannot analyse with certainty is refused, with the reason.
//! let stacked = SqlRequest::new("SELECT 1; DROP TABLE patients", Subject::user("nina"));
//! let err = policy.enforce(&pdp, &stacked).await.unwrap_err();
//! assert_eq!(err.code(), "multiple_statements");
//! # });
//! ```
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `sqlx-postgres` | [`adapters::SqlxPostgres`]: a sqlx PostgreSQL pool as a SQL service | no |
//! | `sqlx-mysql` | [`adapters::SqlxMySql`]: a sqlx MySQL / MariaDB pool | no |
//! | `sqlx-sqlite` | [`adapters::SqlxSqlite`]: a sqlx SQLite pool | no |
//! | `tokio-postgres` | [`adapters::TokioPostgres`]: a tokio-postgres client | no |

pub mod adapters;
mod analyze;
mod catalog;
mod dialect;
mod error;
mod filter;
mod layer;
mod mask;
mod policy;
mod request;

pub use analyze::Operation;
pub use catalog::Catalog;
pub use dialect::{Dialect, UnknownDialect};
pub use error::{DenyReason, SqlError};
pub use layer::{SqlPolicyLayer, SqlPolicyService, SqlServiceError};
pub use policy::{
    Analysis, ConfigError, DEFAULT_CACHE_CAPACITY, DEFAULT_DENIED_FUNCTIONS, Rewrite, SqlPolicy,
    SqlPolicyBuilder, TableAccess,
};
pub use request::{Enforcement, SqlRequest, SqlResponse, SqlValue};

#[cfg(test)]
mod tests;
