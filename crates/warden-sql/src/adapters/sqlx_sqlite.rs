//! A sqlx SQLite pool as a SQL service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::TryStreamExt;
use serde_json::{Value as Json, json};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Column, Either, Executor, Row, TypeInfo, ValueRef};
use tower_service::Service;

use super::{DriverError, hex};
use crate::catalog::Catalog;
use crate::request::{SqlRequest, SqlResponse, SqlValue};

/// A sqlx SQLite pool as `Service<SqlRequest>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlxSqlite {
    pool: SqlitePool,
}

impl SqlxSqlite {
    /// Wraps a pool.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Connects a pool to a SQLite database (`sqlite:path`).
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Ok(Self::new(SqlitePool::connect(url).await?))
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The columns of every table and view of the `main` schema, keyed `main.<name>` in lower
    /// case.
    pub async fn load_catalog(&self) -> Result<Catalog, DriverError> {
        let rows = sqlx::query(
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' \
             ORDER BY m.name, p.cid",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tables: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let table: String = row.try_get(0)?;
            let column: String = row.try_get(1)?;
            let id = format!("main.{}", table.to_ascii_lowercase());
            match tables.last_mut() {
                Some((t, cols)) if *t == id => cols.push(column),
                _ => tables.push((id, vec![column])),
            }
        }
        let mut catalog = Catalog::new();
        for (id, columns) in tables {
            catalog.insert(id, columns);
        }
        Ok(catalog)
    }
}

impl Service<SqlRequest> for SqlxSqlite {
    type Response = SqlResponse;
    type Error = DriverError;
    type Future = Pin<Box<dyn Future<Output = Result<SqlResponse, DriverError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: SqlRequest) -> Self::Future {
        let pool = self.pool.clone();
        Box::pin(async move { run(&pool, request).await })
    }
}

sqlx_run!(SqlitePool);

fn values(row: &SqliteRow) -> Result<Vec<Json>, DriverError> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Json::Null);
            }
            // The value's storage class, whatever the column was declared as.
            let ty = raw.type_info().name().to_ascii_uppercase();
            Ok(match ty.as_str() {
                "INTEGER" | "INT8" | "BOOLEAN" => json!(row.try_get_unchecked::<i64, _>(i)?),
                "REAL" => json!(row.try_get_unchecked::<f64, _>(i)?),
                "BLOB" => Json::String(hex(&row.try_get_unchecked::<Vec<u8>, _>(i)?)),
                _ => Json::String(row.try_get_unchecked::<String, _>(i)?),
            })
        })
        .collect()
}
