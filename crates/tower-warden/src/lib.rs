#![doc = include_str!("../../../README.md")]
//!
//! # Crates
//!
//! This crate re-exports the Warden crates behind features:
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `http` | [`http`]: the `PolicyLayer` for axum, tonic and any `tower::Service<http::Request<B>>` | yes |
//! | `axum` | the axum integration of `http` (route templates, path parameters, the `Authorized` extractor) | yes |
//! | `jwks` | token keys from a JWKS URL or OpenID Connect discovery (`JwtVerifier`), with `http` | no |
//! | `rego` | [`rego`]: the embedded Rego PDP on regorus | yes |
//! | `cedar` | [`cedar`]: the embedded Cedar PDP on cedar-policy | no |
//! | `remote` | [`remote`]: the remote PDP client (AuthZEN 1.0, OPA Data API) | no |
//! | `server` | [`server`]: the Warden PDP server, to embed or test against | no |
//! | `telemetry` | [`telemetry`]: decision events, the bounded sink, Prometheus metrics | no |
//! | `otel` | OpenTelemetry metrics of the decisions (`TelemetryBuilder::meter`), with `telemetry` | no |
//! | `sql` | [`sql`]: the SQL PEP (`SqlPolicyLayer`: row filters, column masks, a statement allow-list by rewriting queries), without a driver | no |
//! | `sqlx-sqlite` | `sql::adapters::SqlxSqlite`: a sqlx SQLite pool as a SQL service, with `sql` | no |
//! | `sqlx-postgres` | `sql::adapters::SqlxPostgres`: a sqlx PostgreSQL pool, with `sql` | no |
//! | `sqlx-mysql` | `sql::adapters::SqlxMySql`: a sqlx MySQL / MariaDB pool, with `sql` | no |
//! | `tokio-postgres` | `sql::adapters::TokioPostgres`: a tokio-postgres client, with `sql` | no |
//! | `full` | every integration; of the SQL drivers none (pick your database's) | no |
//!
//! The decision model ([`AccessRequest`], [`Decision`], [`Obligation`], the [`Pdp`] trait) is
//! always there, re-exported from `warden-decision`.

pub use warden_decision::*;

/// The HTTP and gRPC policy enforcement point (`warden-http`).
#[cfg(feature = "http")]
pub mod http {
    pub use warden_http::*;
}

/// Decision events, sinks and metrics (`warden-telemetry`).
#[cfg(feature = "telemetry")]
pub mod telemetry {
    pub use warden_telemetry::*;
}

/// The embedded Rego policy decision point (`warden-rego`).
#[cfg(feature = "rego")]
pub mod rego {
    pub use warden_rego::*;
}

/// The embedded Cedar policy decision point (`warden-cedar`).
#[cfg(feature = "cedar")]
pub mod cedar {
    pub use warden_cedar::*;
}

/// The remote PDP client: AuthZEN 1.0 and the OPA Data API (feature `remote`).
#[cfg(feature = "remote")]
pub mod remote {
    pub use warden_remote::*;
}

/// The Warden PDP server (feature `server`).
#[cfg(feature = "server")]
pub mod server {
    pub use warden_server::*;
}

/// The SQL policy enforcement point (`warden-sql`, feature `sql`; the drivers behind
/// `sqlx-sqlite`, `sqlx-postgres`, `sqlx-mysql` and `tokio-postgres`).
#[cfg(feature = "sql")]
pub mod sql {
    pub use warden_sql::*;
}
