//! Behaviour of the analysis and rewrite, without a database.

use serde_json::json;
use warden_decision::{Decision, Obligation, PdpError, Subject};
use warden_test::{Answer, ScriptedPdp, StaticPdp};

use crate::{Catalog, Dialect, SqlError, SqlPolicy, SqlRequest};

pub(super) fn nurse() -> Subject {
    Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinic", "c1")
}

pub(super) fn policy(dialect: Dialect) -> SqlPolicy {
    let schema = match dialect {
        Dialect::MySql => "clinic",
        Dialect::Sqlite => "main",
        _ => "public",
    };
    SqlPolicy::builder(dialect)
        .default_schema(schema)
        .catalog(
            Catalog::new()
                .with_table(
                    format!("{schema}.patients"),
                    ["id", "clinic_id", "name", "ssn"],
                )
                .with_table(
                    format!("{schema}.visits"),
                    ["id", "patient_id", "clinic_id"],
                ),
        )
        .build()
        .unwrap()
}

/// A nurse's policy as a real PDP answers it: the patients' row filter and mask on decisions
/// about `patients`, a plain permit on anything else.
pub(super) fn filtered() -> Filtered {
    Filtered(
        Decision::permit()
            .with_obligation(
                Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                    "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
                .unwrap(),
            )
            .with_obligation(
                Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
                    "columns": {"ssn": "null"}}))
                .unwrap(),
            ),
    )
}

pub(super) struct Filtered(pub(super) Decision);

impl warden_decision::Pdp for Filtered {
    fn decide<'a>(
        &'a self,
        request: &'a warden_decision::AccessRequest,
    ) -> warden_decision::PdpFuture<'a> {
        let decision = if request.resource.id.ends_with(".patients") {
            self.0.clone()
        } else {
            Decision::permit()
        };
        Box::pin(std::future::ready(Ok(decision)))
    }
}

async fn enforce(policy: &SqlPolicy, sql: &str) -> Result<String, SqlError> {
    policy
        .enforce(&filtered(), &SqlRequest::new(sql, nurse()))
        .await
        .map(|e| e.statement.to_string())
}

async fn code(policy: &SqlPolicy, sql: &str) -> &'static str {
    match enforce(policy, sql).await {
        Ok(s) => panic!("`{sql}` was allowed: {s}"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn obligations_that_do_not_fit_the_database_are_configuration_errors() {
    let p = policy(Dialect::Postgres);
    // A filter for `patients` on a statement that reads `visits` only.
    let everywhere = StaticPdp::new(
        Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
            .unwrap(),
        ),
    );
    let err = p
        .enforce(
            &everywhere,
            &SqlRequest::new("SELECT id FROM visits", nurse()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "policy_mismatch");
    assert!(err.reason().unwrap().is_configuration());
    // A filter or a mask on a column the table does not have.
    for obligation in [
        json!({"type": "filter_rows", "table": "patients",
            "where": {"eq": [{"column": "tenant"}, {"subject": "clinic"}]}}),
        json!({"type": "mask_columns", "table": "patients", "columns": {"secret": "null"}}),
    ] {
        let pdp = StaticPdp::new(
            Decision::permit().with_obligation(Obligation::from_json(obligation).unwrap()),
        );
        let err = p
            .enforce(&pdp, &SqlRequest::new("DELETE FROM patients", nurse()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unknown_column");
    }
    // A guarded table the catalog does not know.
    let bare = SqlPolicy::builder(Dialect::Postgres).build().unwrap();
    let err = bare
        .enforce(
            &filtered(),
            &SqlRequest::new("DELETE FROM patients", nurse()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_columns");
    assert!(err.reason().unwrap().is_configuration());
}

#[tokio::test]
async fn written_values_are_checked_as_stored() {
    let p = policy(Dialect::Postgres);
    for sql in [
        // `CAST('c1x' AS varchar(2))` stores `c1`; `CAST('c1' AS varchar(1))` stores `c`.
        "INSERT INTO patients (id, clinic_id) VALUES (9, CAST('c1' AS varchar(1)))",
        "UPDATE patients SET clinic_id = CAST('c1' AS char(1)) WHERE id = 1",
        "UPDATE patients SET clinic_id = 'c1'::varchar(1) WHERE id = 1",
    ] {
        assert_eq!(code(&p, sql).await, "cannot_prove", "{sql}");
    }
    // A cast that keeps the text is seen through.
    enforce(
        &p,
        "INSERT INTO patients (id, clinic_id) VALUES (9, CAST('c1' AS text))",
    )
    .await
    .unwrap();
    // Text order is the collation's: a filter with `lt`/`gt` on text cannot check a row.
    let ordered = StaticPdp::new(
        Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                "where": {"lt": [{"column": "clinic_id"}, {"value": "c5"}]}}))
            .unwrap(),
        ),
    );
    let err = p
        .enforce(
            &ordered,
            &SqlRequest::new(
                "INSERT INTO patients (id, clinic_id) VALUES (9, 'c1')",
                nurse(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "cannot_prove");
}

#[tokio::test]
async fn builds_one_request_per_relation_and_operation_with_columns() {
    let p = policy(Dialect::Postgres);
    let a = p
        .analyze("UPDATE patients SET name = upper(name) WHERE id IN (SELECT patient_id FROM visits v WHERE v.id > 3) RETURNING id")
        .unwrap();
    let requests = a.access_requests(&nurse(), &Default::default());
    let summary: Vec<(String, String, serde_json::Value)> = requests
        .iter()
        .map(|r| {
            (
                r.action.name.clone(),
                r.resource.id.clone(),
                r.resource.properties["columns"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "select".into(),
                "public.patients".into(),
                json!(["id", "name"])
            ),
            ("update".into(), "public.patients".into(), json!(["name"])),
            (
                "select".into(),
                "public.visits".into(),
                json!(["id", "patient_id"])
            ),
        ]
    );
    let r = &requests[0];
    assert_eq!(r.resource.kind, "table");
    assert_eq!(r.resource.properties["schema"], "public");
    assert_eq!(r.resource.properties["table"], "patients");
    assert_eq!(r.context["sql"]["dialect"], "postgres");
    assert_eq!(r.subject.id, "nina");
}

#[tokio::test]
async fn batches_the_requests_and_refuses_on_any_deny() {
    let pdp = ScriptedPdp::new(|r| {
        if r.resource.id == "public.visits" {
            Answer::Decision(Decision::deny().with_reason("no visits for you"))
        } else {
            Answer::Decision(Decision::permit())
        }
    });
    let p = policy(Dialect::Postgres);
    let err = p
        .enforce(
            &pdp,
            &SqlRequest::new(
                "SELECT p.name FROM patients p JOIN visits v ON v.patient_id = p.id",
                nurse(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_permitted");
    assert!(
        err.to_string().contains("`select` on `public.visits`"),
        "{err}"
    );
    // The policy's reasons are kept for logs, out of the message the caller sees.
    assert!(!err.to_string().contains("no visits for you"), "{err}");
    assert!(matches!(
        err.reason(),
        Some(crate::DenyReason::NotPermitted { reasons, .. }) if reasons == &["no visits for you"]
    ));
    assert_eq!(pdp.requests().len(), 2);
}

#[tokio::test]
async fn an_unavailable_pdp_refuses_the_statement() {
    let pdp = ScriptedPdp::failing(PdpError::unavailable("down"));
    let err = policy(Dialect::Postgres)
        .enforce(&pdp, &SqlRequest::new("SELECT id FROM visits", nurse()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "pdp_error");
}

#[tokio::test]
async fn obligations_it_cannot_carry_out_refuse_the_statement() {
    let pdp = StaticPdp::new(Decision::permit().with_obligation(
        Obligation::from_json(json!({"type": "redact", "paths": ["$.ssn"]})).unwrap(),
    ));
    let err = policy(Dialect::Postgres)
        .enforce(&pdp, &SqlRequest::new("SELECT id FROM visits", nurse()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "obligation_unsupported");
    let audit = StaticPdp::new(Decision::permit().with_obligation(
        Obligation::from_json(json!({"type": "audit", "level": "high"})).unwrap(),
    ));
    policy(Dialect::Postgres)
        .enforce(&audit, &SqlRequest::new("SELECT id FROM visits", nurse()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_subject_without_the_filter_attribute_is_refused() {
    let err = policy(Dialect::Postgres)
        .enforce(
            &filtered(),
            &SqlRequest::new("SELECT id FROM patients", Subject::user("x")),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "subject_attribute");
}

#[tokio::test]
async fn resolves_cte_names_as_each_database_does() {
    let p = policy(Dialect::Postgres);
    // The CTE body's `patients` is the table; the outer one the CTE.
    let sql = enforce(
        &p,
        "WITH patients AS (SELECT * FROM patients) SELECT ssn FROM patients",
    )
    .await
    .unwrap();
    assert_eq!(sql.matches("warden_source").count(), 5, "{sql}");
    // A recursive CTE sees itself, never the table of the same name.
    let sql = enforce(
        &p,
        "WITH RECURSIVE patients (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM patients WHERE n < 3) SELECT n FROM patients",
    )
    .await
    .unwrap();
    assert!(!sql.contains("warden_source"), "{sql}");
    // PostgreSQL resolves a forward name in `WITH RECURSIVE` to the CTE; MySQL and SQLite
    // differ, so there it is refused.
    enforce(
        &p,
        "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
    )
    .await
    .unwrap();
    for dialect in [Dialect::MySql, Dialect::Sqlite] {
        assert_eq!(
            code(
                &policy(dialect),
                "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"
            )
            .await,
            "unsupported"
        );
    }
    // Where quoted names lose their case the rule for CTEs is not certain: refused.
    let my = policy(Dialect::MySql);
    assert_eq!(
        code(
            &my,
            "WITH Patients AS (SELECT 1 AS id) SELECT id FROM patients"
        )
        .await,
        "unsupported"
    );
    // PostgreSQL folds unquoted names: `Patients` is the CTE `patients`.
    let sql = enforce(
        &p,
        "WITH Patients AS (SELECT 1 AS id) SELECT id FROM patients",
    )
    .await
    .unwrap();
    assert!(!sql.contains("warden_source"), "{sql}");
}

#[tokio::test]
async fn refuses_what_it_cannot_analyse() {
    let p = policy(Dialect::Postgres);
    for (sql, want) in [
        ("", "empty_statement"),
        ("  -- nothing\n", "empty_statement"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("SELECT * FROM a.b.patients", "unsupported"),
        // A dot inside a quoted part: `"a.b".c` and `a."b.c"` would be one relation id.
        ("SELECT * FROM \"public.patients\"", "unsupported"),
        ("SELECT * FROM \"pub.lic\".patients", "unsupported"),
        ("SELECT * FROM \"a.b\".c, a.\"b.c\"", "unsupported"),
        ("UPDATE \"public.patients\" SET name = 'x'", "unsupported"),
        ("SELECT * FROM patients p WHERE p IS NOT NULL", "whole_row"),
        ("SELECT concat(p.*) FROM patients p", "whole_row"),
        ("SELECT * FROM pg_catalog.pg_authid", "system_catalog"),
        ("SELECT \"pg_read_file\"('x')", "denied_function"),
        (
            "SELECT pg_catalog.pg_read_binary_file('x')",
            "denied_function",
        ),
        ("SELECT * FROM pg_ls_dir('.')", "denied_function"),
        ("SELECT dblink_connect('x')", "denied_function"),
        (
            "SELECT ts_stat('select ssn from patients')",
            "denied_function",
        ),
        ("TABLE", "parse_error"),
        (
            "TABLE patients; DELETE FROM patients",
            "multiple_statements",
        ),
        ("EXPLAIN SELECT 1", "statement_kind"),
        ("VACUUM", "statement_kind"),
        ("LISTEN x", "statement_kind"),
        ("CALL f()", "statement_kind"),
        (
            "UPDATE patients p SET (clinic_id, name) = ('c1', 'x')",
            "cannot_prove",
        ),
        ("INSERT INTO patients DEFAULT VALUES", "cannot_prove"),
        (
            "SELECT 1 FROM patients p, LATERAL (SELECT p) x",
            "whole_row",
        ),
    ] {
        assert_eq!(code(&p, sql).await, want, "{sql}");
    }
    let lite = policy(Dialect::Sqlite);
    assert_eq!(code(&lite, "ATTACH 'x.db' AS x").await, "statement_kind");
    let my = policy(Dialect::MySql);
    for sql in [
        "SELECT * FROM patients INTO OUTFILE '/tmp/x'",
        "SELECT id INTO @v FROM visits",
    ] {
        // Refused either way: the parser does not know it, or the walk refuses `INTO`.
        assert!(
            matches!(code(&my, sql).await, "unsupported" | "parse_error"),
            "{sql}"
        );
    }
    assert_eq!(
        code(&my, "LOAD DATA INFILE '/etc/passwd' INTO TABLE visits").await,
        "statement_kind"
    );
    assert_eq!(
        code(
            &my,
            "DELETE p FROM patients p JOIN visits v ON v.patient_id = p.id"
        )
        .await,
        "unsupported"
    );
    assert_eq!(
        code(
            &my,
            "UPDATE patients p JOIN visits v ON v.patient_id = p.id SET p.name = 'x'"
        )
        .await,
        "unsupported"
    );
}

#[tokio::test]
async fn masks_need_the_catalog() {
    let p = SqlPolicy::builder(Dialect::Postgres).build().unwrap();
    assert_eq!(
        code(&p, "SELECT name FROM patients").await,
        "unknown_columns"
    );
    let missing = SqlPolicy::builder(Dialect::Postgres)
        .catalog(Catalog::new().with_table("public.patients", ["id", "clinic_id"]))
        .build()
        .unwrap();
    assert_eq!(
        code(&missing, "SELECT id FROM patients").await,
        "unknown_column"
    );
}

#[tokio::test]
async fn deny_and_allow_lists_are_configurable() {
    let p = SqlPolicy::builder(Dialect::Postgres)
        .allow_functions(["pg_sleep*"])
        .deny_functions(["upper"])
        .build()
        .unwrap();
    let permit = StaticPdp::permit();
    let run = |sql: &'static str| {
        let p = p.clone();
        let permit = permit.clone();
        async move { p.enforce(&permit, &SqlRequest::new(sql, nurse())).await }
    };
    run("SELECT pg_sleep(0)").await.unwrap();
    assert_eq!(
        run("SELECT upper('x')").await.unwrap_err().code(),
        "denied_function"
    );
    let only = SqlPolicy::builder(Dialect::Postgres)
        .function_allow_list(["count", "lower"])
        .build()
        .unwrap();
    only.enforce(
        &permit,
        &SqlRequest::new("SELECT count(*) FROM visits", nurse()),
    )
    .await
    .unwrap();
    let err = only
        .enforce(&permit, &SqlRequest::new("SELECT secret_of(4)", nurse()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "denied_function");
    let catalogs = SqlPolicy::builder(Dialect::Postgres)
        .allow_system_catalogs(true)
        .build()
        .unwrap();
    let e = catalogs
        .enforce(
            &permit,
            &SqlRequest::new("SELECT relname FROM pg_class", nurse()),
        )
        .await
        .unwrap();
    assert_eq!(e.requests[0].resource.id, "pg_catalog.pg_class");
}

#[tokio::test]
async fn write_checks_use_the_bind_parameters() {
    let p = policy(Dialect::Sqlite);
    let sql = "INSERT INTO patients (id, clinic_id, name) VALUES (?, ?, ?)";
    let ok = SqlRequest::new(sql, nurse())
        .bind(9_i64)
        .bind("c1")
        .bind("x");
    p.enforce(&filtered(), &ok).await.unwrap();
    let moved = SqlRequest::new(sql, nurse())
        .bind(9_i64)
        .bind("c2")
        .bind("x");
    assert_eq!(
        p.enforce(&filtered(), &moved).await.unwrap_err().code(),
        "row_filter_violation"
    );
    let missing = SqlRequest::new(sql, nurse()).bind(9_i64);
    assert_eq!(
        p.enforce(&filtered(), &missing).await.unwrap_err().code(),
        "parameter"
    );
    // Numbered parameters are matched by number.
    let pg = policy(Dialect::Postgres);
    let numbered = SqlRequest::new(
        "UPDATE patients SET name = $1, clinic_id = $2 WHERE id = $3",
        nurse(),
    )
    .bind("x")
    .bind("c2")
    .bind(1_i64);
    assert_eq!(
        pg.enforce(&filtered(), &numbered).await.unwrap_err().code(),
        "row_filter_violation"
    );
    // MySQL's collation: `C1 ` is `c1`.
    let my = policy(Dialect::MySql);
    let folded = SqlRequest::new(
        "UPDATE patients SET clinic_id = 'C1 ' WHERE id = 1",
        nurse(),
    );
    my.enforce(&filtered(), &folded).await.unwrap();
}

#[tokio::test]
async fn prints_from_the_parsed_statement_only() {
    let p = policy(Dialect::Postgres);
    let sql = enforce(&p, "select id /* ; drop table x */ from visits -- trailing")
        .await
        .unwrap();
    // Every relation is named with the schema it was resolved to.
    assert_eq!(sql, "SELECT id FROM \"public\".visits");
    // Literals survive exactly as written (the servers' string settings known).
    let pg = configured(Dialect::Postgres)
        .backslash_escapes(false)
        .build()
        .unwrap();
    let sql = enforce(&pg, r"SELECT 'it''s', 'a\b', $q$x'y$q$ FROM visits")
        .await
        .unwrap();
    assert_eq!(
        sql,
        r#"SELECT 'it''s', 'a\b', $q$x'y$q$ FROM "public".visits"#
    );
    let my = configured(Dialect::MySql)
        .backslash_escapes(true)
        .build()
        .unwrap();
    let sql = enforce(&my, r"SELECT 'x\\', ' OR 1=1 -- ' FROM visits")
        .await
        .unwrap();
    assert_eq!(sql, r"SELECT 'x\\', ' OR 1=1 -- ' FROM `clinic`.visits");
}

fn configured(dialect: Dialect) -> crate::SqlPolicyBuilder {
    let schema = if dialect == Dialect::MySql {
        "clinic"
    } else {
        "public"
    };
    SqlPolicy::builder(dialect)
        .default_schema(schema)
        .catalog(Catalog::new().with_table(
            format!("{schema}.visits"),
            ["id", "patient_id", "clinic_id"],
        ))
}

#[tokio::test]
async fn literals_whose_meaning_depends_on_unknown_settings_are_refused() {
    // With `NO_BACKSLASH_ESCAPES` the literal ends at the backslash and the rest is SQL; with
    // `standard_conforming_strings = off` the other way round. Unknown: refused.
    let attack = r"SELECT id FROM visits WHERE clinic_id = 'x\' OR clinic_id = 'c2' -- '";
    for dialect in [Dialect::MySql, Dialect::Postgres] {
        let unknown = configured(dialect).build().unwrap();
        assert_eq!(code(&unknown, attack).await, "unsupported", "{dialect}");
    }
    let other_way = configured(Dialect::MySql)
        .backslash_escapes(false)
        .build()
        .unwrap();
    assert_eq!(code(&other_way, attack).await, "unsupported");
    let other_way = configured(Dialect::Postgres)
        .backslash_escapes(true)
        .build()
        .unwrap();
    assert_eq!(code(&other_way, attack).await, "unsupported");
    // PostgreSQL's E'…' strings mean the same under every setting.
    let pg = configured(Dialect::Postgres).build().unwrap();
    enforce(&pg, r"SELECT E'a\'b' FROM visits").await.unwrap();
    // MySQL `"…"`: a string, or an identifier under ANSI_QUOTES.
    let my = configured(Dialect::MySql)
        .backslash_escapes(true)
        .build()
        .unwrap();
    assert_eq!(
        code(&my, r#"SELECT "clinic_id" FROM visits"#).await,
        "unsupported"
    );
    let plain = configured(Dialect::MySql)
        .ansi_quotes(false)
        .build()
        .unwrap();
    enforce(&plain, r#"SELECT "clinic_id" FROM visits"#)
        .await
        .unwrap();
    // Names outside ASCII fold by MySQL's collation: refused.
    assert_eq!(code(&plain, "SELECT id FROM vіsits").await, "unsupported");
    assert_eq!(code(&plain, "SELECT id FROM `VİSITS`").await, "unsupported");
}

#[tokio::test]
async fn names_fold_exactly_as_the_database_folds_them() {
    // PostgreSQL folds ASCII only: `PATİENTS` is not `patients` (nor `patİents`).
    let pg = policy(Dialect::Postgres);
    let analysis = pg.analyze("SELECT id FROM PATİENTS").unwrap();
    assert_eq!(analysis.accesses()[0].id, "public.patİents");
    let analysis = pg.analyze("SELECT id FROM ＰATIENTS").unwrap();
    assert_eq!(analysis.accesses()[0].id, "public.Ｐatients");
    // A look-alike CTE does not shadow the table, nor the table the CTE.
    let analysis = pg
        .analyze("WITH pаtients AS (SELECT 1 AS id) SELECT id FROM patients")
        .unwrap();
    assert_eq!(analysis.accesses()[0].id, "public.patients");
    // The Kelvin sign lowercases to `k` in Unicode, not in PostgreSQL or SQLite.
    for dialect in [Dialect::Postgres, Dialect::Sqlite] {
        let p = policy(dialect);
        let analysis = p
            .analyze("WITH k AS (SELECT 1 AS id) SELECT id FROM \u{212a}")
            .unwrap();
        assert_eq!(analysis.accesses().len(), 1, "{dialect}");
    }
    // PostgreSQL keeps 63 bytes of a name.
    let long = format!("{}_and_more", "p".repeat(63));
    let analysis = pg.analyze(&format!("SELECT id FROM {long}")).unwrap();
    assert_eq!(analysis.accesses()[0].table, "p".repeat(63));
    let analysis = pg
        .analyze(&format!(
            "WITH {} AS (SELECT 1 AS id) SELECT id FROM {long}",
            "p".repeat(63)
        ))
        .unwrap();
    assert!(analysis.accesses().is_empty());
}

#[tokio::test]
async fn placeholders_are_numbered_as_the_server_numbers_them() {
    let write = |p: &str| format!("INSERT INTO patients (id, name, clinic_id) VALUES ({p})");
    let lite = policy(Dialect::Sqlite);
    let run = |sql: String, params: Vec<crate::SqlValue>| {
        let lite = lite.clone();
        async move {
            let mut request = SqlRequest::new(sql, nurse());
            request.params = params;
            lite.enforce(&filtered(), &request)
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }
    };
    let params = || vec![crate::SqlValue::Int(1), "c1".into(), "c2".into()];
    let violation = Err("row_filter_violation");
    assert_eq!(run(write("?1, ?2, ?3"), params()).await, violation);
    assert_eq!(run(write("?1, ?3, ?2"), params()).await, Ok(()));
    assert_eq!(run(write("?, ?, ?"), params()).await, violation);
    // Names: numbered by first appearance, whatever their prefix.
    assert_eq!(run(write(":a, :b, :b"), params()).await, Ok(()));
    assert_eq!(run(write(":a, :c, :b"), params()).await, violation);
    assert_eq!(run(write("@a, $b, :c"), params()).await, violation);
    assert_eq!(run(write("@a, $b, $b"), params()).await, Ok(()));
    // Mixed forms: refused.
    for mixed in ["?, ?2, ?3", "?1, :b, ?3", ":a, ?, :c"] {
        assert_eq!(
            run(write(mixed), params()).await,
            Err("parameter"),
            "{mixed}"
        );
    }
    // Forms another dialect has: refused.
    let pg = policy(Dialect::Postgres);
    assert_eq!(
        code(&pg, "SELECT id FROM visits WHERE id = :id").await,
        "parameter"
    );
    let my = policy(Dialect::MySql);
    assert_eq!(
        code(&my, "SELECT id FROM visits WHERE id = ?1").await,
        "parameter"
    );
}

#[tokio::test]
async fn a_statement_cannot_spell_the_substitution_placeholder() {
    let p = policy(Dialect::Postgres);
    let placeholder = crate::analyze::placeholder(p.nonce(), 0);
    let sql = format!("SELECT '{placeholder}' FROM patients");
    assert_eq!(code(&p, &sql).await, "unsupported");
    let sql = format!("SELECT 1 AS {placeholder} FROM visits");
    enforce(&p, &sql).await.unwrap();
}

#[tokio::test]
async fn table_commands_are_the_queries_they_stand_for() {
    let p = policy(Dialect::Postgres);
    for sql in [
        "TABLE patients",
        "TABLE public.patients ORDER BY 1",
        "SELECT * FROM patients UNION ALL TABLE patients",
    ] {
        let rewritten = enforce(&p, sql).await.unwrap();
        assert!(!rewritten.contains("TABLE"), "{sql}: {rewritten}");
        assert_eq!(
            rewritten
                .matches("warden_source.\"clinic_id\" = 'c1'")
                .count(),
            sql.matches("patients").count(),
            "{sql}: {rewritten}"
        );
    }
}

mod cache;
