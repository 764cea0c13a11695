//! The clinic's SQLite database: schema and seed data. The handlers query it through the SQL
//! PEP ([`crate::data`]), never directly.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Opens (and creates and seeds, on first use) the database at `url`, e.g.
/// `sqlite://data/clinic.db` or `sqlite::memory:`.
pub async fn open(url: &str) -> Result<SqlitePool, sqlx::Error> {
    let options: SqliteConnectOptions = url.parse()?;
    let memory = url.contains(":memory:");
    let pool = SqlitePoolOptions::new()
        // An in-memory database lives as long as its one connection.
        .max_connections(if memory { 1 } else { 4 })
        .min_connections(if memory { 1 } else { 0 })
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.create_if_missing(true).foreign_keys(true))
        .await?;
    for statement in SCHEMA {
        sqlx::query(*statement).execute(&pool).await?;
    }
    add_clinic_to_visits(&pool).await?;
    let (patients,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&pool)
        .await?;
    if patients == 0 {
        seed(&pool).await?;
    }
    Ok(pool)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS clinics (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS patients (
        id TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics(id),
        name TEXT NOT NULL,
        birth_date TEXT NOT NULL,
        ssn TEXT NOT NULL,
        notes TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS visits (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
        clinic_id TEXT NOT NULL REFERENCES clinics(id),
        at TEXT NOT NULL,
        doctor TEXT NOT NULL,
        summary TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        subject TEXT NOT NULL,
        action TEXT NOT NULL,
        resource TEXT NOT NULL,
        decision_id TEXT NOT NULL
    )",
];

/// Databases created before visits carried their clinic (the column the data policy filters
/// them by) get it, filled from the patients.
async fn add_clinic_to_visits(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let (has,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pragma_table_info('visits') WHERE name = 'clinic_id'")
            .fetch_one(pool)
            .await?;
    if has == 0 {
        let mut tx = pool.begin().await?;
        sqlx::query("ALTER TABLE visits ADD COLUMN clinic_id TEXT REFERENCES clinics(id)")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE visits SET clinic_id =
             (SELECT clinic_id FROM patients WHERE patients.id = visits.patient_id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn seed(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for (id, name) in [("c1", "Riverside Clinic"), ("c2", "Hilltop Clinic")] {
        sqlx::query("INSERT INTO clinics (id, name) VALUES (?, ?)")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    let patients = [
        (
            "p1",
            "c1",
            "Ada Lovelace",
            "1985-12-10",
            "123-45-6789",
            "Allergic to penicillin",
        ),
        (
            "p2",
            "c1",
            "Alan Turing",
            "1972-06-23",
            "987-65-4321",
            "Follow-up in March",
        ),
        (
            "p3",
            "c2",
            "Grace Hopper",
            "1966-12-09",
            "555-12-3456",
            "Night shifts; sleep study",
        ),
    ];
    for (id, clinic, name, birth, ssn, notes) in patients {
        sqlx::query(
            "INSERT INTO patients (id, clinic_id, name, birth_date, ssn, notes) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(clinic)
        .bind(name)
        .bind(birth)
        .bind(ssn)
        .bind(notes)
        .execute(&mut *tx)
        .await?;
    }
    for (patient, at, doctor, summary) in [
        ("p1", "2026-10-02T09:30:00Z", "alice", "Annual check-up"),
        (
            "p2",
            "2026-11-12T14:00:00Z",
            "alice",
            "Blood pressure review",
        ),
        ("p3", "2026-11-20T11:15:00Z", "dora", "Sleep study results"),
    ] {
        sqlx::query(
            "INSERT INTO visits (patient_id, clinic_id, at, doctor, summary)
             SELECT id, clinic_id, ?, ?, ? FROM patients WHERE id = ?",
        )
        .bind(at)
        .bind(doctor)
        .bind(summary)
        .bind(patient)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
