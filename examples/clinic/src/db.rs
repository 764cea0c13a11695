//! The clinic's SQLite database: schema, seed data and queries.

use serde::Serialize;
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
        sqlx::query("INSERT INTO visits (patient_id, at, doctor, summary) VALUES (?, ?, ?, ?)")
            .bind(patient)
            .bind(at)
            .bind(doctor)
            .bind(summary)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A clinic.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Clinic {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The full record: the sensitive fields too.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// The clinic the patient belongs to.
    pub clinic_id: String,
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub birth_date: String,
    /// Social security number.
    pub ssn: String,
    /// Clinical notes.
    pub notes: String,
}

/// A visit.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Visit {
    /// Its id.
    pub id: i64,
    /// The patient.
    pub patient_id: String,
    /// When.
    pub at: String,
    /// Who saw the patient.
    pub doctor: String,
    /// What happened.
    pub summary: String,
}

/// An audit log entry.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who.
    pub subject: String,
    /// Did what.
    pub action: String,
    /// To what.
    pub resource: String,
    /// Under which decision.
    pub decision_id: String,
}
