//! `warden serve` with the clinic Cedar package beside its peer, cedar-agent (a Cedar PDP
//! server), and its floor, an axum server that answers a fixed AuthZEN decision without deciding.
//!
//! DESIGN §9 targets: warden's p50 ≤ 0.40× cedar-agent's and p99 ≤ 0.50×, throughput ≥ 2.5×;
//! p50 ≤ 1.10× the echo server's.
//!
//! Each server is a child process on a free port of 127.0.0.1: `warden serve` (the release
//! binary beside this bench's, or `WARDEN_BIN`), cedar-agent (`CEDAR_AGENT`, or `cedar-agent` on
//! `PATH`), loaded over its REST API with the same policies (`policies/clinic-cedar/clinic.cedar`,
//! one policy per id) and entities (`entities.json`), and the echo server (this bench itself,
//! started again with `PDP_SERVER_ECHO_ANSWER` set). Both PDPs get the same access requests,
//! each in its own wire format: AuthZEN `POST /access/v1/evaluation` for warden, `POST
//! /v1/is_authorized` for cedar-agent, where the subject's claims and the route's parameters
//! travel as `additional_entities` (cedar-agent adds them to its stored entities, as warden adds
//! them to the stored parents). The requests vary subjects, roles, clinics and patients
//! (`PDP_SERVER_DISTINCT`, default 256; one in six is denied), and before timing, both PDPs must
//! give the same decision on every one of them.
//!
//! The client is hyper's HTTP/1 over keep-alive connections on one current-thread runtime.
//! Sequential: one connection, p50 and p99. Concurrent: `PDP_SERVER_CALLERS` callers (default 32),
//! each on its own connection, closed loop: throughput, p50 and p99. The servers alternate in
//! rounds (`PDP_SERVER_SECONDS` per phase and round, default 1), so drift hits each alike.
//!
//! Run:
//!
//! ```text
//! cargo build --release -p warden-cmd
//! cargo install cedar-agent --version 0.2.0 --root /opt/cedar-agent
//! CEDAR_AGENT=/opt/cedar-agent/bin/cedar-agent cargo bench -p warden-benches --bench pdp_server
//! ```
//!
//! Without cedar-agent the bench says so and measures the rest. Under `cargo test --benches`
//! it only starts the servers and checks their decisions.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark setup fails loudly"
)]

mod loopback;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use cedar_policy::PolicySet;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use warden_decision::{AccessRequest, Action, Resource, Subject};

use loopback::{Latencies, connect, exchange, ratio};

/// Set in the echo server's environment: the answer it gives to every request.
const ECHO_ANSWER: &str = "PDP_SERVER_ECHO_ANSWER";
const AUTHZEN_PATH: &str = "/access/v1/evaluation";
const CEDAR_AGENT_PATH: &str = "/v1/is_authorized";
const ROUNDS: u32 = 3;
/// DESIGN §9.
const TARGET_P50: f64 = 0.40;
const TARGET_P99: f64 = 0.50;
const TARGET_THROUGHPUT: f64 = 2.5;
const TARGET_FLOOR_P50: f64 = 1.10;

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/clinic-cedar")
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

/// One access request of the rotation, in both wire formats, and whether the clinic policy
/// permits it.
struct Case {
    authzen: Bytes,
    cedar_agent: Bytes,
    allowed: bool,
}

/// The `i`-th request: a nurse or a doctor of clinic c1 (every third also of c2) reading a
/// patient or the patient's visits in c1 or, every fourth request, in c2.
fn case(i: usize, stored: &[Value]) -> Case {
    let user = format!("user{}", i % 32);
    let role = if i.is_multiple_of(2) {
        "nurse"
    } else {
        "doctor"
    };
    let clinics: &[&str] = if i.is_multiple_of(3) {
        &["c1", "c2"]
    } else {
        &["c1"]
    };
    let clinic = if i % 4 == 3 { "c2" } else { "c1" };
    let route = if i % 5 == 4 {
        "/clinics/{clinic_id}/patients/{patient_id}/visits"
    } else {
        "/clinics/{clinic_id}/patients/{patient_id}"
    };
    let params = json!({"clinic_id": clinic, "patient_id": format!("p{i}")});

    let mut resource = Resource::new("route", route);
    resource.properties.insert("params".into(), params.clone());
    resource.properties.insert("query".into(), json!({}));
    let request = AccessRequest::new(
        Subject::user(&user)
            .with_property("role", role)
            .with_property("clinics", json!(clinics)),
        Action::new("GET"),
        resource,
    );

    let route_uid = json!({"type": "Route", "id": route});
    let parents = stored
        .iter()
        .find(|entity| entity["uid"] == route_uid)
        .map_or(json!([]), |entity| entity["parents"].clone());
    let call = json!({
        "principal": format!("User::{}", json!(user)),
        "action": "Action::\"GET\"",
        "resource": format!("Route::{}", json!(route)),
        "context": {},
        "additional_entities": [
            {
                "uid": {"type": "User", "id": user},
                "attrs": {"role": role, "clinics": clinics},
                "parents": [],
            },
            {
                "uid": route_uid,
                "attrs": {"params": params, "query": {}},
                "parents": parents,
            },
        ],
    });
    Case {
        authzen: serde_json::to_vec(&request).unwrap().into(),
        cedar_agent: serde_json::to_vec(&call).unwrap().into(),
        allowed: clinics.contains(&clinic),
    }
}

/// A server under test: a child process, killed when dropped.
struct Served {
    name: &'static str,
    addr: SocketAddr,
    host: HeaderValue,
    path: &'static str,
    bodies: Arc<[Bytes]>,
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn new(
        name: &'static str,
        child: Child,
        addr: SocketAddr,
        path: &'static str,
        bodies: Vec<Bytes>,
    ) -> Self {
        Self {
            name,
            addr,
            host: HeaderValue::from_str(&addr.to_string()).unwrap(),
            path,
            bodies: bodies.into(),
            child,
        }
    }

    fn request(&self, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .unwrap()
    }

    /// The `i`-th request of the rotation.
    fn call(&self, i: usize) -> Request<Full<Bytes>> {
        let body = self.bodies[i % self.bodies.len()].clone();
        self.request(Method::POST, self.path, body)
    }
}

/// Spawns `command` with its stdout piped, and reads the `http://` address of the first line it
/// prints. The rest of its stdout is drained by a thread.
fn spawn_printing_url(mut command: Command) -> Result<(Child, SocketAddr), String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
    });
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("http://"))
        .and_then(|addr| {
            addr.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        });
    match addr {
        Some(addr) => Ok((child, addr)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("no http:// address in its first line {line:?}"))
        }
    }
}

fn warden_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_BIN") {
        return path.into();
    }
    // target/<profile>/deps/pdp_server-<hash> → target/<profile>/warden
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("warden"))
        .unwrap()
}

fn start_warden(cases: &[Case]) -> Result<Served, String> {
    let binary = warden_binary();
    if !binary.is_file() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --release -p warden-cmd` (or set WARDEN_BIN)",
            binary.display()
        ));
    }
    let mut command = Command::new(&binary);
    command.args(["serve", "--policy"]).arg(package()).args([
        "--addr",
        "127.0.0.1:0",
        "--watch",
        "0s",
    ]);
    let (child, addr) = spawn_printing_url(command)?;
    let bodies = cases.iter().map(|c| c.authzen.clone()).collect();
    Ok(Served::new(
        "warden serve (Cedar)",
        child,
        addr,
        AUTHZEN_PATH,
        bodies,
    ))
}

/// This bench again, as the echo server answering `answer`.
fn start_echo(answer: &str, cases: &[Case]) -> Served {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(ECHO_ANSWER, answer);
    let (child, addr) = spawn_printing_url(command).expect("the echo server starts");
    let bodies = cases.iter().map(|c| c.authzen.clone()).collect();
    Served::new("axum echo (floor)", child, addr, AUTHZEN_PATH, bodies)
}

/// The echo server's process: serves `answer` on [`AUTHZEN_PATH`] on a free port of
/// 127.0.0.1, the request body read in full, on a multi-threaded runtime as warden's.
fn serve_echo(answer: String) {
    let app = Router::new().route(
        AUTHZEN_PATH,
        post(move |body: Bytes| {
            let answer = answer.clone();
            async move {
                drop(body);
                ([(CONTENT_TYPE, "application/json")], answer)
            }
        }),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

fn cedar_agent_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CEDAR_AGENT") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("CEDAR_AGENT={} is not a file", path.display()))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cedar-agent"))
        .find(|path| path.is_file())
        .ok_or_else(|| "no CEDAR_AGENT and no cedar-agent on PATH".to_owned())
}

/// Starts cedar-agent on a free port, logging errors only, and loads the package's policies
/// (one per `@id`) and entities over its REST API.
fn start_cedar_agent(client: &Runtime, cases: &[Case]) -> Result<Served, String> {
    let binary = cedar_agent_binary()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&binary)
        .args(["--addr", "127.0.0.1", "--port", &port.to_string()])
        .args(["--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let bodies = cases.iter().map(|c| c.cedar_agent.clone()).collect();
    let served = Served::new("cedar-agent 0.2", child, addr, CEDAR_AGENT_PATH, bodies);

    let source = std::fs::read_to_string(package().join("clinic.cedar")).unwrap();
    let policies: Vec<Value> = PolicySet::from_str(&source)
        .unwrap()
        .policies()
        .map(|policy| {
            json!({
                "id": policy.annotation("id").unwrap_or(policy.id().as_ref()),
                "content": policy.to_string(),
            })
        })
        .collect();
    let entities = std::fs::read(package().join("entities.json")).unwrap();
    client.block_on(async {
        let started = Instant::now();
        let mut sender = loop {
            if let Ok(mut sender) = connect(addr).await {
                let ready = served.request(Method::GET, "/v1/", Bytes::new());
                if matches!(exchange(&mut sender, ready).await, Ok((status, _)) if status.is_success())
                {
                    break sender;
                }
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("{} did not answer on {addr}", binary.display()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for (path, body) in [
            ("/v1/policies", serde_json::to_vec(&policies).unwrap()),
            ("/v1/data", entities),
        ] {
            let (status, answer) =
                exchange(&mut sender, served.request(Method::PUT, path, body.into())).await?;
            if !status.is_success() {
                return Err(format!(
                    "PUT {path}: {status} {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
        Ok(())
    })?;
    Ok(served)
}

/// Whether `body`, an answer of `served`, permits.
fn allowed(served: &Served, body: &[u8]) -> bool {
    let answer: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{}: {e}: {}", served.name, String::from_utf8_lossy(body)));
    match &answer["decision"] {
        Value::Bool(allowed) => *allowed,
        Value::String(decision) => decision == "Allow",
        other => panic!("{}: no decision in {other}", served.name),
    }
}

/// Asks `served` every request of the rotation once and checks each decision against the
/// policy's; the answer to the first request.
fn check(client: &Runtime, served: &Served, cases: &[Case]) -> Bytes {
    client.block_on(async {
        let mut sender = connect(served.addr).await.unwrap();
        let mut first = None;
        for (i, case) in cases.iter().enumerate() {
            let (status, body) = exchange(&mut sender, served.call(i)).await.unwrap();
            assert_eq!(status, StatusCode::OK, "{} on request {i}", served.name);
            assert_eq!(
                allowed(served, &body),
                case.allowed,
                "{} on request {i}: {}",
                served.name,
                String::from_utf8_lossy(&case.authzen)
            );
            first.get_or_insert(body);
        }
        first.unwrap()
    })
}

/// One caller on its own connection for `time`, starting at request `start` of the rotation.
async fn caller(served: Arc<Served>, start: usize, time: Duration) -> Latencies {
    let mut sender = connect(served.addr).await.unwrap();
    let mut latencies = Latencies::new();
    let deadline = Instant::now() + time;
    let mut i = start;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let (status, body) = exchange(&mut sender, served.call(i)).await.unwrap();
        latencies.record(sent.elapsed());
        assert_eq!(status, StatusCode::OK, "{}", served.name);
        std::hint::black_box(body);
        i += 1;
    }
    latencies
}

/// `callers` concurrent callers for `time`: their latencies and the decisions per second.
fn run(client: &Runtime, served: &Arc<Served>, callers: usize, time: Duration) -> (Latencies, f64) {
    client.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| tokio::spawn(caller(served.clone(), c * 7, time)))
            .collect();
        let mut all = Latencies::new();
        for task in tasks {
            all.merge(&task.await.unwrap());
        }
        let rate = all.len() as f64 / started.elapsed().as_secs_f64();
        (all, rate)
    })
}

/// What one server gave over all rounds.
struct Figures {
    sequential: Latencies,
    concurrent: Latencies,
    /// Decisions per second of the concurrent callers, one entry per round.
    rates: Vec<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.rates.iter().sum::<f64>() / self.rates.len() as f64
    }
}

fn verdict(meets: bool) -> &'static str {
    if meets { "meets" } else { "misses" }
}

fn report(servers: &[Arc<Served>], figures: &[Figures], callers: usize) {
    println!();
    println!("pdp_server summary ({ROUNDS} alternating rounds; {callers} concurrent callers):");
    for (served, f) in servers.iter().zip(figures) {
        println!(
            "pdp_server {}: sequential {} ({} calls); concurrent {:.0} decisions/s, {}",
            served.name,
            f.sequential.summary(),
            f.sequential.len(),
            f.rate(),
            f.concurrent.summary(),
        );
    }
    let find = |prefix: &str| {
        servers
            .iter()
            .position(|s| s.name.starts_with(prefix))
            .map(|i| &figures[i])
    };
    let (Some(warden), echo) = (find("warden"), find("axum")) else {
        return;
    };
    if let Some(echo) = echo {
        let p50 = ratio(
            warden.sequential.quantile(0.5),
            echo.sequential.quantile(0.5),
        );
        println!(
            "pdp_server warden vs axum echo: sequential p50 ratio {p50:.2} ({} target ≤ {TARGET_FLOOR_P50:.2}); \
             concurrent p50 ratio {:.2}, throughput ratio {:.2}",
            verdict(p50 <= TARGET_FLOOR_P50),
            ratio(
                warden.concurrent.quantile(0.5),
                echo.concurrent.quantile(0.5)
            ),
            warden.rate() / echo.rate(),
        );
    }
    if let Some(agent) = find("cedar-agent") {
        let p50 = ratio(
            warden.sequential.quantile(0.5),
            agent.sequential.quantile(0.5),
        );
        let p99 = ratio(
            warden.sequential.quantile(0.99),
            agent.sequential.quantile(0.99),
        );
        let throughput = warden.rate() / agent.rate();
        println!(
            "pdp_server warden vs cedar-agent: sequential p50 ratio {p50:.2} ({} target ≤ {TARGET_P50:.2}), \
             p99 ratio {p99:.2} ({} target ≤ {TARGET_P99:.2}); throughput ratio {throughput:.2} ({} target ≥ {TARGET_THROUGHPUT:.1}); \
             concurrent p50 ratio {:.2}, p99 ratio {:.2}",
            verdict(p50 <= TARGET_P50),
            verdict(p99 <= TARGET_P99),
            verdict(throughput >= TARGET_THROUGHPUT),
            ratio(
                warden.concurrent.quantile(0.5),
                agent.concurrent.quantile(0.5)
            ),
            ratio(
                warden.concurrent.quantile(0.99),
                agent.concurrent.quantile(0.99)
            ),
        );
    }
}

fn main() {
    if let Ok(answer) = std::env::var(ECHO_ANSWER) {
        serve_echo(answer);
        return;
    }
    let bench = std::env::args().any(|arg| arg == "--bench");
    let callers: usize = env_number("PDP_SERVER_CALLERS", 32);
    let distinct: usize = env_number("PDP_SERVER_DISTINCT", 256);
    let phase = Duration::from_secs_f64(env_number("PDP_SERVER_SECONDS", 1.0));
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored: Vec<Value> =
        serde_json::from_slice(&std::fs::read(package().join("entities.json")).unwrap()).unwrap();
    let cases: Vec<Case> = (0..distinct.max(1)).map(|i| case(i, &stored)).collect();
    let permitted = cases.iter().filter(|c| c.allowed).count();
    println!(
        "pdp_server: {} distinct requests ({permitted} permitted), same decisions required of each PDP",
        cases.len()
    );

    let mut servers = Vec::new();
    match start_warden(&cases) {
        Ok(warden) => servers.push(warden),
        Err(reason) => println!("note: skipping warden serve: {reason}"),
    }
    match start_cedar_agent(&client, &cases) {
        Ok(agent) => servers.push(agent),
        Err(reason) => println!(
            "note: skipping cedar-agent: {reason}; install it with \
             `cargo install cedar-agent --version 0.2.0 --root DIR` and set CEDAR_AGENT=DIR/bin/cedar-agent"
        ),
    }
    let mut answer = None;
    for served in &servers {
        let first = check(&client, served, &cases);
        answer.get_or_insert(first);
    }
    // The floor answers what warden answers to the first request (or a fixed permit).
    let answer = answer.map_or_else(
        || r#"{"decision":true}"#.to_owned(),
        |body| String::from_utf8(body.to_vec()).unwrap(),
    );
    servers.insert(0, start_echo(&answer, &cases));
    if !bench {
        println!("pdp_server: servers answer; timing runs under `cargo bench`");
        return;
    }

    let servers: Vec<Arc<Served>> = servers.into_iter().map(Arc::new).collect();
    for served in &servers {
        run(&client, served, 1, phase / 4);
        run(&client, served, callers, phase / 4);
    }
    let mut figures: Vec<Figures> = servers
        .iter()
        .map(|_| Figures {
            sequential: Latencies::new(),
            concurrent: Latencies::new(),
            rates: Vec::new(),
        })
        .collect();
    for _ in 0..ROUNDS {
        for (served, f) in servers.iter().zip(&mut figures) {
            let (sequential, _) = run(&client, served, 1, phase);
            f.sequential.merge(&sequential);
            let (concurrent, rate) = run(&client, served, callers, phase);
            f.concurrent.merge(&concurrent);
            f.rates.push(rate);
        }
    }
    report(&servers, &figures, callers);
}
