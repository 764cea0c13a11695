//! The `hash` mask's key never appears in the statement a database sees: on real PostgreSQL
//! (sqlx and tokio-postgres) and MariaDB, the rewrite binds the key's HMAC pads as parameters,
//! the statement text the server shows (`pg_stat_activity`, what reaches the driver) holds
//! neither the key nor its pads, the hashed values equal the HTTP PEP's masker, equality on a
//! hashed value works with the caller's parameters before and after the mask, and a caller who
//! binds more parameters than the statement takes (to put values of its own where the pads go)
//! is refused.
//!
//! `WARDEN_TEST_POSTGRES_URL` and `WARDEN_TEST_MYSQL_URL` name the servers; without one the
//! database is skipped, unless `WARDEN_TEST_REQUIRE_DATABASES=1` (as in CI).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

mod sql_scratch;

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use tower::{Layer, Service, ServiceExt};
use warden_decision::{Decision, MaskStrategy, Masked, Masker, Obligation, Subject};
use warden_sql::adapters::{DriverError, SqlxMySql, SqlxPostgres, TokioPostgres};
use warden_sql::{
    Catalog, Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlResponse, SqlServiceError, SqlValue,
};
use warden_test::StaticPdp;

const KEY: &[u8] = b"hash-key-test-0123456789";

type Boxed = tower::util::BoxCloneService<SqlRequest, SqlResponse, DriverError>;

/// What reaches the database: every statement and its parameters.
type Seen = Arc<Mutex<Vec<(String, Vec<SqlValue>)>>>;

fn recording(inner: Boxed, seen: Seen) -> Boxed {
    tower::util::BoxCloneService::new(tower::service_fn(move |r: SqlRequest| {
        seen.lock()
            .unwrap()
            .push((r.statement.clone(), r.params.clone()));
        let mut inner = inner.clone();
        async move { inner.ready().await?.call(r).await }
    }))
}

/// The key's pads as any server log could spell them, and the key itself.
fn secrets() -> Vec<String> {
    let mut block = [0u8; 64];
    block[..KEY.len()].copy_from_slice(KEY);
    let mut out = vec![String::from_utf8_lossy(KEY).into_owned()];
    for pad in [0x36u8, 0x5c] {
        let hex: String = block.iter().map(|b| format!("{:02x}", b ^ pad)).collect();
        // A prefix is enough to find either case of the whole pad.
        out.push(hex[..32].to_owned());
        out.push(hex[..32].to_ascii_uppercase());
    }
    out
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in secrets() {
        assert!(
            !text.contains(&secret),
            "{what} holds the key or a pad: {text}"
        );
    }
}

fn policy(dialect: Dialect, schema: &str) -> SqlPolicy {
    SqlPolicy::builder(dialect)
        .default_schema(schema)
        .catalog(Catalog::new().with_table(
            format!("{schema}.patients"),
            ["id", "clinic_id", "name", "ssn"],
        ))
        .hash_key(KEY)
        .build()
        .unwrap()
}

fn pdp() -> StaticPdp {
    StaticPdp::new(
        Decision::permit()
            .with_obligation(
                Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                    "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
                .unwrap(),
            )
            .with_obligation(
                Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
                    "columns": {"name": "hash"}}))
                .unwrap(),
            ),
    )
}

fn pseudonym(name: &str) -> String {
    let masker = Masker::with_hash_key(KEY).unwrap();
    match masker.mask(MaskStrategy::Hash, &json!(name)).unwrap() {
        Masked::Value(Json::String(s)) => s,
        other => panic!("{other:?}"),
    }
}

/// The checks of one database: `p(n)` spells its n-th (1-based) placeholder.
async fn check(dialect: Dialect, schema: &str, service: Boxed, p: fn(usize) -> String) {
    let seen: Seen = Arc::default();
    let guarded =
        SqlPolicyLayer::new(pdp(), policy(dialect, schema)).layer(recording(service, seen.clone()));
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    let run = |sql: String, params: Vec<SqlValue>| {
        let guarded = guarded.clone();
        let nurse = nurse.clone();
        async move {
            let mut request = SqlRequest::new(sql, nurse);
            request.params = params;
            guarded.oneshot(request).await
        }
    };

    // Every name of her clinic, hashed exactly as the HTTP PEP's masker hashes it.
    let all = run(
        format!(
            "SELECT id, name FROM patients WHERE id >= {} ORDER BY id",
            p(1)
        ),
        vec![SqlValue::Int(0)],
    )
    .await
    .unwrap();
    let names: Vec<Json> = all.rows.iter().map(|r| r[1].clone()).collect();
    assert_eq!(
        names,
        vec![json!(pseudonym("Ada")), json!(pseudonym("Bob"))],
        "{dialect}"
    );

    // Equality on a hashed value, with a parameter of the caller's on each side of the mask
    // in the statement's text.
    let found = run(
        format!(
            "SELECT id, name FROM patients WHERE name = {} AND id < {}",
            p(1),
            p(2)
        ),
        vec![SqlValue::Text(pseudonym("Bob")), SqlValue::Int(100)],
    )
    .await
    .unwrap();
    assert_eq!(
        found.rows,
        vec![vec![json!(2), json!(pseudonym("Bob"))]],
        "{dialect}"
    );
    let none = run(
        format!("SELECT id FROM patients WHERE name = {}", p(1)),
        vec![SqlValue::Text(pseudonym("Dan"))],
    )
    .await
    .unwrap();
    assert!(
        none.rows.is_empty(),
        "{dialect}: another clinic's pseudonym"
    );

    // Extra parameters would sit where the pads go: refused before the database.
    let before = seen.lock().unwrap().len();
    let refused = run(
        "SELECT name FROM patients".to_owned(),
        vec![
            SqlValue::Text("00".repeat(64)),
            SqlValue::Text("00".repeat(64)),
        ],
    )
    .await
    .unwrap_err();
    let SqlServiceError::Denied(e) = &refused else {
        panic!("{dialect}: {refused:?}");
    };
    assert_eq!(e.code(), "parameter", "{dialect}");
    assert_eq!(seen.lock().unwrap().len(), before, "{dialect}");

    // What reached the database: the pads as parameters, never in the text.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{dialect}");
    for (statement, params) in seen.iter() {
        assert_no_secret(statement, "the statement");
        let pads = params
            .iter()
            .filter(|v| matches!(v, SqlValue::Text(t) if t.len() == 128))
            .count();
        assert_eq!(pads, 2, "{dialect}: {statement}");
    }
}

const TABLE: &str = "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id VARCHAR(10) NOT NULL, \
                     name VARCHAR(100) NOT NULL, ssn VARCHAR(20))";
const ROWS: &str = "INSERT INTO patients (id, clinic_id, name, ssn) VALUES \
                    (1, 'c1', 'Ada', '111-11-1111'), (2, 'c1', 'Bob', '222-22-2222'), \
                    (4, 'c2', 'Dan', '444-44-4444')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_binds_the_key_pads_and_never_shows_them() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_POSTGRES_URL", "the hash key test")
    else {
        return;
    };
    let schema = sql_scratch::unique("warden_hash");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sql_scratch::pg(&admin, [format!("CREATE SCHEMA {schema}")]).await;
    let application = sql_scratch::unique("warden_hash_app");
    let options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())])
        .application_name(&application);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sql_scratch::pg(&pool, [TABLE, ROWS]).await;
    let dollar = |n: usize| format!("${n}");
    check(
        Dialect::Postgres,
        &schema,
        tower::util::BoxCloneService::new(SqlxPostgres::new(pool.clone())),
        dollar,
    )
    .await;
    // What the server itself shows of the session's last statement (the pool keeps it open).
    let (last,): (String,) =
        sqlx::query_as("SELECT query FROM pg_stat_activity WHERE application_name = $1")
            .bind(&application)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(last.contains("$2"), "{last}");
    assert_no_secret(&last, "pg_stat_activity");
    pool.close().await;

    // tokio-postgres prepares the statement: the pads' types come from `decode(text, text)`.
    let config = format!("{url}?options=-csearch_path%3D{schema}");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    check(
        Dialect::Postgres,
        &schema,
        tower::util::BoxCloneService::new(TokioPostgres::new(Arc::new(client))),
        dollar,
    )
    .await;
    task.abort();
    sql_scratch::pg(&admin, [format!("DROP SCHEMA {schema} CASCADE")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_places_the_key_pads_among_the_callers_parameters() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_MYSQL_URL", "the hash key test") else {
        return;
    };
    let database = sql_scratch::unique("warden_hash");
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    sql_scratch::mysql(&admin, [format!("CREATE DATABASE {database}")]).await;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .unwrap()
        .database(&database);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sql_scratch::mysql(&pool, [TABLE, ROWS]).await;
    check(
        Dialect::MySql,
        &database,
        tower::util::BoxCloneService::new(SqlxMySql::new(pool)),
        |_| "?".to_owned(),
    )
    .await;
    sql_scratch::mysql(&admin, [format!("DROP DATABASE {database}")]).await;
}
