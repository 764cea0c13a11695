//! Fuzzes the SQL PEP with deep and wide statements built from the input: chains of binary
//! and postfix operators, nested parentheses, sub-queries and `CASE`s, long lists. Each must be
//! refused with a reason (`too_complex`, `parse_error`, …) or rewritten — on a thread with a
//! 2 MiB stack, so a recursion past the stack aborts the fuzzer.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use warden_decision::{AccessRequest, Decision, Obligation, Pdp, PdpFuture, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

struct Filtered(Decision);

impl Pdp for Filtered {
    fn decide<'a>(&'a self, _request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

fn now<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Pieces a statement is built from: an opening, a repeated part, a closing.
const SHAPES: &[(&str, &str, &str)] = &[
    ("SELECT id FROM patients WHERE id = 1", " + 1", ""),
    ("SELECT id FROM patients WHERE id = 1", " AND id = 1", ""),
    ("SELECT id FROM patients WHERE id = 1", " OR ssn LIKE 'x'", ""),
    ("SELECT ssn", "::text", " FROM patients"),
    ("SELECT ssn FROM patients WHERE ssn = 'a'", " || 'a'", ""),
    ("SELECT ", "(", "1"),
    ("SELECT ", "- ", "1"),
    ("SELECT ", "NOT ", "true"),
    ("SELECT ", "(SELECT ", "ssn FROM patients"),
    ("SELECT ", "CASE WHEN id = 1 THEN ", "ssn FROM patients"),
    ("SELECT ssn FROM patients WHERE id IN (0", ", 1", ")"),
    ("SELECT ssn FROM patients WHERE id = 1", " UNION SELECT ssn FROM patients", ""),
    ("UPDATE patients SET ssn = 'x' WHERE id = 1", " OR id = 2", ""),
    ("SELECT x.ssn FROM patients x", " JOIN patients y ON y.id = x.id", ""),
    ("WITH a AS (SELECT ssn FROM patients)", ", b AS (SELECT ssn FROM a)", " SELECT ssn FROM a"),
];

fuzz_target!(|data: &[u8]| {
    let [shape, a, b, tail @ ..] = data else {
        return;
    };
    let Some((open, repeated, close)) = SHAPES.get(usize::from(*shape) % SHAPES.len()) else {
        return;
    };
    let count = usize::from(*a) << 8 | usize::from(*b);
    let mut sql = String::from(*open);
    for _ in 0..count * 4 {
        sql.push_str(repeated);
    }
    sql.push_str(close);
    // The rest of the input closes what it likes.
    sql.push_str(&String::from_utf8_lossy(tail));
    let Ok(filter) = Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
        "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
    else {
        return;
    };
    let Ok(mask) = Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
        "columns": {"ssn": "last4"}}))
    else {
        return;
    };
    let pdp = Filtered(Decision::permit().with_obligation(filter).with_obligation(mask));
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let subject = Subject::user("fuzz").with_property("clinic", "c1");
            for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
                let schema = match dialect {
                    Dialect::MySql => "clinic",
                    Dialect::Sqlite => "main",
                    _ => "public",
                };
                let Ok(policy) = SqlPolicy::builder(dialect)
                    .default_schema(schema)
                    .catalog(Catalog::new().with_table(
                        format!("{schema}.patients"),
                        ["id", "clinic_id", "ssn"],
                    ))
                    .build()
                else {
                    return;
                };
                let request = SqlRequest::new(sql.clone(), subject.clone());
                // Twice: the second run takes the cached analysis (and clones its tree).
                for _ in 0..2 {
                    let _ = now(policy.enforce(&pdp, &request));
                }
            }
        });
    if let Ok(handle) = outcome {
        let _ = handle.join();
    }
});
