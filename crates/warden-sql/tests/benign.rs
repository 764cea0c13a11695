//! Benign statements that must work (the corpus runs them on the databases too).
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use serde_json::json;
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

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
        let decision = Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": table,
                "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
            .unwrap(),
        );
        Box::pin(std::future::ready(Ok(decision)))
    }
}

async fn rewrite(sql: &str) -> Result<String, String> {
    let policy = SqlPolicy::builder(Dialect::Postgres)
        .catalog(
            Catalog::new()
                .with_table("public.patients", ["id", "clinic_id", "name", "ssn"])
                .with_table("public.visits", ["id", "patient_id", "clinic_id"]),
        )
        .build()
        .unwrap();
    let nurse = Subject::user("nina").with_property("clinic", "c1");
    policy
        .enforce(&PerTable, &SqlRequest::new(sql, nurse))
        .await
        .map(|e| e.statement.to_string())
        .map_err(|e| format!("{}: {e}", e.code()))
}

#[tokio::test]
async fn schema_qualified_columns_name_the_substituted_relation() {
    let sql =
        rewrite("SELECT public.patients.name FROM public.patients WHERE public.patients.id = 1")
            .await
            .unwrap();
    assert!(
        sql.starts_with(
            "SELECT patients.name FROM (SELECT * FROM public.patients AS warden_source"
        ),
        "{sql}"
    );
    assert!(
        sql.ends_with(") AS patients WHERE patients.id = 1"),
        "{sql}"
    );
}

#[tokio::test]
async fn parenthesized_joins_with_aliases() {
    rewrite("SELECT p.name FROM (patients AS p JOIN visits AS v ON v.patient_id = p.id)")
        .await
        .unwrap();
    let sql =
        rewrite("SELECT j.name FROM (patients AS p JOIN visits AS v ON v.patient_id = p.id) AS j")
            .await
            .unwrap();
    assert!(sql.ends_with("ON v.patient_id = p.id) AS j"), "{sql}");
    assert_eq!(
        sql.matches("warden_source.\"clinic_id\" = 'c1'").count(),
        2,
        "{sql}"
    );
}

#[tokio::test]
async fn recursive_ctes_refer_forward_in_postgres() {
    let sql = "WITH RECURSIVE a AS (SELECT x FROM b), b AS (SELECT 1 AS x) SELECT x FROM a";
    assert_eq!(rewrite(sql).await.unwrap(), sql);
    // A forward name is the CTE, not the table, as PostgreSQL resolves it.
    let shadow = "WITH RECURSIVE a AS (SELECT id FROM patients), patients AS (SELECT 1 AS id) \
                  SELECT id FROM a";
    assert_eq!(rewrite(shadow).await.unwrap(), shadow);
}

#[tokio::test]
async fn whole_row_functions_over_unguarded_relations() {
    for sql in [
        "SELECT row_to_json(t) FROM (SELECT 1 AS x) t",
        "SELECT row_to_json(t.*) FROM (SELECT 1 AS x) AS t",
    ] {
        assert_eq!(rewrite(sql).await.unwrap(), sql);
    }
    // Over a guarded table it stays refused.
    assert!(
        rewrite("SELECT row_to_json(p) FROM patients p")
            .await
            .unwrap_err()
            .starts_with("whole_row")
    );
}
