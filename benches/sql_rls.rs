//! The SQL PEP beside PostgreSQL's own row-level security, end to end through sqlx.
//!
//! One 100,000-row table (`items`, two tenants, a primary key and an index on `n`) and a
//! 200,000-row `orders` table, in a fresh schema that is dropped at the end. RLS: a policy
//! `USING (tenant = current_setting('warden.tenant'))` on both tables, a role without
//! `BYPASSRLS`, and each session `SET ROLE` and `SET warden.tenant`, as RLS users do. The SQL
//! PEP: the same tenant filter as a `filter_rows` obligation, the optimization fence on (the
//! default), column types declared so leakproof conditions are pushed inside it; each
//! iteration analyses (cached), decides, rewrites (cached) and runs the statement. The
//! target: each query ≤ 1.10 × RLS.
//!
//! Run: `cargo bench -p warden-benches --bench sql_rls -- --noplot` (PostgreSQL from
//! `WARDEN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup fails loudly"
)]

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};
use warden_decision::{AccessRequest, Decision, Obligation, Pdp, PdpFuture, Subject};
use warden_sql::{Catalog, Dialect, SqlPolicy, SqlRequest};

const ROWS: i64 = 100_000;

/// Every table is filtered on the subject's tenant.
struct TenantFilter;

impl Pdp for TenantFilter {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        let table = request
            .resource
            .properties
            .get("table")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        let decision = Decision::permit().with_obligation(
            Obligation::from_json(json!({"type": "filter_rows", "table": table,
                "where": {"eq": [{"column": "tenant"}, {"subject": "tenant"}]}}))
            .unwrap(),
        );
        Box::pin(std::future::ready(Ok(decision)))
    }
}

/// A statement and its parameters (all `bigint` or `integer`, bound as sqlx binds them).
#[derive(Clone, Copy)]
struct Query {
    name: &'static str,
    sql: &'static str,
    params: &'static [Param],
}

#[derive(Clone, Copy)]
enum Param {
    Big(i64),
    Int(i32),
}

const QUERIES: &[Query] = &[
    Query {
        name: "point_lookup",
        sql: "SELECT id, tenant, n, label FROM items WHERE id = $1",
        params: &[Param::Big(4242)],
    },
    Query {
        name: "range",
        sql: "SELECT id, label FROM items WHERE n BETWEEN $1 AND $2",
        params: &[Param::Int(5000), Param::Int(5100)],
    },
    Query {
        name: "aggregate",
        sql: "SELECT label, count(*), sum(n) FROM items WHERE n < $1 GROUP BY label",
        params: &[Param::Int(2000)],
    },
    Query {
        name: "join",
        sql: "SELECT i.id, i.label, o.id, o.amount FROM items i JOIN orders o ON o.item_id = i.id \
              WHERE i.id = $1",
        params: &[Param::Big(4242)],
    },
];

async fn run(pool: &PgPool, sql: &str, params: &[Param]) -> Vec<PgRow> {
    let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
    for p in params {
        query = match p {
            Param::Big(v) => query.bind(*v),
            Param::Int(v) => query.bind(*v),
        };
    }
    query.fetch_all(pool).await.unwrap()
}

struct Setup {
    admin: PgPool,
    rls: PgPool,
    pep: PgPool,
    schema: String,
    role: String,
}

async fn setup(url: &str) -> Setup {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("warden_rls_{}_{nanos}", std::process::id());
    let role = format!("{schema}_reader");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to PostgreSQL (WARDEN_TEST_POSTGRES_URL)");
    let statements = [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE ROLE {role} NOLOGIN NOBYPASSRLS"),
        format!(
            "CREATE TABLE {schema}.items (id bigint PRIMARY KEY, tenant text NOT NULL, \
             n integer NOT NULL, label text NOT NULL)"
        ),
        format!(
            "CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, tenant text NOT NULL, \
             item_id bigint NOT NULL, amount integer NOT NULL)"
        ),
        format!(
            "INSERT INTO {schema}.items SELECT g, CASE WHEN g % 2 = 0 THEN 't1' ELSE 't2' END, \
             (g * 7919) % 100000, 'label-' || (g % 10) FROM generate_series(1, {ROWS}) g"
        ),
        format!(
            "INSERT INTO {schema}.orders SELECT g, CASE WHEN g % 4 < 2 THEN 't1' ELSE 't2' END, \
             (g % {ROWS}) + 1, g % 1000 FROM generate_series(1, {}) g",
            ROWS * 2
        ),
        format!("CREATE INDEX ON {schema}.items (tenant)"),
        format!("CREATE INDEX ON {schema}.items (n)"),
        format!("CREATE INDEX ON {schema}.orders (item_id)"),
        format!("CREATE INDEX ON {schema}.orders (tenant)"),
        format!("ANALYZE {schema}.items"),
        format!("ANALYZE {schema}.orders"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"),
        format!("ALTER TABLE {schema}.items ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {schema}.orders ENABLE ROW LEVEL SECURITY"),
        format!(
            "CREATE POLICY tenant ON {schema}.items USING (tenant = current_setting('warden.tenant'))"
        ),
        format!(
            "CREATE POLICY tenant ON {schema}.orders USING (tenant = current_setting('warden.tenant'))"
        ),
    ];
    for s in &statements {
        sqlx::query(AssertSqlSafe(s.clone()))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let options = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let rls = PgPoolOptions::new()
        .max_connections(1)
        .after_connect({
            let role = role.clone();
            move |conn, _| {
                let role = role.clone();
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(format!("SET ROLE {role}")))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("SET warden.tenant = 't1'")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            }
        })
        .connect_with(options.clone())
        .await
        .unwrap();
    let pep = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    Setup {
        admin,
        rls,
        pep,
        schema,
        role,
    }
}

fn policy(schema: &str) -> SqlPolicy {
    let items = format!("{schema}.items");
    let orders = format!("{schema}.orders");
    SqlPolicy::builder(Dialect::Postgres)
        .default_schema(schema)
        .catalog(
            Catalog::new()
                .with_table(&items, ["id", "tenant", "n", "label"])
                .with_table(&orders, ["id", "tenant", "item_id", "amount"]),
        )
        .column_types(
            &items,
            [
                ("id", "bigint"),
                ("tenant", "text"),
                ("n", "integer"),
                ("label", "text"),
            ],
        )
        .column_types(
            &orders,
            [
                ("id", "bigint"),
                ("tenant", "text"),
                ("item_id", "bigint"),
                ("amount", "integer"),
            ],
        )
        .build()
        .unwrap()
}

async fn through_pep(policy: &SqlPolicy, pool: &PgPool, subject: &Subject, q: &Query) -> usize {
    let request = SqlRequest::new(q.sql, subject.clone());
    let enforcement = policy.enforce(&TenantFilter, &request).await.unwrap();
    run(pool, &enforcement.statement, q.params).await.len()
}

fn rows_text(rows: &[PgRow]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<i64, _>(i)
                        .map(|v| v.to_string())
                        .or_else(|_| r.try_get::<i32, _>(i).map(|v| v.to_string()))
                        .or_else(|_| r.try_get::<String, _>(i))
                        .unwrap_or_else(|e| format!("<{e}>"))
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

fn main() {
    let url = std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = runtime.block_on(setup(&url));
    let policy = policy(&env.schema);
    let subject = Subject::user("ann").with_property("tenant", "t1");

    // Both sides return the same rows, and the PEP pushed the caller's condition.
    for q in QUERIES {
        let enforcement = runtime
            .block_on(policy.enforce(&TenantFilter, &SqlRequest::new(q.sql, subject.clone())))
            .unwrap();
        assert!(
            enforcement.statement.contains(") AND (warden_source."),
            "{}: nothing pushed: {}",
            q.name,
            enforcement.statement
        );
        let pep = runtime.block_on(run(&env.pep, &enforcement.statement, q.params));
        let rls = runtime.block_on(run(&env.rls, q.sql, q.params));
        assert_eq!(rows_text(&pep), rows_text(&rls), "{}", q.name);
        assert!(!rls.is_empty(), "{}: no rows", q.name);
    }

    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for q in QUERIES {
        let mut group = criterion.benchmark_group(format!("sql_rls/{}", q.name));
        group.bench_function("postgres_rls", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(run(&env.rls, q.sql, q.params).await.len()) })
        });
        group.bench_function("warden_sql_pep", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(through_pep(&policy, &env.pep, &subject, q).await) })
        });
        group.finish();

        // The bench's own timing, alternating, for the ratio line.
        let iters = 300u32;
        let (mut rls, mut pep) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..4 {
            let started = Instant::now();
            for _ in 0..iters {
                black_box(runtime.block_on(run(&env.rls, q.sql, q.params)).len());
            }
            rls += started.elapsed();
            let started = Instant::now();
            for _ in 0..iters {
                black_box(runtime.block_on(through_pep(&policy, &env.pep, &subject, q)));
            }
            pep += started.elapsed();
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iters * 4);
        summary.push(format!(
            "sql_rls/{}: PostgreSQL RLS {:.0} µs, SQL PEP (fence on) {:.0} µs, ratio {:.2} (target ≤ 1.10)",
            q.name,
            per(rls),
            per(pep),
            per(pep) / per(rls)
        ));
    }
    criterion.final_summary();

    runtime.block_on(async {
        env.rls.close().await;
        env.pep.close().await;
        for s in [
            format!("DROP SCHEMA {} CASCADE", env.schema),
            format!("DROP ROLE {}", env.role),
        ] {
            sqlx::query(AssertSqlSafe(s))
                .execute(&env.admin)
                .await
                .unwrap();
        }
    });
    println!();
    for line in summary {
        println!("{line}");
    }
}
