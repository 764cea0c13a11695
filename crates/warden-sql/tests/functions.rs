//! The function allow-list: what is admitted, what is refused by default, how the builder
//! changes it.
#![expect(clippy::unwrap_used, reason = "a test fails loudly")]

use warden_sql::{Catalog, Dialect, SqlPolicy};

fn policy(dialect: Dialect) -> SqlPolicy {
    let mut builder = SqlPolicy::builder(dialect).catalog(
        Catalog::new()
            .with_table("public.patients", ["id", "clinic_id", "name", "ssn"])
            .with_table("clinic.patients", ["id", "clinic_id", "name", "ssn"])
            .with_table("main.patients", ["id", "clinic_id", "name", "ssn"]),
    );
    if dialect == Dialect::MySql {
        builder = builder.default_schema("clinic");
    }
    builder.build().unwrap()
}

fn code(policy: &SqlPolicy, sql: &str) -> &'static str {
    match policy.analyze(sql) {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn functions_that_read_sql_text_catalogs_settings_or_state_are_refused() {
    let pg = policy(Dialect::Postgres);
    for sql in [
        // SQL text run by the server: a full read with no access request.
        "SELECT query_to_xml('select * from patients', true, false, '')",
        "SELECT xpath('/row', query_to_xml('select ssn from patients', true, false, ''))",
        "SELECT cursor_to_xmlschema('c', true, false, '')",
        "SELECT ts_stat('select ssn from patients')",
        "SELECT table_to_xml('patients', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        // catalogs, settings, sequences, state
        "SELECT current_setting('search_path')",
        "SELECT set_config('search_path', 'x', false)",
        "SELECT pg_catalog.set_config('search_path', 'x', false)",
        "SELECT nextval('patients_id_seq')",
        "SELECT has_table_privilege('patients', 'select')",
        "SELECT pg_get_viewdef('patient_names')",
        "SELECT obj_description(1)",
        "SELECT txid_current()",
        "SELECT current_user",
        "SELECT version()",
        "SELECT inet_server_addr()",
        "SELECT pg_backend_pid()",
        "SELECT lo_import('/etc/passwd')",
        "SELECT pg_advisory_lock(1)",
        "SELECT to_tsvector('english', name) FROM patients",
        // a function of another schema with a listed name, an extension's function
        "SELECT public.lower(name) FROM patients",
        "SELECT crypt(ssn, 'x') FROM patients",
        "SELECT * FROM dblink('dbname=x', 'select ssn from patients') AS t(ssn text)",
        // casts that look names up in the catalogs
        "SELECT 'patients'::regclass",
        "SELECT CAST('patients' AS regclass)",
        "SELECT 'lower(text)'::regprocedure",
    ] {
        assert_eq!(code(&pg, sql), "denied_function", "{sql}");
    }
    let my = policy(Dialect::MySql);
    for sql in [
        "SELECT load_file('/etc/passwd')",
        "SELECT sleep(1)",
        "SELECT benchmark(1000, md5('x'))",
        "SELECT get_lock('x', 1)",
        "SELECT database()",
        "SELECT user()",
        "SELECT connection_id()",
        "SELECT version()",
        "SELECT last_insert_id()",
        "SELECT convert_tz(now(), 'UTC', 'MET')",
        "SELECT clinic.my_function(ssn) FROM patients",
        "SELECT name_const('x', 1)",
    ] {
        assert_eq!(code(&my, sql), "denied_function", "{sql}");
    }
    let lite = policy(Dialect::Sqlite);
    for sql in [
        "SELECT load_extension('x')",
        "SELECT readfile('/etc/passwd')",
        "SELECT changes()",
        "SELECT last_insert_rowid()",
        "SELECT sqlite_version()",
        "SELECT name FROM pragma_table_info('patients')",
        "SELECT fts3_tokenizer('x')",
    ] {
        assert_eq!(code(&lite, sql), "denied_function", "{sql}");
    }
}

#[test]
fn pure_functions_are_admitted() {
    let pg = policy(Dialect::Postgres);
    for sql in [
        "SELECT lower(name), upper(name), length(ssn), substring(name, 1, 2) FROM patients",
        "SELECT pg_catalog.lower(name) FROM patients",
        "SELECT count(*), max(id), string_agg(name, ',') FROM patients",
        "SELECT row_number() OVER (ORDER BY id), lag(name) OVER (ORDER BY id) FROM patients",
        "SELECT coalesce(name, 'x'), date_trunc('day', now()), to_char(now(), 'YYYY') FROM patients",
        "SELECT json_build_object('n', name) FROM patients",
        "SELECT * FROM generate_series(1, 3) AS g(i)",
        "SELECT x FROM unnest(ARRAY[1, 2]) AS u(x)",
        "SELECT CAST(id AS text), id::bigint FROM patients",
        "SELECT EXTRACT(YEAR FROM now())",
    ] {
        assert_eq!(code(&pg, sql), "ok", "{sql}");
    }
    let my = policy(Dialect::MySql);
    for sql in [
        "SELECT CONCAT(name, '-'), IFNULL(ssn, ''), DATE_FORMAT(NOW(), '%Y') FROM patients",
        "SELECT JSON_OBJECT('n', name), GROUP_CONCAT(name) FROM patients",
    ] {
        assert_eq!(code(&my, sql), "ok", "{sql}");
    }
    let lite = policy(Dialect::Sqlite);
    for sql in [
        "SELECT printf('%s', name), ifnull(ssn, ''), strftime('%Y', 'now') FROM patients",
        "SELECT json_object('n', name), group_concat(name) FROM patients",
        "SELECT value FROM json_each('[1, 2]')",
    ] {
        assert_eq!(code(&lite, sql), "ok", "{sql}");
    }
}

#[test]
fn the_builder_extends_narrows_and_replaces_the_list() {
    let extended = SqlPolicy::builder(Dialect::Postgres)
        .allow_functions(["app.score", "similarity"])
        .deny_functions(["upper"])
        .build()
        .unwrap();
    assert_eq!(code(&extended, "SELECT app.score(1)"), "ok");
    assert_eq!(code(&extended, "SELECT similarity('a', 'b')"), "ok");
    // Listed with its schema: the bare name is another function.
    assert_eq!(code(&extended, "SELECT score(1)"), "denied_function");
    assert_eq!(code(&extended, "SELECT upper('x')"), "denied_function");
    assert_eq!(
        code(&extended, "SELECT pg_catalog.upper('x')"),
        "denied_function"
    );
    let only = SqlPolicy::builder(Dialect::Postgres)
        .function_allow_list(["count"])
        .build()
        .unwrap();
    assert_eq!(code(&only, "SELECT count(*) FROM patients"), "ok");
    assert_eq!(code(&only, "SELECT lower('x')"), "denied_function");
}

#[test]
fn the_refusal_names_the_function() {
    let pg = policy(Dialect::Postgres);
    let err = pg
        .analyze("SELECT name FROM patients WHERE length(current_setting('x')) > 0")
        .unwrap_err();
    assert_eq!(err.code(), "denied_function");
    assert!(err.to_string().contains("`current_setting`"), "{err}");
}
