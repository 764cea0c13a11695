//! The clinic's queries through the SQL PEP: the example's database, its data policy
//! (`policies/clinic-data` and the service's rules), statements sent straight to
//! `example_clinic::Data` and through the real router.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use sqlx::SqlitePool;
use tower::ServiceExt;
use tower_warden::Subject;
use tower_warden::sql::SqlRequest;
use warden_test::TestTokens;

use example_clinic::data::{self, caller};
use example_clinic::{Data, DataError};

async fn open() -> (SqlitePool, Data) {
    let pool = example_clinic::db::open("sqlite::memory:").await.unwrap();
    let data = Data::open(pool.clone()).await.unwrap();
    (pool, data)
}

fn nurse() -> Subject {
    Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinic", "c1")
}

fn admin() -> Subject {
    Subject::user("adam").with_property("role", "admin")
}

fn auditor() -> Subject {
    Subject::user("aude").with_property("role", "auditor")
}

async fn rows(data: &Data, subject: Subject, sql: &str) -> Vec<Map<String, Value>> {
    data.rows(SqlRequest::new(sql, subject)).await.unwrap()
}

async fn refused(data: &Data, subject: Subject, sql: &str) -> String {
    match data.rows(SqlRequest::new(sql, subject)).await {
        Err(DataError::Denied(e)) => e.code().to_owned(),
        other => panic!("`{sql}` was not refused: {other:?}"),
    }
}

fn ids(rows: &[Map<String, Value>]) -> Vec<&str> {
    rows.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

const ALL_PATIENTS: &str =
    "SELECT id, clinic_id, name, birth_date, ssn, notes FROM patients ORDER BY id";

#[tokio::test]
async fn a_nurse_asking_for_every_patient_gets_her_clinics_masked() {
    let (_, data) = open().await;
    let rows = rows(&data, nurse(), ALL_PATIENTS).await;
    assert_eq!(ids(&rows), ["p1", "p2"]);
    assert_eq!(rows[0]["ssn"], "*******6789");
    assert_eq!(rows[1]["ssn"], "*******4321");
    assert_eq!(rows[0]["birth_date"], "1985");
    assert_eq!(rows[0]["notes"], Value::Null);
    assert_eq!(rows[0]["name"], "Ada Lovelace");
    // `SELECT *` too: the catalog read from the database lists the columns to mask.
    let star = rows_text(&data, nurse(), "SELECT * FROM patients").await;
    assert!(
        !star.contains("123-45-6789") && !star.contains("p3"),
        "{star}"
    );
    assert!(!star.contains("penicillin"), "{star}");
}

async fn rows_text(data: &Data, subject: Subject, sql: &str) -> String {
    serde_json::to_string(&rows(data, subject, sql).await).unwrap()
}

#[tokio::test]
async fn an_admin_sees_every_patient_unmasked() {
    let (_, data) = open().await;
    let rows = rows(&data, admin(), ALL_PATIENTS).await;
    assert_eq!(ids(&rows), ["p1", "p2", "p3"]);
    assert_eq!(rows[2]["ssn"], "555-12-3456");
    assert_eq!(rows[2]["notes"], "Night shifts; sleep study");
}

#[tokio::test]
async fn the_auditor_reads_the_audit_log_and_nothing_else() {
    let (_, data) = open().await;
    data.run(
        SqlRequest::new(
            "INSERT INTO audit_log (subject, action, resource, decision_id) VALUES (?, ?, ?, ?)",
            data::service(),
        )
        .bind("alice")
        .bind("GET")
        .bind("patient:p1")
        .bind("d-1"),
    )
    .await
    .unwrap();
    let log = rows(
        &data,
        auditor(),
        "SELECT subject, resource FROM audit_log ORDER BY id",
    )
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["resource"], "patient:p1");

    let err = match data
        .rows(SqlRequest::new("SELECT name FROM patients", auditor()))
        .await
    {
        Err(DataError::Denied(e)) => e,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(err.code(), "not_permitted");
    assert!(
        err.to_string()
            .contains("the policy does not permit `select` on `main.patients`"),
        "{err}"
    );
    for sql in [
        "SELECT id FROM visits",
        "SELECT name FROM clinics",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log (subject, action, resource, decision_id) VALUES ('x', 'x', 'x', 'x')",
    ] {
        assert_eq!(
            refused(&data, auditor(), sql).await,
            "not_permitted",
            "{sql}"
        );
    }
}

#[tokio::test]
async fn a_nurses_attacks_are_refused_or_filtered() {
    let (pool, data) = open().await;
    // Tautologies and set operations only ever see her clinic's rows, masked.
    for sql in [
        "SELECT id, ssn FROM patients WHERE 1=1 OR clinic_id = 'c2'",
        "SELECT id, ssn FROM patients WHERE clinic_id = 'c1' \
         UNION SELECT id, ssn FROM patients WHERE clinic_id = 'c2'",
        "SELECT p.id, p.ssn FROM patients p JOIN visits v ON v.patient_id = p.id \
         WHERE v.doctor = 'dora' OR 1 = 1",
        "WITH everyone AS (SELECT id, ssn FROM patients) SELECT id, ssn FROM everyone",
        "SELECT id, ssn FROM (SELECT * FROM patients) AS t",
        // No inference through a predicate on the masked column.
        "SELECT id, ssn FROM patients WHERE ssn = '123-45-6789' OR ssn LIKE '555%'",
    ] {
        let text = rows_text(&data, nurse(), sql).await;
        assert!(!text.contains("p3"), "{sql}: {text}");
        assert!(
            !text.contains("123-45-6789") && !text.contains("555-12-3456"),
            "{sql}: {text}"
        );
    }
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM visits")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Stacked statements, other tables, catalogs, deletes she may not make, rows moved to
    // another clinic: refused, and the database never sees them.
    for (sql, code) in [
        (
            "SELECT id FROM patients; DELETE FROM visits",
            "multiple_statements",
        ),
        (
            "SELECT id FROM patients UNION SELECT subject FROM audit_log",
            "not_permitted",
        ),
        ("SELECT id, name FROM clinics", "not_permitted"),
        ("SELECT name, sql FROM sqlite_master", "system_catalog"),
        ("DELETE FROM patients WHERE id = 'p1'", "not_permitted"),
        ("DROP TABLE visits", "statement_kind"),
        (
            "UPDATE patients SET clinic_id = 'c2' WHERE id = 'p1'",
            "row_filter_violation",
        ),
        (
            "INSERT INTO visits (patient_id, clinic_id, at, doctor, summary) \
             VALUES ('p3', 'c2', 'now', 'nina', 'x')",
            "row_filter_violation",
        ),
    ] {
        assert_eq!(refused(&data, nurse(), sql).await, code, "{sql}");
    }
    let (after,): (i64,) = sqlx::query_as("SELECT count(*) FROM visits")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, count);
    let (clinic,): (String,) = sqlx::query_as("SELECT clinic_id FROM patients WHERE id = 'p1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(clinic, "c1");
    // A write to another clinic's rows changes nothing.
    let done = data
        .run(SqlRequest::new(
            "UPDATE patients SET name = 'x' WHERE id = 'p3'",
            nurse(),
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected, 0);
}

#[test]
fn a_route_parameter_narrows_what_the_token_grants_never_widens_it() {
    let token = Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinics", json!(["c1"]));
    let own = caller(&token, Some("c1"));
    assert_eq!(own.properties["clinic"], "c1");
    assert_eq!(own.properties["role"], "nurse");
    // Another clinic in the route: no clinic at all, so the data policy refuses her.
    assert!(!caller(&token, Some("c2")).properties.contains_key("clinic"));
    // Without a route clinic: the only one the token lists; none when it lists several.
    assert_eq!(caller(&token, None).properties["clinic"], "c1");
    let two = Subject::user("nina").with_property("clinics", json!(["c1", "c2"]));
    assert!(!caller(&two, None).properties.contains_key("clinic"));
    // Whatever the token says, the SQL subject is a user: never the service.
    let forged = Subject::new("service", data::SERVICE_ID).with_property("role", "admin");
    let subject = caller(&forged, None);
    assert_eq!(subject.kind, "user");
    assert_eq!(subject.properties.len(), 1);
}

#[tokio::test]
async fn a_nurse_without_the_clinic_in_her_token_is_refused_by_the_data_policy() {
    let (_, data) = open().await;
    let token = Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinics", json!(["c1"]));
    assert_eq!(
        refused(&data, caller(&token, Some("c2")), ALL_PATIENTS).await,
        "not_permitted"
    );
}

#[tokio::test]
async fn through_the_router_an_auditor_gets_the_deny_reason_and_a_nurse_her_clinic() {
    let (_, data) = open().await;
    let (pdp, jwt) = example_clinic::policy_and_verifier().unwrap();
    let telemetry = tower_warden::telemetry::Telemetry::builder()
        .writer(|_: &tower_warden::telemetry::DecisionEvent| {})
        .build()
        .unwrap();
    let app = example_clinic::app(data, pdp, jwt, example_clinic::masker().unwrap(), telemetry);
    let get = |path: &str, claims: Value| {
        let token = TestTokens::hs256(&TestTokens::claims("someone", claims));
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, body) = get(
        "/clinics/c1/patients",
        json!({"role": "auditor", "clinics": []}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["detail"], "the request was denied by policy");
    assert!(body["decision_id"].is_string(), "{body}");
    assert!(!body.to_string().contains("patients"), "{body}");

    let (status, body) = get(
        "/clinics/c1/patients",
        json!({"role": "nurse", "clinics": ["c1"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = body.to_string();
    assert!(
        !text.contains("123-45-6789") && !text.contains("1985-12-10"),
        "{text}"
    );
    assert_eq!(body.as_array().unwrap().len(), 2);

    // The audit log: the auditor reads it, a nurse's token does not reach it.
    let (status, _) = get("/audit-log", json!({"role": "auditor", "clinics": []})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get("/audit-log", json!({"role": "nurse", "clinics": ["c1"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
