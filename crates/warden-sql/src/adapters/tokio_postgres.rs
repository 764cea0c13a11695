//! A tokio-postgres client as a SQL service.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{StreamExt, pin_mut};
use serde_json::Value as Json;
use tokio_postgres::Client;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tower_service::Service;

use super::{DriverError, pg};
use crate::catalog::Catalog;
use crate::request::{SqlRequest, SqlResponse, SqlValue};

/// A tokio-postgres client as `Service<SqlRequest>`. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct TokioPostgres {
    client: Arc<Client>,
}

impl TokioPostgres {
    /// Wraps a connected client (whose connection task the caller spawned).
    pub fn new(client: Arc<Client>) -> Self {
        Self { client }
    }

    /// The columns of every table and view of `schemas`, from `information_schema`.
    pub async fn load_catalog(&self, schemas: &[&str]) -> Result<Catalog, DriverError> {
        let mut catalog = Catalog::new();
        for schema in schemas {
            let rows = self
                .client
                .query(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = $1::text ORDER BY table_name, ordinal_position",
                    &[schema],
                )
                .await
                .map_err(driver)?;
            let mut tables: Vec<(String, Vec<String>)> = Vec::new();
            for row in rows {
                let table: String = row.try_get(0).map_err(driver)?;
                let column: String = row.try_get(1).map_err(driver)?;
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

fn driver(e: tokio_postgres::Error) -> DriverError {
    DriverError {
        code: e.code().map(|c| c.code().to_owned()),
        message: match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        },
    }
}

impl Service<SqlRequest> for TokioPostgres {
    type Response = SqlResponse;
    type Error = DriverError;
    type Future = Pin<Box<dyn Future<Output = Result<SqlResponse, DriverError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: SqlRequest) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move { run(&client, request).await })
    }
}

async fn run(client: &Client, request: SqlRequest) -> Result<SqlResponse, DriverError> {
    let params: Vec<Param> = request.params.into_iter().map(Param).collect();
    let stream = client
        .query_raw(request.statement.as_str(), params.iter())
        .await
        .map_err(driver)?;
    pin_mut!(stream);
    let mut response = SqlResponse::default();
    while let Some(row) = stream.next().await {
        let row = row.map_err(driver)?;
        if response.columns.is_empty() {
            response.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let raw: Option<Raw<'_>> = row.try_get(i).map_err(driver)?;
            values.push(match raw {
                None => Json::Null,
                Some(Raw(bytes)) => pg::decode(column.type_().name(), bytes)?,
            });
        }
        response.rows.push(values);
    }
    response.rows_affected = stream.rows_affected().unwrap_or(0);
    Ok(response)
}

/// Any value, as its raw binary bytes.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A bind parameter, encoded for the type the server inferred for it.
#[derive(Debug)]
struct Param(SqlValue);

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Bool(b) => b.to_sql(ty, out),
            SqlValue::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            SqlValue::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            SqlValue::Text(s) => s.to_sql(ty, out),
            SqlValue::Bytes { bytes } => bytes.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
