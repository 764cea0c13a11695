//! OpenTelemetry for the clinic example: spans and metrics exported over OTLP/HTTP (protobuf), and
//! the `http.request` span each request runs in.
//!
//! `main` calls [`Otel::init`] when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, adds [`Otel::layer`] to
//! its `tracing` subscriber (so the `warden.decide` span of every decision is exported, a child
//! of the request's `http.request` span), gives [`Otel::meter`] to the decision telemetry (the
//! `warden.*` instruments of `warden-telemetry`), and calls [`Otel::shutdown`] on the way out.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::Instrument as _;
use tracing::level_filters::LevelFilter;
use tracing::{Subscriber, field};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::BoxError;

/// The service name the example reports.
pub const SERVICE_NAME: &str = "example-clinic";

/// The OTLP pipeline: a tracer provider with a batch span processor and a meter provider with a
/// periodic reader, both exporting over OTLP/HTTP with protobuf bodies from tasks on the Tokio
/// runtime.
///
/// It is the guard of the pipeline: [`shutdown`](Self::shutdown) exports what is pending and
/// stops the providers; dropping it without that does the same, blocking (on a multi-thread
/// runtime or outside one).
#[derive(Debug)]
pub struct Otel {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    shut_down: bool,
}

impl Otel {
    /// Builds the exporters and providers for the collector at `endpoint` (the base URL, as in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: spans go to `{endpoint}/v1/traces`, metrics to
    /// `{endpoint}/v1/metrics`). Must be called inside a Tokio runtime: the processor and the
    /// reader run as tasks on it.
    pub fn init(endpoint: &str) -> Result<Self, BoxError> {
        let base = endpoint.trim_end_matches('/');
        let resource = Resource::builder().with_service_name(SERVICE_NAME).build();
        let spans = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(Duration::from_secs(5))
            .build()?;
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(BatchSpanProcessor::builder(spans, Tokio).build())
            .build();
        let metrics = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/metrics"))
            .with_timeout(Duration::from_secs(5))
            .build()?;
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(
                PeriodicReader::builder(metrics, Tokio)
                    .with_interval(Duration::from_secs(10))
                    .build(),
            )
            .build();
        Ok(Self {
            tracer_provider,
            meter_provider,
            shut_down: false,
        })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans. The HTTP stack the
    /// exporters use is left out, so exporting never traces itself.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let exporter_stack = Targets::new()
            .with_default(LevelFilter::TRACE)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF)
            .with_target("opentelemetry_http", LevelFilter::OFF)
            .with_target("reqwest", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
            .with_target("h2", LevelFilter::OFF);
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer_provider.tracer(SERVICE_NAME))
            .with_filter(exporter_stack)
    }

    /// The meter for the decision telemetry (`TelemetryBuilder::meter`).
    pub fn meter(&self) -> Meter {
        self.meter_provider.meter(SERVICE_NAME)
    }

    /// Exports what is pending and stops both providers. The SDK's calls block until the
    /// exporting tasks answer, so they run on a blocking thread.
    pub async fn shutdown(mut self) -> Result<(), BoxError> {
        self.shut_down = true;
        let tracer_provider = self.tracer_provider.clone();
        let meter_provider = self.meter_provider.clone();
        tokio::task::spawn_blocking(move || shutdown_now(&tracer_provider, &meter_provider)).await?
    }
}

fn shutdown_now(
    tracer_provider: &SdkTracerProvider,
    meter_provider: &SdkMeterProvider,
) -> Result<(), BoxError> {
    // Both are attempted, whatever the first one says.
    let traces = tracer_provider.shutdown();
    let metrics = meter_provider.shutdown();
    traces?;
    metrics?;
    Ok(())
}

impl Drop for Otel {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        let run = || {
            if let Err(error) = shutdown_now(&self.tracer_provider, &self.meter_provider) {
                eprintln!("OpenTelemetry shutdown: {error}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Err(_) => run(),
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run);
            }
            // Blocking here would stop the very tasks the shutdown waits for.
            Ok(_) => eprintln!(
                "OpenTelemetry not flushed: call `Otel::shutdown().await` on a current-thread runtime"
            ),
        }
    }
}

/// The request headers, as the W3C trace-context propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

// ANCHOR: request_span
/// Middleware (`axum::middleware::from_fn`) running each request in an `http.request` span
/// (`http.request.method`, `http.route`, `http.response.status_code`), so that the
/// `warden.decide` span of the `PolicyLayer` inside is its child. A request with a W3C
/// `traceparent` continues the caller's trace.
pub async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = field::Empty,
        http.response.status_code = field::Empty,
    );
    if let Some(route) = request.extensions().get::<MatchedPath>() {
        span.record("http.route", route.as_str());
    }
    let caller = TraceContextPropagator::new().extract(&Headers(request.headers()));
    if caller.span().span_context().is_valid() {
        // Without an OpenTelemetry layer there is nothing to attach to: the span stays as it is.
        let _ = span.set_parent(caller);
    }
    let response = next.run(request).instrument(span.clone()).await;
    // As an i64: `tracing-opentelemetry` would export an unsigned integer as a string.
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}
// ANCHOR_END: request_span
