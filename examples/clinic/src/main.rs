//! Runs the clinic example on 127.0.0.1 and prints `curl` lines to try each outcome.
//!
//! Decision events are logged as JSON lines. With `OTEL_EXPORTER_OTLP_ENDPOINT` set (say
//! `http://127.0.0.1:4318`), spans (`http.request`, `warden.decide`) and the `warden.*` metrics
//! are also exported there over OTLP/HTTP.

use std::net::SocketAddr;
use std::path::Path;

use example_clinic::otel::Otel;
use example_clinic::{BoxError, Data, app, db, masker, policy_and_verifier};
use serde_json::json;
use tower_warden::telemetry::Telemetry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use warden_test::TestTokens;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let otel = endpoint.as_deref().map(Otel::init).transpose()?;
    tracing_subscriber::registry()
        .with(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,warden=debug")),
        )
        .with(tracing_subscriber::fmt::layer())
        .with(otel.as_ref().map(Otel::layer))
        .init();

    let addr: SocketAddr = std::env::var("CLINIC_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    std::fs::create_dir_all(&data)?;
    let url = format!("sqlite://{}", data.join("clinic.db").display());
    // One JSON line per decision of either PEP, as a `tracing` event with target
    // `warden::decision_event`; and the `warden.*` OpenTelemetry metrics when exporting.
    let mut telemetry = Telemetry::builder();
    if let Some(otel) = &otel {
        tracing::info!(endpoint = ?endpoint, "exporting spans and metrics over OTLP/HTTP");
        telemetry = telemetry.meter(otel.meter());
    }
    let telemetry = telemetry.build()?;
    // Every query of the handlers goes through the SQL PEP and `policies/clinic-data`.
    let db = Data::open_with_telemetry(db::open(&url).await?, telemetry.clone()).await?;
    let (pdp, jwt) = policy_and_verifier()?;
    let revision = tower_warden::Pdp::revision(&pdp);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = %url, policy = ?revision, "clinic service listening");
    print_curl_lines(addr);

    let app = app(db, pdp, jwt, masker()?, telemetry.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // The last events reach the histogram, then everything pending is exported.
    telemetry.flush().await;
    if let Some(otel) = otel {
        // A collector gone at exit costs the last export, not the exit status.
        if let Err(error) = otel.shutdown().await {
            tracing::warn!(%error, "the last OpenTelemetry export failed");
        }
    }
    Ok(())
}

fn print_curl_lines(addr: SocketAddr) {
    let token =
        |sub: &str, extra: serde_json::Value| TestTokens::hs256(&TestTokens::claims(sub, extra));
    let nurse = token("nina", json!({"role": "nurse", "clinics": ["c1"]}));
    let doctor = token("alice", json!({"role": "doctor", "clinics": ["c1"]}));
    let doctor_mfa = token(
        "alice",
        json!({"role": "doctor", "clinics": ["c1"], "acr": "urn:warden:mfa", "auth_time": TestTokens::now()}),
    );
    let auditor = token("aude", json!({"role": "auditor", "clinics": []}));
    let admin = token("adam", json!({"role": "admin", "clinics": []}));
    let base = format!("http://{addr}");
    println!(
        "\nTry it (tokens valid for an hour):\n\n\
         # permit, filtered and masked: a nurse lists the patients of her clinic (SSN last4, birth year,\n\
         # no notes: the SQL PEP rewrote the query, the HTTP PEP redacted the response)\n\
         curl -s {base}/clinics/c1/patients -H 'Authorization: Bearer {nurse}'\n\n\
         # permit, redacted: an admin sees no SSN and no notes\n\
         curl -s {base}/clinics/c2/patients/p3 -H 'Authorization: Bearer {admin}'\n\n\
         # deny (403 problem+json): the same nurse asks for another clinic\n\
         curl -si {base}/clinics/c2/patients -H 'Authorization: Bearer {nurse}'\n\n\
         # deny (403, by the SQL PEP): the route lets the auditor in, the data policy gives auditors\n\
         # the audit log only\n\
         curl -si {base}/clinics/c2/patients -H 'Authorization: Bearer {auditor}'\n\n\
         # step-up (401 with an RFC 9470 challenge): a doctor without a recent MFA opens a full record\n\
         curl -si {base}/clinics/c1/patients/p1/record -H 'Authorization: Bearer {doctor}'\n\n\
         # permit after step-up: the same doctor, with acr=urn:warden:mfa\n\
         curl -s {base}/clinics/c1/patients/p1/record -H 'Authorization: Bearer {doctor_mfa}'\n\n\
         # permit with an audit obligation: the auditor reads the audit log\n\
         curl -s {base}/audit-log -H 'Authorization: Bearer {auditor}'\n\n\
         # unauthenticated (401): no token\n\
         curl -si {base}/clinics\n\n\
         # decision metrics (Prometheus text), for admins\n\
         curl -s {base}/metrics -H 'Authorization: Bearer {admin}'\n"
    );
}
