//! Scratch schemas and databases for the SQL tests that need their own: unique names, and
//! statements run one after another on an admin pool.
#![allow(dead_code, reason = "each test file uses what it needs")]
#![allow(clippy::panic, reason = "a failed setup fails the test loudly")]

/// A name no other test run uses: the prefix, the process id and the clock's nanoseconds.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Runs each statement on PostgreSQL, in order; any failure fails the test.
pub(crate) async fn pg<S: Into<String>>(
    pool: &sqlx::PgPool,
    statements: impl IntoIterator<Item = S>,
) {
    for sql in statements {
        let sql: String = sql.into();
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
        {
            panic!("`{sql}`: {e}");
        }
    }
}

/// Runs each statement on MySQL / MariaDB, in order; any failure fails the test.
pub(crate) async fn mysql<S: Into<String>>(
    pool: &sqlx::MySqlPool,
    statements: impl IntoIterator<Item = S>,
) {
    for sql in statements {
        let sql: String = sql.into();
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
        {
            panic!("`{sql}`: {e}");
        }
    }
}
