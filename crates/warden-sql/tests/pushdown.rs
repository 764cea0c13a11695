//! Pushdown of the caller's leakproof conditions into fenced relations: what is pushed, what
//! stays outside, and (on a real PostgreSQL) that results are exactly those without pushdown
//! and that nothing that could fail or reveal a filtered row runs inside the fence.
#![expect(clippy::unwrap_used, clippy::panic, reason = "a test fails loudly")]

use serde_json::json;
use sqlx::Row as _;
use warden_decision::{Decision, Obligation, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

/// Every table is filtered on `tenant`; `items.secret` is masked (`last4`).
struct Tenants;

impl warden_decision::Pdp for Tenants {
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
        let mut decision = Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": table,
                "where": {"eq": [{"column": "tenant"}, {"subject": "tenant"}]}}))
            .unwrap(),
        );
        if table == "items" {
            decision = decision.with_obligation(
                Obligation::from_json(json!({"type": "mask_columns", "table": "items",
                    "columns": {"secret": "last4"}}))
                .unwrap(),
            );
        }
        Box::pin(std::future::ready(Ok(decision)))
    }
}

const ITEMS: [(&str, &str); 11] = [
    ("id", "bigint"),
    ("tenant", "text"),
    ("n", "integer"),
    ("price", "numeric(10,2)"),
    ("qty", "real"),
    ("code", "char(3)"),
    ("label", "varchar(40)"),
    ("day", "date"),
    ("at", "timestamp with time zone"),
    ("flag", "boolean"),
    ("secret", "text"),
];
const ORDERS: [(&str, &str); 4] = [
    ("id", "bigint"),
    ("tenant", "text"),
    ("item_id", "bigint"),
    ("amount", "integer"),
];

fn policy(dialect: Dialect, schema: &str, types: bool) -> SqlPolicy {
    let items = format!("{schema}.items");
    let orders = format!("{schema}.orders");
    let mut builder = SqlPolicy::builder(dialect)
        .default_schema(schema)
        .catalog(
            Catalog::new()
                .with_table(&items, ITEMS.map(|(c, _)| c))
                .with_table(&orders, ORDERS.map(|(c, _)| c)),
        )
        .cache_capacity(0);
    if types {
        builder = builder
            .column_types(&items, ITEMS)
            .column_types(&orders, ORDERS);
    }
    builder.build().unwrap()
}

fn tenant() -> Subject {
    Subject::user("ann").with_property("tenant", "t1")
}

async fn rewrite_with(policy: &SqlPolicy, sql: &str) -> String {
    policy
        .enforce(&Tenants, &SqlRequest::new(sql, tenant()))
        .await
        .map(|e| e.statement.to_string())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn rewrite(sql: &str) -> String {
    rewrite_with(&policy(Dialect::Postgres, "public", true), sql).await
}

/// The substitution of the relation visible as `alias`, up to its fence.
fn inside(sql: &str, alias: &str) -> String {
    let (end, fence) = ["OFFSET 0", "LIMIT 18446744073709551615"]
        .iter()
        .find_map(|fence| {
            sql.find(&format!("{fence}) AS {alias}"))
                .or_else(|| sql.find(&format!("{fence}) {alias} ")))
                .map(|at| (at, fence.len()))
        })
        .unwrap_or_else(|| panic!("no substitution `{alias}` in {sql}"));
    let start = sql[..end]
        .rfind("(SELECT ")
        .unwrap_or_else(|| panic!("no substitution in {sql}"));
    sql[start..end + fence].to_owned()
}

#[tokio::test]
async fn pushes_a_point_lookup_after_the_row_filter() {
    let sql = rewrite("SELECT id, label FROM items WHERE id = $1").await;
    let sub = inside(&sql, "items");
    assert!(
        sub.contains(
            "WHERE (warden_source.\"tenant\" = 't1') AND (warden_source.id = $1) OFFSET 0"
        ),
        "{sql}"
    );
    // The copy runs outside as well.
    assert!(sql.ends_with(") AS items WHERE id = $1"), "{sql}");
}

#[tokio::test]
async fn pushes_ranges_lists_and_boolean_combinations() {
    for (sql, want) in [
        (
            "SELECT id FROM items WHERE n BETWEEN 10 AND 20",
            "warden_source.n BETWEEN 10 AND 20",
        ),
        (
            "SELECT id FROM items WHERE day >= '2026-01-01' AND day < DATE '2026-02-01'",
            "warden_source.day >= '2026-01-01') AND (warden_source.day < DATE '2026-02-01'",
        ),
        (
            "SELECT id FROM items WHERE id IN (1, 2, $1)",
            "warden_source.id IN (1, 2, $1)",
        ),
        (
            "SELECT id FROM items WHERE (flag OR n <> -3) AND NOT label = 'x'",
            "(warden_source.flag",
        ),
        (
            "SELECT id FROM items WHERE qty > 1.5",
            "warden_source.qty > 1.5",
        ),
        (
            "SELECT id FROM items WHERE label IS NULL",
            "warden_source.label IS NULL",
        ),
        (
            "SELECT id FROM items WHERE code = 'abc'",
            "warden_source.code = 'abc'",
        ),
    ] {
        let rewritten = rewrite(sql).await;
        let sub = inside(&rewritten, "items");
        assert!(sub.contains(want), "{sql}\n{rewritten}");
    }
}

#[tokio::test]
async fn keeps_everything_else_outside() {
    for sql in [
        // Casts can fail on a filtered row.
        "SELECT id FROM items WHERE label::int = 5",
        "SELECT id FROM items WHERE CAST(label AS int) = 5",
        // Functions, arithmetic (division by zero), LIKE and regular expressions.
        "SELECT id FROM items WHERE lower(label) = 'a'",
        "SELECT id FROM items WHERE 10 / n = 1",
        "SELECT id FROM items WHERE n + 1 = 2",
        "SELECT id FROM items WHERE label LIKE 'a%'",
        "SELECT id FROM items WHERE label ~ 'a'",
        // Subqueries.
        "SELECT id FROM items WHERE id IN (SELECT item_id FROM orders)",
        "SELECT id FROM items WHERE EXISTS (SELECT 1 FROM orders o WHERE o.item_id = items.id)",
        // Masked columns (inside, the raw value would be compared).
        "SELECT id FROM items WHERE secret = '1234'",
        "SELECT id FROM items WHERE secret IS NULL",
        // Comparisons PostgreSQL does not mark leakproof.
        "SELECT id FROM items WHERE price = 5",
        "SELECT id FROM items WHERE n = 5.5",
        "SELECT id FROM items WHERE day = TIMESTAMP '2026-01-01 00:00:00'",
        "SELECT id FROM items WHERE code = $1",
        // An OR with anything not listed.
        "SELECT id FROM items WHERE id = 1 OR lower(label) = 'a'",
    ] {
        let rewritten = rewrite(sql).await;
        let sub = inside(&rewritten, "items");
        assert!(
            sub.ends_with("WHERE warden_source.\"tenant\" = 't1' OFFSET 0"),
            "{sql}\n{rewritten}"
        );
    }
}

#[tokio::test]
async fn only_conjuncts_of_one_relation_on_the_preserved_side() {
    let sql = rewrite(
        "SELECT i.id, o.amount FROM items i JOIN orders o ON o.item_id = i.id \
         WHERE i.n > 3 AND o.amount < 100 AND o.amount > i.n",
    )
    .await;
    assert!(inside(&sql, "i").contains("(warden_source.n > 3)"), "{sql}");
    assert!(
        inside(&sql, "o").contains("(warden_source.amount < 100)"),
        "{sql}"
    );
    assert!(!sql.contains("warden_source.amount > "), "{sql}");

    // The nullable side of an outer join keeps its conditions outside.
    let sql = rewrite(
        "SELECT i.id FROM items i LEFT JOIN orders o ON o.item_id = i.id \
         WHERE i.n > 3 AND o.amount IS NULL",
    )
    .await;
    assert!(inside(&sql, "i").contains("(warden_source.n > 3)"), "{sql}");
    assert!(!inside(&sql, "o").contains("amount"), "{sql}");
    let sql = rewrite(
        "SELECT i.id FROM items i RIGHT JOIN orders o ON o.item_id = i.id \
         WHERE i.n > 3 AND o.amount > 1",
    )
    .await;
    assert!(!inside(&sql, "i").contains("warden_source.n"), "{sql}");
    assert!(
        inside(&sql, "o").contains("warden_source.amount > 1"),
        "{sql}"
    );

    // An equality between the two relations carries a pushed equality across (inner joins).
    let sql = rewrite(
        "SELECT i.id, o.amount FROM items i JOIN orders o ON o.item_id = i.id WHERE i.id = $1",
    )
    .await;
    assert!(
        inside(&sql, "i").contains("(warden_source.id = $1)"),
        "{sql}"
    );
    assert!(
        inside(&sql, "o").contains("(warden_source.item_id = $1)"),
        "{sql}"
    );
    let sql =
        rewrite("SELECT i.id FROM items i LEFT JOIN orders o ON o.item_id = i.id WHERE i.id = $1")
            .await;
    assert!(!inside(&sql, "o").contains("item_id"), "{sql}");
    let sql =
        rewrite("SELECT i.id FROM items i JOIN orders o ON o.item_id = i.id WHERE i.label = 'x'")
            .await;
    assert!(!inside(&sql, "o").contains("item_id"), "{sql}");

    // Unqualified names that two relations have are ambiguous; outer references stay out.
    let sql =
        rewrite("SELECT i.id FROM items i JOIN orders o ON o.item_id = i.id WHERE id = 1").await;
    assert!(!sql.contains("warden_source.id = 1"), "{sql}");
    let sql = rewrite(
        "SELECT i.id FROM items i WHERE EXISTS \
         (SELECT 1 FROM orders o WHERE o.item_id = i.id AND i.n = 2 AND o.amount = 7)",
    )
    .await;
    assert!(
        inside(&sql, "o").contains("(warden_source.amount = 7)"),
        "{sql}"
    );
    assert!(!sql.contains("warden_source.n = 2"), "{sql}");
}

#[tokio::test]
async fn without_types_or_fence_nothing_is_compared_inside() {
    let untyped = policy(Dialect::Postgres, "public", false);
    let sql = rewrite_with(
        &untyped,
        "SELECT id FROM items WHERE id = $1 AND label IS NULL",
    )
    .await;
    let sub = inside(&sql, "items");
    assert!(sub.contains("(warden_source.label IS NULL)"), "{sql}");
    assert!(!sub.contains("warden_source.id"), "{sql}");

    let unfenced = SqlPolicy::builder(Dialect::Postgres)
        .catalog(Catalog::new().with_table("public.items", ITEMS.map(|(c, _)| c)))
        .column_types("public.items", ITEMS)
        .optimization_fence(false)
        .build()
        .unwrap();
    let sql = rewrite_with(&unfenced, "SELECT id FROM items WHERE id = $1").await;
    assert!(!sql.contains("warden_source.id"), "{sql}");
}

#[tokio::test]
async fn per_dialect_parameters_and_types() {
    // MySQL: no `?` (positional), strings only against string columns.
    let my = policy(Dialect::MySql, "shop", true);
    let sql = rewrite_with(
        &my,
        "SELECT id FROM items WHERE id = ? AND n = 3 AND label = 'a'",
    )
    .await;
    let sub = inside(&sql, "items");
    assert!(!sub.contains("warden_source.id"), "{sql}");
    assert!(sub.contains("(warden_source.n = 3)"), "{sql}");
    assert!(sub.contains("(warden_source.label = 'a')"), "{sql}");
    let sql = rewrite_with(&my, "SELECT id FROM items WHERE label = 5").await;
    assert!(
        !inside(&sql, "items").contains("warden_source.label"),
        "{sql}"
    );

    // SQLite: any column, literals and `?NNN`; no `?` or names (numbered by appearance).
    let lite = policy(Dialect::Sqlite, "main", false);
    let sql = rewrite_with(&lite, "SELECT id FROM items WHERE id = ?1 AND label = 'a'").await;
    let sub = inside(&sql, "items");
    assert!(sub.contains("(warden_source.id = ?1)"), "{sql}");
    assert!(sub.contains("(warden_source.label = 'a')"), "{sql}");
    for sql in [
        "SELECT id FROM items WHERE id = ?",
        "SELECT id FROM items WHERE id = :id",
    ] {
        let rewritten = rewrite_with(&lite, sql).await;
        assert!(
            !inside(&rewritten, "items").contains("warden_source.id"),
            "{rewritten}"
        );
    }
}

// ---- on a real PostgreSQL -------------------------------------------------------------------

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn rows(pool: &sqlx::PgPool, sql: &str, params: &[i64]) -> Result<Vec<String>, String> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for p in params {
        query = query.bind(*p);
    }
    let fetched = query.fetch_all(pool).await.map_err(|e| e.to_string())?;
    let mut out: Vec<String> = fetched
        .iter()
        .map(|r| {
            (0..r.columns().len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .map(|v| v.unwrap_or_else(|| "NULL".into()))
                        .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                        .or_else(|_| r.try_get::<Option<i32>, _>(i).map(|v| format!("{v:?}")))
                        .or_else(|_| r.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}")))
                        .unwrap_or_else(|e| format!("<{e}>"))
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn same_rows_with_and_without_pushdown_on_postgres() {
    let Some(url) = warden_test::service_url("WARDEN_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let schema = unique("warden_pushdown");
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let setup = [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.items (id bigint PRIMARY KEY, tenant text NOT NULL, n integer, \
             price numeric(10,2), qty real, code char(3), label varchar(40), day date, \
             at timestamptz, flag boolean, secret text)"
        ),
        format!(
            "CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, tenant text NOT NULL, \
             item_id bigint, amount integer)"
        ),
        // Tenant t1's labels are numbers; t2's are not: a cast of `label` that ran on t2's rows
        // would fail and quote one.
        format!(
            "INSERT INTO {schema}.items SELECT g, CASE WHEN g % 2 = 0 THEN 't1' ELSE 't2' END, \
             g % 17, g * 1.25, g / 4.0, CASE WHEN g % 3 = 0 THEN 'abc' ELSE 'xyz' END, \
             CASE WHEN g % 2 = 0 THEN (g % 11)::text ELSE 'other-tenant-' || g END, \
             DATE '2026-01-01' + g, TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 hour', \
             g % 5 = 0, 'sec-' || g FROM generate_series(1, 400) g"
        ),
        format!(
            "INSERT INTO {schema}.orders SELECT g, CASE WHEN g % 3 = 0 THEN 't2' ELSE 't1' END, \
             g % 400 + 1, g % 97 FROM generate_series(1, 900) g"
        ),
    ];
    for statement in &setup {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&admin)
            .await
            .unwrap();
    }
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let pushed = policy(Dialect::Postgres, &schema, true);
    let fenced = policy(Dialect::Postgres, &schema, false);
    let cases: &[(&str, &[i64])] = &[
        ("SELECT id, label, secret FROM items WHERE id = $1", &[42]),
        ("SELECT id, label FROM items WHERE id = $1", &[43]),
        ("SELECT id FROM items WHERE n BETWEEN 3 AND 5 AND flag", &[]),
        (
            "SELECT id FROM items WHERE id IN (2, 3, $1) OR n = -1",
            &[8],
        ),
        (
            "SELECT count(*) FROM items WHERE day >= '2026-03-01' AND day < DATE '2026-04-01'",
            &[],
        ),
        (
            "SELECT count(*) FROM items WHERE at > '2026-01-05 00:00:00+00'",
            &[],
        ),
        (
            "SELECT id FROM items WHERE qty > 90.5 AND NOT code = 'abc'",
            &[],
        ),
        ("SELECT id FROM items WHERE code = 'abc' AND id < 40", &[]),
        ("SELECT id FROM items WHERE label IS NULL OR n <> 3", &[]),
        // A cast that fails on the other tenant's rows: outside the fence, never evaluated there.
        (
            "SELECT id FROM items WHERE label::int = 5 AND id > $1",
            &[0],
        ),
        ("SELECT count(*) FROM items WHERE 100 / (n + 1) > 10", &[]),
        // The masked column compares masked values, pushed or not.
        ("SELECT count(*) FROM items WHERE secret <> 'sec-42'", &[]),
        ("SELECT count(*) FROM items WHERE secret = '**42'", &[]),
        (
            "SELECT i.id, o.amount FROM items i JOIN orders o ON o.item_id = i.id \
             WHERE i.id BETWEEN $1 AND 120 AND o.amount > 20",
            &[100],
        ),
        (
            "SELECT i.id, o.id, o.amount FROM items i JOIN orders o ON o.item_id = i.id \
             WHERE i.id = $1",
            &[44],
        ),
        (
            "SELECT i.id, o.id FROM orders o, items i WHERE o.item_id = i.id AND i.id = 46",
            &[],
        ),
        (
            "SELECT i.id, o.id FROM items i LEFT JOIN orders o ON o.item_id = i.id \
             WHERE i.id < 30 AND o.amount IS NULL",
            &[],
        ),
        (
            "SELECT i.n, count(*), sum(o.amount) FROM items i JOIN orders o ON o.item_id = i.id \
             WHERE i.n = 4 GROUP BY i.n",
            &[],
        ),
    ];
    let mut pushed_any = 0;
    for (sql, params) in cases {
        let with = rewrite_with(&pushed, sql).await;
        let without = rewrite_with(&fenced, sql).await;
        if with != without {
            pushed_any += 1;
        }
        let a = rows(&pool, &with, params).await;
        let b = rows(&pool, &without, params).await;
        assert_eq!(a, b, "{sql}\npushed: {with}\nfenced: {without}");
        let b = b.unwrap_or_else(|e| panic!("{sql}: {e}"));
        for row in &b {
            assert!(!row.contains("other-tenant"), "{sql}: {row}");
            assert!(!row.contains("sec-"), "{sql}: {row}");
        }
    }
    assert!(
        pushed_any >= 10,
        "only {pushed_any} statements had a condition pushed"
    );
    // The cast's failure on another tenant's row would say so.
    let all = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.items WHERE label::int = 5"
    )))
    .fetch_one(&admin)
    .await;
    assert!(
        all.is_err(),
        "the unguarded cast should fail on t2's labels"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
