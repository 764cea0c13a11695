//! Errors never carry row data: when PostgreSQL fails a guarded statement, the caller gets a
//! generic error with an error id, and the server's text (which quotes the value it choked on)
//! goes only to the operators' log target, under the same id.
#![cfg(feature = "sqlx-postgres")]
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tower::{Layer, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata};
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::adapters::SqlxPostgres;
use warden_sql::{
    Catalog, DATABASE_LOG_TARGET, Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlServiceError,
};
use warden_test::StaticPdp;

/// Keeps the events of one target as text.
struct Capture {
    target: &'static str,
    text: Arc<Mutex<String>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_span() || metadata.target() == self.target
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == self.target {
            let mut text = self.text.lock().unwrap();
            event.record(&mut Fields(&mut text));
            text.push('\n');
        }
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

#[tokio::test]
async fn database_errors_reach_the_operator_log_only() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_POSTGRES_URL", "the database error test")
    else {
        return;
    };
    let schema = format!(
        "warden_errors_{}_{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id TEXT NOT NULL, name TEXT)",
        "INSERT INTO patients VALUES (1, 'c1', 'Ada'), (4, 'c2', 'Dan')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let policy = SqlPolicy::builder(Dialect::Postgres)
        .default_schema(schema.clone())
        .catalog(
            Catalog::new().with_table(format!("{schema}.patients"), ["id", "clinic_id", "name"]),
        )
        .build()
        .unwrap();
    let pdp = StaticPdp::new(
        Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
            "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
            .unwrap(),
        ),
    );
    let guarded = SqlPolicyLayer::new(pdp, policy).layer(SqlxPostgres::new(pool));
    let log = Arc::new(Mutex::new(String::new()));
    let _capture = tracing::subscriber::set_default(Capture {
        target: DATABASE_LOG_TARGET,
        text: log.clone(),
    });
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    for (sql, server_text) in [
        // The server quotes the value: `invalid input syntax for type integer: "Ada"`.
        (
            "SELECT id FROM patients WHERE CAST(name AS INTEGER) = 1",
            "\"Ada\"",
        ),
        // The key of another clinic's row, in the server's message or its DETAIL.
        (
            "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'x')",
            "patients_pkey",
        ),
    ] {
        log.lock().unwrap().clear();
        let result = guarded
            .clone()
            .oneshot(SqlRequest::new(sql, nurse.clone()))
            .await;
        let Err(error @ SqlServiceError::Database { .. }) = result else {
            panic!("{sql}: want a database error, got {result:?}");
        };
        let SqlServiceError::Database { error_id } = &error else {
            unreachable!()
        };
        let shown = error.to_string();
        assert!(shown.contains(error_id.as_str()), "{shown}");
        for quoted in [
            "Ada",
            "Dan",
            "(4)",
            "patients_pkey",
            "invalid input",
            "duplicate",
        ] {
            assert!(
                !shown.contains(quoted),
                "{sql}: the caller sees `{quoted}`: {shown}"
            );
        }
        let logged = log.lock().unwrap().clone();
        assert!(logged.contains(error_id.as_str()), "{logged}");
        assert!(logged.contains(server_text), "{sql}: {logged}");
    }
    drop(guarded);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
