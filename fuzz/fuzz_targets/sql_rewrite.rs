//! Fuzzes the SQL PEP's analysis and rewrite: any input, in every dialect, must either be refused
//! with a reason or rewritten into one statement that parses again — never panic, never hang.
//! A rewritten read of the guarded table always carries the row filter, and the `hash` mask's
//! key never appears in the statement text (its pads are bind parameters).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
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

const KEY: &[u8] = b"fuzz-hash-key-0123456789";

/// The first bytes of the key's inner and outer pads, as hex in either case.
fn pad_prefixes() -> Vec<String> {
    let mut out = Vec::new();
    for pad in [0x36u8, 0x5c] {
        let hex: String = KEY
            .iter()
            .take(8)
            .map(|b| format!("{:02x}", b ^ pad))
            .collect();
        out.push(hex.to_ascii_uppercase());
        out.push(hex);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Obligation::from_json(json!({"type": "filter_rows", "table": "patients",
        "where": {"eq": [{"column": "clinic_id"}, {"subject": "clinic"}]}}))
    else {
        return;
    };
    let Ok(mask) = Obligation::from_json(json!({"type": "mask_columns", "table": "patients",
        "columns": {"ssn": "last4", "name": "hash"}}))
    else {
        return;
    };
    let pdp = Filtered(
        Decision::permit()
            .with_obligation(filter)
            .with_obligation(mask),
    );
    let subject = Subject::user("fuzz").with_property("clinic", "c1'; --");
    for dialect in [
        Dialect::Postgres,
        Dialect::MySql,
        Dialect::Sqlite,
        Dialect::Generic,
    ] {
        let schema = if dialect == Dialect::MySql {
            "clinic"
        } else if dialect == Dialect::Sqlite {
            "main"
        } else {
            "public"
        };
        let Ok(policy) = SqlPolicy::builder(dialect)
            .default_schema(schema)
            .catalog(Catalog::new().with_table(
                format!("{schema}.patients"),
                ["id", "clinic_id", "ssn", "name"],
            ))
            .hash_key(KEY)
            .cache_capacity(0)
            .build()
        else {
            return;
        };
        let request = SqlRequest::new(sql, subject.clone());
        let Some(Ok(enforced)) = now(policy.enforce(&pdp, &request)) else {
            continue;
        };
        let reparsed = match dialect {
            Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, &enforced.statement),
            Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, &enforced.statement),
            Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, &enforced.statement),
            _ => Parser::parse_sql(&GenericDialect {}, &enforced.statement),
        };
        match reparsed {
            Ok(statements) => assert_eq!(statements.len(), 1, "{}", enforced.statement),
            Err(e) => panic!(
                "rewrite of `{sql}` does not parse: {e}\n{}",
                enforced.statement
            ),
        }
        for pad in pad_prefixes() {
            assert!(
                !enforced.statement.contains(&pad),
                "`{sql}`: the hash key is in the statement: {}",
                enforced.statement
            );
        }
        let reads_patients = enforced
            .requests
            .iter()
            .any(|r| r.resource.id.ends_with(".patients") && r.action.name == "select");
        if reads_patients {
            // The subject's value is escaped, never spliced: its quote is doubled.
            assert!(
                enforced.statement.contains("'c1''; --'"),
                "`{sql}` read patients without the filter: {}",
                enforced.statement
            );
        }
    }
});
