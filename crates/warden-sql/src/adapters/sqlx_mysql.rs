//! A sqlx MySQL / MariaDB pool as a SQL service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::TryStreamExt;
use serde_json::{Value as Json, json};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{Column, Either, Executor, Row, TypeInfo, ValueRef};
use tower_service::Service;

use super::{DriverError, hex};
use crate::catalog::Catalog;
use crate::parse::StringSettings;
use crate::request::{SqlRequest, SqlResponse, SqlValue};

/// A sqlx MySQL / MariaDB pool as `Service<SqlRequest>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlxMySql {
    pool: MySqlPool,
}

impl SqlxMySql {
    /// Wraps a pool.
    pub fn new(pool: MySqlPool) -> Self {
        Self { pool }
    }

    /// Connects a pool to a MySQL or MariaDB server (`mysql://…`).
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Ok(Self::new(MySqlPool::connect(url).await?))
    }

    /// The pool.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The current database: the default schema of a MySQL [`SqlPolicy`](crate::SqlPolicy).
    pub async fn current_database(&self) -> Result<String, DriverError> {
        let row = sqlx::query("SELECT CAST(DATABASE() AS CHAR)")
            .fetch_one(&self.pool)
            .await?;
        let name: Option<String> = row.try_get_unchecked(0)?;
        name.ok_or_else(|| DriverError::new("the connection has no current database"))
    }

    /// The session's string-lexing settings (`NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES` in
    /// `sql_mode`), for [`SqlPolicyBuilder::string_settings`](crate::SqlPolicyBuilder::string_settings).
    pub async fn string_settings(&self) -> Result<StringSettings, DriverError> {
        let row = sqlx::query("SELECT CAST(@@SESSION.sql_mode AS CHAR)")
            .fetch_one(&self.pool)
            .await?;
        let mode: String = row.try_get_unchecked(0)?;
        let has = |flag: &str| mode.split(',').any(|m| m.eq_ignore_ascii_case(flag));
        Ok(StringSettings {
            backslash_escapes: !has("NO_BACKSLASH_ESCAPES"),
            ansi_quotes: has("ANSI_QUOTES"),
        })
    }

    /// The server's `lower_case_table_names` (0: table names are case-sensitive, 1 and 2: they
    /// are not), for
    /// [`SqlPolicyBuilder::lower_case_table_names`](crate::SqlPolicyBuilder::lower_case_table_names).
    pub async fn lower_case_table_names(&self) -> Result<u8, DriverError> {
        let row = sqlx::query("SELECT CAST(@@lower_case_table_names AS CHAR)")
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get_unchecked(0)?;
        value.trim().parse().map_err(|_| {
            DriverError::new(format!(
                "lower_case_table_names is `{value}`, not 0, 1 or 2"
            ))
        })
    }

    /// The columns of every table and view of the current database, from
    /// `information_schema`, keyed `database.table` in lower case.
    pub async fn load_catalog(&self) -> Result<Catalog, DriverError> {
        let rows = sqlx::query(
            "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR), CAST(column_name AS CHAR) \
             FROM information_schema.columns WHERE table_schema = DATABASE() \
             ORDER BY table_name, ordinal_position",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tables: Vec<(String, Vec<String>)> = Vec::new();
        for row in rows {
            let schema: String = row.try_get_unchecked(0)?;
            let table: String = row.try_get_unchecked(1)?;
            let column: String = row.try_get_unchecked(2)?;
            let id = format!("{schema}.{table}").to_ascii_lowercase();
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

impl Service<SqlRequest> for SqlxMySql {
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

sqlx_run!(MySqlPool);

fn values(row: &MySqlRow) -> Result<Vec<Json>, DriverError> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Json::Null);
            }
            let ty = raw.type_info().name().to_ascii_uppercase();
            Ok(match ty.as_str() {
                "BOOLEAN" => json!(row.try_get_unchecked::<bool, _>(i)?),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                    json!(row.try_get_unchecked::<i64, _>(i)?)
                }
                t if t.ends_with("UNSIGNED") => json!(row.try_get_unchecked::<u64, _>(i)?),
                "FLOAT" => json!(row.try_get_unchecked::<f32, _>(i)?),
                "DOUBLE" => json!(row.try_get_unchecked::<f64, _>(i)?),
                "DATE" | "DATETIME" | "TIMESTAMP" => {
                    temporal(&row.try_get_unchecked::<Vec<u8>, _>(i)?, ty == "DATE")?
                }
                "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
                | "BIT" | "GEOMETRY" => Json::String(hex(&row.try_get_unchecked::<Vec<u8>, _>(i)?)),
                "JSON" => {
                    let s: String = row.try_get_unchecked(i)?;
                    serde_json::from_str(&s).map_err(|e| DriverError::new(e.to_string()))?
                }
                "TIME" => {
                    return Err(DriverError::new(
                        "cannot decode a `TIME` value; cast it to CHAR",
                    ));
                }
                _ => Json::String(row.try_get_unchecked::<String, _>(i)?),
            })
        })
        .collect()
}

/// A `DATE`, `DATETIME` or `TIMESTAMP` in the binary protocol: a length byte, then year (LE),
/// month, day, hour, minute, second and microseconds as present.
fn temporal(bytes: &[u8], date_only: bool) -> Result<Json, DriverError> {
    let (&len, rest) = bytes
        .split_first()
        .ok_or_else(|| DriverError::new("empty temporal value"))?;
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    if len == 0 {
        return Ok(Json::String(if date_only {
            "0000-00-00".into()
        } else {
            "0000-00-00T00:00:00".into()
        }));
    }
    let year = u16::from_le_bytes([byte(0), byte(1)]);
    let mut out = format!("{year:04}-{:02}-{:02}", byte(2), byte(3));
    if !date_only {
        out.push_str(&format!("T{:02}:{:02}:{:02}", byte(4), byte(5), byte(6)));
        if len >= 11 {
            let micros = u32::from_le_bytes([byte(7), byte(8), byte(9), byte(10)]);
            if micros != 0 {
                out.push_str(&format!(".{micros:06}"));
            }
        }
    }
    Ok(Json::String(out))
}
