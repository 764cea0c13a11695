//! Tests of the pushdown lists, one against PostgreSQL's own `LEAKPROOF` marks.

use super::*;

/// PostgreSQL's names of the listed types (`format_type`), as `information_schema` reports
/// them.
const POSTGRES_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "text",
    "character varying",
    "character",
    "boolean",
    "bytea",
    "date",
    "time without time zone",
    "timestamp without time zone",
    "timestamp with time zone",
    "interval",
    "uuid",
];

#[test]
fn normalises_type_names() {
    assert_eq!(base_type("VARCHAR(20)"), "varchar");
    assert_eq!(
        base_type("timestamp(3)  WITH time zone"),
        "timestamp with time zone"
    );
    assert_eq!(postgres_class("numeric(10,2)"), None);
    assert_eq!(postgres_class("integer[]"), None);
    assert_eq!(mysql_class("int(11) unsigned"), Some(Class::Int));
    assert_eq!(mysql_class("json"), None);
    for ty in POSTGRES_TYPES {
        assert!(postgres_class(ty).is_some(), "{ty}");
    }
}

#[test]
fn operands_follow_the_lists() {
    let pg = |ty: &str, op| comparable(Dialect::Postgres, Some(ty), op);
    assert!(pg("bigint", Operand::Param));
    assert!(pg("integer", Operand::Int));
    assert!(
        !pg("integer", Operand::Decimal),
        "integer = numeric is numeric_eq"
    );
    assert!(pg("double precision", Operand::Decimal));
    assert!(
        !pg("character(3)", Operand::Param),
        "text(bpchar) is not leakproof"
    );
    assert!(pg("date", Operand::Typed("DATE")));
    assert!(
        !pg("date", Operand::Typed("TIMESTAMP")),
        "date_eq_timestamp"
    );
    assert!(!comparable(Dialect::Postgres, None, Operand::Int));
    let my = |ty: &str, op| comparable(Dialect::MySql, Some(ty), op);
    assert!(my("int", Operand::Str));
    assert!(
        !my("varchar(10)", Operand::Int),
        "every stored string converted"
    );
    assert!(!my("int", Operand::Param), "positional parameters");
    assert!(comparable(Dialect::Sqlite, None, Operand::Param));
    assert!(!comparable(Dialect::Generic, Some("integer"), Operand::Int));
}

/// Every operator the PostgreSQL list relies on is marked leakproof by the server, and every
/// implicit cast it relies on too; `numeric`'s and the cross-type timestamp comparisons, which
/// the list leaves out, are not.
#[tokio::test]
async fn postgres_marks_every_listed_operator_leakproof() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let leakproof = |sql: &'static str, left: String, right: String| {
        let pool = pool.clone();
        async move {
            let rows: Vec<(String, bool)> = sqlx::query_as(sql)
                .bind(&left)
                .bind(&right)
                .fetch_all(&pool)
                .await
                .unwrap();
            (left, right, rows)
        }
    };
    const OPERATORS: &str = "SELECT p.proname::text, p.proleakproof FROM pg_operator o \
        JOIN pg_proc p ON p.oid = o.oprcode \
        WHERE o.oprname IN ('=', '<>', '<', '<=', '>', '>=') \
        AND o.oprleft = $1::regtype AND o.oprright = $2::regtype";
    // `varchar` has no operators of its own: it is read as `text` (a binary coercion).
    let operand = |ty: &str| match ty {
        "character varying" => "text".to_owned(),
        other => other.to_owned(),
    };
    for a in POSTGRES_TYPES {
        for b in POSTGRES_TYPES {
            let (ca, cb) = (postgres_class(a), postgres_class(b));
            let cross = operand(a) != operand(b);
            if ca != cb || (cross && !matches!(ca, Some(Class::Int | Class::Float))) {
                continue;
            }
            let (l, r, rows) = leakproof(OPERATORS, operand(a), operand(b)).await;
            assert_eq!(rows.len(), 6, "{l} vs {r}: {rows:?}");
            for (name, proof) in rows {
                assert!(proof, "{name} ({l}, {r}) is not leakproof");
            }
        }
    }
    const CASTS: &str = "SELECT coalesce(p.proname::text, 'binary'), coalesce(p.proleakproof, true) \
        FROM pg_cast c LEFT JOIN pg_proc p ON p.oid = c.castfunc \
        WHERE c.castsource = $1::regtype AND c.casttarget = $2::regtype AND c.castcontext = 'i'";
    for (from, to) in [
        ("smallint", "double precision"),
        ("integer", "double precision"),
        ("bigint", "double precision"),
        ("real", "double precision"),
        ("character varying", "text"),
    ] {
        let (l, r, rows) = leakproof(CASTS, from.to_owned(), to.to_owned()).await;
        assert_eq!(rows.len(), 1, "{l} -> {r}");
        assert!(rows.iter().all(|(_, proof)| *proof), "{l} -> {r}: {rows:?}");
    }
    for (a, b) in [
        ("numeric", "numeric"),
        ("date", "timestamp without time zone"),
        ("timestamp without time zone", "timestamp with time zone"),
    ] {
        let (l, r, rows) = leakproof(OPERATORS, a.to_owned(), b.to_owned()).await;
        assert!(rows.iter().any(|(_, proof)| !proof), "{l} vs {r}: {rows:?}");
    }
    let (_, _, rows) = leakproof(CASTS, "character".to_owned(), "text".to_owned()).await;
    assert!(
        rows.iter().all(|(_, proof)| !proof),
        "text(bpchar): {rows:?}"
    );
}
