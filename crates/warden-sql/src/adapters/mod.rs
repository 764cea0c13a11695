//! Database drivers as SQL services (`Service<SqlRequest, Response = SqlResponse>`), behind
//! features, and the schema catalog read from each database.
//!
//! Values come back as JSON: integers and floats as numbers, `NUMERIC` / `DECIMAL` as strings
//! (no precision lost), booleans, text, dates and timestamps as ISO 8601 strings, bytes as hex
//! strings, JSON as JSON. A type the adapter cannot decode fails the statement with
//! [`DriverError`] rather than returning something wrong.

/// `async fn run(pool, request)`, shared by the sqlx adapters: binds the parameters, streams
/// the results and counts the rows affected. `values(&row)` of the expanding module decodes a
/// row of its driver.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
macro_rules! sqlx_run {
    ($pool:ty) => {
        async fn run(pool: &$pool, request: SqlRequest) -> Result<SqlResponse, DriverError> {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(request.statement));
            for param in request.params {
                query = match param {
                    SqlValue::Null => query.bind(None::<String>),
                    SqlValue::Bool(b) => query.bind(b),
                    SqlValue::Int(i) => query.bind(i),
                    SqlValue::Float(f) => query.bind(f),
                    SqlValue::Text(s) => query.bind(s),
                    SqlValue::Bytes { bytes } => query.bind(bytes),
                };
            }
            let mut response = SqlResponse::default();
            let mut stream = pool.fetch_many(query);
            while let Some(item) = stream.try_next().await? {
                match item {
                    Either::Left(done) => response.rows_affected += done.rows_affected(),
                    Either::Right(row) => {
                        if response.columns.is_empty() {
                            response.columns =
                                row.columns().iter().map(|c| c.name().to_owned()).collect();
                        }
                        response.rows.push(values(&row)?);
                    }
                }
            }
            Ok(response)
        }
    };
}

#[cfg(any(feature = "sqlx-postgres", feature = "tokio-postgres"))]
mod pg;
#[cfg(feature = "sqlx-mysql")]
mod sqlx_mysql;
#[cfg(feature = "sqlx-postgres")]
mod sqlx_postgres;
#[cfg(feature = "sqlx-sqlite")]
mod sqlx_sqlite;
#[cfg(feature = "tokio-postgres")]
mod tokio_postgres;

#[cfg(feature = "sqlx-mysql")]
pub use sqlx_mysql::SqlxMySql;
#[cfg(feature = "sqlx-postgres")]
pub use sqlx_postgres::SqlxPostgres;
#[cfg(feature = "sqlx-sqlite")]
pub use sqlx_sqlite::SqlxSqlite;
#[cfg(feature = "tokio-postgres")]
pub use tokio_postgres::TokioPostgres;

/// A database error, or a value the adapter cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database error: {message}")]
pub struct DriverError {
    /// The driver's message.
    pub message: String,
    /// The SQLSTATE or vendor code, when there is one.
    pub code: Option<String>,
}

impl DriverError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
        }
    }
}

#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite"
))]
impl From<sqlx::Error> for DriverError {
    fn from(e: sqlx::Error) -> Self {
        let code = e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.into_owned()));
        Self {
            message: e.to_string(),
            code,
        }
    }
}

/// Lower-case hex of bytes.
#[cfg(any(
    feature = "sqlx-postgres",
    feature = "sqlx-mysql",
    feature = "sqlx-sqlite",
    feature = "tokio-postgres"
))]
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The civil date of a day count from 1970-01-01 (Howard Hinnant's algorithm).
#[cfg(any(feature = "sqlx-postgres", feature = "tokio-postgres"))]
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
