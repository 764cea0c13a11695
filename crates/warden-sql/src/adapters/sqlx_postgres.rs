//! A sqlx PostgreSQL pool as a SQL service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::TryStreamExt;
use serde_json::Value as Json;
use sqlx::postgres::{PgPool, PgRow, PgValueFormat};
use sqlx::{Column, Either, Executor, Row, TypeInfo, ValueRef};
use tower_service::Service;

use super::{DriverError, pg};
use crate::catalog::Catalog;
use crate::parse::StringSettings;
use crate::request::{SqlRequest, SqlResponse, SqlValue};

/// A sqlx PostgreSQL pool as `Service<SqlRequest>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlxPostgres {
    pool: PgPool,
}

impl SqlxPostgres {
    /// Wraps a pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Connects a pool to a PostgreSQL server (`postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Ok(Self::new(PgPool::connect(url).await?))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The session's string-lexing settings (`standard_conforming_strings`), for
    /// [`SqlPolicyBuilder::string_settings`](crate::SqlPolicyBuilder::string_settings).
    pub async fn string_settings(&self) -> Result<StringSettings, DriverError> {
        let row = sqlx::query("SELECT current_setting('standard_conforming_strings')")
            .fetch_one(&self.pool)
            .await?;
        let standard: String = row.try_get(0)?;
        Ok(StringSettings {
            backslash_escapes: standard != "on",
            ansi_quotes: false,
        })
    }

    /// The first schema of the session's `search_path` that exists: where unqualified names
    /// resolve, the policy's default schema.
    pub async fn current_schema(&self) -> Result<String, DriverError> {
        let row = sqlx::query("SELECT current_schema()::text")
            .fetch_one(&self.pool)
            .await?;
        let schema: Option<String> = row.try_get(0)?;
        schema.ok_or_else(|| DriverError::new("no schema of the search path exists"))
    }

    /// The columns of every table and view of `schemas`, from `information_schema`.
    pub async fn load_catalog(&self, schemas: &[&str]) -> Result<Catalog, DriverError> {
        let mut catalog = Catalog::new();
        for schema in schemas {
            let rows = sqlx::query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            )
            .bind(*schema)
            .fetch_all(&self.pool)
            .await?;
            let mut tables: Vec<(String, Vec<String>)> = Vec::new();
            for row in rows {
                let table: String = row.try_get(0)?;
                let column: String = row.try_get(1)?;
                match tables.last_mut() {
                    Some((t, cols)) if *t == table => cols.push(column),
                    _ => tables.push((table, vec![column])),
                }
            }
            for (table, columns) in tables {
                catalog.insert(format!("{schema}.{table}"), columns);
            }
        }
        Ok(catalog)
    }
}

impl Service<SqlRequest> for SqlxPostgres {
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

sqlx_run!(PgPool);

fn values(row: &PgRow) -> Result<Vec<Json>, DriverError> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Json::Null);
            }
            let ty = raw.type_info().name().to_owned();
            match raw.format() {
                PgValueFormat::Binary => pg::decode(
                    &ty,
                    raw.as_bytes()
                        .map_err(|e| DriverError::new(e.to_string()))?,
                ),
                PgValueFormat::Text => Ok(Json::String(
                    raw.as_str()
                        .map_err(|e| DriverError::new(e.to_string()))?
                        .to_owned(),
                )),
            }
        })
        .collect()
}
