//! [`SqlPolicyLayer`]: the SQL PEP as a Tower layer over any `Service<SqlRequest>`.
//!
//! The service below receives the *rewritten* statement (with the caller's parameters) or is
//! never called: a denied statement ends in [`SqlServiceError::Denied`]. When the database
//! fails a statement, the caller gets [`SqlServiceError::Database`] with an error id only; the
//! database's text, which can quote stored values, goes to the [`DATABASE_LOG_TARGET`] log
//! target.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::convert::Infallible;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//! use warden_decision::Subject;
//! use warden_sql::{Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlResponse, SqlServiceError};
//! use warden_test::StaticPdp;
//!
//! // A database stand-in that reports the statement it was given.
//! let db = service_fn(|request: SqlRequest| async move {
//!     Ok::<_, Infallible>(SqlResponse {
//!         columns: vec!["sql".into()],
//!         rows: vec![vec![request.statement.into()]],
//!         rows_affected: 0,
//!     })
//! });
//! let policy = SqlPolicy::builder(Dialect::Sqlite).build().unwrap();
//! let mut service = SqlPolicyLayer::new(StaticPdp::permit(), policy).layer(db);
//! let ok = service
//!     .ready().await.unwrap()
//!     .call(SqlRequest::new("select id from visits -- all of them", Subject::user("a")))
//!     .await
//!     .unwrap();
//! assert_eq!(ok.rows[0][0], "SELECT id FROM \"main\".visits");
//! let denied = service
//!     .ready().await.unwrap()
//!     .call(SqlRequest::new("DROP TABLE visits", Subject::user("a")))
//!     .await;
//! assert!(matches!(denied, Err(SqlServiceError::Denied(e)) if e.code() == "statement_kind"));
//! # });
//! ```

mod service;

pub use service::{DATABASE_LOG_TARGET, SqlPolicyLayer, SqlPolicyService, SqlServiceError};
