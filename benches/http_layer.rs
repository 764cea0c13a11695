//! axum hello-JSON behind `PolicyLayer` (embedded Rego, with and without the decision cache)
//! beside bare axum and beside its peer, axum-casbin (which always caches).
//!
//! DESIGN §9 target: throughput behind the layer ≥ 0.70 of the bare router's. Beside the
//! peer: with a warm decision cache PolicyLayer takes at most axum-casbin's time per
//! request (in-process and over loopback), and with a PDP that answers at once it adds at most
//! 1 µs to bare axum. Two groups:
//!
//! - `http_layer/oneshot`: the router driven in-process with `tower::ServiceExt::oneshot`, the
//!   subject either a `Subject` request extension or an HS256 bearer token verified by the layer;
//! - `http_layer/loopback`: the routers served by `axum::serve` on 127.0.0.1, driven by one
//!   keep-alive HTTP/1 connection, sequential requests, bearer token (axum-casbin behind a
//!   layer that verifies the same token with the same verifier and hands it the `role` claim).
//!
//! Every request reads the whole response body. After criterion's reports the bench times the
//! pairs itself (alternating rounds, same process) and prints one `ratio` line per pair, since
//! criterion does not hand its estimates to the bench.
//!
//! Run: `cargo bench -p warden-benches --bench http_layer -- --noplot`.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup fails loudly"
)]

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum::{Json, Router};
use criterion::Criterion;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use warden_decision::{CacheConfig, PdpExt, Subject};
use warden_http::{JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_telemetry::{DecisionEvent, Telemetry};
use warden_test::{StaticPdp, TestTokens};

#[path = "http_layer/count.rs"]
mod count;
#[path = "http_layer/peer.rs"]
mod peer;

/// The path every benchmarked request asks for: the clinic policy permits it to staff, with no
/// obligation (so the bench measures deciding, not redacting).
const PATH: &str = "/clinics";
/// A path the subject (a doctor) may not read, to prove the layer is in the way.
const FORBIDDEN_PATH: &str = "/audit-log";

/// Requests per variant in the bench's own timing (after a warm-up of a tenth of that).
const ONESHOT_ITERS: u64 = 20_000;
const LOOPBACK_ITERS: u64 = 5_000;
/// The own timing alternates bare and layer in this many rounds, so drift hits both.
const ROUNDS: u64 = 4;
/// DESIGN §9: layer throughput relative to bare, no decision cache.
const TARGET_RATIO: f64 = 0.70;
/// DESIGN §9: the same with a warm decision cache.
const TARGET_RATIO_CACHED: f64 = 0.90;

async fn clinics() -> Json<Value> {
    Json(json!([
        {"id": "c1", "name": "Riverside Clinic"},
        {"id": "c2", "name": "Hilltop Clinic"},
    ]))
}

fn bare() -> Router {
    Router::new()
        .route(PATH, get(clinics))
        .route(FORBIDDEN_PATH, get(clinics))
}

fn clinic_pdp() -> RegoPdp {
    RegoPdp::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/clinic"))
        .expect("the clinic policy loads")
}

/// Subjects from a `Subject` request extension.
fn with_layer() -> Router {
    bare().layer(PolicyLayer::new(clinic_pdp()))
}

/// Subjects from a `Subject` request extension, decisions cached per revision.
fn with_layer_cached() -> Router {
    bare().layer(PolicyLayer::new(
        clinic_pdp().with_cache(CacheConfig::default()),
    ))
}

fn verifier() -> JwtVerifier {
    JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)
        .expect("the HS256 verifier builds")
}

/// As [`with_layer_cached`], with decision events and metrics: every event is serialized to a
/// JSON line (and thrown away) by the sink's writer task, as a log exporter would. The writer
/// runs on the server runtime's worker threads.
fn with_layer_cached_telemetry(telemetry: Telemetry) -> Router {
    bare().layer(
        PolicyLayer::new(clinic_pdp().with_cache(CacheConfig::default())).telemetry(telemetry),
    )
}

/// A PDP that answers every request at once with a permit: what is left is the layer's own
/// cost (building the access request, enforcing, the decision in the extensions).
fn with_layer_immediate() -> Router {
    bare().layer(PolicyLayer::new(StaticPdp::permit()))
}

/// axum-casbin with the clinic's legacy rules; subjects from a `CasbinVals` extension.
fn with_casbin(layer: axum_casbin::CasbinAxumLayer) -> Router {
    bare().layer(layer)
}

/// axum-casbin behind the verification of an HS256 bearer token.
fn with_casbin_jwt(layer: axum_casbin::CasbinAxumLayer) -> Router {
    bare()
        .layer(layer)
        .layer(peer::BearerRoleLayer::new(verifier()))
}

/// Subjects from an HS256 bearer token the layer verifies.
fn with_layer_jwt() -> Router {
    bare().layer(PolicyLayer::new(clinic_pdp()).jwt(verifier()))
}

/// Subjects from an HS256 bearer token, decisions cached per revision.
fn with_layer_jwt_cached() -> Router {
    bare().layer(PolicyLayer::new(clinic_pdp().with_cache(CacheConfig::default())).jwt(verifier()))
}

/// `Bearer <HS256 token>` for alice, a doctor of clinic c1, valid for an hour.
fn bearer_token() -> HeaderValue {
    let claims = TestTokens::claims("alice", json!({"role": "doctor", "clinics": ["c1"]}));
    let token = TestTokens::hs256(&claims);
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

/// What a request carries to name its subject.
#[derive(Clone)]
enum Credentials {
    /// A `Subject` extension (what an authentication layer in front would leave).
    Subject(Subject),
    /// `Authorization: Bearer <token>`.
    Bearer(HeaderValue),
    /// A `CasbinVals` extension (what axum-casbin reads).
    Casbin(axum_casbin::CasbinVals),
}

impl Credentials {
    fn subject() -> Self {
        Self::Subject(
            Subject::user("alice")
                .with_property("role", "doctor")
                .with_property("clinics", json!(["c1"])),
        )
    }

    fn request(&self, path: &str) -> Request<Body> {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        match self {
            Self::Subject(subject) => {
                request.extensions_mut().insert(subject.clone());
            }
            Self::Bearer(value) => {
                request.headers_mut().insert(AUTHORIZATION, value.clone());
            }
            Self::Casbin(vals) => {
                request.extensions_mut().insert(vals.clone());
            }
        }
        request
    }
}

/// One in-process request through a clone of `app`, body read to the end.
async fn oneshot(app: &Router, credentials: &Credentials, path: &str) -> (StatusCode, Bytes) {
    let response = app
        .clone()
        .oneshot(credentials.request(path))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// `iters` in-process requests; the time they took.
async fn run_oneshot(app: &Router, credentials: &Credentials, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(oneshot(app, credentials, PATH).await);
    }
    start.elapsed()
}

/// Serves `app` on 127.0.0.1 (an ephemeral port) from `server`; the address.
fn serve(server: &Runtime, app: Router) -> SocketAddr {
    let listener = server
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .tap_io(|tcp| {
            tcp.set_nodelay(true).unwrap();
        });
    let addr = listener.local_addr().unwrap();
    server.spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One keep-alive HTTP/1 connection to `addr`; its driver runs on the current runtime.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        // Ends when the sender is dropped.
        connection.await.unwrap();
    });
    sender
}

/// One request over `sender`, body read to the end.
async fn over_loopback(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &HeaderValue,
    bearer: &HeaderValue,
) -> (StatusCode, Bytes) {
    sender.ready().await.unwrap();
    let request = Request::get(PATH)
        .header(HOST, host.clone())
        .header(AUTHORIZATION, bearer.clone())
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// A loopback server and what its requests carry.
struct Loopback {
    addr: SocketAddr,
    host: HeaderValue,
    bearer: HeaderValue,
}

impl Loopback {
    fn new(addr: SocketAddr, bearer: HeaderValue) -> Self {
        Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).unwrap(),
            bearer,
        }
    }

    /// `iters` sequential requests on a fresh connection (the handshake is not timed).
    async fn run(&self, iters: u64) -> Duration {
        let mut sender = connect(self.addr).await;
        let start = Instant::now();
        for _ in 0..iters {
            black_box(over_loopback(&mut sender, &self.host, &self.bearer).await);
        }
        start.elapsed()
    }

    async fn once(&self) -> (StatusCode, Bytes) {
        let mut sender = connect(self.addr).await;
        over_loopback(&mut sender, &self.host, &self.bearer).await
    }
}

/// The routers and clients both groups and the summary use.
struct Setup {
    client: Runtime,
    /// Keeps the loopback servers running.
    _server: Runtime,
    bare: Router,
    layer: Router,
    layer_jwt: Router,
    layer_cached: Router,
    layer_jwt_cached: Router,
    layer_cached_telemetry: Router,
    layer_cached_events_discarded: Router,
    layer_immediate: Router,
    casbin: Router,
    subject: Credentials,
    bearer: Credentials,
    casbin_vals: Credentials,
    loop_bare: Loopback,
    loop_layer: Loopback,
    loop_layer_cached: Loopback,
    loop_casbin: Loopback,
}

impl Setup {
    fn new() -> Self {
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let token = bearer_token();
        // The writer task runs on the multi-threaded runtime, as in a server: the request path
        // pays for building and queueing the event, the writer's serialization runs beside it.
        let telemetry = server.block_on(async {
            Telemetry::builder()
                .writer(|event: &DecisionEvent| {
                    black_box(serde_json::to_vec(event).ok());
                })
                .build()
                .unwrap()
        });
        // The same, with a writer that drops every event: what the request path alone pays.
        let discarding = server.block_on(async {
            Telemetry::builder()
                .writer(|event: &DecisionEvent| {
                    black_box(event);
                })
                .build()
                .unwrap()
        });
        let loop_bare = Loopback::new(serve(&server, bare()), token.clone());
        let loop_layer = Loopback::new(serve(&server, with_layer_jwt()), token.clone());
        let loop_layer_cached =
            Loopback::new(serve(&server, with_layer_jwt_cached()), token.clone());
        let casbin = server.block_on(peer::casbin_layer());
        let loop_casbin = Loopback::new(
            serve(&server, with_casbin_jwt(casbin.clone())),
            token.clone(),
        );
        let setup = Self {
            client,
            _server: server,
            bare: bare(),
            layer: with_layer(),
            layer_jwt: with_layer_jwt(),
            layer_cached: with_layer_cached(),
            layer_jwt_cached: with_layer_jwt_cached(),
            layer_cached_telemetry: with_layer_cached_telemetry(telemetry),
            layer_cached_events_discarded: with_layer_cached_telemetry(discarding),
            layer_immediate: with_layer_immediate(),
            casbin: with_casbin(casbin),
            subject: Credentials::subject(),
            bearer: Credentials::Bearer(token),
            casbin_vals: Credentials::Casbin(peer::doctor()),
            loop_bare,
            loop_layer,
            loop_layer_cached,
            loop_casbin,
        };
        setup.check();
        setup
    }

    /// Every variant answers 200 with the same body, and the layers that decide do refuse, so
    /// the bench measures the permit path of a layer that is really there.
    fn check(&self) {
        self.client.block_on(async {
            let (status, want) = oneshot(&self.bare, &self.subject, PATH).await;
            assert_eq!(status, StatusCode::OK, "bare router");
            for (name, app, credentials) in [
                ("bare + bearer", &self.bare, &self.bearer),
                ("PolicyLayer + subject", &self.layer, &self.subject),
                ("PolicyLayer + JWT", &self.layer_jwt, &self.bearer),
                (
                    "PolicyLayer + cache + subject",
                    &self.layer_cached,
                    &self.subject,
                ),
                (
                    "PolicyLayer + cache + JWT",
                    &self.layer_jwt_cached,
                    &self.bearer,
                ),
                (
                    "PolicyLayer + cache + telemetry + subject",
                    &self.layer_cached_telemetry,
                    &self.subject,
                ),
                ("axum-casbin + CasbinVals", &self.casbin, &self.casbin_vals),
                (
                    "PolicyLayer + immediate permit + subject",
                    &self.layer_immediate,
                    &self.subject,
                ),
            ] {
                let (status, body) = oneshot(app, credentials, PATH).await;
                assert_eq!(status, StatusCode::OK, "{name}");
                assert_eq!(body, want, "{name}");
                let (status, _) = oneshot(app, credentials, FORBIDDEN_PATH).await;
                let want_status = if name.starts_with("bare") || name.contains("immediate permit") {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(status, want_status, "{name} on another clinic");
            }
            for (name, server) in [
                ("loopback bare", &self.loop_bare),
                ("loopback PolicyLayer + JWT", &self.loop_layer),
                (
                    "loopback PolicyLayer + cache + JWT",
                    &self.loop_layer_cached,
                ),
                ("loopback axum-casbin + JWT", &self.loop_casbin),
            ] {
                let (status, body) = server.once().await;
                assert_eq!(status, StatusCode::OK, "{name}");
                assert_eq!(body, want, "{name}");
            }
        });
    }
}

fn oneshot_group(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("http_layer/oneshot");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, app, credentials) in [
        ("bare/subject", &s.bare, &s.subject),
        ("policy_rego/subject", &s.layer, &s.subject),
        ("bare/bearer", &s.bare, &s.bearer),
        ("policy_rego/jwt_hs256", &s.layer_jwt, &s.bearer),
        ("policy_rego_cached/subject", &s.layer_cached, &s.subject),
        (
            "policy_rego_cached_telemetry/subject",
            &s.layer_cached_telemetry,
            &s.subject,
        ),
        (
            "policy_rego_cached/jwt_hs256",
            &s.layer_jwt_cached,
            &s.bearer,
        ),
        ("policy_immediate/subject", &s.layer_immediate, &s.subject),
        ("axum_casbin/casbin_vals", &s.casbin, &s.casbin_vals),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&s.client)
                .iter_custom(|iters| run_oneshot(app, credentials, iters));
        });
    }
    group.finish();
}

fn loopback_group(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("http_layer/loopback");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, server) in [
        ("bare/bearer", &s.loop_bare),
        ("policy_rego/jwt_hs256", &s.loop_layer),
        ("policy_rego_cached/jwt_hs256", &s.loop_layer_cached),
        ("axum_casbin/jwt_hs256", &s.loop_casbin),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&s.client).iter_custom(|iters| server.run(iters));
        });
    }
    group.finish();
}

/// Times `iters` requests of `bare` and of `layer` on `rt`, alternating in [`ROUNDS`] rounds
/// after a warm-up; the mean per request of each.
fn compare<B, L, FB, FL>(rt: &Runtime, iters: u64, bare: B, layer: L) -> (Duration, Duration)
where
    B: Fn(u64) -> FB,
    L: Fn(u64) -> FL,
    FB: Future<Output = Duration>,
    FL: Future<Output = Duration>,
{
    rt.block_on(async {
        bare(iters / 10).await;
        layer(iters / 10).await;
        let per_round = iters / ROUNDS;
        let (mut bare_total, mut layer_total) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            bare_total += bare(per_round).await;
            layer_total += layer(per_round).await;
        }
        let n = u32::try_from(per_round * ROUNDS).unwrap();
        (bare_total / n, layer_total / n)
    })
}

fn report(group: &str, variant: &str, target: f64, (bare, layer): (Duration, Duration)) {
    let ratio = bare.as_secs_f64() / layer.as_secs_f64();
    let verdict = if ratio >= target { "meets" } else { "misses" };
    println!(
        "{group} {variant}: bare {:.2} µs/req, PolicyLayer {:.2} µs/req, \
         ratio (throughput layer/bare): {ratio:.2} ({verdict} target ≥ {target:.2})",
        bare.as_secs_f64() * 1e6,
        layer.as_secs_f64() * 1e6,
    );
}

fn summary(s: &Setup) {
    println!();
    println!("http_layer summary (own timing, mean per request, alternating rounds):");
    report(
        "http_layer/oneshot",
        "rego, subject extension",
        TARGET_RATIO,
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.bare, &s.subject, n),
            |n| run_oneshot(&s.layer, &s.subject, n),
        ),
    );
    report(
        "http_layer/oneshot",
        "rego, HS256 JWT",
        TARGET_RATIO,
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.bare, &s.bearer, n),
            |n| run_oneshot(&s.layer_jwt, &s.bearer, n),
        ),
    );
    report(
        "http_layer/loopback",
        "rego, HS256 JWT",
        TARGET_RATIO,
        compare(
            &s.client,
            LOOPBACK_ITERS,
            |n| s.loop_bare.run(n),
            |n| s.loop_layer.run(n),
        ),
    );
    report(
        "http_layer/oneshot",
        "rego + decision cache, subject extension",
        TARGET_RATIO_CACHED,
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.bare, &s.subject, n),
            |n| run_oneshot(&s.layer_cached, &s.subject, n),
        ),
    );
    report(
        "http_layer/oneshot",
        "rego + decision cache, HS256 JWT",
        TARGET_RATIO_CACHED,
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.bare, &s.bearer, n),
            |n| run_oneshot(&s.layer_jwt_cached, &s.bearer, n),
        ),
    );
    report(
        "http_layer/loopback",
        "rego + decision cache, HS256 JWT",
        TARGET_RATIO_CACHED,
        compare(
            &s.client,
            LOOPBACK_ITERS,
            |n| s.loop_bare.run(n),
            |n| s.loop_layer_cached.run(n),
        ),
    );
}

/// PolicyLayer beside axum-casbin (warm caches on both sides) and its own cost beside bare.
fn peer_summary(s: &Setup) {
    peer::report_peer(
        "http_layer/oneshot",
        "rego + decision cache, subject extension",
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.casbin, &s.casbin_vals, n),
            |n| run_oneshot(&s.layer_cached, &s.subject, n),
        ),
    );
    peer::report_peer(
        "http_layer/loopback",
        "rego + decision cache, HS256 JWT",
        compare(
            &s.client,
            LOOPBACK_ITERS,
            |n| s.loop_casbin.run(n),
            |n| s.loop_layer_cached.run(n),
        ),
    );
    peer::report_own_cost(
        "http_layer/oneshot",
        "a PDP that permits at once, subject extension",
        compare(
            &s.client,
            ONESHOT_ITERS,
            |n| run_oneshot(&s.bare, &s.subject, n),
            |n| run_oneshot(&s.layer_immediate, &s.subject, n),
        ),
    );
}

/// DESIGN §9: telemetry may add at most this much to a cached decision through the layer.
const TARGET_TELEMETRY_COST: f64 = 1.10;

fn telemetry_summary(s: &Setup) {
    let (off, on) = compare(
        &s.client,
        ONESHOT_ITERS,
        |n| run_oneshot(&s.layer_cached, &s.subject, n),
        |n| run_oneshot(&s.layer_cached_telemetry, &s.subject, n),
    );
    report_telemetry("events written as JSON lines", off, on);
    let (off, on) = compare(
        &s.client,
        ONESHOT_ITERS,
        |n| run_oneshot(&s.layer_cached, &s.subject, n),
        |n| run_oneshot(&s.layer_cached_events_discarded, &s.subject, n),
    );
    report_telemetry(
        "events discarded by the writer (request path only)",
        off,
        on,
    );
}

fn report_telemetry(variant: &str, off: Duration, on: Duration) {
    let ratio = on.as_secs_f64() / off.as_secs_f64();
    let verdict = if ratio <= TARGET_TELEMETRY_COST {
        "meets"
    } else {
        "misses"
    };
    println!(
        "http_layer/oneshot telemetry on vs off, cached decision, {variant}: off {:.2} µs/req, \
         on {:.2} µs/req, ratio (time on/off): {ratio:.2} ({verdict} target ≤ {TARGET_TELEMETRY_COST:.2})",
        off.as_secs_f64() * 1e6,
        on.as_secs_f64() * 1e6,
    );
}

fn main() {
    if let Ok(spec) = std::env::var("HTTP_LAYER_COUNT") {
        return count::run(&spec);
    }
    let setup = Setup::new();
    let mut c = Criterion::default().configure_from_args();
    oneshot_group(&mut c, &setup);
    loopback_group(&mut c, &setup);
    c.final_summary();
    // Only under `cargo bench` (criterion's `--bench` mode); `cargo test --benches` runs each
    // benchmark once and skips the own timing.
    if std::env::args().any(|arg| arg == "--bench") {
        summary(&setup);
        peer_summary(&setup);
        telemetry_summary(&setup);
    }
}
