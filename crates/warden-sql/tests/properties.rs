//! Properties of the rewrite over generated statements, run on SQLite:
//!
//! * the rewritten statement always parses again (as exactly one statement);
//! * with row filters, a query that only narrows (no `NOT EXISTS`, `EXCEPT`, …) never returns a
//!   row the original did not: the result is a sub-multiset of the original's;
//! * with masks too, no raw masked value and no row of the other clinic ever comes back;
//! * differentially, against the policy evaluated row by row (the other clinic's rows deleted
//!   from a second copy of the data): every query, narrowing or not (`NOT EXISTS`, `EXCEPT`,
//!   aggregates), returns exactly what the original returns on the filtered copy, and every
//!   `UPDATE` and `DELETE` changes exactly the rows the original changes there, and no other
//!   clinic's row.
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlx::{Row, SqlitePool, ValueRef};
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

const FIXTURE: &[&str] = &[
    "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id TEXT NOT NULL, name TEXT, ssn TEXT)",
    "CREATE TABLE visits (id INTEGER PRIMARY KEY, patient_id INTEGER, clinic_id TEXT NOT NULL, reason TEXT)",
    "INSERT INTO patients VALUES (1, 'c1', 'Ada', '111-11-1111'), (2, 'c1', 'Bob', '222-22-2222'), \
     (3, 'c1', NULL, NULL), (4, 'c2', 'Dan', '444-44-4444'), (5, 'c2', 'Eve', '555-55-5555'), \
     (6, 'c2', 'Ada', '666-66-6666')",
    "INSERT INTO visits VALUES (10, 1, 'c1', 'checkup'), (11, 1, 'c1', 'flu'), (12, 2, 'c1', NULL), \
     (13, 4, 'c2', 'surgery'), (14, 5, 'c2', 'checkup'), (15, 6, 'c1', 'flu'), (16, 1, 'c2', 'x')",
];

fn filter(table: &str) -> Obligation {
    Obligation::from_json(json!({"type": "filter_rows", "table": table,
        "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
    .unwrap()
}

/// A PDP that answers like a real policy: of its decision's obligations, those for the
/// table of the request.
struct PerTable(Decision);

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
        let mut decision = self.0.clone();
        decision.obligations.retain(|o| match o {
            Obligation::FilterRows(f) => f.table == table,
            Obligation::MaskColumns(m) => m.table == table,
            _ => true,
        });
        Box::pin(std::future::ready(Ok(decision)))
    }
}

fn policy() -> SqlPolicy {
    SqlPolicy::builder(Dialect::Sqlite)
        .catalog(
            Catalog::new()
                .with_table("main.patients", ["id", "clinic_id", "name", "ssn"])
                .with_table("main.visits", ["id", "patient_id", "clinic_id", "reason"]),
        )
        .build()
        .unwrap()
}

// ---- a small generator of SQLite queries over the fixture ----------------------------------

fn column(alias: &'static str, table: &'static str) -> impl Strategy<Value = String> {
    let columns: &'static [&'static str] = if table == "patients" {
        &["id", "clinic_id", "name", "ssn"]
    } else {
        &["id", "patient_id", "clinic_id", "reason"]
    };
    prop::sample::select(columns).prop_map(move |c| format!("{alias}.{c}"))
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..20).prop_map(|n| n.to_string()),
        prop::sample::select(
            &[
                "'c1'",
                "'c2'",
                "'Ada'",
                "'Dan'",
                "'flu'",
                "'111-11-1111'",
                "NULL",
                "''"
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

/// A predicate on one row of `table` under `alias`; `NOT` is fine (it does not look at other
/// rows).
fn predicate(alias: &'static str, table: &'static str) -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        (
            column(alias, table),
            prop::sample::select(&["=", "<>", "<", ">=", "LIKE"][..]),
            literal()
        )
            .prop_map(|(c, op, v)| format!("{c} {op} {v}")),
        column(alias, table).prop_map(|c| format!("{c} IS NULL")),
        Just("1 = 1".to_owned()),
        (column(alias, table), literal(), literal())
            .prop_map(|(c, a, b)| format!("{c} IN ({a}, {b})")),
    ];
    atom.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn table() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["patients", "visits"][..])
}

/// Queries that only narrow when rows are removed from their tables.
fn query() -> impl Strategy<Value = String> {
    let simple = table().prop_flat_map(|t| {
        (Just(t), column("t", t), predicate("t", t))
            .prop_map(|(t, c, p)| format!("SELECT t.id, {c} FROM {t} t WHERE {p}"))
    });
    let join = (predicate("p", "patients"), predicate("v", "visits")).prop_map(|(a, b)| {
        format!("SELECT p.id, p.name, v.reason FROM patients p JOIN visits v ON v.patient_id = p.id WHERE {a} AND {b}")
    });
    let left = predicate("p", "patients").prop_map(|a| {
        format!("SELECT p.id, v.id FROM patients p LEFT JOIN visits v ON v.patient_id = p.id AND v.reason = 'flu' WHERE {a}")
    });
    let sub = (predicate("v", "visits"), predicate("p", "patients")).prop_map(|(a, b)| {
        format!("SELECT p.id, p.ssn FROM patients p WHERE p.id IN (SELECT v.patient_id FROM visits v WHERE {a}) AND {b}")
    });
    let exists = predicate("v", "visits").prop_map(|a| {
        format!("SELECT p.name FROM patients p WHERE EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND {a})")
    });
    let union = (table(), table(), predicate("a", "patients"), predicate("b", "visits")).prop_map(
        |(_, _, a, b)| format!("SELECT a.id FROM patients a WHERE {a} UNION ALL SELECT b.patient_id FROM visits b WHERE {b}"),
    );
    let cte = predicate("t", "patients").prop_map(|a| {
        format!("WITH c AS (SELECT * FROM patients t WHERE {a}) SELECT c.id, c.ssn FROM c")
    });
    let shadow = predicate("t", "patients").prop_map(|a| {
        format!(
            "WITH patients AS (SELECT * FROM visits t WHERE {}) SELECT patients.id FROM patients",
            a.replace("t.name", "t.reason").replace("t.ssn", "t.reason")
        )
    });
    prop_oneof![simple, join, left, sub, exists, union, cte, shadow]
}

// ---- running ---------------------------------------------------------------------------------

type Rows = Vec<Vec<serde_json::Value>>;

async fn fetch(pool: &SqlitePool, sql: &str) -> Result<Rows, String> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|i| {
                    let raw = row.try_get_raw(i).unwrap();
                    if raw.is_null() {
                        serde_json::Value::Null
                    } else if let Ok(n) = row.try_get::<i64, _>(i) {
                        json!(n)
                    } else {
                        json!(row.try_get::<String, _>(i).unwrap())
                    }
                })
                .collect()
        })
        .collect())
}

fn multiset(rows: &Rows) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in rows {
        *out.entry(serde_json::to_string(r).unwrap()).or_insert(0) += 1;
    }
    out
}

fn reparses(sql: &str) -> Result<(), TestCaseError> {
    let statements = Parser::parse_sql(&SQLiteDialect {}, sql)
        .map_err(|e| TestCaseError::fail(format!("`{sql}` does not parse again: {e}")))?;
    prop_assert_eq!(statements.len(), 1);
    Ok(())
}

#[test]
fn rewritten_queries_parse_again_and_never_widen() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        for sql in FIXTURE {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool
    });
    let policy = policy();
    let filters = PerTable(
        Decision::permit()
            .with_obligation(filter("patients"))
            .with_obligation(filter("visits")),
    );
    let masked = PerTable(
        Decision::permit()
            .with_obligation(filter("patients"))
            .with_obligation(filter("visits"))
            .with_obligation(
                Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
                    "columns": {"ssn": "last4", "name": "redact"}}))
                .unwrap(),
            ),
    );
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let executed = std::cell::Cell::new(0usize);
    runner
        .run(&query(), |sql| {
            runtime.block_on(async {
                let original = fetch(&pool, &sql).await;
                let request = SqlRequest::new(sql.clone(), nurse.clone());
                let rewritten = policy
                    .enforce(&filters, &request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("`{sql}` refused: {e}")))?;
                reparses(&rewritten.statement)?;
                let got = fetch(&pool, &rewritten.statement).await;
                match (&original, &got) {
                    (Ok(original), Ok(got)) => {
                        let (all, mine) = (multiset(original), multiset(got));
                        for (row, n) in &mine {
                            prop_assert!(
                                all.get(row).copied().unwrap_or(0) >= *n,
                                "`{}` returns {} the original `{}` does not",
                                rewritten.statement,
                                row,
                                sql
                            );
                        }
                        executed.set(executed.get() + 1);
                    }
                    (Err(_), Err(_)) => {}
                    (o, g) => {
                        return Err(TestCaseError::fail(format!(
                            "`{sql}`: original {o:?}, rewritten `{}` {g:?}",
                            rewritten.statement
                        )));
                    }
                }
                // With masks: no raw value of a masked column, no other clinic.
                let with_masks = policy
                    .enforce(&masked, &request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("`{sql}` refused: {e}")))?;
                reparses(&with_masks.statement)?;
                if let Ok(rows) = fetch(&pool, &with_masks.statement).await {
                    let text = serde_json::to_string(&rows).unwrap();
                    for secret in [
                        "111-11-1111",
                        "222-22-2222",
                        "444-44-4444",
                        "Dan",
                        "Eve",
                        "Bob",
                        "c2",
                        "surgery",
                    ] {
                        prop_assert!(
                            !text.contains(secret),
                            "`{}` returns `{}`: {}",
                            with_masks.statement,
                            secret,
                            text
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    let executed = executed.get();
    assert!(executed > 100, "too few generated queries ran: {executed}");
}

// ---- differential: the rewrite against the policy applied row by row --------------------

/// Any query: with whole tables filtered, none can tell the rewrite from the filtered data.
fn any_query() -> impl Strategy<Value = String> {
    let not_exists = predicate("v", "visits").prop_map(|a| {
        format!("SELECT p.id FROM patients p WHERE NOT EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND {a})")
    });
    let except = (predicate("a", "patients"), predicate("b", "visits")).prop_map(|(a, b)| {
        format!("SELECT a.id FROM patients a WHERE {a} EXCEPT SELECT b.patient_id FROM visits b WHERE {b}")
    });
    let aggregate = table().prop_flat_map(|t| {
        (Just(t), predicate("t", t)).prop_map(|(t, p)| {
            format!("SELECT count(*), min(t.id), max(t.clinic_id) FROM {t} t WHERE {p}")
        })
    });
    let grouped = predicate("v", "visits").prop_map(|a| {
        format!("SELECT v.reason, count(*) FROM visits v WHERE {a} GROUP BY v.reason")
    });
    let table_command = table().prop_map(|t| format!("TABLE {t}"));
    prop_oneof![
        4 => query(),
        1 => not_exists,
        1 => except,
        1 => aggregate,
        1 => grouped,
        1 => table_command,
    ]
}

/// Writes of the caller's conditions; none moves a row to another clinic.
fn write() -> impl Strategy<Value = String> {
    prop_oneof![
        predicate("patients", "patients")
            .prop_map(|p| format!("UPDATE patients SET name = 'X' WHERE {p}")),
        predicate("p", "patients")
            .prop_map(|p| format!("UPDATE patients AS p SET ssn = NULL, name = p.id WHERE {p}")),
        predicate("visits", "visits")
            .prop_map(|p| format!("UPDATE visits SET reason = 'moved' WHERE {p}")),
        predicate("patients", "patients").prop_map(|p| format!("DELETE FROM patients WHERE {p}")),
        predicate("visits", "visits").prop_map(|p| format!("DELETE FROM visits WHERE {p}")),
    ]
}

async fn sqlite(filtered: bool) -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    for sql in FIXTURE {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    if filtered {
        for sql in [
            "DELETE FROM patients WHERE clinic_id IS NOT 'c1'",
            "DELETE FROM visits WHERE clinic_id IS NOT 'c1'",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
    pool
}

async fn execute(pool: &SqlitePool, sql: &str) -> Result<u64, String> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string())
}

async fn contents(pool: &SqlitePool) -> (Rows, Rows) {
    (
        fetch(pool, "SELECT * FROM patients ORDER BY id")
            .await
            .unwrap(),
        fetch(pool, "SELECT * FROM visits ORDER BY id")
            .await
            .unwrap(),
    )
}

fn of_clinic(rows: &Rows, table: &str, clinic: &str) -> Rows {
    // `clinic_id` is the second column of patients, the third of visits.
    let at = if table == "patients" { 1 } else { 2 };
    rows.iter()
        .filter(|r| r.get(at) == Some(&json!(clinic)))
        .cloned()
        .collect()
}

#[test]
fn the_rewrite_reads_and_writes_exactly_what_the_policy_allows_row_by_row() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, filtered) = runtime.block_on(async { (sqlite(false).await, sqlite(true).await) });
    let policy = policy();
    let filters = PerTable(
        Decision::permit()
            .with_obligation(filter("patients"))
            .with_obligation(filter("visits")),
    );
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    let config = Config {
        cases: 192,
        failure_persistence: None,
        ..Config::default()
    };
    let compared = std::cell::Cell::new(0usize);
    TestRunner::new(config.clone())
        .run(&any_query(), |sql| {
            runtime.block_on(async {
                let request = SqlRequest::new(sql.clone(), nurse.clone());
                let rewritten = policy
                    .enforce(&filters, &request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("`{sql}` refused: {e}")))?;
                // SQLite has no `TABLE t`: the filtered copy runs what it stands for.
                let oracle = sql
                    .strip_prefix("TABLE ")
                    .map_or_else(|| sql.clone(), |t| format!("SELECT * FROM {t}"));
                let want = fetch(&filtered, &oracle).await;
                let got = fetch(&full, &rewritten.statement).await;
                match (want, got) {
                    (Ok(want), Ok(got)) => {
                        prop_assert_eq!(
                            multiset(&want),
                            multiset(&got),
                            "`{}` rewritten `{}`",
                            sql,
                            rewritten.statement
                        );
                        compared.set(compared.get() + 1);
                    }
                    (Err(_), Err(_)) => {}
                    (w, g) => {
                        return Err(TestCaseError::fail(format!(
                            "`{sql}`: on the filtered data {w:?}, rewritten `{}` {g:?}",
                            rewritten.statement
                        )));
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    assert!(
        compared.get() > 100,
        "too few queries compared: {}",
        compared.get()
    );

    let (fixture_patients, fixture_visits) = runtime.block_on(contents(&full));
    let writes = std::cell::Cell::new(0usize);
    TestRunner::new(config)
        .run(&write(), |sql| {
            runtime.block_on(async {
                let (full, filtered) = (sqlite(false).await, sqlite(true).await);
                let request = SqlRequest::new(sql.clone(), nurse.clone());
                let rewritten = policy
                    .enforce(&filters, &request)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("`{sql}` refused: {e}")))?;
                let want = execute(&filtered, &sql).await;
                let got = execute(&full, &rewritten.statement).await;
                prop_assert_eq!(
                    &want,
                    &got,
                    "`{}` rewritten `{}`: rows changed",
                    sql,
                    rewritten.statement
                );
                let (patients, visits) = contents(&full).await;
                let (want_patients, want_visits) = contents(&filtered).await;
                prop_assert_eq!(
                    of_clinic(&patients, "patients", "c1"),
                    want_patients,
                    "`{}` rewritten `{}`",
                    sql,
                    rewritten.statement
                );
                prop_assert_eq!(of_clinic(&visits, "visits", "c1"), want_visits, "`{}`", sql);
                // The other clinic's rows are as they were.
                prop_assert_eq!(
                    of_clinic(&patients, "patients", "c2"),
                    of_clinic(&fixture_patients, "patients", "c2"),
                    "`{}` rewritten `{}` changed c2",
                    sql,
                    rewritten.statement
                );
                prop_assert_eq!(
                    of_clinic(&visits, "visits", "c2"),
                    of_clinic(&fixture_visits, "visits", "c2"),
                    "`{}` changed c2",
                    sql
                );
                if want.is_ok() {
                    writes.set(writes.get() + 1);
                }
                Ok(())
            })
        })
        .unwrap();
    assert!(
        writes.get() > 100,
        "too few writes compared: {}",
        writes.get()
    );
}
