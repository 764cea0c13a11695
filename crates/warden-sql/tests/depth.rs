//! Bounded work: no statement up to the length limit overflows the stack. sqlparser builds
//! chains of operators without recursion, so their depth is bounded by the operator budget;
//! nesting by the parser's recursion limit. Each case runs on a thread with a 2 MiB stack (the
//! default of a spawned thread and of tokio's workers): a stack overflow aborts the process, so
//! a regression fails the whole test binary.
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use serde_json::json;
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::{
    Catalog, DEFAULT_MAX_OPERATORS, Dialect, MAX_RECURSION_LIMIT, SqlPolicy, SqlRequest,
};
use warden_test::StaticPdp;

/// Analyses, decides, rewrites and prints `sql` on a 2 MiB stack; the refusal code if any.
fn enforce(policy: SqlPolicy, sql: String) -> Result<usize, &'static str> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let pdp = StaticPdp::new(
                Decision::permit()
                    .with_obligation(
                        Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
                            "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
                        .unwrap(),
                    )
                    .with_obligation(
                        Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
                            "columns": {"ssn": "last4"}}))
                        .unwrap(),
                    ),
            );
            let nurse = Subject::user("nina").with_property("clinic", "c1");
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(policy.enforce(&pdp, &SqlRequest::new(sql, nurse)))
                .map(|e| e.statement.len())
                .map_err(|e| e.code())
        })
        .unwrap()
        .join()
        .unwrap()
}

fn policy() -> SqlPolicy {
    SqlPolicy::builder(Dialect::Postgres)
        .catalog(Catalog::new().with_table("public.patients", ["id", "clinic_id", "name", "ssn"]))
        .recursion_limit(MAX_RECURSION_LIMIT)
        .build()
        .unwrap()
}

#[test]
fn long_operator_chains_are_refused_before_parsing() {
    for sql in [
        // 50,000 levels: this aborted the process before the budget.
        format!(
            "SELECT id FROM patients WHERE id = 1{}",
            " + 1".repeat(50_000)
        ),
        format!(
            "SELECT id FROM patients WHERE id = 1{}",
            " AND id = 1".repeat(20_000)
        ),
        format!("SELECT name{} FROM patients", "::text".repeat(20_000)),
        format!(
            "SELECT name FROM patients WHERE name = 'a'{}",
            " || 'a'".repeat(20_000)
        ),
    ] {
        assert_eq!(enforce(policy(), sql), Err("too_complex"));
    }
}

#[test]
fn chains_within_the_budget_run_through_every_pass() {
    let n = DEFAULT_MAX_OPERATORS - 10;
    for sql in [
        format!("SELECT ssn FROM patients WHERE id = 1{}", " + 1".repeat(n)),
        format!(
            "UPDATE patients SET name = 'x' WHERE id = 1{}",
            " OR id = 1".repeat(n / 2)
        ),
        format!("SELECT name{} FROM patients", "::text".repeat(n)),
    ] {
        assert!(enforce(policy(), sql).is_ok());
    }
}

#[test]
fn deep_nesting_stops_at_the_recursion_limit() {
    for depth in [MAX_RECURSION_LIMIT / 4, MAX_RECURSION_LIMIT * 5] {
        let nested_queries = format!(
            "SELECT {}ssn FROM patients{}",
            "(SELECT ".repeat(depth),
            ")".repeat(depth)
        );
        let parens = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let minus = format!("SELECT {}1", "- ".repeat(depth));
        for sql in [nested_queries, parens, minus] {
            match enforce(policy(), sql) {
                Ok(_) => assert!(depth <= MAX_RECURSION_LIMIT),
                Err(code) => assert_eq!(code, "parse_error"),
            }
        }
    }
}

#[test]
fn wide_statements_are_fine_and_length_is_bounded() {
    let list: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let wide = format!(
        "SELECT name FROM patients WHERE id IN ({})",
        list.join(", ")
    );
    assert!(enforce(policy(), wide).is_ok());
    let rows: Vec<String> = (0..2_000)
        .map(|i| format!("({i}, 'c1', 'n', 's')"))
        .collect();
    let insert = format!(
        "INSERT INTO patients (id, clinic_id, name, ssn) VALUES {}",
        rows.join(", ")
    );
    assert!(enforce(policy(), insert).is_ok());
    let small = SqlPolicy::builder(Dialect::Postgres)
        .max_statement_len(64)
        .build()
        .unwrap();
    assert_eq!(
        enforce(small, format!("SELECT 1 WHERE 'a' = '{}'", "a".repeat(64))),
        Err("too_complex")
    );
    assert!(
        SqlPolicy::builder(Dialect::Postgres)
            .recursion_limit(MAX_RECURSION_LIMIT + 1)
            .build()
            .is_err()
    );
}
