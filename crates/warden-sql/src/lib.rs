//! The SQL policy enforcement point of Warden: row filters, column masks and a statement
//! allow-list, by rewriting queries.
//!
//! A service wraps its database client with [`SqlPolicyLayer`]; every statement it sends is
//! analysed, decided by a [`Pdp`](warden_decision::Pdp) and rewritten so that the caller only ever
//! reads and writes the rows and values the policy allows. See [`SqlPolicy`] for the steps.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use serde_json::json;
//! use warden_decision::{Decision, Obligation, Subject};
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
//!      FROM \"public\".patients AS warden_source WHERE warden_source.\"clinic_id\" = 'c1' OFFSET 0) \
//!      AS patients \
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
//! # The access requests
//!
//! One per (relation, operation), decided in one batch:
//!
//! | member | value |
//! |---|---|
//! | `subject` | the caller's [`Subject`](warden_decision::Subject), as given in the [`SqlRequest`] |
//! | `action.name` | `select`, `insert`, `update` or `delete` |
//! | `resource.type` | `table` (views and other relations too) |
//! | `resource.id` | `<schema>.<table>`, folded by the dialect's rules; unqualified names take the default schema (`public`, `main`, the current MySQL database; `pg_…` names `pg_catalog`) |
//! | `resource.properties` | `{"schema", "table", "columns": [...]}`: the columns read or written (a superset; every column for `*`; none for `delete`) |
//! | `context` | the caller's context plus `"sql": {"dialect": "postgres"}` |
//!
//! An `UPDATE`, `DELETE`, `MERGE` or upsert that reads its target (`WHERE`, `SET x = y`,
//! `RETURNING`) also asks `select` on it, as SQL privileges do. Obligations apply to the relation
//! their `table` names (`t` matches any schema, `s.t` one); row filters of several decisions are
//! and-ed, masks merge to the stricter strategy.
//!
//! # What is refused
//!
//! Every refusal is an [`SqlError`] with a stable [`code`](SqlError::code): `parse_error`
//! (unparseable, or nested past the recursion limit), `too_complex` (longer than the length
//! limit, or more operators than the budget), `empty_statement`, `multiple_statements`,
//! `statement_kind` (DDL, `COPY`, `DO`, `PREPARE`/`EXECUTE`, `SET`/`RESET`, `GRANT`/`REVOKE`,
//! `EXPLAIN` and `EXPLAIN ANALYZE`, `CALL`, `LOAD`, transactions, `MERGE` where the database has
//! none, …), `system_catalog` (`pg_catalog`, `information_schema`, `mysql`, `sqlite_master`, …,
//! unless allowed), `not_permitted` (a deny, including every relation the policy does not
//! name, views too), `denied_function` (a function not on the dialect's allow-list, see
//! [`functions`]; a cast to a PostgreSQL `reg…` type),
//! `whole_row` (`SELECT t FROM t`, `row_to_json(t)`, `f(t.*)`), `unsupported` (constructs of
//! other dialects, multi-table `UPDATE`/`DELETE`, `REPLACE` or `ON DUPLICATE KEY UPDATE` on a
//! filtered table, `SELECT … INTO`, a relation in a position the walk does not cover, …),
//! `unknown_columns` / `unknown_column` (a guarded relation needs the catalog, and the columns
//! obligations name must exist), `policy_mismatch` (an obligation for a relation the statement
//! does not access), `mask_unsupported`,
//! `obligation_unsupported`, `subject_attribute`, `filter_value`, `row_filter_violation`,
//! `cannot_prove` (a written row whose filter columns are not literals or parameters) and
//! `parameter`; `pdp_error` when the PDP could not decide.
//!
//! # Writes
//!
//! `UPDATE` and `DELETE` get the row filter in their `WHERE`, and every condition the caller
//! wrote over target rows (`WHERE`, `ON CONFLICT … WHERE`, `MERGE`'s `ON` and `WHEN MATCHED AND`)
//! moves into `CASE WHEN <filter> THEN <condition> ELSE false END`, so the database never
//! evaluates it on a row the filter removes (nor quotes such a row in an error); references to
//! masked columns of the target read the masked value (no inference through `WHERE ssn = …`, no
//! copying with `SET name = ssn`). New rows — `INSERT … VALUES`, the assignments of `UPDATE` and of
//! `ON CONFLICT DO UPDATE` to filter columns — are checked against the filter when the statement
//! runs, bind parameters included (PostgreSQL RLS `WITH CHECK`); `INSERT … SELECT` only inserts
//! the rows that pass it; `ON CONFLICT DO UPDATE` never touches a row outside the filter;
//! `MERGE` clauses are guarded the same way. `RETURNING` is masked.
//!
//! # Features
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `sqlx-postgres` | `adapters::SqlxPostgres`: a sqlx PostgreSQL pool as a SQL service | no |
//! | `sqlx-mysql` | `adapters::SqlxMySql`: a sqlx MySQL / MariaDB pool | no |
//! | `sqlx-sqlite` | `adapters::SqlxSqlite`: a sqlx SQLite pool | no |
//! | `tokio-postgres` | `adapters::TokioPostgres`: a tokio-postgres client | no |

pub mod adapters;
mod analyze;
mod catalog;
mod dialect;
mod error;
mod filter;
mod flat;
pub mod functions;
pub(crate) mod keyed;
mod layer;
mod mask;
mod parse;
mod policy;
mod request;

pub use analyze::Operation;
pub use catalog::Catalog;
pub use dialect::{Dialect, UnknownDialect};
pub use error::{DenyReason, SqlError};
pub use layer::{DATABASE_LOG_TARGET, SqlPolicyLayer, SqlPolicyService, SqlServiceError};
pub use parse::{DEFAULT_MAX_OPERATORS, DEFAULT_MAX_STATEMENT_LEN, StringSettings};
pub use policy::{
    Analysis, ConfigError, DEFAULT_CACHE_CAPACITY, MAX_RECURSION_LIMIT, Rewrite, SqlPolicy,
    SqlPolicyBuilder, TableAccess,
};
pub use request::{Enforcement, SqlRequest, SqlResponse, SqlValue};

#[cfg(test)]
mod tests;
