//! Attributes from PostgreSQL.

use serde_json::Value;
use tokio::sync::Mutex;

use crate::provider::{FetchError, FetchFuture, Provider, parse_json};

/// Reads an attribute with one query: `$1` is the key, the query returns at most one row whose
/// first column is text holding JSON (cast with `::text`, e.g.
/// `SELECT to_jsonb(sensitivity)::text FROM inventory WHERE resource = $1`). No row is `null`;
/// text that is not JSON, or a column that is not text, is garbage.
///
/// ```no_run
/// use warden_context::PostgresProvider;
///
/// let inventory = PostgresProvider::new(
///     "host=127.0.0.1 user=postgres dbname=test",
///     "SELECT to_jsonb(sensitivity)::text FROM inventory WHERE resource = $1",
/// );
/// ```
#[derive(Debug)]
pub struct PostgresProvider {
    config: String,
    query: String,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl PostgresProvider {
    /// A provider on the server `config` (a URL or `key=value` string); connected on first use.
    pub fn new(config: &str, query: &str) -> Self {
        Self {
            config: config.to_owned(),
            query: query.to_owned(),
            client: Mutex::new(None),
        }
    }

    async fn read(&self, key: &str) -> Result<Value, FetchError> {
        let mut client = self.client.lock().await;
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            let (fresh, connection) = tokio_postgres::connect(&self.config, tokio_postgres::NoTls)
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "context provider connection closed");
                }
            });
            *client = Some(fresh);
        }
        let Some(live) = client.as_ref() else {
            return Err(FetchError::Unavailable("not connected".into()));
        };
        let rows = match live.query(&self.query, &[&key]).await {
            Ok(rows) => rows,
            Err(error) => {
                if error.as_db_error().is_none() {
                    *client = None;
                }
                return Err(FetchError::Unavailable(error.to_string()));
            }
        };
        drop(client);
        if rows.len() > 1 {
            return Err(FetchError::Garbage(format!(
                "{} rows for one key",
                rows.len()
            )));
        }
        let Some(row) = rows.first() else {
            return Ok(Value::Null);
        };
        match row.try_get::<_, Option<String>>(0) {
            Ok(Some(text)) => parse_json(&text),
            Ok(None) => Ok(Value::Null),
            Err(error) => Err(FetchError::Garbage(error.to_string())),
        }
    }
}

impl Provider for PostgresProvider {
    fn fetch<'a>(&'a self, key: &'a str) -> FetchFuture<'a> {
        Box::pin(self.read(key))
    }
}
