//! OpenTelemetry metrics of the decision events (feature `otel`).
//!
//! [`TelemetryBuilder::meter`](crate::TelemetryBuilder::meter) registers these instruments on a
//! `Meter`:
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `warden.decision.duration` | histogram | `s` | `pep`, `outcome` |
//! | `warden.decisions` | counter | `{decision}` | `pep`, `outcome` |
//! | `warden.cache.hits` | counter | `{decision}` | |
//! | `warden.cache.misses` | counter | `{decision}` | |
//! | `warden.pdp.errors` | counter | `{error}` | `error.class` (`pdp_unavailable`, `policy_error`, `obligation_unsupported`) |
//! | `warden.fallbacks` | counter | `{decision}` | `kind` (`stale`, `fail_open`) |
//! | `warden.events.dropped` | counter | `{event}` | |
//!
//! Nothing of it runs on the request path. The counters are *observable* counters: the SDK reads
//! them at each collection from the same atomics as [`Metrics`], which `emit`
//! already increments, so they count every event (dropped ones included) and agree with the
//! Prometheus text. The histogram is recorded by the background writer task, as it takes each
//! event off the queue: an event dropped because the queue was full is missing from it, and
//! counted in `warden.events.dropped`.
//!
//! One `Telemetry` per `Meter`: two sinks observing the same instruments on one meter would
//! overwrite each other's counts.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use opentelemetry::metrics::MeterProvider as _;
//! use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
//! use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};
//!
//! let exporter = InMemoryMetricExporter::default();
//! let provider = SdkMeterProvider::builder()
//!     .with_reader(PeriodicReader::builder(exporter.clone()).build())
//!     .build();
//! let telemetry = Telemetry::builder()
//!     .writer(|_: &DecisionEvent| {})
//!     .meter(provider.meter("warden"))
//!     .build()
//!     .unwrap();
//! telemetry.emit(DecisionEvent::new(Pep::Http, "GET", "route", "/health", Outcome::Permit));
//! telemetry.flush().await;
//! provider.force_flush().unwrap();
//! let exported = exporter.get_finished_metrics().unwrap();
//! let names: Vec<String> = exported
//!     .iter()
//!     .flat_map(|r| r.scope_metrics())
//!     .flat_map(|s| s.metrics())
//!     .map(|m| m.name().to_owned())
//!     .collect();
//! assert!(names.iter().any(|n| n == "warden.decisions"));
//! assert!(names.iter().any(|n| n == "warden.decision.duration"));
//! # });
//! ```

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter};

use crate::event::DecisionEvent;
use crate::metrics::{BUCKETS_US, Metrics};

/// The instruments of a PDP's [`PdpMetrics`](warden_decision::PdpMetrics), from
/// [`observe_pdp`]; they stay registered while this value lives.
///
/// | instrument | kind | unit |
/// |---|---|---|
/// | `warden.pdp.calls` | counter | `{call}` |
/// | `warden.pdp.failures` | counter | `{call}` |
/// | `warden.pdp.duration.sum` | counter | `s` |
/// | `warden.breaker.state` | gauge (0 closed, 1 half-open, 2 open) | |
/// | `warden.breaker.opened` | counter | `{opening}` |
#[must_use = "the instruments are unregistered when this is dropped"]
pub struct PdpInstruments {
    _counters: [ObservableCounter<u64>; 3],
    _sum: ObservableCounter<f64>,
    _state: opentelemetry::metrics::ObservableGauge<u64>,
}

impl std::fmt::Debug for PdpInstruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PdpInstruments")
    }
}

/// A counter without attributes that reads `value` at each collection.
fn counter(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    value: impl Fn() -> u64 + Send + Sync + 'static,
) -> ObservableCounter<u64> {
    meter
        .u64_observable_counter(name)
        .with_description(description)
        .with_unit(unit)
        .with_callback(move |observer| observer.observe(value(), &[]))
        .build()
}

/// Registers a PDP's call latency and failures and its breaker's state on `meter`, read from
/// `metrics` at each collection.
pub fn observe_pdp(meter: &Meter, metrics: &Arc<warden_decision::PdpMetrics>) -> PdpInstruments {
    let m = metrics.clone();
    let calls = counter(
        meter,
        "warden.pdp.calls",
        "Calls to the PDP.",
        "{call}",
        move || m.calls(),
    );
    let m = metrics.clone();
    let failures = counter(
        meter,
        "warden.pdp.failures",
        "Calls to the PDP that failed (unavailable or malformed).",
        "{call}",
        move || m.failures(),
    );
    let m = metrics.clone();
    let opened = counter(
        meter,
        "warden.breaker.opened",
        "How often the circuit breaker opened.",
        "{opening}",
        move || m.breaker_opened_total(),
    );
    let m = metrics.clone();
    let sum = meter
        .f64_observable_counter("warden.pdp.duration.sum")
        .with_description("Total time the PDP took to answer.")
        .with_unit("s")
        .with_callback(move |o| o.observe(m.latency_sum().as_secs_f64(), &[]))
        .build();
    let m = metrics.clone();
    let state = meter
        .u64_observable_gauge("warden.breaker.state")
        .with_description("Circuit breaker state: 0 closed, 1 half-open, 2 open.")
        .with_callback(move |o| o.observe(u64::from(m.breaker_state()), &[]))
        .build();
    PdpInstruments {
        _counters: [calls, failures, opened],
        _sum: sum,
        _state: state,
    }
}

/// The instruments of one sink.
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    /// Held so the callbacks stay registered as long as the sink lives.
    _observed: [ObservableCounter<u64>; 6],
}

impl Instruments {
    /// Creates the instruments on `meter`; the counters observe `metrics`.
    pub(crate) fn new(meter: &Meter, metrics: &Arc<Metrics>) -> Self {
        let duration = meter
            .f64_histogram("warden.decision.duration")
            .with_description("Time from a request reaching the PEP to the PEP's verdict.")
            .with_unit("s")
            .with_boundaries(BUCKETS_US.iter().map(|us| *us as f64 / 1e6).collect())
            .build();
        let m = metrics.clone();
        let decisions = meter
            .u64_observable_counter("warden.decisions")
            .with_description("Decisions by enforcement point and outcome.")
            .with_unit("{decision}")
            .with_callback(move |observer| {
                m.each_decision(|pep, outcome, count| {
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("pep", pep.as_str()),
                            KeyValue::new("outcome", outcome.as_str()),
                        ],
                    );
                });
            })
            .build();
        let m = metrics.clone();
        let hits = counter(
            meter,
            "warden.cache.hits",
            "Decisions served by a decision cache.",
            "{decision}",
            move || m.cache_hits(),
        );
        let m = metrics.clone();
        let misses = counter(
            meter,
            "warden.cache.misses",
            "Decisions the PDP was asked for.",
            "{decision}",
            move || m.cache_misses(),
        );
        let m = metrics.clone();
        let errors = meter
            .u64_observable_counter("warden.pdp.errors")
            .with_description(
                "PDP outages, policy errors and unenforceable obligations, by error class \
                 (a violation is a deny, not an error).",
            )
            .with_unit("{error}")
            .with_callback(move |observer| {
                m.each_error(|class, count| {
                    observer.observe(count, &[KeyValue::new("error.class", class)]);
                });
            })
            .build();
        let m = metrics.clone();
        let fallbacks = meter
            .u64_observable_counter("warden.fallbacks")
            .with_description("Decisions served by a fallback, by kind.")
            .with_unit("{decision}")
            .with_callback(move |observer| {
                m.each_fallback(|kind, count| {
                    observer.observe(count, &[KeyValue::new("kind", kind)]);
                });
            })
            .build();
        let m = metrics.clone();
        let dropped = counter(
            meter,
            "warden.events.dropped",
            "Decision events dropped because the sink was full.",
            "{event}",
            move || m.dropped(),
        );
        Self {
            duration,
            _observed: [decisions, hits, misses, errors, fallbacks, dropped],
        }
    }

    /// Records what only the event tells (its latency); called by the writer task.
    pub(crate) fn record(&self, event: &DecisionEvent) {
        self.duration.record(
            event.latency_us as f64 / 1e6,
            &[
                KeyValue::new("pep", event.pep.as_str()),
                KeyValue::new("outcome", event.outcome.as_str()),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{
        AggregatedMetrics, Metric, MetricData, ResourceMetrics,
    };
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use crate::{DecisionEvent, Outcome, Pep, Telemetry};

    type Attributes = Vec<(String, String)>;

    fn provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        (provider, exporter)
    }

    /// The last export of the instrument `name`.
    fn metric<'a>(exported: &'a [ResourceMetrics], name: &str) -> &'a Metric {
        exported
            .iter()
            .rev()
            .flat_map(|r| r.scope_metrics())
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("`{name}` was not exported"))
    }

    fn attributes<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Attributes {
        let mut out: Attributes = kvs
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        out.sort();
        out
    }

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        let mut out: Attributes = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        out.sort();
        out
    }

    /// The data points of a monotonic `u64` counter, by attributes.
    fn counter(exported: &[ResourceMetrics], name: &str) -> BTreeMap<Attributes, u64> {
        let metric = metric(exported, name);
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
            panic!("`{name}` is not a u64 sum: {:?}", metric.data());
        };
        assert!(sum.is_monotonic(), "`{name}` is a counter");
        sum.data_points()
            .map(|p| (attributes(p.attributes()), p.value()))
            .collect()
    }

    fn event(pep: Pep, outcome: Outcome, latency_us: u64) -> DecisionEvent {
        let mut event = DecisionEvent::new(pep, "GET", "route", "/r", outcome);
        event.latency_us = latency_us;
        event.decision_id = Some("d".into());
        event
    }

    #[tokio::test]
    async fn instruments_carry_the_values_and_attributes_of_the_events() {
        let (provider, exporter) = provider();
        let telemetry = Telemetry::builder()
            .writer(|_: &DecisionEvent| {})
            .meter(provider.meter("warden-telemetry-test"))
            .build()
            .unwrap();

        // Two permits asked of the PDP, one served by the cache, one by the stale fallback.
        telemetry.emit(event(Pep::Http, Outcome::Permit, 40));
        telemetry.emit(event(Pep::Http, Outcome::Permit, 1_500));
        let mut hit = event(Pep::Http, Outcome::Permit, 20);
        hit.cache_hit = true;
        telemetry.emit(hit);
        let mut stale = event(Pep::Http, Outcome::Permit, 300);
        stale.fallback = Some("stale".into());
        telemetry.emit(stale);
        // A deny the policy meant: a violation, not an error.
        let mut violation = event(Pep::Http, Outcome::Deny, 60);
        violation.error_class = Some("violation".into());
        telemetry.emit(violation);
        // A broken policy, an outage (no decision), an obligation the PEP cannot carry out.
        let mut broken = event(Pep::Sql, Outcome::Deny, 80);
        broken.error_class = Some("policy_error".into());
        telemetry.emit(broken);
        let mut outage = event(Pep::Http, Outcome::Unavailable, 250_000);
        outage.decision_id = None;
        outage.error_class = Some("pdp_unavailable".into());
        telemetry.emit(outage);
        let mut withheld = event(Pep::Grpc, Outcome::Withheld, 700);
        withheld.error_class = Some("obligation_unsupported".into());
        telemetry.emit(withheld);
        // No credentials: no decision, neither a hit nor a miss.
        let mut anonymous = event(Pep::Http, Outcome::Unauthenticated, 5);
        anonymous.decision_id = None;
        telemetry.emit(anonymous);

        telemetry.flush().await;
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();

        let decisions = counter(&exported, "warden.decisions");
        let want = [
            (("http", "permit"), 4),
            (("http", "deny"), 1),
            (("sql", "deny"), 1),
            (("http", "unavailable"), 1),
            (("grpc", "withheld"), 1),
            (("http", "unauthenticated"), 1),
        ];
        for ((pep, outcome), count) in want {
            assert_eq!(
                decisions.get(&attrs(&[("pep", pep), ("outcome", outcome)])),
                Some(&count),
                "{pep} {outcome}: {decisions:?}"
            );
        }
        assert_eq!(decisions.values().sum::<u64>(), 9, "{decisions:?}");
        for (attributes, count) in &decisions {
            let pep = attributes.iter().find(|(k, _)| k == "pep").unwrap();
            let outcome = attributes.iter().find(|(k, _)| k == "outcome").unwrap();
            let pep = [Pep::Http, Pep::Grpc, Pep::Sql]
                .into_iter()
                .find(|p| p.as_str() == pep.1)
                .unwrap();
            let outcome = Outcome::ALL
                .into_iter()
                .find(|o| o.as_str() == outcome.1)
                .unwrap();
            assert_eq!(
                telemetry.metrics().decisions(pep, outcome),
                *count,
                "the same numbers as the Prometheus metrics"
            );
        }

        assert_eq!(
            counter(&exported, "warden.cache.hits"),
            BTreeMap::from([(vec![], 1)])
        );
        assert_eq!(
            counter(&exported, "warden.cache.misses"),
            BTreeMap::from([(vec![], 6)]),
            "events with a decision id and no cache hit"
        );
        assert_eq!(
            counter(&exported, "warden.pdp.errors"),
            BTreeMap::from([
                (attrs(&[("error.class", "pdp_unavailable")]), 1),
                (attrs(&[("error.class", "policy_error")]), 1),
                (attrs(&[("error.class", "obligation_unsupported")]), 1),
            ]),
            "no `violation` class"
        );
        assert_eq!(
            counter(&exported, "warden.fallbacks"),
            BTreeMap::from([
                (attrs(&[("kind", "stale")]), 1),
                (attrs(&[("kind", "fail_open")]), 0),
            ])
        );
        assert_eq!(
            counter(&exported, "warden.events.dropped"),
            BTreeMap::from([(vec![], 0)])
        );

        let duration = metric(&exported, "warden.decision.duration");
        assert_eq!(duration.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
            panic!("not an f64 histogram: {:?}", duration.data());
        };
        let points: BTreeMap<Attributes, _> = histogram
            .data_points()
            .map(|p| (attributes(p.attributes()), p))
            .collect();
        assert_eq!(points.len(), 6, "one series per pep and outcome seen");
        let permits = points[&attrs(&[("pep", "http"), ("outcome", "permit")])];
        assert_eq!(permits.count(), 4);
        assert!((permits.sum() - 0.001_86).abs() < 1e-9, "{}", permits.sum());
        let bounds: Vec<f64> = permits.bounds().collect();
        assert_eq!(
            bounds,
            [
                0.000_025, 0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                0.1, 1.0
            ]
        );
        // 20 µs and 40 µs, 300 µs, 1.5 ms: buckets ≤25 µs, ≤50 µs, ≤500 µs, ≤2.5 ms.
        let buckets: Vec<u64> = permits.bucket_counts().collect();
        assert_eq!(buckets, [1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        let outage = points[&attrs(&[("pep", "http"), ("outcome", "unavailable")])];
        assert_eq!(outage.count(), 1);
        assert!((outage.sum() - 0.25).abs() < 1e-9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_events_are_counted_and_the_histogram_has_the_rest() {
        let (provider, exporter) = provider();
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let writer_gate = gate.clone();
        let mut first = true;
        let telemetry = Telemetry::builder()
            .capacity(2)
            .writer(move |_: &DecisionEvent| {
                if first {
                    first = false;
                    writer_gate.wait();
                }
            })
            .meter(provider.meter("warden-telemetry-test"))
            .build()
            .unwrap();
        for _ in 0..50 {
            telemetry.emit(event(Pep::Http, Outcome::Deny, 10));
        }
        gate.wait();
        telemetry.flush().await;
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || provider.force_flush()),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        let exported = exporter.get_finished_metrics().unwrap();

        let dropped = telemetry.metrics().dropped();
        assert!(dropped >= 40, "{dropped}");
        assert_eq!(
            counter(&exported, "warden.events.dropped"),
            BTreeMap::from([(vec![], dropped)])
        );
        assert_eq!(
            counter(&exported, "warden.decisions")
                .get(&attrs(&[("pep", "http"), ("outcome", "deny")])),
            Some(&50),
            "every decision counted, dropped or not"
        );
        let duration = metric(&exported, "warden.decision.duration");
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = duration.data() else {
            panic!("not an f64 histogram");
        };
        let recorded: u64 = histogram.data_points().map(|p| p.count()).sum();
        assert_eq!(recorded + dropped, 50, "nothing lost without being counted");
    }
}

#[cfg(test)]
mod pdp_tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use warden_decision::{
        AccessRequest, Action, BreakerConfig, Pdp, PdpExt, PdpMetrics, Resource, Subject,
    };

    #[tokio::test]
    async fn breaker_state_and_pdp_calls_are_exported() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = PdpMetrics::new();
        let _instruments = super::observe_pdp(&provider.meter("warden"), &metrics);
        let failing = never_up::Failing;
        let pdp = failing.measured(metrics.clone()).with_breaker(
            BreakerConfig::default()
                .consecutive_failures(2)
                .metrics(metrics.clone()),
        );
        let request = AccessRequest::new(
            Subject::user("a"),
            Action::new("GET"),
            Resource::new("route", "/"),
        );
        for _ in 0..3 {
            assert!(pdp.decide(&request).await.is_err());
        }
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let find = |name: &str| {
            exported
                .iter()
                .rev()
                .flat_map(|r| r.scope_metrics())
                .flat_map(|s| s.metrics())
                .find(|m| m.name() == name)
                .unwrap_or_else(|| panic!("`{name}` was not exported"))
                .data()
        };
        let AggregatedMetrics::U64(MetricData::Gauge(state)) = find("warden.breaker.state") else {
            panic!("warden.breaker.state is not a u64 gauge");
        };
        assert_eq!(state.data_points().next().unwrap().value(), 2, "open");
        for (name, want) in [
            ("warden.pdp.calls", 2),
            ("warden.pdp.failures", 2),
            ("warden.breaker.opened", 1),
        ] {
            let AggregatedMetrics::U64(MetricData::Sum(sum)) = find(name) else {
                panic!("{name} is not a u64 sum");
            };
            assert_eq!(sum.data_points().next().unwrap().value(), want, "{name}");
        }
    }

    /// A PDP that is always unavailable.
    mod never_up {
        use warden_decision::{AccessRequest, Pdp, PdpError, PdpFuture};

        pub(super) struct Failing;

        impl Pdp for Failing {
            fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
                Box::pin(async { Err(PdpError::unavailable("connection refused")) })
            }
        }
    }
}
