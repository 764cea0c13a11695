//! The write guards, as rewritten text: the caller's expressions over the target rows of an
//! `UPDATE`, `DELETE`, `ON CONFLICT DO UPDATE` or `MERGE` sit in the branch of a `CASE` whose
//! condition is the row filter, so the database never evaluates them on a row the filter
//! removes. The corpus (`tests/sql_corpus.rs`) runs the same statements on real databases.
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use serde_json::json;
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};
use warden_test::StaticPdp;

fn policy(dialect: Dialect) -> SqlPolicy {
    let schema = match dialect {
        Dialect::Sqlite => "main",
        Dialect::MySql => "clinic",
        _ => "public",
    };
    SqlPolicy::builder(dialect)
        .default_schema(schema)
        .catalog(Catalog::new().with_table(
            format!("{schema}.patients"),
            ["id", "clinic_id", "name", "ssn", "notes"],
        ))
        .build()
        .unwrap()
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

async fn rewrite(dialect: Dialect, sql: &str) -> Result<String, &'static str> {
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    policy(dialect)
        .enforce(&pdp(), &SqlRequest::new(sql, nurse))
        .await
        .map(|e| e.statement.to_string())
        .map_err(|e| e.code())
}

const GUARD_PG: &str =
    "(patients.\"clinic_id\" = 'c1') AND (CASE WHEN patients.\"clinic_id\" = 'c1' THEN";

#[tokio::test]
async fn update_and_delete_evaluate_the_callers_predicate_only_on_admitted_rows() {
    let update = rewrite(
        Dialect::Postgres,
        "UPDATE patients SET notes = 'x' WHERE CAST(name AS INTEGER) = 1",
    )
    .await
    .unwrap();
    assert_eq!(
        update,
        format!(
            "UPDATE \"public\".patients SET notes = 'x' WHERE {GUARD_PG} (CAST(name AS INTEGER) = 1) ELSE (1 = 0) END)"
        )
    );
    let delete = rewrite(Dialect::Postgres, "DELETE FROM patients WHERE ssn::int = 1")
        .await
        .unwrap();
    assert!(
        delete.ends_with(&format!(
            "WHERE {GUARD_PG} (ssn::INT = 1) ELSE (1 = 0) END)"
        )),
        "{delete}"
    );
    // Without a caller's predicate the filter alone.
    assert_eq!(
        rewrite(Dialect::Postgres, "DELETE FROM patients")
            .await
            .unwrap(),
        "DELETE FROM \"public\".patients WHERE patients.\"clinic_id\" = 'c1'"
    );
    // MySQL and SQLite propagate constants across conjuncts: the CASE stands alone there.
    for dialect in [Dialect::MySql, Dialect::Sqlite] {
        let sql = rewrite(dialect, "UPDATE patients SET notes = 'x' WHERE id > 3")
            .await
            .unwrap();
        assert!(sql.contains("WHERE CASE WHEN patients."), "{sql}");
        assert!(sql.ends_with("THEN (id > 3) ELSE (1 = 0) END"), "{sql}");
    }
}

#[tokio::test]
async fn update_from_and_delete_using_guard_the_join_condition() {
    let sql = rewrite(
        Dialect::Postgres,
        "UPDATE patients p SET notes = 'x' FROM patients q WHERE q.id = p.id + 1",
    )
    .await
    .unwrap();
    assert!(
        sql.contains("WHERE (p.\"clinic_id\" = 'c1') AND (CASE WHEN p.\"clinic_id\" = 'c1' THEN (q.id = p.id + 1) ELSE (1 = 0) END)"),
        "{sql}"
    );
    // The other relation is read through its filtered, fenced substitution.
    assert!(sql.contains("OFFSET 0) q WHERE"), "{sql}");
    let sql = rewrite(
        Dialect::Postgres,
        "DELETE FROM patients p USING patients q WHERE q.ssn = p.ssn AND q.id <> p.id",
    )
    .await
    .unwrap();
    assert!(
        sql.contains("CASE WHEN p.\"clinic_id\" = 'c1' THEN (q.ssn = p.ssn AND q.id <> p.id)"),
        "{sql}"
    );
}

#[tokio::test]
async fn on_conflict_do_update_guards_its_condition() {
    for dialect in [Dialect::Postgres, Dialect::Sqlite] {
        let sql = rewrite(
            dialect,
            "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'x') \
             ON CONFLICT (id) DO UPDATE SET notes = 'x' WHERE patients.name::int = 1",
        )
        .await;
        let sql = match sql {
            Ok(s) => s,
            // SQLite has no `::`; the same with CAST.
            Err(_) => rewrite(
                dialect,
                "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'x') \
                 ON CONFLICT (id) DO UPDATE SET notes = 'x' WHERE CAST(patients.name AS INT) = 1",
            )
            .await
            .unwrap(),
        };
        assert!(sql.contains("DO UPDATE SET notes = 'x' WHERE "), "{sql}");
        assert!(
            sql.contains("CASE WHEN patients.\"clinic_id\" = 'c1' THEN ("),
            "{sql}"
        );
    }
}

#[tokio::test]
async fn merge_guards_its_join_and_every_matched_clause() {
    let sql = rewrite(
        Dialect::Postgres,
        "MERGE INTO patients p USING (SELECT 4 AS id) s ON p.id = s.id \
         WHEN MATCHED AND p.name::int = 1 THEN UPDATE SET notes = 'x' \
         WHEN MATCHED THEN UPDATE SET clinic_id = s.id::text",
    )
    .await
    .unwrap();
    let guard = "(p.\"clinic_id\" = 'c1') AND (CASE WHEN p.\"clinic_id\" = 'c1' THEN";
    assert!(
        sql.contains(&format!("ON {guard} (p.id = s.id) ELSE (1 = 0) END)")),
        "{sql}"
    );
    assert!(
        sql.contains(&format!(
            "WHEN MATCHED AND {guard} (p.name::INT = 1) ELSE (1 = 0) END)"
        )),
        "{sql}"
    );
    // The new row's check is a caller expression too: inside the branch.
    assert!(
        sql.contains(&format!(
            "WHEN MATCHED AND {guard} (s.id::TEXT = 'c1') ELSE (1 = 0) END)"
        )),
        "{sql}"
    );
}

#[tokio::test]
async fn merge_checks_tuple_assignments_as_update_does() {
    for sql in [
        "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id \
         WHEN MATCHED THEN UPDATE SET (clinic_id, notes) = ('c2', 'x')",
        "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id \
         WHEN MATCHED THEN UPDATE SET (notes, CLINIC_ID) = ('x', 'c1')",
        "UPDATE patients SET (clinic_id, notes) = ('c2', 'x')",
    ] {
        assert_eq!(
            rewrite(Dialect::Postgres, sql).await.unwrap_err(),
            "cannot_prove",
            "{sql}"
        );
    }
    // A tuple of other columns is fine.
    rewrite(
        Dialect::Postgres,
        "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id \
         WHEN MATCHED THEN UPDATE SET (name, notes) = ('Ada', 'x')",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn reads_are_fenced_on_every_dialect_by_default() {
    for (dialect, fence) in [
        (Dialect::Postgres, " OFFSET 0) AS patients"),
        (Dialect::MySql, " LIMIT 18446744073709551615) AS patients"),
        (Dialect::Sqlite, " LIMIT -1 OFFSET 0) AS patients"),
    ] {
        let sql = rewrite(dialect, "SELECT name FROM patients WHERE id = 4")
            .await
            .unwrap();
        assert!(sql.contains(fence), "{dialect}: {sql}");
    }
    let unfenced = SqlPolicy::builder(Dialect::MySql)
        .default_schema("clinic")
        .catalog(Catalog::new().with_table("clinic.patients", ["id", "clinic_id"]))
        .optimization_fence(false)
        .build()
        .unwrap();
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    let sql = unfenced
        .enforce(&pdp(), &SqlRequest::new("SELECT id FROM patients", nurse))
        .await
        .unwrap()
        .statement;
    assert!(!sql.contains("LIMIT"), "{sql}");
}
