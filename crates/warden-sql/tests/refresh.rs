//! `SqlPolicyLayer::catalog_loader`: a statement refused for a catalog that lacks a guarded
//! relation reloads the catalog from the database (at most once per interval) and is enforced
//! again; without a loader the refusal stands.
#![cfg(feature = "sqlx-sqlite")]
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use std::time::Duration;

use serde_json::json;
use tower::{Layer, ServiceExt};
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::adapters::SqlxSqlite;
use warden_sql::{Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlServiceError};
use warden_test::StaticPdp;

fn pdp(table: &str) -> StaticPdp {
    StaticPdp::new(Decision::permit().with_obligation(filter(table)))
}

fn filter(table: &str) -> Obligation {
    Obligation::from_json(json!({"type": "filter_rows", "table": table,
        "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
    .unwrap()
}

/// The clinic filter on whichever table a request names, as a policy answers.
#[derive(Clone)]
struct PerTable;

impl warden_decision::Pdp for PerTable {
    fn decide<'a>(
        &'a self,
        request: &'a warden_decision::AccessRequest,
    ) -> warden_decision::PdpFuture<'a> {
        let table = request
            .resource
            .properties
            .get("table")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(
            Decision::permit().with_obligation(filter(table))
        )))
    }
}

#[tokio::test]
async fn a_missing_relation_reloads_the_catalog_once_per_interval() {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id TEXT, name TEXT)",
        "INSERT INTO patients VALUES (1, 'c1', 'Ada'), (4, 'c2', 'Dan')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let db = SqlxSqlite::new(pool.clone());
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    let request = || SqlRequest::new("SELECT name FROM patients", nurse.clone());

    // No loader: the empty catalog refuses the guarded table, as a configuration error.
    let plain = SqlPolicy::builder(Dialect::Sqlite).build().unwrap();
    let refused = SqlPolicyLayer::new(pdp("patients"), plain)
        .layer(db.clone())
        .oneshot(request())
        .await;
    let Err(SqlServiceError::Denied(e)) = refused else {
        unreachable!("{refused:?}")
    };
    assert_eq!(e.code(), "unknown_columns");

    let policy = SqlPolicy::builder(Dialect::Sqlite).build().unwrap();
    let loader = |db: SqlxSqlite| {
        move || {
            let db = db.clone();
            async move { db.load_catalog().await.map_err(|e| e.to_string()) }
        }
    };
    let hourly = SqlPolicyLayer::new(PerTable, policy.clone())
        .catalog_loader(Duration::from_secs(3600), loader(db.clone()))
        .layer(db.clone());
    let rows = hourly.clone().oneshot(request()).await.unwrap().rows;
    assert_eq!(rows, vec![vec![json!("Ada")]]);
    assert!(policy.catalog().columns("main.patients").is_some());

    // A table created afterwards: within the interval the catalog is not reloaded again.
    sqlx::query("CREATE TABLE visits (id INTEGER PRIMARY KEY, clinic_id TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    let visits = || SqlRequest::new("SELECT id FROM visits", nurse.clone());
    let refused = hourly.oneshot(visits()).await;
    let Err(SqlServiceError::Denied(e)) = refused else {
        unreachable!("{refused:?}")
    };
    assert_eq!(e.code(), "unknown_columns");
    let eager = SqlPolicyLayer::new(PerTable, policy.clone())
        .catalog_loader(Duration::ZERO, loader(db.clone()))
        .layer(db.clone());
    eager.oneshot(visits()).await.unwrap();
    assert!(policy.catalog().columns("main.visits").is_some());
}
