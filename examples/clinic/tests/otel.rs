//! The clinic's OTLP export end to end: the real app, the pipeline of `example_clinic::otel`, and a
//! fake OTLP/HTTP collector on 127.0.0.1 that keeps the protobuf bodies it is sent.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail the test loudly"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::post;
use http::{Request, StatusCode, header};
use prost::Message as _;
use serde_json::json;
use tower::ServiceExt;
use tower_warden::telemetry::{DecisionEvent, Telemetry};
use tracing_subscriber::layer::SubscriberExt as _;
use warden_test::TestTokens;

/// What the collector received, by path.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Bytes)>>>);

impl Received {
    fn bodies(&self, path: &str) -> Vec<Bytes> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn collector() -> (SocketAddr, Received) {
    let received = Received::default();
    let keep = |path: &'static str| {
        move |State(received): State<Received>, body: Bytes| async move {
            received.0.lock().unwrap().push((path.to_owned(), body));
            StatusCode::OK
        }
    };
    let app = Router::new()
        .route("/v1/traces", post(keep("/v1/traces")))
        .route("/v1/metrics", post(keep("/v1/metrics")))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// The part of the OTLP protobuf messages the test reads (field numbers of
/// `opentelemetry/proto/{collector,trace,metrics,common}/v1`); other fields are skipped.
mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub(crate) resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub(crate) resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub(crate) scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub(crate) spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub(crate) name: String,
        #[prost(int32, tag = "6")]
        pub(crate) kind: i32,
        #[prost(message, repeated, tag = "9")]
        pub(crate) attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct KeyValue {
        #[prost(string, tag = "1")]
        pub(crate) key: String,
        #[prost(message, optional, tag = "2")]
        pub(crate) value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct AnyValue {
        #[prost(string, optional, tag = "1")]
        pub(crate) string_value: Option<String>,
        #[prost(bool, optional, tag = "2")]
        pub(crate) bool_value: Option<bool>,
        #[prost(int64, optional, tag = "3")]
        pub(crate) int_value: Option<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub(crate) resource_metrics: Vec<ResourceMetrics>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ResourceMetrics {
        #[prost(message, repeated, tag = "2")]
        pub(crate) scope_metrics: Vec<ScopeMetrics>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ScopeMetrics {
        #[prost(message, repeated, tag = "2")]
        pub(crate) metrics: Vec<Metric>,
    }
    /// `data` is a oneof on the wire; two optional fields read it the same way.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Metric {
        #[prost(string, tag = "1")]
        pub(crate) name: String,
        #[prost(string, tag = "3")]
        pub(crate) unit: String,
        #[prost(message, optional, tag = "7")]
        pub(crate) sum: Option<Sum>,
        #[prost(message, optional, tag = "9")]
        pub(crate) histogram: Option<Histogram>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub(crate) data_points: Vec<NumberDataPoint>,
        #[prost(bool, tag = "3")]
        pub(crate) is_monotonic: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub(crate) attributes: Vec<KeyValue>,
        #[prost(sfixed64, optional, tag = "6")]
        pub(crate) as_int: Option<i64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Histogram {
        #[prost(message, repeated, tag = "1")]
        pub(crate) data_points: Vec<HistogramDataPoint>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct HistogramDataPoint {
        #[prost(message, repeated, tag = "9")]
        pub(crate) attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "4")]
        pub(crate) count: u64,
    }
}

fn attribute(attributes: &[otlp::KeyValue], key: &str) -> Option<otlp::AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
}

fn string(attributes: &[otlp::KeyValue], key: &str) -> Option<String> {
    attribute(attributes, key).and_then(|v| v.string_value)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token(sub: &str, claims: serde_json::Value) -> String {
    TestTokens::hs256(&TestTokens::claims(sub, claims))
}

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_otlp_collector() {
    tokio::time::timeout(Duration::from_secs(20), run())
        .await
        .expect("the export finishes in time");
}

async fn run() {
    let (addr, received) = collector().await;
    let otel = example_clinic::otel::Otel::init(&format!("http://{addr}")).unwrap();
    // Scoped to this thread, which polls the requests below: the tests share the process.
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(otel.layer()));

    let telemetry = Telemetry::builder()
        .writer(|_: &DecisionEvent| {})
        .meter(otel.meter())
        .build()
        .unwrap();
    let pool = example_clinic::db::open("sqlite::memory:").await.unwrap();
    let db = example_clinic::Data::open(pool).await.unwrap();
    let (pdp, jwt) = example_clinic::policy_and_verifier().unwrap();
    let app = example_clinic::app(
        db,
        pdp,
        jwt,
        example_clinic::masker().unwrap(),
        telemetry.clone(),
    );

    let nurse = token("nina", json!({"role": "nurse", "clinics": ["c1"]}));
    let requests = [
        ("/clinics/c1/patients", None, StatusCode::OK),
        ("/clinics/c2/patients", None, StatusCode::FORBIDDEN),
        (
            "/clinics/c1/patients/p1",
            Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
            StatusCode::OK,
        ),
    ];
    for (path, traceparent, want) in &requests {
        let mut request =
            Request::get(*path).header(header::AUTHORIZATION, format!("Bearer {nurse}"));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), *want, "{path}");
    }
    telemetry.flush().await;
    otel.shutdown().await.unwrap();

    // Spans: one `http.request` per request, each the parent of one `warden.decide`.
    let traces = received.bodies("/v1/traces");
    assert!(!traces.is_empty(), "no trace export arrived");
    assert!(traces.iter().any(|b| contains(b, b"warden.decide")));
    assert!(traces.iter().any(|b| contains(b, b"http.request")));
    let mut spans = Vec::new();
    for body in &traces {
        let export = otlp::ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| string(&r.attributes, "service.name"));
            assert_eq!(service.as_deref(), Some("example-clinic"));
            spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let requests_spans: Vec<_> = spans.iter().filter(|s| s.name == "http.request").collect();
    let pep = |s: &&otlp::Span, pep: &str| {
        s.name == "warden.decide" && string(&s.attributes, "warden.pep").as_deref() == Some(pep)
    };
    let decide_spans: Vec<_> = spans.iter().filter(|s| pep(s, "http")).collect();
    // The handlers' queries go through the SQL PEP: its decisions are spans of the request too.
    let sql_spans: Vec<_> = spans.iter().filter(|s| pep(s, "sql")).collect();
    assert_eq!(requests_spans.len(), requests.len(), "{spans:#?}");
    assert_eq!(decide_spans.len(), requests.len(), "{spans:#?}");
    assert!(!sql_spans.is_empty(), "{spans:#?}");
    let by_id: BTreeMap<&[u8], &otlp::Span> = requests_spans
        .iter()
        .map(|s| (s.span_id.as_slice(), *s))
        .collect();
    for sql in &sql_spans {
        let parent = by_id
            .get(sql.parent_span_id.as_slice())
            .unwrap_or_else(|| panic!("a SQL warden.decide outside a request: {sql:#?}"));
        assert_eq!(sql.trace_id, parent.trace_id);
    }
    let mut routes = Vec::new();
    for decide in &decide_spans {
        let parent = by_id
            .get(decide.parent_span_id.as_slice())
            .unwrap_or_else(|| {
                panic!("warden.decide is not a child of an http.request: {decide:#?}")
            });
        assert_eq!(decide.trace_id, parent.trace_id, "one trace per request");
        assert_eq!(
            string(&decide.attributes, "warden.pep").as_deref(),
            Some("http")
        );
        assert_eq!(
            string(&decide.attributes, "warden.subject").as_deref(),
            Some("nina")
        );
        let allowed = attribute(&decide.attributes, "warden.allowed").and_then(|v| v.bool_value);
        let route =
            string(&parent.attributes, "http.route").unwrap_or_else(|| panic!("{parent:#?}"));
        let status = attribute(&parent.attributes, "http.response.status_code")
            .and_then(|v| v.int_value)
            .unwrap_or_else(|| panic!("{parent:#?}"));
        assert_eq!(
            string(&parent.attributes, "http.request.method").as_deref(),
            Some("GET")
        );
        assert_eq!(allowed, Some(status == 200), "{route}: {decide:#?}");
        routes.push((route, status));
    }
    routes.sort();
    assert_eq!(
        routes,
        [
            ("/clinics/{clinic_id}/patients".to_owned(), 200),
            ("/clinics/{clinic_id}/patients".to_owned(), 403),
            ("/clinics/{clinic_id}/patients/{patient_id}".to_owned(), 200),
        ]
    );
    // SpanKind::Server is 2 on the wire.
    assert!(
        requests_spans.iter().all(|s| s.kind == 2),
        "{requests_spans:#?}"
    );
    // The request that came with a `traceparent` continues the caller's trace.
    let continued: Vec<_> = requests_spans
        .iter()
        .filter(|s| hex(&s.trace_id) == CALLER_TRACE)
        .collect();
    assert_eq!(continued.len(), 1, "{requests_spans:#?}");
    assert_eq!(hex(&continued[0].parent_span_id), CALLER_SPAN);
    assert!(
        requests_spans
            .iter()
            .filter(|s| hex(&s.trace_id) != CALLER_TRACE)
            .all(|s| s.parent_span_id.is_empty()),
        "the others are roots"
    );

    // Metrics: the last export (cumulative) holds every decision.
    let metrics = received.bodies("/v1/metrics");
    let last = metrics.last().expect("no metrics export arrived");
    assert!(contains(last, b"warden.decisions"));
    assert!(contains(last, b"warden.decision.duration"));
    let export = otlp::ExportMetricsServiceRequest::decode(last.as_ref()).unwrap();
    let all: Vec<otlp::Metric> = export
        .resource_metrics
        .into_iter()
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .collect();
    let metric = |name: &str| {
        all.iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("`{name}` not exported: {all:#?}"))
    };
    let decisions = metric("warden.decisions").sum.clone().unwrap();
    assert!(decisions.is_monotonic);
    let count = |outcome: &str| {
        decisions
            .data_points
            .iter()
            .find(|p| {
                string(&p.attributes, "pep").as_deref() == Some("http")
                    && string(&p.attributes, "outcome").as_deref() == Some(outcome)
            })
            .and_then(|p| p.as_int)
    };
    assert_eq!(count("permit"), Some(2));
    assert_eq!(count("deny"), Some(1));
    let misses = metric("warden.cache.misses").sum.clone().unwrap();
    assert_eq!(
        misses.data_points[0].as_int,
        Some(3),
        "no cache: every decision is a miss"
    );
    let duration = metric("warden.decision.duration");
    assert_eq!(duration.unit, "s");
    let recorded: u64 = duration
        .histogram
        .as_ref()
        .unwrap()
        .data_points
        .iter()
        .map(|p| p.count)
        .sum();
    assert_eq!(recorded, 3);
    for name in [
        "warden.cache.hits",
        "warden.pdp.errors",
        "warden.fallbacks",
        "warden.events.dropped",
    ] {
        metric(name);
    }
}
