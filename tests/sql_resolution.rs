//! The database reads the relation the PEP decided on, whatever the session says: on real
//! PostgreSQL a `search_path` that points at another schema with a table of the same name, and
//! on MariaDB a current database that is not the policy's default schema, both leave the
//! guarded table the one read and written (every rewritten relation is named with its schema);
//! a MySQL table name whose case MySQL may read differently (`lower_case_table_names`) is
//! refused; `TABLE t` is `SELECT * FROM t`, guarded the same way.
//!
//! `WARDEN_TEST_POSTGRES_URL` and `WARDEN_TEST_MYSQL_URL` name the servers; without one the
//! database is skipped, unless `WARDEN_TEST_REQUIRE_DATABASES=1` (as in CI).
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

mod sql_scratch;

use std::str::FromStr;

use serde_json::{Value as Json, json};
use tower::{Layer, ServiceExt};
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::adapters::{DriverError, SqlxMySql, SqlxPostgres};
use warden_sql::{
    Catalog, Dialect, SqlPolicy, SqlPolicyBuilder, SqlPolicyLayer, SqlRequest, SqlResponse,
    SqlServiceError,
};
use warden_test::StaticPdp;

type Boxed = tower::util::BoxCloneService<SqlRequest, SqlResponse, DriverError>;

const TABLE: &str = "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id VARCHAR(10) NOT NULL, \
                     name VARCHAR(100) NOT NULL)";
const GUARDED_ROWS: &str = "INSERT INTO patients (id, clinic_id, name) VALUES \
                            (1, 'c1', 'Ada'), (2, 'c1', 'Bob'), (4, 'c2', 'Dan')";
/// The same table name in the other schema, with a row a nurse of c1 must never see.
const DECOY_ROWS: &str = "INSERT INTO patients (id, clinic_id, name) VALUES (9, 'c1', 'Zed')";

fn builder(dialect: Dialect, schema: &str) -> SqlPolicyBuilder {
    SqlPolicy::builder(dialect).default_schema(schema).catalog(
        Catalog::new().with_table(format!("{schema}.patients"), ["id", "clinic_id", "name"]),
    )
}

fn pdp() -> StaticPdp {
    StaticPdp::new(
        Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
            .unwrap(),
        ),
    )
}

async fn run(
    policy: &SqlPolicy,
    service: &Boxed,
    sql: &str,
) -> Result<SqlResponse, SqlServiceError<DriverError>> {
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    SqlPolicyLayer::new(pdp(), policy.clone())
        .layer(service.clone())
        .oneshot(SqlRequest::new(sql, nurse))
        .await
}

fn names(response: &SqlResponse) -> Vec<Json> {
    response
        .rows
        .iter()
        .map(|r| r.last().cloned().unwrap_or(Json::Null))
        .collect()
}

/// Reads and writes through a session whose name lookup points at the decoy.
async fn the_guarded_table_is_the_one_read(policy: &SqlPolicy, session: &Boxed, what: &str) {
    let read = run(policy, session, "SELECT name FROM patients ORDER BY id")
        .await
        .unwrap();
    assert_eq!(names(&read), vec![json!("Ada"), json!("Bob")], "{what}");
    let table = run(policy, session, "TABLE patients").await.unwrap();
    assert_eq!(
        names(&table),
        vec![json!("Ada"), json!("Bob")],
        "{what}: TABLE"
    );
    let ordered = run(
        policy,
        session,
        "SELECT id, clinic_id, name FROM patients UNION ALL TABLE patients ORDER BY 1",
    )
    .await
    .unwrap();
    assert_eq!(ordered.rows.len(), 4, "{what}: TABLE in a set operation");
    // The decoy's row is not the guarded table's: the update changes nothing there either.
    let update = run(
        policy,
        session,
        "UPDATE patients SET name = 'x' WHERE id = 9",
    )
    .await
    .unwrap();
    assert_eq!(update.rows_affected, 0, "{what}");
    let delete = run(policy, session, "DELETE FROM patients WHERE id = 9")
        .await
        .unwrap();
    assert_eq!(delete.rows_affected, 0, "{what}");
    let insert = run(
        policy,
        session,
        "INSERT INTO patients (id, clinic_id, name) VALUES (3, 'c1', 'Cyd')",
    )
    .await
    .unwrap();
    assert_eq!(insert.rows_affected, 1, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_the_decided_schema_whatever_the_search_path() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_POSTGRES_URL", "the resolution test")
    else {
        return;
    };
    let (guarded, decoy) = (
        sql_scratch::unique("warden_guarded"),
        sql_scratch::unique("warden_decoy"),
    );
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    for (schema, rows) in [(&guarded, GUARDED_ROWS), (&decoy, DECOY_ROWS)] {
        let mut conn = admin.acquire().await.unwrap();
        for sql in [
            format!("CREATE SCHEMA {schema}"),
            format!("SET search_path = {schema}"),
            TABLE.into(),
            rows.into(),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", decoy.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let session: Boxed = tower::util::BoxCloneService::new(SqlxPostgres::new(pool.clone()));
    let policy = builder(Dialect::Postgres, &guarded).build().unwrap();
    the_guarded_table_is_the_one_read(&policy, &session, "PostgreSQL").await;
    // The decoy is untouched.
    let (zed,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM {decoy}.patients WHERE id = 9"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(zed, "Zed");
    pool.close().await;
    for schema in [&guarded, &decoy] {
        sql_scratch::pg(&admin, [format!("DROP SCHEMA {schema} CASCADE")]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_reads_the_decided_database_and_refuses_names_of_uncertain_case() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_MYSQL_URL", "the resolution test") else {
        return;
    };
    let (guarded, decoy) = (
        sql_scratch::unique("warden_guarded"),
        sql_scratch::unique("warden_decoy"),
    );
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    for (database, rows) in [(&guarded, GUARDED_ROWS), (&decoy, DECOY_ROWS)] {
        let qualified = format!("{database}.patients");
        sql_scratch::mysql(
            &admin,
            [
                format!("CREATE DATABASE {database}"),
                TABLE.replacen("patients", &qualified, 1),
                rows.replacen("patients", &qualified, 1),
            ],
        )
        .await;
    }
    // The session's current database is the decoy.
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .unwrap()
        .database(&decoy);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let adapter = SqlxMySql::new(pool.clone());
    let session: Boxed = tower::util::BoxCloneService::new(adapter.clone());
    let policy = builder(Dialect::MySql, &guarded).build().unwrap();
    the_guarded_table_is_the_one_read(&policy, &session, "MariaDB").await;

    // `Patients` is another table than `patients` when lower_case_table_names is 0; unless the
    // setting is known to be 1 or 2, such a name is refused before the database.
    let setting = adapter.lower_case_table_names().await.unwrap();
    for (policy, known) in [
        (policy.clone(), None),
        (
            builder(Dialect::MySql, &guarded)
                .lower_case_table_names(setting)
                .build()
                .unwrap(),
            Some(setting),
        ),
    ] {
        let result = run(&policy, &session, "SELECT name FROM Patients").await;
        if known.is_none_or(|s| s == 0) {
            let Err(SqlServiceError::Denied(e)) = &result else {
                panic!("want a refusal, got {result:?}");
            };
            assert_eq!(e.code(), "unsupported", "{e}");
            assert!(e.to_string().contains("lower_case_table_names"), "{e}");
        }
    }
    // Where the server folds names (1 or 2), mixed case is the same table, and is read.
    let folding = builder(Dialect::MySql, &guarded)
        .lower_case_table_names(1)
        .build()
        .unwrap();
    let result = run(&folding, &session, "SELECT name FROM patients ORDER BY id").await;
    assert_eq!(names(&result.unwrap()).len(), 3);

    pool.close().await;
    for database in [&guarded, &decoy] {
        sql_scratch::mysql(&admin, [format!("DROP DATABASE {database}")]).await;
    }
}
