//! Counters and a latency histogram of decisions, rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::event::{Outcome, Pep};
use crate::pending::EventCounts;

const PEPS: [Pep; 3] = [Pep::Http, Pep::Grpc, Pep::Sql];
/// The error classes counted as PDP errors. A `violation` is a deny the policy meant, not an
/// error: it is counted in the decisions (outcome `deny`) only.
const CLASSES: [&str; 3] = ["pdp_unavailable", "policy_error", "obligation_unsupported"];
const FALLBACKS: [&str; 2] = ["stale", "fail_open"];
/// Upper bounds of the latency buckets, in microseconds.
pub(crate) const BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// What the PEPs decided, counted as events are emitted (never blocks, never allocates).
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [[AtomicU64; Outcome::ALL.len()]; PEPS.len()],
    errors: [AtomicU64; CLASSES.len()],
    fallbacks: [AtomicU64; FALLBACKS.len()],
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

fn index<T: PartialEq>(all: &[T], item: &T) -> Option<usize> {
    all.iter().position(|x| x == item)
}

impl Metrics {
    pub(crate) fn record(&self, event: EventCounts<'_>) {
        let pep = index(&PEPS, &event.pep);
        let outcome = index(&Outcome::ALL, &event.outcome);
        if let Some(counter) = pep
            .zip(outcome)
            .and_then(|(p, o)| self.decisions.get(p).and_then(|row| row.get(o)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(counter) = event
            .error_class
            .and_then(|c| index(&CLASSES, &c))
            .and_then(|i| self.errors.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(counter) = event
            .fallback
            .and_then(|f| index(&FALLBACKS, &f))
            .and_then(|i| self.fallbacks.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // One bucket per event (the first bound it is within); the exposition sums them up.
        if let Some(bucket) = BUCKETS_US
            .iter()
            .position(|bound| event.latency_us <= *bound)
            .and_then(|i| self.buckets.get(i))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(event.latency_us, Ordering::Relaxed);
        if event.cache_hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else if event.decided {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions a decision cache served.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Decisions not served from a cache (every decision, when there is no cache).
    pub fn cache_misses(&self) -> u64 {
        self.cache_misses.load(Ordering::Relaxed)
    }

    /// Decisions counted for `pep` and `outcome`.
    pub fn decisions(&self, pep: Pep, outcome: Outcome) -> u64 {
        index(&PEPS, &pep)
            .zip(index(&Outcome::ALL, &outcome))
            .and_then(|(p, o)| self.decisions.get(p).and_then(|row| row.get(o)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Events dropped because the sink was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Refusals counted for an error class (`pdp_unavailable`, `policy_error`,
    /// `obligation_unsupported`); 0 for any other name, `violation` included.
    pub fn errors(&self, class: &str) -> u64 {
        index(&CLASSES, &class)
            .and_then(|i| self.errors.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Calls `f` with every enforcement point, outcome and their count.
    pub(crate) fn each_decision(&self, mut f: impl FnMut(Pep, Outcome, u64)) {
        for (pep, row) in PEPS.iter().zip(&self.decisions) {
            for (outcome, counter) in Outcome::ALL.iter().zip(row) {
                f(*pep, *outcome, counter.load(Ordering::Relaxed));
            }
        }
    }

    /// Calls `f` with every error class and its count.
    pub(crate) fn each_error(&self, mut f: impl FnMut(&'static str, u64)) {
        for (class, counter) in CLASSES.iter().zip(&self.errors) {
            f(class, counter.load(Ordering::Relaxed));
        }
    }

    /// Calls `f` with every fallback kind and its count.
    pub(crate) fn each_fallback(&self, mut f: impl FnMut(&'static str, u64)) {
        for (kind, counter) in FALLBACKS.iter().zip(&self.fallbacks) {
            f(kind, counter.load(Ordering::Relaxed));
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP warden_decisions_total Decisions by enforcement point and outcome.\n");
        out.push_str("# TYPE warden_decisions_total counter\n");
        self.each_decision(|pep, outcome, count| {
            let _ = writeln!(
                out,
                "warden_decisions_total{{pep=\"{}\",outcome=\"{}\"}} {count}",
                pep.as_str(),
                outcome.as_str(),
            );
        });
        out.push_str(
            "# HELP warden_pdp_errors_total PDP outages, policy errors and unenforceable obligations, by error class (a violation is a deny, not an error).\n",
        );
        out.push_str("# TYPE warden_pdp_errors_total counter\n");
        self.each_error(|class, count| {
            let _ = writeln!(out, "warden_pdp_errors_total{{class=\"{class}\"}} {count}");
        });
        out.push_str("# HELP warden_cache_hits_total Decisions served by a decision cache.\n");
        out.push_str("# TYPE warden_cache_hits_total counter\n");
        let _ = writeln!(out, "warden_cache_hits_total {}", load(&self.cache_hits));
        out.push_str("# HELP warden_cache_misses_total Decisions the PDP was asked for.\n");
        out.push_str("# TYPE warden_cache_misses_total counter\n");
        let _ = writeln!(
            out,
            "warden_cache_misses_total {}",
            load(&self.cache_misses)
        );
        out.push_str("# HELP warden_fallbacks_total Decisions served by a fallback.\n");
        out.push_str("# TYPE warden_fallbacks_total counter\n");
        self.each_fallback(|kind, count| {
            let _ = writeln!(out, "warden_fallbacks_total{{kind=\"{kind}\"}} {count}");
        });
        out.push_str("# HELP warden_decision_duration_seconds Time from request to verdict.\n");
        out.push_str("# TYPE warden_decision_duration_seconds histogram\n");
        let mut within = 0;
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            within += load(bucket);
            let _ = writeln!(
                out,
                "warden_decision_duration_seconds_bucket{{le=\"{}\"}} {within}",
                *bound as f64 / 1e6,
            );
        }
        let count = load(&self.count);
        let _ = writeln!(
            out,
            "warden_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "warden_decision_duration_seconds_sum {}",
            load(&self.sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "warden_decision_duration_seconds_count {count}");
        out.push_str("# HELP warden_events_dropped_total Decision events dropped because the sink was full.\n");
        out.push_str("# TYPE warden_events_dropped_total counter\n");
        let _ = writeln!(out, "warden_events_dropped_total {}", self.dropped());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DecisionEvent;

    #[test]
    fn the_latency_histogram_is_cumulative() {
        let metrics = Metrics::default();
        for latency_us in [10, 25, 26, 700, 2_000_000] {
            let mut event = DecisionEvent::new(Pep::Http, "GET", "route", "/r", Outcome::Permit);
            event.latency_us = latency_us;
            metrics.record(event.counts());
        }
        let text = metrics.render_prometheus();
        for (le, count) in [
            ("0.000025", 2),
            ("0.00005", 3),
            ("0.0005", 3),
            ("0.001", 4),
            ("1", 4),
            ("+Inf", 5),
        ] {
            let line = format!("warden_decision_duration_seconds_bucket{{le=\"{le}\"}} {count}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("warden_decision_duration_seconds_count 5"),
            "{text}"
        );
    }

    #[test]
    fn a_violation_is_a_deny_not_a_pdp_error() {
        let metrics = Metrics::default();
        let mut deny = DecisionEvent::new(Pep::Http, "GET", "route", "/r", Outcome::Deny);
        deny.error_class = Some("violation".into());
        metrics.record(deny.counts());
        let mut outage = DecisionEvent::new(Pep::Http, "GET", "route", "/r", Outcome::Unavailable);
        outage.error_class = Some("pdp_unavailable".into());
        metrics.record(outage.counts());
        assert_eq!(metrics.decisions(Pep::Http, Outcome::Deny), 1);
        assert_eq!(metrics.errors("violation"), 0);
        assert_eq!(metrics.errors("pdp_unavailable"), 1);
        let text = metrics.render_prometheus();
        assert!(!text.contains(r#"class="violation""#), "{text}");
        assert!(
            text.contains(r#"warden_pdp_errors_total{class="pdp_unavailable"} 1"#),
            "{text}"
        );
    }
}
