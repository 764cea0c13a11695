//! OpenTelemetry logs over OTLP/HTTP with the JSON encoding.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::{Record, ShipFuture, Sink, SinkError};

/// POSTs each batch to `<endpoint>/v1/logs` as an OTLP `ExportLogsServiceRequest` in the JSON
/// encoding (OTLP/HTTP, `application/json`). Each event is one log record: its body is the
/// event's JSON, its `traceId`/`spanId` the request's, and its attributes carry what a
/// dashboard joins and filters on — `warden.decision_id`, `warden.outcome`, `warden.policy.id`,
/// `warden.policy.revision`, `warden.regulations` (an array), `warden.resource`,
/// `warden.subject`. Denials and errors have severity `WARN`, the rest `INFO`.
///
/// ```
/// use warden_decision_log::OtlpLogsSink;
///
/// let sink = OtlpLogsSink::new("http://127.0.0.1:4318", "clinic").unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct OtlpLogsSink {
    client: reqwest::Client,
    url: reqwest::Url,
    service: String,
}

impl OtlpLogsSink {
    /// Exports to the collector at `endpoint` (e.g. `http://127.0.0.1:4318`) as service
    /// `service`, with a 10 s timeout per batch.
    pub fn new(endpoint: &str, service: &str) -> Result<Self, SinkError> {
        let url = reqwest::Url::parse(&format!("{}/v1/logs", endpoint.trim_end_matches('/')))
            .map_err(|e| SinkError::new("otlp", e))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SinkError::new("otlp", e))?;
        Ok(Self {
            client,
            url,
            service: service.to_owned(),
        })
    }
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// One OTLP log record of an event.
pub(crate) fn log_record(record: &Record, observed: u128) -> Value {
    let event: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let warn = !matches!(record.outcome.as_str(), "permit");
    let mut attributes = vec![
        string("warden.decision_id", &record.id),
        string("warden.outcome", &record.outcome),
    ];
    for (key, pointer) in [
        ("warden.policy.id", "/policy/id"),
        ("warden.policy.revision", "/policy/revision"),
        ("warden.resource", "/resource"),
        ("warden.subject", "/subject"),
        ("warden.pep", "/pep"),
        ("warden.error_class", "/error_class"),
    ] {
        if let Some(value) = text(pointer) {
            attributes.push(string(key, value));
        }
    }
    if let Some(Value::Array(regulations)) = event.get("regulations") {
        let values: Vec<Value> = regulations
            .iter()
            .filter_map(Value::as_str)
            .map(|r| json!({"stringValue": r}))
            .collect();
        attributes.push(
            json!({"key": "warden.regulations", "value": {"arrayValue": {"values": values}}}),
        );
    }
    let time = text("/time").and_then(unix_nanos).unwrap_or(observed);
    let mut log = json!({
        "timeUnixNano": time.to_string(),
        "observedTimeUnixNano": observed.to_string(),
        "severityNumber": if warn { 13 } else { 9 },
        "severityText": if warn { "WARN" } else { "INFO" },
        "body": {"stringValue": record.body},
        "attributes": attributes,
    });
    if let Value::Object(members) = &mut log {
        if let Some(trace) = text("/trace_id").filter(|t| is_hex(t, 32)) {
            members.insert("traceId".into(), trace.into());
        }
        if let Some(span) = text("/span_id").filter(|s| is_hex(s, 16)) {
            members.insert("spanId".into(), span.into());
        }
    }
    log
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time as the events write it
/// (`2026-12-01T10:00:00.000042Z`).
fn unix_nanos(time: &str) -> Option<u128> {
    let (date, clock) = time.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut t = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let digits: String = fraction.chars().take(9).collect();
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss;
    u128::try_from(secs)
        .ok()
        .map(|s| s * 1_000_000_000 + nanos as u128)
}

impl Sink for OtlpLogsSink {
    fn name(&self) -> &str {
        "otlp"
    }

    fn ship<'a>(&'a self, batch: &'a [Record]) -> ShipFuture<'a> {
        Box::pin(async move {
            let observed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let records: Vec<Value> = batch.iter().map(|r| log_record(r, observed)).collect();
            let body = json!({"resourceLogs": [{
                "resource": {"attributes": [string("service.name", &self.service)]},
                "scopeLogs": [{"scope": {"name": "warden.decision_log"}, "logRecords": records}],
            }]});
            let response = self
                .client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| SinkError::new("otlp", e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(SinkError::new(
                    "otlp",
                    format!("answered {}", response.status()),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_become_unix_nanoseconds() {
        assert_eq!(unix_nanos("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(
            unix_nanos("2026-12-30T00:00:00.000042Z"),
            Some(1_798_588_800_000_042_000)
        );
        assert_eq!(
            unix_nanos("2000-02-29T00:00:01Z"),
            Some(951_782_401_000_000_000)
        );
        assert_eq!(unix_nanos("yesterday"), None);
    }

    #[test]
    fn a_record_carries_the_correlation_attributes() {
        let record = Record {
            id: "d-1".into(),
            outcome: "deny".into(),
            body: r#"{"decision_id":"d-1","time":"2026-12-01T10:00:00.5Z","trace_id":"0af7651916cd43dd8448eb211c80319c","policy":{"id":"clinic","revision":"1.0.0"},"regulations":["HIPAA 164.312(a)(1)"],"outcome":"deny"}"#.into(),
        };
        let log = log_record(&record, 7);
        assert_eq!(log["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(log["severityText"], "WARN");
        let text = log["attributes"].to_string();
        for wanted in [
            "warden.decision_id",
            "d-1",
            "clinic",
            "1.0.0",
            "HIPAA 164.312(a)(1)",
        ] {
            assert!(text.contains(wanted), "{wanted}: {text}");
        }
        assert_eq!(log["timeUnixNano"], "1796119200500000000");
    }
}
