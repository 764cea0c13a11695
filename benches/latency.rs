//! Latency under load with coordinated omission counted: an open-loop load generator at a fixed
//! offered rate over loopback, bare axum beside the same route behind `PolicyLayer` + Rego.
//!
//! DESIGN §9 target: p99 at 10,000 requests/s behind the layer ≤ 1.2× bare's.
//!
//! The servers (axum's hello-JSON `/clinics` route as in `http_layer`: bare; behind
//! `PolicyLayer` with the clinic Rego policy and an HS256 bearer token; the same with the decision
//! cache) run on a multi-threaded runtime of this process. The generator runs on one
//! current-thread runtime: request `k` is scheduled at `start + k / rate` and goes to connection
//! `k mod LATENCY_CONNECTIONS` (default 8, keep-alive HTTP/1, hyper), which sends it as soon as
//! it is free. A request's latency is counted from its *scheduled* send time to the end of its
//! response body, so a stall counts against every request that should have been sent during it
//! (as wrk2 does). Tokio's timer ticks in milliseconds, so the generator waits for each
//! scheduled time by yielding (it keeps one core busy; its own lateness is printed too).
//!
//! Rates: `LATENCY_RATES` (default `2000,5000,10000` requests/s); each variant and rate runs
//! `LATENCY_SECONDS` (default 3) in two rounds that alternate with the other variants, each
//! round after a quarter second of warm-up that is not counted. Printed: p50, p99, p99.9, max,
//! achieved rate, and the p99 ratio to bare at the same rate.
//!
//! Run: `cargo bench -p warden-benches --bench latency`. Under `cargo test --benches` it only
//! checks that the servers answer.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup fails loudly"
)]

mod loopback;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use axum::{Json, Router};
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use warden_decision::{CacheConfig, PdpExt};
use warden_http::{JwtVerifier, PolicyLayer};
use warden_rego::RegoPdp;
use warden_test::TestTokens;

use loopback::{Latencies, connect, exchange, micros, ratio};

/// The route every request asks for: the clinic policy permits it to staff, with no obligation.
const PATH: &str = "/clinics";
/// A route the subject (a doctor) may not read, to prove the layer is in the way.
const FORBIDDEN_PATH: &str = "/audit-log";
const ROUNDS: u32 = 2;
const WARM_UP: Duration = Duration::from_millis(250);
/// DESIGN §9: p99 behind the layer at 10,000 requests/s relative to bare's.
const TARGET_P99: f64 = 1.2;
const TARGET_RATE: u32 = 10_000;

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

fn verifier() -> JwtVerifier {
    JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)
        .expect("the HS256 verifier builds")
}

/// `Bearer <HS256 token>` for alice, a doctor of clinic c1, valid for an hour.
fn bearer_token() -> HeaderValue {
    let claims = TestTokens::claims("alice", json!({"role": "doctor", "clinics": ["c1"]}));
    let token = TestTokens::hs256(&claims);
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

/// Serves `app` on 127.0.0.1 (an ephemeral port, `TCP_NODELAY`) from `server`; the address.
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

/// A served variant and what its requests carry.
struct Variant {
    name: &'static str,
    addr: SocketAddr,
    host: HeaderValue,
    bearer: HeaderValue,
}

impl Variant {
    fn new(name: &'static str, server: &Runtime, app: Router, bearer: &HeaderValue) -> Self {
        let addr = serve(server, app);
        Self {
            name,
            addr,
            host: HeaderValue::from_str(&addr.to_string()).unwrap(),
            bearer: bearer.clone(),
        }
    }

    fn request(&self, path: &str) -> Request<Full<Bytes>> {
        Request::get(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.bearer.clone())
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// The answer to [`PATH`] and the status on [`FORBIDDEN_PATH`].
    async fn probe(&self) -> (StatusCode, Bytes, StatusCode) {
        let mut sender = connect(self.addr).await.unwrap();
        let (status, body) = exchange(&mut sender, self.request(PATH)).await.unwrap();
        let (forbidden, _) = exchange(&mut sender, self.request(FORBIDDEN_PATH))
            .await
            .unwrap();
        (status, body, forbidden)
    }
}

/// What one connection saw of the requests scheduled in the counted window.
struct Seen {
    latencies: Latencies,
    /// Responses other than 200.
    failures: u64,
    /// When the last counted response ended.
    last: Option<Instant>,
}

/// One connection: sends each scheduled request as soon as the previous one has been answered,
/// and counts those scheduled from `counted` on, from their scheduled time.
async fn connection(
    variant: Arc<Variant>,
    mut schedule: mpsc::UnboundedReceiver<Instant>,
    counted: Instant,
) -> Seen {
    let mut sender = connect(variant.addr).await.unwrap();
    let mut seen = Seen {
        latencies: Latencies::new(),
        failures: 0,
        last: None,
    };
    while let Some(scheduled) = schedule.recv().await {
        let (status, body) = exchange(&mut sender, variant.request(PATH)).await.unwrap();
        let done = Instant::now();
        std::hint::black_box(body);
        if scheduled >= counted {
            seen.latencies.record(done - scheduled);
            seen.last = Some(done);
            if status != StatusCode::OK {
                seen.failures += 1;
            }
        }
    }
    seen
}

/// Waits until `at` (or returns at once when it has passed): sleeps while it is milliseconds
/// away, then yields to the runtime until it is reached.
async fn until(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        if at - now > Duration::from_millis(3) {
            tokio::time::sleep(at - now - Duration::from_millis(2)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// One round of `rate` requests per second for `time` (after [`WARM_UP`]).
struct Round {
    seen: Latencies,
    failures: u64,
    /// Counted responses per second: from the start of the counted window to its last response.
    achieved: f64,
    /// How late the generator handed each request to its connection.
    lag: Latencies,
}

async fn round(variant: &Arc<Variant>, rate: u32, connections: usize, time: Duration) -> Round {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..connections).map(|_| mpsc::unbounded_channel()).unzip();
    let interval = Duration::from_secs(1) / rate;
    let total = u32::try_from((WARM_UP + time).as_nanos() / interval.as_nanos()).unwrap();
    // The connections are opened before the first request is scheduled.
    let start = Instant::now() + Duration::from_millis(20);
    let counted = start + WARM_UP;
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|rx| tokio::spawn(connection(variant.clone(), rx, counted)))
        .collect();
    let mut lag = Latencies::new();
    for k in 0..total {
        let scheduled = start + interval * k;
        until(scheduled).await;
        if scheduled >= counted {
            lag.record(scheduled.elapsed());
        }
        let index = usize::try_from(k).unwrap() % connections;
        senders[index].send(scheduled).unwrap();
    }
    drop(senders);
    let mut seen = Latencies::new();
    let (mut failures, mut last) = (0, counted);
    for task in tasks {
        let by = task.await.unwrap();
        seen.merge(&by.latencies);
        failures += by.failures;
        last = last.max(by.last.unwrap_or(counted));
    }
    let achieved = seen.len() as f64 / (last - counted).as_secs_f64();
    Round {
        seen,
        failures,
        achieved,
        lag,
    }
}

/// The figures of one variant at one rate, over all rounds.
struct Figures {
    seen: Latencies,
    failures: u64,
    achieved: Vec<f64>,
    lag: Latencies,
}

impl Figures {
    fn new() -> Self {
        Self {
            seen: Latencies::new(),
            failures: 0,
            achieved: Vec::new(),
            lag: Latencies::new(),
        }
    }

    fn add(&mut self, round: &Round) {
        self.seen.merge(&round.seen);
        self.failures += round.failures;
        self.achieved.push(round.achieved);
        self.lag.merge(&round.lag);
    }

    fn achieved(&self) -> f64 {
        self.achieved.iter().sum::<f64>() / self.achieved.len() as f64
    }
}

fn report(rate: u32, variants: &[Arc<Variant>], figures: &[Figures]) {
    let bare_p99 = figures[0].seen.quantile(0.99);
    for (variant, f) in variants.iter().zip(figures) {
        let versus = if variant.name == "bare" {
            String::new()
        } else {
            let p99 = ratio(f.seen.quantile(0.99), bare_p99);
            let target = if rate == TARGET_RATE {
                let verdict = if p99 <= TARGET_P99 { "meets" } else { "misses" };
                format!(" ({verdict} target ≤ {TARGET_P99:.1})")
            } else {
                String::new()
            };
            format!(
                "; vs bare: p50 {:.2}, p99 {p99:.2}{target}, p99.9 {:.2}",
                ratio(f.seen.quantile(0.5), figures[0].seen.quantile(0.5)),
                ratio(f.seen.quantile(0.999), figures[0].seen.quantile(0.999)),
            )
        };
        let failures = if f.failures > 0 {
            format!(", {} answers not 200", f.failures)
        } else {
            String::new()
        };
        println!(
            "latency {rate}/s {}: {} ({} requests{failures}), achieved {:.0}/s, generator lag p99 {}{versus}",
            variant.name,
            f.seen.summary(),
            f.seen.len(),
            f.achieved(),
            micros(f.lag.quantile(0.99)),
        );
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let rates: Vec<u32> = std::env::var("LATENCY_RATES")
        .unwrap_or_else(|_| "2000,5000,10000".to_owned())
        .split(',')
        .map(|rate| {
            rate.trim()
                .parse()
                .expect("LATENCY_RATES: rates per second")
        })
        .collect();
    let connections: usize = env_or("LATENCY_CONNECTIONS", 8);
    let per_round = Duration::from_secs_f64(env_or("LATENCY_SECONDS", 3.0)) / ROUNDS;

    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bearer = bearer_token();
    let layer = PolicyLayer::new(clinic_pdp()).jwt(verifier());
    let layer_cached =
        PolicyLayer::new(clinic_pdp().with_cache(CacheConfig::default())).jwt(verifier());
    let variants: Vec<Arc<Variant>> = [
        ("bare", bare()),
        ("PolicyLayer + Rego", bare().layer(layer)),
        ("PolicyLayer + Rego + cache", bare().layer(layer_cached)),
    ]
    .into_iter()
    .map(|(name, app)| Arc::new(Variant::new(name, &server, app, &bearer)))
    .collect();

    client.block_on(async {
        let (_, want, _) = variants[0].probe().await;
        for variant in &variants {
            let (status, body, forbidden) = variant.probe().await;
            assert_eq!(status, StatusCode::OK, "{}", variant.name);
            assert_eq!(body, want, "{}", variant.name);
            let want_forbidden = if variant.name == "bare" {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(
                forbidden, want_forbidden,
                "{} on the audit log",
                variant.name
            );
        }
    });
    if !bench {
        println!("latency: servers answer; the load runs under `cargo bench`");
        return;
    }

    println!(
        "latency: open loop, {connections} keep-alive connections, {ROUNDS} rounds of {:.1} s per rate and variant, \
         latency from the scheduled send time",
        per_round.as_secs_f64()
    );
    for rate in rates {
        let mut figures: Vec<Figures> = variants.iter().map(|_| Figures::new()).collect();
        for _ in 0..ROUNDS {
            for (variant, f) in variants.iter().zip(&mut figures) {
                let round = client.block_on(round(variant, rate, connections, per_round));
                f.add(&round);
            }
        }
        report(rate, &variants, &figures);
    }
}
