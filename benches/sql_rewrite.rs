//! The SQL PEP beside its floor, sqlparser parse + print of the same statement.
//!
//! DESIGN §9 targets: analysing, deciding, rewriting and printing a statement costs at most
//! 1.50 × sqlparser's parse and print of it; the same statement again, served by the rewrite
//! cache, at most 0.20 ×. The PDP is in-process and answers at once (a prebuilt permit with a
//! row filter on both tables and a mask on `patients`), so the figures are the PEP's own cost.
//!
//! Run: `cargo bench -p warden-benches --bench sql_rewrite -- --noplot`; instruction counts with
//! `SQL_REWRITE_COUNT` (see [`count_only`]).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup fails loudly"
)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use warden_decision::{AccessRequest, Decision, Obligation, Pdp, PdpFuture, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

/// A PDP that answers every request with a prebuilt decision: the obligations for the
/// request's table (an obligation for a table the statement does not access is a policy that
/// does not fit, and refused).
struct Prebuilt(Decision);

impl Pdp for Prebuilt {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        let table = request
            .resource
            .properties
            .get("table")
            .and_then(|t| t.as_str());
        let mut decision = self.0.clone();
        decision.obligations.retain(|o| match o {
            Obligation::FilterRows(f) => Some(f.table.as_str()) == table,
            Obligation::MaskColumns(m) => Some(m.table.as_str()) == table,
            _ => true,
        });
        Box::pin(std::future::ready(Ok(decision)))
    }
}

/// Polls a future that is ready at once (everything here is in-process).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process future was not ready"),
    }
}

fn floor(sql: &str) -> String {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
    statements[0].to_string()
}

fn policy(cache: bool) -> SqlPolicy {
    SqlPolicy::builder(Dialect::Postgres)
        .catalog(
            Catalog::new()
                .with_table(
                    "public.patients",
                    ["id", "clinic_id", "name", "ssn", "birth_date", "notes"],
                )
                .with_table(
                    "public.visits",
                    ["id", "patient_id", "clinic_id", "reason", "visited_on"],
                ),
        )
        .cache_capacity(if cache { 1024 } else { 0 })
        .build()
        .unwrap()
}

/// `SQL_REWRITE_COUNT=<floor|first|cached>:<statement>:<n>` only runs `n` of one side on one
/// statement (`simple`, `join`, `cte_subquery`), for instruction counts under valgrind: the
/// difference between two counts, divided by the difference of `n`, is the cost of one.
fn count_only(
    spec: &str,
    statements: &[(&str, &str)],
    pdp: &Prebuilt,
    subject: &warden_decision::Subject,
    uncached: &SqlPolicy,
    cached: &SqlPolicy,
) {
    let mut parts = spec.split(':');
    let (side, name, n) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u32>().unwrap(),
    );
    let sql = statements.iter().find(|(s, _)| *s == name).unwrap().1;
    let request = SqlRequest::new(sql, subject.clone());
    // One miss first, so the cached side counts hits only.
    now(cached.enforce(pdp, &request)).unwrap();
    for _ in 0..n {
        match side {
            "floor" => drop(black_box(floor(sql))),
            "first" => drop(black_box(now(uncached.enforce(pdp, &request)).unwrap())),
            "cached" => drop(black_box(now(cached.enforce(pdp, &request)).unwrap())),
            other => panic!("no side {other}"),
        }
    }
}

fn main() {
    let filter = |table: &str| {
        Obligation::from_json(json!({"type": "filter_rows", "table": table,
            "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
        .unwrap()
    };
    let pdp = Prebuilt(
        Decision::permit()
            .with_obligation(filter("patients"))
            .with_obligation(filter("visits"))
            .with_obligation(
                Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
                    "columns": {"ssn": "last4"}}))
                .unwrap(),
            ),
    );
    let nurse = Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinic", "c1");
    let statements = [
        ("simple", "SELECT id, name, ssn FROM patients WHERE id = $1"),
        (
            "join",
            "SELECT p.name, v.reason, v.visited_on FROM patients p JOIN visits v ON v.patient_id = p.id \
             WHERE v.visited_on > '2026-01-01' AND p.name LIKE 'A%' ORDER BY p.name, v.visited_on DESC LIMIT 50",
        ),
        (
            "cte_subquery",
            "WITH recent AS (SELECT patient_id, max(visited_on) AS last FROM visits \
             WHERE visited_on > '2026-01-01' GROUP BY patient_id) \
             SELECT p.name, r.last FROM patients p JOIN recent r ON r.patient_id = p.id \
             WHERE p.id IN (SELECT patient_id FROM visits WHERE reason = 'checkup') \
             AND EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND v.id > 10) ORDER BY r.last DESC",
        ),
    ];
    let uncached = policy(false);
    let cached = policy(true);
    if let Ok(spec) = std::env::var("SQL_REWRITE_COUNT") {
        return count_only(&spec, &statements, &pdp, &nurse, &uncached, &cached);
    }

    // Both sides agree before they are timed: the rewrite parses again.
    for (name, sql) in &statements {
        let request = SqlRequest::new(*sql, nurse.clone());
        let rewritten = now(uncached.enforce(&pdp, &request)).unwrap();
        assert!(rewritten.statement.contains("warden_source"), "{name}");
        floor(&rewritten.statement);
        let again = now(cached.enforce(&pdp, &request)).unwrap();
        let hit = now(cached.enforce(&pdp, &request)).unwrap();
        assert!(!again.cache_hit && hit.cache_hit, "{name}");
        assert_eq!(hit.statement, rewritten.statement, "{name}");
    }

    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for (name, sql) in &statements {
        let request = SqlRequest::new(*sql, nurse.clone());
        let mut group = criterion.benchmark_group(format!("sql_rewrite/{name}"));
        group.bench_function("sqlparser_parse_print", |b| {
            b.iter(|| black_box(floor(sql)))
        });
        group.bench_function("warden_analyse_rewrite_print", |b| {
            b.iter(|| black_box(now(uncached.enforce(&pdp, &request)).unwrap()))
        });
        group.bench_function("warden_rewrite_cache", |b| {
            b.iter(|| black_box(now(cached.enforce(&pdp, &request)).unwrap()))
        });
        group.finish();

        // The bench's own timing, alternating, for the ratio lines.
        let iters = 2_000;
        let (mut f, mut w, mut c) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..4 {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(floor(sql));
            }
            f += started.elapsed();
            let started = Instant::now();
            for _ in 0..iters {
                black_box(now(uncached.enforce(&pdp, &request)).unwrap());
            }
            w += started.elapsed();
            let started = Instant::now();
            for _ in 0..iters {
                black_box(now(cached.enforce(&pdp, &request)).unwrap());
            }
            c += started.elapsed();
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iters * 4);
        summary.push(format!(
            "sql_rewrite/{name}: sqlparser parse+print {:.2} µs, Warden {:.2} µs (ratio {:.2}, target ≤ 1.50), cached {:.2} µs (ratio {:.2}, target ≤ 0.20)",
            per(f),
            per(w),
            per(w) / per(f),
            per(c),
            per(c) / per(f)
        ));
    }
    criterion.final_summary();
    println!();
    for line in summary {
        println!("{line}");
    }
}
