//! The servers a test needs (PostgreSQL, MariaDB, NATS, Redis, …), named by environment
//! variables, and the notice a test prints when it has to do without one.

use std::io::Write as _;

/// The variable that turns a missing server into a failure (CI sets it).
pub const REQUIRE: &str = "WARDEN_TEST_REQUIRE_DATABASES";

/// The URL of a server a test needs, from the environment variable `var`.
///
/// Without it, the test should skip what needs the server: this prints a notice that
/// `cargo test` shows even for a passing test (it goes to the process's standard error, which
/// the test harness does not capture), so a newcomer sees what did not run and how to run it.
/// With `WARDEN_TEST_REQUIRE_DATABASES=1` (as `.ci/run` sets) a missing server is a failure.
///
/// ```no_run
/// // (Not run: with `WARDEN_TEST_REQUIRE_DATABASES=1`, as in CI, a missing variable panics.)
/// if let Some(url) = warden_test::service_url("WARDEN_TEST_NO_SUCH_SERVER", "the example") {
///     println!("connecting to {url}");
/// }
/// ```
///
/// # Panics
///
/// When the variable is unset or empty and `WARDEN_TEST_REQUIRE_DATABASES=1`.
#[expect(
    clippy::panic,
    reason = "a test helper: in CI a missing server fails the test"
)]
pub fn service_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE).as_deref() == Ok("1") {
                panic!("{var} is not set and {REQUIRE}=1: {what} must run");
            }
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping {what}: set {var} to run it (.ci/run sets it)"
            );
            None
        }
    }
}
