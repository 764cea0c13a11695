//! `warden sql rewrite` and `warden sql explain`, run as a user runs them.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const NURSE: &str = r#"{"id": "nina", "properties": {"role": "nurse", "clinic": "c1"}}"#;

fn schema_file() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("warden-sql-cli-{}-{n}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"default_schema": "clinic", "tables": {
            "clinic.patients": ["id", "clinic_id", "name", "ssn", "birth_date", "notes"],
            "clinic.visits": ["id", "patient_id", "clinic_id", "reason"],
            "main.patients": ["id", "clinic_id", "name", "ssn", "birth_date", "notes"],
            "main.visits": ["id", "patient_id", "clinic_id", "reason"]}}"#,
    )
    .unwrap();
    path
}

fn sql(command: &str, subject: &str, dialect: &str, extra: &[&str], stdin: &str) -> Output {
    let schema = schema_file();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .args([
            "sql",
            command,
            "--policy",
            "policies/clinic-data",
            "--subject",
            subject,
        ])
        .args(["--dialect", dialect, "--schema"])
        .arg(&schema)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading stdin: a broken pipe here
    // is that, not a failure of the test.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&schema);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn rewrite_prints_the_guarded_statement() {
    let out = sql(
        "rewrite",
        NURSE,
        "mysql",
        &[],
        "SELECT name, ssn FROM patients WHERE id = 4",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warden_source.`clinic_id` = 'c1'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RIGHT(CAST(warden_source.`ssn` AS CHAR)"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("AS patients WHERE id = 4"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn rewrite_refuses_with_the_reason_and_status_3() {
    for (statement, reason) in [
        (
            "SELECT actor FROM audit_log",
            "does not permit `select` on `clinic.audit_log`",
        ),
        (
            "SELECT 1; DROP TABLE patients",
            "2 statements in one string",
        ),
        (
            "SELECT load_file('/etc/passwd')",
            "function `load_file` is not allowed",
        ),
        (
            "UPDATE visits SET clinic_id = 'c2' WHERE id = 1",
            "outside the row filter",
        ),
        (
            "DROP TABLE visits",
            "`DROP TABLE` statements are not allowed",
        ),
    ] {
        let out = sql("rewrite", NURSE, "mysql", &[], statement);
        assert_eq!(out.status.code(), Some(1), "a deny exits 1: {statement}");
        assert!(out.stdout.is_empty(), "{statement}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(reason), "{statement}: {stderr}");
    }
}

#[test]
fn bind_parameters_are_checked_when_given() {
    let statement = "INSERT INTO visits (id, patient_id, clinic_id) VALUES (?, ?, ?)";
    let ok = sql(
        "rewrite",
        NURSE,
        "sqlite",
        &["--default-schema", "main", "--params", r#"[1, 1, "c1"]"#],
        statement,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let moved = sql(
        "rewrite",
        NURSE,
        "sqlite",
        &["--default-schema", "main", "--params", r#"[1, 1, "c2"]"#],
        statement,
    );
    assert_eq!(moved.status.code(), Some(1), "a deny");
    let missing = sql(
        "rewrite",
        NURSE,
        "sqlite",
        &["--default-schema", "main"],
        statement,
    );
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a missing parameter is usage"
    );
    assert!(
        text(&missing.stderr).contains("parameter 3"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn bad_arguments_and_unparseable_input_exit_2() {
    let out = sql("rewrite", NURSE, "mysql", &[], "SELEC name FROM patients");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not parse"),
        "{}",
        text(&out.stderr)
    );
    let out = sql("rewrite", NURSE, "oracle", &[], "SELECT 1");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown SQL dialect `oracle`"),
        "{}",
        text(&out.stderr)
    );
    let out = sql("rewrite", "not json", "mysql", &[], "SELECT 1");
    assert_eq!(out.status.code(), Some(2));
    let out = sql(
        "rewrite",
        NURSE,
        "mysql",
        &["--policy", "no/such/dir"],
        "SELECT 1",
    );
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["sql", "rewrite", "--dialect", "postgres"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "missing --policy and --subject");
}

#[test]
fn explain_shows_requests_decisions_and_obligations() {
    let out = sql(
        "explain",
        NURSE,
        "postgres",
        &["--default-schema", "clinic"],
        "SELECT p.name, v.reason FROM patients p JOIN visits v ON v.patient_id = p.id",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for want in [
        "access requests:",
        "1. select clinic.patients [id, name]",
        "2. select clinic.visits [patient_id, reason]",
        "decision: permit (policy clinic-data 1.0.0+sha256.",
        r#""columns":{"birth_date":"year","notes":"null","ssn":"last4"}"#,
        r#""type":"mask_columns""#,
        r#""where":{"eq":[{"column":"clinic_id"},{"subject":"clinic"}]}"#,
        "obligations carried out (merged):",
        "rewritten:\n  SELECT p.name, v.reason FROM (SELECT",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    let auditor = r#"{"id": "aude", "properties": {"role": "auditor"}}"#;
    let out = sql(
        "explain",
        auditor,
        "postgres",
        &[],
        "SELECT name FROM patients",
    );
    assert_eq!(out.status.code(), Some(1), "a deny");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("decision: deny"), "{stdout}");
    assert!(
        stdout.contains("reason: only the clinic's own relations are open to this role"),
        "{stdout}"
    );
    assert!(stdout.contains("refused (not_permitted)"), "{stdout}");
}

/// `warden sql` with `--database-url` instead of `--schema`, and no `--schema` at all.
fn sql_with(extra: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .args(["sql", "rewrite", "--policy", "policies/clinic-data"])
        .args(["--subject", NURSE, "--dialect", "sqlite"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_catalog_comes_from_the_database() {
    let path = std::env::temp_dir().join(format!("warden-sql-cli-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let created = Command::new("sqlite3")
        .arg(&path)
        .arg(
            "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id TEXT, name TEXT, ssn TEXT, \
             birth_date TEXT, notes TEXT);",
        )
        .status();
    match created {
        Ok(status) => assert!(status.success()),
        Err(e) if std::env::var("WARDEN_TEST_REQUIRE_DATABASES").as_deref() == Ok("1") => {
            panic!("sqlite3 is needed to create the test database: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping the --database-url test: no sqlite3 ({e})");
            return;
        }
    }
    let url = format!("sqlite:{}", path.display());
    let out = sql_with(&["--database-url", &url], "SELECT * FROM patients");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Every column of the table, read from the database, masked where the policy says.
    for column in [
        "\"id\"",
        "\"name\"",
        "\"ssn\"",
        "\"birth_date\"",
        "\"notes\"",
    ] {
        assert!(stdout.contains(column), "{column}: {stdout}");
    }
    assert!(
        stdout.contains("warden_source.\"clinic_id\" = 'c1'"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&path);
    // A database that cannot be read, and no catalog at all: configuration errors (exit 3),
    // not denials.
    let missing = sql_with(
        &["--database-url", "sqlite:/nonexistent/warden/none.db"],
        "SELECT * FROM patients",
    );
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("cannot read the catalog"),
        "{}",
        text(&missing.stderr)
    );
    let none = sql_with(&[], "SELECT name FROM patients");
    assert_eq!(none.status.code(), Some(3), "{}", text(&none.stderr));
    assert!(
        text(&none.stderr).contains("unknown"),
        "{}",
        text(&none.stderr)
    );
    // A URL of another database than the dialect: bad arguments.
    let other = sql_with(&["--database-url", "postgres://127.0.0.1/x"], "SELECT 1");
    assert_eq!(other.status.code(), Some(2), "{}", text(&other.stderr));
}

/// A copy of the clinic-data package with the given extra files beside its `warden.toml`.
fn package_with(files: &[(&str, &str)]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("warden-sql-pkg-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(root().join("policies/clinic-data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn a_policy_package_extends_the_function_allow_list() {
    let statement = "SELECT app_score(id) FROM visits";
    let package = |files: &[(&str, &str)]| {
        let dir = package_with(files);
        let schema = schema_file();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["sql", "rewrite", "--policy"])
            .arg(&dir)
            .args(["--subject", NURSE, "--dialect", "postgres", "--schema"])
            .arg(&schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let written = child.stdin.take().unwrap().write_all(statement.as_bytes());
        if let Err(e) = written {
            // A refused configuration exits before reading stdin.
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&schema);
        out
    };
    // Not on the dialect's list: refused, naming the function.
    let plain = package(&[]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(text(&plain.stderr).contains("function `app_score` is not allowed"));
    // Listed by the package, for every dialect or for this one.
    for file in ["sql-functions.txt", "sql-functions.postgres.txt"] {
        let out = package(&[(file, "# the app's own pure functions\napp_*\n")]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("app_score(id)"), "{file}");
    }
    // Another dialect's file does not apply.
    let other = package(&[("sql-functions.mysql.txt", "app_score\n")]);
    assert_eq!(other.status.code(), Some(1));
    // An entry that is not a function name is a configuration error naming the line.
    let bad = package(&[("sql-functions.txt", "app_score\nlower(x)\n")]);
    assert_eq!(bad.status.code(), Some(3));
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("sql-functions.txt") && stderr.contains("line 2"),
        "{stderr}"
    );
}
