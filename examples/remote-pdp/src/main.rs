//! Runs the clinic service on 127.0.0.1 with a remote PDP.
//!
//! With `WARDEN_PDP_URL` set (say, to a `warden serve --policy policies/clinic` on
//! `http://127.0.0.1:8181`), the service asks that PDP. Without it, the example starts a Warden
//! PDP server on a free port of 127.0.0.1 in the same process, so that it runs on its own.

use std::net::SocketAddr;
use std::path::Path;

use example_clinic::{BoxError, Data, app, db, masker, policy_and_verifier, policy_dir};
use example_remote_pdp::remote_pdp;
use tower_warden::server::Server;
use tower_warden::telemetry::Telemetry;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,warden=debug")),
        )
        .init();

    let url = match std::env::var("WARDEN_PDP_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = Server::builder().policy_dir(policy_dir()).build();
            server.load()?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            tokio::spawn(server.serve(listener, std::future::pending()));
            tracing::info!(%url, "no WARDEN_PDP_URL: started a Warden PDP server in-process");
            url
        }
    };
    let pdp = remote_pdp(&url)?;
    // The verifier and masker are the embedded example's; the policy now lives at the PDP.
    let (_, jwt) = policy_and_verifier()?;

    let addr: SocketAddr = std::env::var("CLINIC_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3001".into())
        .parse()?;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    std::fs::create_dir_all(&data)?;
    let database = format!("sqlite://{}", data.join("clinic.db").display());
    // The queries go through the SQL PEP, deciding with the embedded `policies/clinic-data`.
    let telemetry = Telemetry::builder().build()?;
    let db = Data::open_with_telemetry(db::open(&database).await?, telemetry.clone()).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, pdp = %url, "clinic service listening, deciding remotely");
    println!(
        "\nThe clinic service is on http://{addr}, deciding at {url}.\n\
         The embedded example (`cargo run -p example-clinic`) prints curl lines that work here too\n\
         with port {}.\n",
        addr.port()
    );

    let app =
        app(db, pdp, jwt, masker()?, telemetry).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
