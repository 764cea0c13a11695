//! The server's own counters, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the decision duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    permits: AtomicU64,
    denies: AtomicU64,
    errors: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_nanos: AtomicU64,
}

impl Metrics {
    pub(crate) fn request(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((endpoint, status)).or_default() += 1;
        }
    }

    pub(crate) fn decision(&self, allowed: Option<bool>, took: Duration) {
        let counter = match allowed {
            Some(true) => &self.permits,
            Some(false) => &self.denies,
            None => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.duration_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn reload(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, ready: bool, policy: Option<(&str, &str)>) -> String {
        let mut out = String::with_capacity(2048);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP warden_server_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE warden_server_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((endpoint, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "warden_server_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP warden_server_decisions_total Decisions by outcome.\n");
        out.push_str("# TYPE warden_server_decisions_total counter\n");
        for (outcome, counter) in [
            ("permit", &self.permits),
            ("deny", &self.denies),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                out,
                "warden_server_decisions_total{{outcome=\"{outcome}\"}} {}",
                load(counter)
            );
        }
        out.push_str("# HELP warden_server_decision_duration_seconds Time to decide.\n");
        out.push_str("# TYPE warden_server_decision_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "warden_server_decision_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.duration_count);
        let _ = writeln!(
            out,
            "warden_server_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = Duration::from_nanos(load(&self.duration_sum_nanos)).as_secs_f64();
        let _ = writeln!(out, "warden_server_decision_duration_seconds_sum {sum}");
        let _ = writeln!(out, "warden_server_decision_duration_seconds_count {count}");
        out.push_str("# HELP warden_server_reloads_total Policy reloads by result.\n");
        out.push_str("# TYPE warden_server_reloads_total counter\n");
        for (result, counter) in [("ok", &self.reloads_ok), ("failed", &self.reloads_failed)] {
            let _ = writeln!(
                out,
                "warden_server_reloads_total{{result=\"{result}\"}} {}",
                load(counter)
            );
        }
        out.push_str("# HELP warden_server_ready Whether policies are loaded.\n");
        out.push_str("# TYPE warden_server_ready gauge\n");
        let _ = writeln!(out, "warden_server_ready {}", u8::from(ready));
        if let Some((id, revision)) = policy {
            out.push_str("# HELP warden_server_policy_info The policy in force.\n");
            out.push_str("# TYPE warden_server_policy_info gauge\n");
            let _ = writeln!(
                out,
                "warden_server_policy_info{{id=\"{}\",revision=\"{}\"}} 1",
                escape(id),
                escape(revision)
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
