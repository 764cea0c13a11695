//! The SQL PEP against real databases: PostgreSQL, MariaDB (URLs from the environment) and
//! SQLite (a temporary file). Each database gets its own schema or database with rows of two
//! clinics and sensitive columns; a corpus of statements — ordinary reads, joins, CTEs,
//! sub-queries, set operations, window functions, writes and attacks — goes through
//! `SqlPolicyLayer` (with the `clinic-data` Rego policy) to the database, and the test checks
//! what comes back: no row of the other clinic, no raw sensitive value, writes that change only
//! the rows the policy allows, benign queries that return exactly the allowed rows, denials with
//! the expected reason.
//!
//! `WARDEN_TEST_POSTGRES_URL` and `WARDEN_TEST_MYSQL_URL` name the servers; without one the
//! database is skipped, unless `WARDEN_TEST_REQUIRE_DATABASES=1` (as in CI).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly"
)]

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use tower::{Layer, Service, ServiceExt};
use warden_decision::{Decision, Obligation, Pdp, Subject};
use warden_rego::RegoPdp;
use warden_sql::adapters::{DriverError, SqlxMySql, SqlxPostgres, SqlxSqlite, TokioPostgres};
use warden_sql::{
    Dialect, SqlPolicy, SqlPolicyLayer, SqlRequest, SqlResponse, SqlServiceError, SqlValue,
};
use warden_test::StaticPdp;

// ---- fixture --------------------------------------------------------------------------------

const SCHEMA: &[&str] = &[
    "CREATE TABLE patients (id INTEGER PRIMARY KEY, clinic_id VARCHAR(10) NOT NULL, \
     name VARCHAR(100) NOT NULL, ssn VARCHAR(20), birth_date DATE, notes VARCHAR(200))",
    "CREATE TABLE visits (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL, \
     clinic_id VARCHAR(10) NOT NULL, reason VARCHAR(100), visited_on DATE)",
    "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, actor VARCHAR(50) NOT NULL, \
     action VARCHAR(50) NOT NULL, at VARCHAR(30) NOT NULL)",
    "CREATE VIEW patient_names AS SELECT id, clinic_id, name FROM patients",
];

const ROWS: &[&str] = &[
    "DELETE FROM visits",
    "DELETE FROM patients",
    "DELETE FROM audit_log",
    "INSERT INTO patients (id, clinic_id, name, ssn, birth_date, notes) VALUES \
     (1, 'c1', 'Ada', '111-11-1111', '1985-12-10', 'asthma'), \
     (2, 'c1', 'Bob', '222-22-2222', '1990-01-02', 'diabetes'), \
     (3, 'c1', 'Cyd', '333-33-3333', NULL, NULL), \
     (4, 'c2', 'Dan', '444-44-4444', '1970-05-06', 'hemophilia'), \
     (5, 'c2', 'Eve', '555-55-5555', '2001-07-08', 'migraine')",
    "INSERT INTO visits (id, patient_id, clinic_id, reason, visited_on) VALUES \
     (10, 1, 'c1', 'checkup', '2026-01-05'), (11, 1, 'c1', 'flu', '2026-02-10'), \
     (12, 2, 'c1', 'checkup', '2026-03-01'), (13, 4, 'c2', 'surgery', '2026-01-20'), \
     (14, 5, 'c2', 'checkup', '2026-02-14'), (15, 4, 'c2', 'followup', '2026-03-03')",
    "INSERT INTO audit_log (id, actor, action, at) VALUES \
     (100, 'admin', 'login', '2026-01-01T08:00:00'), (101, 'nina', 'read', '2026-01-02T09:00:00'), \
     (102, 'dora', 'read', '2026-01-03T10:00:00')",
];

/// Values a nurse of clinic c1 must never see, in any form.
const SECRETS: &[&str] = &[
    "111-11-1111",
    "222-22-2222",
    "333-33-3333",
    "444-44-4444",
    "555-55-5555",
    "asthma",
    "diabetes",
    "hemophilia",
    "migraine",
    "Dan",
    "Eve",
    "c2",
    "surgery",
    "followup",
    "1985-12-10",
    "1990-01-02",
];

/// The fixture's column types, declared so the PEP pushes leakproof conditions into its fenced
/// relations (PostgreSQL and MariaDB; SQLite needs none).
fn typed(builder: warden_sql::SqlPolicyBuilder) -> warden_sql::SqlPolicyBuilder {
    builder
        .column_types(
            "patients",
            [
                ("id", "integer"),
                ("clinic_id", "varchar(10)"),
                ("name", "varchar(100)"),
                ("ssn", "varchar(20)"),
                ("birth_date", "date"),
                ("notes", "varchar(200)"),
            ],
        )
        .column_types(
            "visits",
            [
                ("id", "integer"),
                ("patient_id", "integer"),
                ("clinic_id", "varchar(10)"),
                ("reason", "varchar(100)"),
                ("visited_on", "date"),
            ],
        )
}

// ---- the corpus -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Postgres,
    MySql,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nurse,
    Admin,
    Auditor,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Exactly these rows (in any order).
    Rows(Vec<Vec<Json>>),
    /// This many rows were written.
    Affected(u64),
    /// Denied with this code.
    Denied(&'static str),
    /// The database refuses it (after the PEP let it through): no rows, no leak.
    DbError,
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    who: Who,
    sql: &'static str,
    params: Vec<SqlValue>,
    only: &'static [Db],
    expect: Expect,
    /// A direct (unguarded) query and the rows it must return afterwards.
    verify: Option<(&'static str, Vec<Vec<Json>>)>,
}

fn case(name: &'static str, sql: &'static str, expect: Expect) -> Case {
    Case {
        name,
        who: Who::Nurse,
        sql,
        params: Vec::new(),
        only: &[],
        expect,
        verify: None,
    }
}

impl Case {
    fn on(mut self, only: &'static [Db]) -> Self {
        self.only = only;
        self
    }
    fn by(mut self, who: Who) -> Self {
        self.who = who;
        self
    }
    fn params(mut self, params: Vec<SqlValue>) -> Self {
        self.params = params;
        self
    }
    fn verify(mut self, sql: &'static str, rows: Vec<Vec<Json>>) -> Self {
        self.verify = Some((sql, rows));
        self
    }
}

fn rows(rows: Vec<Json>) -> Expect {
    Expect::Rows(
        rows.into_iter()
            .map(|r| r.as_array().cloned().unwrap())
            .collect(),
    )
}

fn one(rows: Vec<Json>) -> Vec<Vec<Json>> {
    rows.into_iter()
        .map(|r| r.as_array().cloned().unwrap())
        .collect()
}

use Db::{MySql, Postgres, Sqlite};
use Expect::{Affected, DbError, Denied};

const PG: &[Db] = &[Postgres];
const MY: &[Db] = &[MySql];
const LITE: &[Db] = &[Sqlite];
const PG_LITE: &[Db] = &[Postgres, Sqlite];
const PG_MY: &[Db] = &[Postgres, MySql];

fn corpus() -> Vec<Case> {
    let masked_patients = rows(vec![
        json!([1, "c1", "Ada", "*******1111", "1985", null]),
        json!([2, "c1", "Bob", "*******2222", "1990", null]),
        json!([3, "c1", "Cyd", "*******3333", null, null]),
    ]);
    let names = rows(vec![json!(["Ada"]), json!(["Bob"]), json!(["Cyd"])]);
    vec![
        // ---- ordinary reads: exactly the rows and values the policy allows ------------------
        case("select named columns", "SELECT id, name FROM patients", rows(vec![json!([1, "Ada"]), json!([2, "Bob"]), json!([3, "Cyd"])])),
        case("select star is masked", "SELECT * FROM patients ORDER BY id", masked_patients.clone()),
        case("ssn shows its last four", "SELECT id, ssn FROM patients", rows(vec![json!([1, "*******1111"]), json!([2, "*******2222"]), json!([3, "*******3333"])])),
        case("birth date shows its year", "SELECT name, birth_date FROM patients", rows(vec![json!(["Ada", "1985"]), json!(["Bob", "1990"]), json!(["Cyd", null])])),
        case("notes are nulled", "SELECT notes FROM patients", rows(vec![json!([null]), json!([null]), json!([null])])),
        case("count", "SELECT count(*) FROM patients", rows(vec![json!([3])])),
        case("max id does not reveal the other clinic", "SELECT max(id) FROM patients", rows(vec![json!([3])])),
        case("visits of the clinic", "SELECT id FROM visits", rows(vec![json!([10]), json!([11]), json!([12])])),
        case("inner join", "SELECT p.name, v.reason FROM patients p JOIN visits v ON v.patient_id = p.id", rows(vec![json!(["Ada", "checkup"]), json!(["Ada", "flu"]), json!(["Bob", "checkup"])])),
        case("left join with aggregate", "SELECT p.name, count(v.id) FROM patients p LEFT JOIN visits v ON v.patient_id = p.id GROUP BY p.name", rows(vec![json!(["Ada", 2]), json!(["Bob", 1]), json!(["Cyd", 0])])),
        case("right join", "SELECT p.name, v.id FROM visits v RIGHT JOIN patients p ON p.id = v.patient_id WHERE v.id IS NULL", rows(vec![json!(["Cyd", null])])),
        case("join with USING", "SELECT clinic_id, count(*) FROM visits JOIN patients USING (clinic_id) GROUP BY clinic_id", rows(vec![json!(["c1", 9])])),
        case("cte", "WITH recent AS (SELECT patient_id FROM visits WHERE visited_on >= '2026-02-01') SELECT p.name FROM patients p WHERE p.id IN (SELECT patient_id FROM recent)", rows(vec![json!(["Ada"]), json!(["Bob"])])),
        case("recursive cte", "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT p.name FROM patients p JOIN n ON n.i = p.id", names.clone()),
        case("scalar sub-query", "SELECT name, (SELECT count(*) FROM visits v WHERE v.patient_id = p.id) AS n FROM patients p", rows(vec![json!(["Ada", 2]), json!(["Bob", 1]), json!(["Cyd", 0])])),
        case("exists", "SELECT name FROM patients p WHERE EXISTS (SELECT 1 FROM visits v WHERE v.patient_id = p.id AND v.reason = 'checkup')", rows(vec![json!(["Ada"]), json!(["Bob"])])),
        case("derived table", "SELECT x.n FROM (SELECT name AS n FROM patients WHERE id > 1) x", rows(vec![json!(["Bob"]), json!(["Cyd"])])),
        case("union", "SELECT name FROM patients UNION SELECT reason FROM visits", rows(vec![json!(["Ada"]), json!(["Bob"]), json!(["Cyd"]), json!(["checkup"]), json!(["flu"])])),
        case("intersect", "SELECT patient_id FROM visits INTERSECT SELECT id FROM patients", rows(vec![json!([1]), json!([2])])),
        case("except", "SELECT id FROM patients EXCEPT SELECT patient_id FROM visits", rows(vec![json!([3])])),
        case("window function", "SELECT name, row_number() OVER (ORDER BY id) AS rn FROM patients", rows(vec![json!(["Ada", 1]), json!(["Bob", 2]), json!(["Cyd", 3])])),
        case("window partition", "SELECT patient_id, count(*) OVER (PARTITION BY patient_id) FROM visits", rows(vec![json!([1, 2]), json!([1, 2]), json!([2, 1])])),
        case("distinct", "SELECT DISTINCT clinic_id FROM visits", rows(vec![json!(["c1"])])),
        case("group by having", "SELECT patient_id FROM visits GROUP BY patient_id HAVING count(*) > 1", rows(vec![json!([1])])),
        case("lateral", "SELECT p.name, l.reason FROM patients p, LATERAL (SELECT reason FROM visits v WHERE v.patient_id = p.id ORDER BY v.id LIMIT 1) l", rows(vec![json!(["Ada", "checkup"]), json!(["Bob", "checkup"])])).on(PG),
        case("bind parameter", "SELECT name FROM patients WHERE id = {p1}", rows(vec![])).params(vec![SqlValue::Int(4)]),
        case("bind parameter of an own row", "SELECT name FROM patients WHERE id = {p1}", rows(vec![json!(["Ada"])])).params(vec![SqlValue::Int(1)]),
        // ---- conditions pushed behind the fence: the same rows as outside it -------------------
        case("pushed range", "SELECT name FROM patients WHERE id >= 2 AND id <= 5", rows(vec![json!(["Bob"]), json!(["Cyd"])])),
        case("pushed range with a parameter", "SELECT name FROM patients WHERE id > {p1}", rows(vec![json!(["Bob"]), json!(["Cyd"])])).params(vec![SqlValue::Int(1)]),
        case("pushed IN list and equality", "SELECT id FROM visits WHERE id IN (10, 13, 14) AND patient_id = 1", rows(vec![json!([10])])),
        case("pushed OR", "SELECT name FROM patients WHERE id = 1 OR id = 4", rows(vec![json!(["Ada"])])),
        case("pushed date range", "SELECT id FROM visits WHERE visited_on >= '2026-02-01' AND visited_on < '2026-03-02'", rows(vec![json!([11]), json!([12])])),
        case("pushed text comparison", "SELECT id FROM patients WHERE name > 'B' AND name IS NOT NULL", rows(vec![json!([2]), json!([3])])),
        case("a masked column's condition compares the masked value", "SELECT count(*) FROM patients WHERE ssn <> '111-11-1111'", rows(vec![json!([3])])),
        case("a masked column's condition finds no raw value", "SELECT id FROM patients WHERE ssn = '222-22-2222' OR id = 3", rows(vec![json!([3])])),
        case("pushed on the preserved side of a left join", "SELECT p.name, v.id FROM patients p LEFT JOIN visits v ON v.patient_id = p.id WHERE p.id >= 2", rows(vec![json!(["Bob", 12]), json!(["Cyd", null])])),
        case("the nullable side keeps its condition outside", "SELECT p.name FROM patients p LEFT JOIN visits v ON v.patient_id = p.id AND v.reason = 'flu' WHERE v.id IS NULL", rows(vec![json!(["Bob"]), json!(["Cyd"])])),
        case("a condition across two relations stays outside", "SELECT v.id FROM patients p JOIN visits v ON v.patient_id = p.id WHERE v.id >= p.id + 10 AND p.id = 1", rows(vec![json!([11])])),
        case("quoted identifiers", "SELECT \"name\" FROM \"patients\"", names.clone()).on(PG_LITE),
        case("backquoted identifiers", "SELECT `name` FROM `patients`", names.clone()).on(MY),
        case("upper-case names", "SELECT NAME FROM PATIENTS", names.clone()).on(PG_LITE),
        case("schema-qualified name", "SELECT name FROM {schema}.patients", names.clone()),
        // Benign statements that must work.
        case("schema-qualified column", "SELECT {schema}.patients.name FROM {schema}.patients", names.clone()),
        case("parenthesized join", "SELECT p.name FROM (patients AS p JOIN visits AS v ON v.patient_id = p.id)", rows(vec![json!(["Ada"]), json!(["Ada"]), json!(["Bob"])])),
        case("aliased parenthesized join", "SELECT j.name, j.reason FROM (patients AS p JOIN visits AS v ON v.patient_id = p.id) AS j", rows(vec![json!(["Ada", "checkup"]), json!(["Ada", "flu"]), json!(["Bob", "checkup"])])).on(PG),
        case("recursive cte referring forward", "WITH RECURSIVE a AS (SELECT x FROM b), b AS (SELECT 1 AS x) SELECT p.name FROM patients p JOIN a ON a.x = p.id", rows(vec![json!(["Ada"])])).on(PG),
        case("whole-row function over a derived table", "SELECT row_to_json(t) FROM (SELECT name, ssn FROM patients WHERE id = 1) t", rows(vec![json!([{"name": "Ada", "ssn": "*******1111"}])])).on(PG),
        // ---- attacks on reads -----------------------------------------------------------------
        case("tautology", "SELECT name FROM patients WHERE 1 = 1 OR clinic_id = 'c2'", names.clone()),
        case("string tautology", "SELECT name FROM patients WHERE name = '' OR '1' = '1'", names.clone()),
        case("asking for the other clinic", "SELECT name, ssn FROM patients WHERE clinic_id = 'c2'", rows(vec![])),
        case("asking for other ids", "SELECT * FROM patients WHERE id IN (4, 5)", rows(vec![])),
        case("inference through a masked column", "SELECT name FROM patients WHERE ssn = '111-11-1111'", rows(vec![])),
        case("inference through LIKE on a masked column", "SELECT count(*) FROM patients WHERE ssn LIKE '111%'", rows(vec![json!([0])])),
        case("inference through ORDER BY a masked column", "SELECT name FROM patients ORDER BY notes, ssn", names.clone()),
        case("scalar sub-query for another clinic's row", "SELECT (SELECT name FROM patients WHERE id = 4) AS n", rows(vec![json!([null])])),
        case("union with another table", "SELECT name FROM patients UNION SELECT actor FROM audit_log", Denied("not_permitted")),
        case("union all with the other clinic", "SELECT ssn FROM patients UNION ALL SELECT ssn FROM patients WHERE clinic_id = 'c2'", rows(vec![json!(["*******1111"]), json!(["*******2222"]), json!(["*******3333"])])),
        case("whole-row reference", "SELECT p FROM patients p", Denied("whole_row")),
        case("row_to_json of a row", "SELECT row_to_json(p) FROM patients p", Denied("whole_row")).on(PG),
        case("to_jsonb of p.*", "SELECT to_jsonb(p.*) FROM patients p", Denied("whole_row")).on(PG),
        case("json of columns is masked", "SELECT json_build_object('ssn', ssn, 'notes', notes) FROM patients", rows(vec![json!([{"ssn": "*******1111", "notes": null}]), json!([{"ssn": "*******2222", "notes": null}]), json!([{"ssn": "*******3333", "notes": null}])])).on(PG),
        case("json of columns is masked (sqlite)", "SELECT json_object('ssn', ssn) FROM patients", rows(vec![json!(["{\"ssn\":\"*******1111\"}"]), json!(["{\"ssn\":\"*******2222\"}"]), json!(["{\"ssn\":\"*******3333\"}"])])).on(LITE),
        case("json of columns is masked (mysql)", "SELECT JSON_OBJECT('ssn', ssn) FROM patients", rows(vec![json!(["{\"ssn\": \"*******1111\"}"]), json!(["{\"ssn\": \"*******2222\"}"]), json!(["{\"ssn\": \"*******3333\"}"])])).on(MY),
        // Inside its own body the name is the table (SQLite alone would read the CTE, a circular
        // reference): the rewrite names the table with its schema, so every database reads the
        // table the PEP decided on.
        case("cte shadowing the table", "WITH patients AS (SELECT * FROM patients WHERE clinic_id = 'c2') SELECT name, ssn FROM patients", rows(vec![])),
        case("cte over the table stays masked", "WITH x AS (SELECT * FROM patients) SELECT ssn FROM x", rows(vec![json!(["*******1111"]), json!(["*******2222"]), json!(["*******3333"])])),
        case("only", "SELECT name FROM ONLY patients", names.clone()).on(PG),
        case("a view the policy does not name", "SELECT name FROM patient_names", Denied("not_permitted")),
        case("a quoted name of another relation", "SELECT name FROM \"Patients\"", Denied("not_permitted")).on(PG),
        case("system catalog", "SELECT usename FROM pg_user", Denied("system_catalog")).on(PG),
        case("qualified system catalog", "SELECT relname FROM pg_catalog.pg_class", Denied("system_catalog")).on(PG),
        case("information_schema", "SELECT table_name FROM information_schema.tables", Denied("system_catalog")).on(PG_MY),
        case("mysql system database", "SELECT user FROM mysql.user", Denied("system_catalog")).on(MY),
        case("sqlite schema table", "SELECT sql FROM sqlite_master", Denied("system_catalog")).on(LITE),
        case("pragma table function", "SELECT name FROM pragma_table_info('patients')", Denied("denied_function")).on(LITE),
        case("stacked statements", "SELECT 1; DELETE FROM patients", Denied("multiple_statements")),
        case("stacked behind a comment", "SELECT name FROM patients /* x */; DROP TABLE visits", Denied("multiple_statements")),
        case("comments hide nothing", "SELECT name FROM patients /* WHERE clinic_id = 'c2' */ -- OR 1=1", names.clone()),
        case("mysql executable comment is analysed", "SELECT name FROM patients /*!50000 WHERE clinic_id = 'c2' */", rows(vec![])).on(MY),
        case("dollar quoting", "SELECT $$x' OR '1'='1$$ AS s, name FROM patients WHERE name = $$Dan$$", rows(vec![])).on(PG),
        case("tagged dollar quoting", "SELECT name FROM patients WHERE notes = $a$asthma$a$", rows(vec![])).on(PG),
        case("file read", "SELECT pg_read_file('/etc/passwd')", Denied("denied_function")).on(PG),
        case("file read (mysql)", "SELECT load_file('/etc/passwd')", Denied("denied_function")).on(MY),
        case("extension load (sqlite)", "SELECT load_extension('/tmp/x')", Denied("denied_function")).on(LITE),
        case("query_to_xml", "SELECT query_to_xml('select * from patients', true, false, '')", Denied("denied_function")).on(PG),
        case("dblink", "SELECT * FROM dblink('dbname=x', 'select ssn from patients') AS t(ssn text)", Denied("denied_function")).on(PG),
        case("sleep", "SELECT pg_sleep(10)", Denied("denied_function")).on(PG),
        case("do block", "DO $$ BEGIN DELETE FROM patients; END $$", Denied("statement_kind")).on(PG),
        case("copy", "COPY patients TO STDOUT", Denied("statement_kind")).on(PG),
        case("prepare", "PREPARE p AS SELECT * FROM patients", Denied("statement_kind")).on(PG),
        case("execute", "EXECUTE p", Denied("statement_kind")).on(PG),
        case("set", "SET search_path = pg_catalog", Denied("statement_kind")),
        case("reset", "RESET ALL", Denied("statement_kind")).on(PG),
        case("grant", "GRANT SELECT ON patients TO PUBLIC", Denied("statement_kind")).on(PG_MY),
        case("drop", "DROP TABLE visits", Denied("statement_kind")),
        case("create", "CREATE TABLE stolen AS SELECT * FROM patients", Denied("statement_kind")),
        case("alter", "ALTER TABLE patients ADD COLUMN x INTEGER", Denied("statement_kind")),
        case("truncate", "TRUNCATE patients", Denied("statement_kind")).on(PG_MY),
        case("explain analyze", "EXPLAIN ANALYZE SELECT * FROM patients", Denied("statement_kind")).on(PG),
        case("errors quote no other clinic's values", "SELECT name FROM patients WHERE CAST(name AS INTEGER) = 1", DbError).on(PG),
        case("errors quote no other clinic's values in joins", "SELECT v.id FROM visits v JOIN patients p ON p.id = v.patient_id WHERE CAST(v.reason AS INTEGER) = 1", DbError).on(PG),
        case("select into", "SELECT * INTO stolen FROM patients", Denied("unsupported")).on(PG),
        case("unparseable", "SELEC name FROM patients", Denied("parse_error")),
        // ---- writes -------------------------------------------------------------------------
        case("update an own row", "UPDATE patients SET notes = 'x' WHERE id = 1", Affected(1))
            .verify("SELECT notes FROM patients WHERE id = 1", one(vec![json!(["x"])])),
        case("update every row changes only the own clinic", "UPDATE patients SET notes = 'pwned'", Affected(3))
            .verify("SELECT id FROM patients WHERE notes = 'pwned'", one(vec![json!([1]), json!([2]), json!([3])])),
        case("update another clinic's row", "UPDATE patients SET notes = 'pwned' WHERE id = 4", Affected(0))
            .verify("SELECT notes FROM patients WHERE id = 4", one(vec![json!(["hemophilia"])])),
        case("update through a tautology", "UPDATE patients SET notes = 'pwned' WHERE 1 = 1 OR clinic_id = 'c2'", Affected(3))
            .verify("SELECT count(*) FROM patients WHERE notes = 'pwned' AND clinic_id = 'c2'", one(vec![json!([0])])),
        case("move a row to the other clinic", "UPDATE patients SET clinic_id = 'c2' WHERE id = 1", Denied("row_filter_violation")),
        case("move a row through a parameter", "UPDATE patients SET clinic_id = {p1} WHERE id = 1", Denied("row_filter_violation")).params(vec!["c2".into()]),
        case("move a row through an expression", "UPDATE patients SET clinic_id = lower('C2') WHERE id = 1", Denied("cannot_prove")),
        case("keep a row in the clinic through a parameter", "UPDATE patients SET clinic_id = {p1} WHERE id = 1", Affected(1)).params(vec!["c1".into()]),
        case("copy a secret into a readable column", "UPDATE patients SET name = ssn WHERE id = 1", Affected(1))
            .verify("SELECT name FROM patients WHERE id = 1", one(vec![json!(["*******1111"])])),
        case("update filtered by a masked value", "UPDATE patients SET notes = 'hit' WHERE ssn = '111-11-1111'", Affected(0))
            .verify("SELECT count(*) FROM patients WHERE notes = 'hit'", one(vec![json!([0])])),
        case("delete another clinic's visit", "DELETE FROM visits WHERE id = 13", Affected(0))
            .verify("SELECT id FROM visits WHERE id = 13", one(vec![json!([13])])),
        case("delete every visit deletes the clinic's", "DELETE FROM visits", Affected(3))
            .verify("SELECT count(*) FROM visits WHERE clinic_id = 'c2'", one(vec![json!([3])])),
        case("delete a patient is not permitted", "DELETE FROM patients WHERE id = 1", Denied("not_permitted")),
        case("insert into the own clinic", "INSERT INTO visits (id, patient_id, clinic_id, reason) VALUES (20, 1, 'c1', 'new')", Affected(1))
            .verify("SELECT clinic_id FROM visits WHERE id = 20", one(vec![json!(["c1"])])),
        case("insert into the other clinic", "INSERT INTO visits (id, patient_id, clinic_id, reason) VALUES (21, 4, 'c2', 'x')", Denied("row_filter_violation")),
        case("insert rows of both clinics", "INSERT INTO visits (id, patient_id, clinic_id, reason) VALUES (22, 1, 'c1', 'a'), (23, 4, 'c2', 'b')", Denied("row_filter_violation")),
        case("insert through a parameter", "INSERT INTO visits (id, patient_id, clinic_id, reason) VALUES (24, 1, {p1}, 'p')", Denied("row_filter_violation")).params(vec!["c2".into()]),
        case("insert without the filter column", "INSERT INTO visits (id, patient_id, reason) VALUES (25, 1, 'x')", Denied("cannot_prove")),
        case("insert select into the other clinic", "INSERT INTO visits (id, patient_id, clinic_id, reason) SELECT id + 100, patient_id, 'c2', reason FROM visits", Affected(0))
            .verify("SELECT count(*) FROM visits", one(vec![json!([6])])),
        case("insert select of own rows", "INSERT INTO visits (id, patient_id, clinic_id, reason) SELECT id + 100, patient_id, clinic_id, reason FROM visits", Affected(3))
            .verify("SELECT count(*) FROM visits WHERE id > 100", one(vec![json!([3])])),
        case("delete returning", "DELETE FROM visits WHERE id = 10 RETURNING id, reason", rows(vec![json!([10, "checkup"])])).on(&[Postgres, Sqlite, MySql]),
        case("update returning is masked", "UPDATE patients SET notes = 'n' WHERE id = 1 RETURNING ssn, notes", rows(vec![json!(["*******1111", null])])).on(PG_LITE),
        case("insert returning star is masked", "INSERT INTO patients (id, clinic_id, name, ssn, birth_date, notes) VALUES (6, 'c1', 'Fay', '666-66-6666', '1999-09-09', 'secret') RETURNING *", rows(vec![json!([6, "c1", "Fay", "*******6666", "1999", null])])).on(&[Postgres, Sqlite, MySql]),
        case("upsert onto another clinic's row", "INSERT INTO patients (id, clinic_id, name, ssn) VALUES (4, 'c1', 'Hijack', '000') ON CONFLICT (id) DO UPDATE SET name = excluded.name", Affected(0))
            .on(PG_LITE).verify("SELECT name FROM patients WHERE id = 4", one(vec![json!(["Dan"])])),
        case("upsert moving the own row", "INSERT INTO patients (id, clinic_id, name, ssn) VALUES (1, 'c1', 'Ada', '1') ON CONFLICT (id) DO UPDATE SET clinic_id = 'c2'", Denied("row_filter_violation")).on(PG_LITE),
        case("upsert onto an own row", "INSERT INTO patients (id, clinic_id, name, ssn) VALUES (1, 'c1', 'Ada2', '1') ON CONFLICT (id) DO UPDATE SET name = excluded.name", Affected(1))
            .on(PG_LITE).verify("SELECT name FROM patients WHERE id = 1", one(vec![json!(["Ada2"])])),
        case("on duplicate key update", "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'H') ON DUPLICATE KEY UPDATE name = 'H'", Denied("unsupported")).on(MY),
        case("replace", "REPLACE INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'H')", Denied("unsupported")).on(MY),
        case("insert or replace", "INSERT OR REPLACE INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'H')", Denied("unsupported")).on(LITE),
        // The other clinic's row is not there for the nurse: the source row is not matched, and
        // its insert collides with the hidden key (as with PostgreSQL's row-level security).
        case("merge onto another clinic's row", "MERGE INTO patients p USING (SELECT 4 AS id, 'c1' AS clinic_id, 'M' AS name) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET name = s.name WHEN NOT MATCHED THEN INSERT (id, clinic_id, name) VALUES (s.id, s.clinic_id, s.name)", DbError)
            .on(PG).verify("SELECT name FROM patients WHERE id = 4", one(vec![json!(["Dan"])])),
        case("merge inserting into the other clinic", "MERGE INTO patients p USING (SELECT 7 AS id, 'c2' AS clinic_id, 'Zed' AS name) s ON p.id = s.id WHEN NOT MATCHED THEN INSERT (id, clinic_id, name) VALUES (s.id, s.clinic_id, s.name)", Affected(0))
            .on(PG).verify("SELECT count(*) FROM patients WHERE id = 7", one(vec![json!([0])])),
        case("merge moving a row", "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET clinic_id = 'c2'", Affected(0))
            .on(PG).verify("SELECT clinic_id FROM patients WHERE id = 1", one(vec![json!(["c1"])])),
        case("merge onto an own row", "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET name = 'Ada3'", Affected(1))
            .on(PG).verify("SELECT name FROM patients WHERE id = 1", one(vec![json!(["Ada3"])])),
        case("merge elsewhere", "MERGE INTO patients p USING visits v ON p.id = v.patient_id WHEN MATCHED THEN DELETE", Denied("statement_kind")).on(&[MySql, Sqlite]),
        case("writable cte", "WITH d AS (DELETE FROM visits RETURNING id) SELECT count(*) FROM d", rows(vec![json!([3])]))
            .on(PG).verify("SELECT count(*) FROM visits WHERE clinic_id = 'c2'", one(vec![json!([3])])),
        case("update from another clinic's rows", "UPDATE visits v SET reason = 'x' FROM patients p WHERE p.id = v.patient_id AND p.name = 'Dan'", Affected(0))
            .on(PG).verify("SELECT count(*) FROM visits WHERE reason = 'x'", one(vec![json!([0])])),
        case("delete using a masked value", "DELETE FROM visits v USING patients p WHERE p.id = v.patient_id AND p.ssn = '111-11-1111'", Affected(0))
            .on(PG).verify("SELECT count(*) FROM visits", one(vec![json!([6])])),
        // ---- write guards: the caller's expressions run only on rows the filter admits -------
        // Before the guard, the database evaluated these on the other clinic's rows first and
        // its error quoted them (`invalid input syntax for type integer: "Dan"`).
        case("update whose predicate fails on other rows", "UPDATE patients SET notes = 'x' WHERE id > 3 AND CAST(name AS INTEGER) = 1", Affected(0))
            .on(PG).verify("SELECT count(*) FROM patients WHERE notes = 'x'", one(vec![json!([0])])),
        case("update whose predicate fails on other rows (mariadb)", "UPDATE patients SET notes = 'x' WHERE id > 3 AND CAST(name AS DECIMAL) = 1", Affected(0))
            .on(MY).verify("SELECT count(*) FROM patients WHERE notes = 'x'", one(vec![json!([0])])),
        case("update whose predicate fails on other rows (sqlite)", "UPDATE patients SET notes = 'x' WHERE CASE WHEN id > 3 THEN json_extract(name, '$') END = 1", Affected(0))
            .on(LITE).verify("SELECT count(*) FROM patients WHERE notes = 'x'", one(vec![json!([0])])),
        case("delete whose predicate fails on other rows", "DELETE FROM visits WHERE id > 12 AND CAST(reason AS INTEGER) = 1", Affected(0))
            .on(PG).verify("SELECT count(*) FROM visits", one(vec![json!([6])])),
        case("delete whose predicate fails on other rows (mariadb)", "DELETE FROM visits WHERE id > 12 AND CAST(reason AS DECIMAL) = 1", Affected(0))
            .on(MY).verify("SELECT count(*) FROM visits", one(vec![json!([6])])),
        case("update from whose predicate fails on other rows", "UPDATE visits v SET reason = 'x' FROM patients p WHERE v.id > 12 AND p.id = 1 AND CAST(v.reason AS INTEGER) = 1", Affected(0))
            .on(PG).verify("SELECT count(*) FROM visits WHERE reason = 'x'", one(vec![json!([0])])),
        case("delete using whose predicate fails on other rows", "DELETE FROM visits v USING patients p WHERE v.id > 12 AND p.id = 1 AND CAST(v.reason AS INTEGER) = 1", Affected(0))
            .on(PG).verify("SELECT count(*) FROM visits", one(vec![json!([6])])),
        case("upsert whose condition fails on the other clinic's row", "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'x') ON CONFLICT (id) DO UPDATE SET notes = 'x' WHERE CAST(patients.name AS INTEGER) = 1", Affected(0))
            .on(PG).verify("SELECT notes FROM patients WHERE id = 4", one(vec![json!(["hemophilia"])])),
        case("upsert whose condition fails on the other clinic's row (sqlite)", "INSERT INTO patients (id, clinic_id, name) VALUES (4, 'c1', 'x') ON CONFLICT (id) DO UPDATE SET notes = 'x' WHERE json_extract(patients.name, '$') = 1", Affected(0))
            .on(LITE).verify("SELECT notes FROM patients WHERE id = 4", one(vec![json!(["hemophilia"])])),
        case("merge whose join condition fails on other rows", "MERGE INTO patients p USING (SELECT 4 AS id) s ON p.id = s.id AND CAST(p.name AS INTEGER) = 1 WHEN MATCHED THEN UPDATE SET notes = 'x'", Affected(0))
            .on(PG).verify("SELECT count(*) FROM patients WHERE notes = 'x'", one(vec![json!([0])])),
        case("merge whose clause condition fails on other rows", "MERGE INTO patients p USING (SELECT 4 AS id) s ON p.id = s.id WHEN MATCHED AND CAST(p.name AS INTEGER) = 1 THEN UPDATE SET notes = 'x'", Affected(0))
            .on(PG).verify("SELECT count(*) FROM patients WHERE notes = 'x'", one(vec![json!([0])])),
        case("merge whose new value fails on other rows", "MERGE INTO patients p USING (SELECT 4 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET clinic_id = CAST(CAST(p.name AS INTEGER) AS TEXT)", Affected(0))
            .on(PG).verify("SELECT clinic_id FROM patients WHERE id = 4", one(vec![json!(["c2"])])),
        case("merge moving a row by a tuple assignment", "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET (clinic_id, notes) = ('c2', 'x')", Denied("cannot_prove")).on(PG),
        case("merge updating an own row by a tuple assignment", "MERGE INTO patients p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN UPDATE SET (name, notes) = ('Ada4', 'x')", Affected(1))
            .on(PG).verify("SELECT name FROM patients WHERE id = 1", one(vec![json!(["Ada4"])])),
        case("merge source matching only the other clinic inserts nothing of it", "MERGE INTO patients p USING (SELECT 4 AS id, 'c1' AS clinic_id, 'M' AS name) s ON p.id = s.id WHEN MATCHED THEN DELETE", Denied("not_permitted")).on(PG),
        // ---- lexing as the server does --------------------------------------------------------
        // With the server's settings known, a backslash means what it means to the server.
        case("a backslash in a literal (mariadb escapes)", "SELECT name FROM patients WHERE name = 'Ada\\' OR \\'1\\' = \\'1'", rows(vec![])).on(MY),
        case("a backslash in a literal (postgres does not escape)", "SELECT name FROM patients WHERE name = 'x\\' OR clinic_id = 'c2'", rows(vec![])).on(PG),
        case("a double-quoted string (mariadb)", "SELECT name FROM patients WHERE name = \"Ada\"", rows(vec![json!(["Ada"])])).on(MY),
        case("a look-alike name is another relation", "SELECT name FROM pаtients", Denied("not_permitted")).on(PG_LITE),
        case("a look-alike name (mariadb)", "SELECT name FROM pаtients", Denied("unsupported")).on(MY),
        case("mixed placeholder forms", "SELECT name FROM patients WHERE id = ?1 OR id = ?", Denied("parameter")).on(LITE),
        case("a placeholder of another dialect", "SELECT name FROM patients WHERE id = :id", Denied("parameter")).on(PG_MY),
        // ---- other roles --------------------------------------------------------------------
        case("admin reads everything", "SELECT count(*) FROM patients", rows(vec![json!([5])])).by(Who::Admin),
        case("admin reads raw values", "SELECT ssn FROM patients WHERE id = 4", rows(vec![json!(["444-44-4444"])])).by(Who::Admin),
        case("admin reads the view", "SELECT name FROM patient_names WHERE clinic_id = 'c2'", rows(vec![json!(["Dan"]), json!(["Eve"])])).by(Who::Admin),
        case("admin still cannot read catalogs", "SELECT relname FROM pg_class", Denied("system_catalog")).by(Who::Admin).on(PG),
        case("auditor reads the audit log", "SELECT actor FROM audit_log", rows(vec![json!(["admin"]), json!(["nina"]), json!(["dora"])])).by(Who::Auditor),
        case("auditor may not read patients", "SELECT name FROM patients", Denied("not_permitted")).by(Who::Auditor),
        case("auditor may not join patients", "SELECT a.actor FROM audit_log a JOIN patients p ON p.name = a.actor", Denied("not_permitted")).by(Who::Auditor),
        case("auditor may not write the log", "DELETE FROM audit_log", Denied("not_permitted")).by(Who::Auditor),
    ]
}

// ---- the run --------------------------------------------------------------------------------

type BoxedService = tower::util::BoxCloneService<SqlRequest, SqlResponse, DriverError>;

struct Target {
    db: Db,
    /// The database, unguarded (fixture, verification).
    direct: BoxedService,
    /// The schema (PostgreSQL) or database (MariaDB) name, for `{schema}`.
    schema: String,
    policy: SqlPolicy,
}

fn subject(who: Who) -> Subject {
    match who {
        Who::Nurse => Subject::user("nina")
            .with_property("role", "nurse")
            .with_property("clinic", "c1"),
        Who::Admin => Subject::user("adam").with_property("role", "admin"),
        Who::Auditor => Subject::user("aude").with_property("role", "auditor"),
    }
}

fn clinic_data_pdp() -> Arc<RegoPdp> {
    Arc::new(RegoPdp::from_dir(warden_tests::root().join("policies/clinic-data")).unwrap())
}

async fn direct(target: &Target, sql: &str) -> SqlResponse {
    target
        .direct
        .clone()
        .oneshot(SqlRequest::new(sql, Subject::user("fixture")))
        .await
        .unwrap_or_else(|e| panic!("{:?} fixture `{sql}`: {e}", target.db))
}

async fn reset(target: &Target) {
    for sql in ROWS {
        direct(target, sql).await;
    }
}

fn sorted(mut rows: Vec<Vec<Json>>) -> Vec<Vec<Json>> {
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

fn leaks(response: &SqlResponse) -> Vec<String> {
    let mut found = Vec::new();
    for row in &response.rows {
        for value in row {
            let text = match value {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            for secret in SECRETS {
                if text.contains(secret) {
                    found.push(format!("`{secret}` in {text}"));
                }
            }
        }
    }
    found
}

/// Runs the corpus on one database; returns (cases run, failures).
async fn run_corpus(target: &Target) -> (usize, Vec<String>) {
    let pdp = clinic_data_pdp();
    let guarded = SqlPolicyLayer::new(pdp, target.policy.clone()).layer(target.direct.clone());
    let mut failures = Vec::new();
    let mut count = 0;
    for case in corpus() {
        if !case.only.is_empty() && !case.only.contains(&target.db) {
            continue;
        }
        count += 1;
        let sql = case
            .sql
            .replace("{p1}", if target.db == Db::Postgres { "$1" } else { "?" })
            .replace("{schema}", &target.schema);
        let mut request = SqlRequest::new(sql.clone(), subject(case.who));
        request.params = case.params.clone();
        let result = guarded.clone().oneshot(request).await;
        let mut fail =
            |why: String| failures.push(format!("{:?} `{}`: {why}", target.db, case.name));
        match (&case.expect, &result) {
            (Expect::Denied(code), Err(SqlServiceError::Denied(e))) => {
                if e.code() != *code {
                    fail(format!("denied with `{}` ({e}), want `{code}`", e.code()));
                }
            }
            (Expect::Denied(code), other) => {
                fail(format!("want denial `{code}`, got {other:?}"));
            }
            (_, Err(SqlServiceError::Denied(e))) => fail(format!("denied: {e}")),
            (Expect::DbError, Err(e @ SqlServiceError::Database { error_id })) => {
                // The id is random hex: it may spell `c2` by chance.
                let text = e.to_string().replace(error_id.as_str(), "<id>");
                if let Some(secret) = SECRETS.iter().find(|s| text.contains(*s)) {
                    fail(format!("the error quotes `{secret}`: {e}"));
                }
            }
            (_, Err(e)) => fail(format!("database error: {e}")),
            (Expect::DbError, Ok(r)) => fail(format!("want a database error, got {r:?}")),
            (Expect::Rows(want), Ok(r)) => {
                if sorted(r.rows.clone()) != sorted(want.clone()) {
                    fail(format!("rows {:?}, want {want:?}", r.rows));
                }
            }
            (Expect::Affected(n), Ok(r)) => {
                if r.rows_affected != *n {
                    fail(format!("{} rows affected, want {n}", r.rows_affected));
                }
            }
        }
        if case.who == Who::Nurse
            && let Ok(r) = &result
        {
            let leaked = leaks(r);
            if !leaked.is_empty() {
                failures.push(format!("{:?} `{}` LEAKS: {leaked:?}", target.db, case.name));
            }
        }
        if let Some((sql, want)) = &case.verify {
            let got = direct(target, sql).await.rows;
            if sorted(got.clone()) != sorted(want.clone()) {
                failures.push(format!(
                    "{:?} `{}`: afterwards `{sql}` gives {got:?}, want {want:?}",
                    target.db, case.name
                ));
            }
        }
        let writes = matches!(case.expect, Expect::Affected(_))
            || case.verify.is_some()
            || !case
                .sql
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("SELECT");
        if writes {
            reset(target).await;
        }
    }
    (count, failures)
}

/// `hash` and `year` computed in SQL equal `warden_decision::Masker` on the same values.
async fn mask_functions_match_the_masker(target: &Target) {
    let key = b"corpus-hash-key-0123456789";
    let masker = warden_decision::Masker::with_hash_key(key).unwrap();
    let hashable = target.db != Db::Sqlite;
    let policy = SqlPolicy::builder(match target.db {
        Db::Postgres => Dialect::Postgres,
        Db::MySql => Dialect::MySql,
        Db::Sqlite => Dialect::Sqlite,
    })
    .default_schema(target.schema.clone())
    .catalog((*target.policy.catalog()).clone())
    .hash_key(key)
    .build()
    .unwrap();
    let columns = if hashable {
        json!({"name": "hash", "birth_date": "year", "ssn": "first4"})
    } else {
        json!({"birth_date": "year", "ssn": "first4"})
    };
    let pdp = StaticPdp::new(
        Decision::permit().with_obligation(
            Obligation::from_json(
                json!({"type": "mask_columns", "table": "patients", "columns": columns}),
            )
            .unwrap(),
        ),
    );
    let mut service = SqlPolicyLayer::new(pdp, policy).layer(target.direct.clone());
    let response = service
        .ready()
        .await
        .unwrap()
        .call(SqlRequest::new(
            "SELECT id, name, birth_date, ssn FROM patients ORDER BY id",
            Subject::user("x"),
        ))
        .await
        .unwrap();
    let raw = direct(
        target,
        "SELECT id, name, birth_date, ssn FROM patients ORDER BY id",
    )
    .await;
    assert_eq!(response.rows.len(), 5);
    for (masked, raw) in response.rows.iter().zip(&raw.rows) {
        if hashable {
            let want = masker
                .mask(warden_decision::MaskStrategy::Hash, &raw[1])
                .unwrap();
            assert_eq!(
                warden_decision::Masked::Value(masked[1].clone()),
                want,
                "{:?}: SQL hash equals the Masker's",
                target.db
            );
        }
        let year = raw[2].as_str().map(|d| d[..4].to_owned());
        assert_eq!(
            masked[2].as_str().map(str::to_owned),
            year,
            "{:?}",
            target.db
        );
        let ssn = raw[3].as_str().unwrap();
        assert_eq!(
            masked[3],
            json!(format!("{}*******", &ssn[..4])),
            "{:?}",
            target.db
        );
    }
}

// ---- databases ------------------------------------------------------------------------------

fn required(var: &str, what: &str) -> Option<String> {
    warden_test::service_url(var, &format!("the {what} corpus"))
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Drops the schema / database / file at the end, also when the test fails.
struct Cleanup(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            // A thread with its own runtime: works during a panic, outside any runtime.
            let _ = std::thread::spawn(f).join();
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn pg_pool(url: &str, schema: &str) -> sqlx::PgPool {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema)]);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap()
}

fn boxed<S>(service: S) -> BoxedService
where
    S: Service<SqlRequest, Response = SqlResponse, Error = DriverError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    tower::util::BoxCloneService::new(service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_on_postgres() {
    let Some(url) = required("WARDEN_TEST_POSTGRES_URL", "PostgreSQL") else {
        return;
    };
    let schema = unique("warden_corpus");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let _cleanup = {
        let (url, schema) = (url.clone(), schema.clone());
        Cleanup(Some(Box::new(move || {
            block_on(async move {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        })))
    };
    let adapter = SqlxPostgres::new(pg_pool(&url, &schema).await);
    // The default schema and the string settings are the session's own.
    assert_eq!(adapter.current_schema().await.unwrap(), schema);
    let policy = typed(SqlPolicy::builder(Dialect::Postgres))
        .default_schema(schema.clone())
        .string_settings(adapter.string_settings().await.unwrap())
        .build()
        .unwrap();
    let target = Target {
        db: Db::Postgres,
        direct: boxed(adapter.clone()),
        schema: schema.clone(),
        policy,
    };
    for sql in SCHEMA {
        direct(&target, sql).await;
    }
    // The catalog comes from information_schema, as a service would load it at start-up.
    target
        .policy
        .set_catalog(adapter.load_catalog(&[schema.as_str()]).await.unwrap());
    check_existing(target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_on_mariadb() {
    let Some(url) = required("WARDEN_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    let database = unique("warden_corpus");
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    let _cleanup = {
        let (url, database) = (url.clone(), database.clone());
        Cleanup(Some(Box::new(move || {
            block_on(async move {
                let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database}")))
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        })))
    };
    let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)
        .unwrap()
        .database(&database);
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let adapter = SqlxMySql::new(pool);
    assert_eq!(adapter.current_database().await.unwrap(), database);
    let policy = typed(SqlPolicy::builder(Dialect::MySql))
        .default_schema(database.clone())
        .string_settings(adapter.string_settings().await.unwrap())
        .build()
        .unwrap();
    let target = Target {
        db: Db::MySql,
        direct: boxed(adapter.clone()),
        schema: database,
        policy,
    };
    // The catalog comes from information_schema once the fixture exists.
    for sql in SCHEMA {
        direct(&target, sql).await;
    }
    target
        .policy
        .set_catalog(adapter.load_catalog().await.unwrap());
    check_existing(target).await;
}

/// Runs the corpus and the mask comparison on a database whose fixture tables exist.
async fn check_existing(target: Target) {
    reset(&target).await;
    let known = target.policy.catalog();
    assert!(
        known
            .columns(&format!("{}.patients", target.schema))
            .is_some_and(|c| c.len() == 6),
        "{:?}: the catalog knows the fixture: {known:?}",
        target.db
    );
    let (count, failures) = run_corpus(&target).await;
    println!("{:?}: {count} statements of the corpus", target.db);
    assert!(count >= 60, "{:?}: only {count} statements", target.db);
    assert!(
        failures.is_empty(),
        "{} of {count} failed on {:?}:\n{}",
        failures.len(),
        target.db,
        failures.join("\n")
    );
    mask_functions_match_the_masker(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_on_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("warden_corpus")));
    let _cleanup = {
        let path = path.clone();
        Cleanup(Some(Box::new(move || {
            let _ = std::fs::remove_file(&path);
        })))
    };
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    let adapter = SqlxSqlite::new(pool);
    let policy = SqlPolicy::builder(Dialect::Sqlite).build().unwrap();
    let target = Target {
        db: Db::Sqlite,
        direct: boxed(adapter.clone()),
        schema: "main".into(),
        policy,
    };
    for sql in SCHEMA {
        direct(&target, sql).await;
    }
    target
        .policy
        .set_catalog(adapter.load_catalog().await.unwrap());
    check_existing(target).await;
}

/// The same policy through a tokio-postgres client: the adapter and the rewrite agree with sqlx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_client_through_the_layer() {
    let Some(url) = required("WARDEN_TEST_POSTGRES_URL", "PostgreSQL (tokio-postgres)") else {
        return;
    };
    let schema = unique("warden_tpg");
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let _cleanup = {
        let (url, schema) = (url.clone(), schema.clone());
        Cleanup(Some(Box::new(move || {
            block_on(async move {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        })))
    };
    let config = format!("{url}?options=-csearch_path%3D{schema}");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let adapter = TokioPostgres::new(Arc::new(client));
    let policy = SqlPolicy::builder(Dialect::Postgres)
        .default_schema(schema.clone())
        .build()
        .unwrap();
    let target = Target {
        db: Db::Postgres,
        direct: boxed(adapter.clone()),
        schema: schema.clone(),
        policy,
    };
    for sql in SCHEMA {
        direct(&target, sql).await;
    }
    reset(&target).await;
    target
        .policy
        .set_catalog(adapter.load_catalog(&[schema.as_str()]).await.unwrap());
    let mut service =
        SqlPolicyLayer::new(clinic_data_pdp(), target.policy.clone()).layer(target.direct.clone());
    let response = service
        .ready()
        .await
        .unwrap()
        .call(
            SqlRequest::new(
                "SELECT id, ssn, birth_date, notes FROM patients WHERE id <> $1",
                subject(Who::Nurse),
            )
            .bind(2_i64),
        )
        .await
        .unwrap();
    assert_eq!(
        sorted(response.rows),
        sorted(one(vec![
            json!([1, "*******1111", "1985", null]),
            json!([3, "*******3333", null, null]),
        ]))
    );
    let denied = service
        .ready()
        .await
        .unwrap()
        .call(
            SqlRequest::new(
                "UPDATE visits SET clinic_id = $1 WHERE id = 10",
                subject(Who::Nurse),
            )
            .bind("c2"),
        )
        .await;
    assert!(
        matches!(&denied, Err(SqlServiceError::Denied(e)) if e.code() == "row_filter_violation"),
        "{denied:?}"
    );
    let admin_rows = service
        .ready()
        .await
        .unwrap()
        .call(SqlRequest::new(
            "SELECT birth_date, visited_on FROM patients p JOIN visits v ON v.patient_id = p.id WHERE v.id = 13",
            subject(Who::Admin),
        ))
        .await
        .unwrap();
    assert_eq!(
        admin_rows.rows,
        one(vec![json!(["1970-05-06", "2026-01-20"])])
    );
}

/// The policy package's own case table.
#[tokio::test]
async fn clinic_data_policy_decides_its_cases() {
    let dir = warden_tests::root().join("policies/clinic-data");
    let pdp = RegoPdp::from_dir(&dir).unwrap();
    let cases = warden_tests::cases(&dir);
    assert!(cases.len() >= 15);
    for case in cases {
        let d = pdp.decide(&case.request).await.unwrap();
        let mut types: Vec<String> = d
            .obligations
            .iter()
            .map(|o| o.type_name().to_owned())
            .collect();
        types.sort();
        assert_eq!(
            (d.allowed, types),
            (case.expect.allow, case.expect.obligations.clone()),
            "{}: {:?}",
            case.name,
            d.diagnostics
        );
    }
}

/// A layer over a service that only records what reaches it: denied statements never do.
#[tokio::test]
async fn denied_statements_never_reach_the_database() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let db = tower::service_fn(move |r: SqlRequest| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(r.statement);
            Ok::<_, Infallible>(SqlResponse::default())
        }
    });
    let policy = SqlPolicy::builder(Dialect::Postgres)
        .catalog(warden_sql::Catalog::new().with_table(
            "public.visits",
            ["id", "patient_id", "clinic_id", "reason", "visited_on"],
        ))
        .build()
        .unwrap();
    let mut service = SqlPolicyLayer::new(clinic_data_pdp(), policy).layer(db);
    for sql in [
        "DROP TABLE patients",
        "SELECT 1; SELECT 2",
        "SELECT * FROM audit_log",
    ] {
        let r = service
            .ready()
            .await
            .unwrap()
            .call(SqlRequest::new(sql, subject(Who::Nurse)))
            .await;
        assert!(matches!(r, Err(SqlServiceError::Denied(_))), "{sql}");
    }
    assert!(seen.lock().unwrap().is_empty());
    service
        .ready()
        .await
        .unwrap()
        .call(SqlRequest::new(
            "SELECT id FROM visits",
            subject(Who::Nurse),
        ))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].contains("warden_source.\"clinic_id\" = 'c1'"),
        "{}",
        seen[0]
    );
}
