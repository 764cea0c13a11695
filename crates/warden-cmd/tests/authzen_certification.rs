//! The AuthZEN Authorization API 1.0 certification scenario, all four levels (Basic, Batch,
//! Search, Discovery), against a real `warden serve` on the scenario's fixture in Rego and in
//! Cedar. The cases are `tests/authzen/certification.json`, written from the OpenID AuthZEN
//! working group's `certification/authorization-api-1_0-scenario.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

mod support;
use support::{Serving, root};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange over a fresh connection.
fn exchange(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

fn result_key(result: &Value) -> String {
    result["id"]
        .as_str()
        .or(result["name"].as_str())
        .unwrap_or_else(|| panic!("a result without id or name: {result}"))
        .to_owned()
}

/// Runs one case; returns what failed, if anything.
fn run(addr: &str, case: &Value) -> Result<(), String> {
    let method = case["method"].as_str().unwrap_or("POST");
    let endpoint = case["endpoint"].as_str().unwrap();
    let content_type = case["content_type"].as_str().unwrap_or("application/json");
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(id) = case["request_id"].as_str() {
        headers.push(("X-Request-ID", id));
    }
    let body = match (&case["raw_body"], &case["body"]) {
        (Value::String(raw), _) => raw.clone().into_bytes(),
        (_, Value::Null) => Vec::new(),
        (_, body) => body.to_string().into_bytes(),
    };
    let expect = &case["expect"];
    let repeat = case["repeat"].as_u64().unwrap_or(1);
    let mut answer = exchange(addr, method, endpoint, &headers, &body);
    for _ in 1..repeat {
        let again = exchange(addr, method, endpoint, &headers, &body);
        if again.body["decision"] != answer.body["decision"] {
            return Err(format!(
                "not idempotent: {} then {}",
                answer.body, again.body
            ));
        }
        answer = again;
    }
    let fail = |what: String| Err(format!("{what}; answer {} {}", answer.status, answer.body));
    if u64::from(answer.status) != expect["status"].as_u64().unwrap() {
        return fail(format!("status, expected {}", expect["status"]));
    }
    if let Some(id) = case["request_id"].as_str()
        && answer.header("x-request-id") != Some(id)
    {
        return fail("X-Request-ID not echoed".into());
    }
    if answer.status == 200
        && !answer
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        return fail("a 200 that is not application/json".into());
    }
    if let Some(decision) = expect.get("decision") {
        if !answer.body["decision"].is_boolean() || &answer.body["decision"] != decision {
            return fail(format!("decision, expected {decision}"));
        }
        if let Some(context) = answer.body.get("context")
            && !context.is_object()
        {
            return fail("context is not an object".into());
        }
    }
    if let Some(count) = expect["evaluations"].as_u64() {
        let items = answer.body["evaluations"].as_array();
        if !items.is_some_and(|i| {
            i.len() as u64 == count && i.iter().all(|e| e["decision"].is_boolean())
        }) {
            return fail(format!("{count} evaluations with boolean decisions"));
        }
    }
    if let Some(decisions) = expect.get("decisions") {
        let got: Vec<Value> = answer.body["evaluations"]
            .as_array()
            .map(|items| items.iter().map(|e| e["decision"].clone()).collect())
            .unwrap_or_default();
        if &Value::Array(got) != decisions {
            return fail(format!("decisions, expected {decisions}"));
        }
        if let Some(index) = expect["item_context"].as_u64()
            && !answer.body["evaluations"][index as usize]["context"].is_object()
        {
            return fail(format!("evaluations[{index}] has no context"));
        }
    }
    if expect.get("results_include").is_some() || expect.get("results_empty").is_some() {
        let mut results = answer.body["results"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("no results array: {}", answer.body))?;
        // Follow the pages to the end: each has a string next_token, the last an empty one.
        let mut page = answer.body["page"].clone();
        let mut pages = 1;
        while case["follow_pages"].as_bool() == Some(true) {
            let token = page["next_token"]
                .as_str()
                .ok_or_else(|| format!("page {pages} has no string next_token: {page}"))?
                .to_owned();
            if token.is_empty() {
                break;
            }
            let mut next: Value = serde_json::from_slice(&body).unwrap();
            next["page"] = json!({"token": token});
            let more = exchange(
                addr,
                method,
                endpoint,
                &headers,
                next.to_string().as_bytes(),
            );
            if more.status != 200 {
                return Err(format!("page {}: {} {}", pages + 1, more.status, more.body));
            }
            results.extend(more.body["results"].as_array().cloned().unwrap_or_default());
            page = more.body["page"].clone();
            pages += 1;
            if pages > 10 {
                return Err("more pages than results".into());
            }
        }
        if let Some(kind) = expect["results_type"].as_str()
            && let Some(other) = results.iter().find(|r| r["type"] != kind)
        {
            return Err(format!("a result of another type: {other}"));
        }
        let keys: Vec<String> = results.iter().map(result_key).collect();
        if expect["results_empty"] == true && !keys.is_empty() {
            return Err(format!("expected no results, got {keys:?}"));
        }
        for wanted in expect["results_include"].as_array().into_iter().flatten() {
            if !keys.iter().any(|k| k == wanted.as_str().unwrap()) {
                return Err(format!("{wanted} missing from {keys:?}"));
            }
        }
    }
    if expect["metadata"] == true {
        let base = format!("http://{addr}");
        let metadata = &answer.body;
        if metadata["policy_decision_point"] != base.as_str() {
            return fail(format!("policy_decision_point is not {base}"));
        }
        for (member, path) in [
            ("access_evaluation_endpoint", "/access/v1/evaluation"),
            ("access_evaluations_endpoint", "/access/v1/evaluations"),
            ("search_subject_endpoint", "/access/v1/search/subject"),
            ("search_resource_endpoint", "/access/v1/search/resource"),
            ("search_action_endpoint", "/access/v1/search/action"),
        ] {
            if metadata[member] != format!("{base}{path}").as_str() {
                return fail(format!("{member} is not {base}{path}"));
            }
        }
        if !metadata["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().all(Value::is_string))
        {
            return fail("capabilities is not an array of strings".into());
        }
    }
    Ok(())
}

#[test]
fn every_certification_level_passes_on_rego_and_cedar() {
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/authzen/certification.json")).unwrap(),
    )
    .unwrap();
    let cases = cases["cases"].as_array().unwrap();
    let levels: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c["level"].as_str().unwrap()).collect();
    assert_eq!(
        levels.into_iter().collect::<Vec<_>>(),
        [
            "basic-core",
            "basic-properties",
            "batch-core",
            "batch-properties",
            "discovery",
            "search-core",
            "search-properties"
        ]
    );
    let mut failures = Vec::new();
    for engine in ["rego", "cedar"] {
        let server = Serving::policy(&format!("tests/authzen/fixture-{engine}"), "0s");
        for case in cases {
            if let Err(why) = run(server.addr(), case) {
                failures.push(format!("{engine} {}: {why}", case["id"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The working group's interop decision files (Todo backend and API gateway), every request
/// alone and all of each set in one batch, against `warden serve` on the Todo policy in Rego
/// and in Cedar. The requests keep the members the interop files carry beyond AuthZEN's
/// (`identity`, `userID`, `ownerID`), which a server must ignore.
#[test]
fn the_interop_decision_files_pass_on_rego_and_cedar() {
    let interop: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/authzen/interop.json")).unwrap(),
    )
    .unwrap();
    let sets = interop["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    let mut failures = Vec::new();
    let mut decided = 0;
    for engine in ["rego", "cedar"] {
        let server = Serving::policy(&format!("tests/authzen/todo-{engine}"), "0s");
        let json = [("Content-Type", "application/json")];
        for set in sets {
            let name = set["name"].as_str().unwrap();
            let cases = set["cases"].as_array().unwrap();
            for (index, case) in cases.iter().enumerate() {
                let answer = exchange(
                    server.addr(),
                    "POST",
                    "/access/v1/evaluation",
                    &json,
                    case["request"].to_string().as_bytes(),
                );
                decided += 1;
                if answer.status != 200 || answer.body["decision"] != case["expected"] {
                    failures.push(format!(
                        "{engine} {name}[{index}] {}: expected {}, got {} {}",
                        case["request"], case["expected"], answer.status, answer.body
                    ));
                }
            }
            let batch = json!({"evaluations": cases.iter().map(|c| c["request"].clone()).collect::<Vec<_>>()});
            let answer = exchange(
                server.addr(),
                "POST",
                "/access/v1/evaluations",
                &json,
                batch.to_string().as_bytes(),
            );
            let got: Vec<Value> = answer.body["evaluations"]
                .as_array()
                .map(|items| items.iter().map(|e| e["decision"].clone()).collect())
                .unwrap_or_default();
            let expected: Vec<Value> = cases.iter().map(|c| c["expected"].clone()).collect();
            if got != expected {
                failures.push(format!("{engine} {name} as one batch: {}", answer.body));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(decided, 2 * (40 + 25));
}

/// The working group's search interop: every subject, resource and action search of its
/// result files, against `warden serve` on the search policy in Rego and in Cedar, with the
/// package's entity source naming the candidates. The results must be exactly the expected
/// ones, in any order.
#[test]
fn the_search_interop_passes_on_rego_and_cedar() {
    let interop: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/authzen/interop-search.json")).unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut searched = 0;
    for engine in ["rego", "cedar"] {
        let server = Serving::policy(&format!("tests/authzen/search-{engine}"), "0s");
        for set in interop["sets"].as_array().unwrap() {
            let kind = set["name"].as_str().unwrap();
            for (index, case) in set["cases"].as_array().unwrap().iter().enumerate() {
                let answer = exchange(
                    server.addr(),
                    "POST",
                    &format!("/access/v1/search/{kind}"),
                    &[("Content-Type", "application/json")],
                    case["request"].to_string().as_bytes(),
                );
                searched += 1;
                let set_of = |results: &Value| -> std::collections::BTreeSet<String> {
                    results
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            let mut r = r.clone();
                            if let Some(o) = r.as_object_mut() {
                                o.remove("obligations");
                            }
                            r.to_string()
                        })
                        .collect()
                };
                let got = set_of(&answer.body["results"]);
                let expected = set_of(&case["expected"]);
                if answer.status != 200
                    || got != expected
                    || answer.body["page"]["next_token"] != ""
                {
                    failures.push(format!(
                        "{engine} {kind}[{index}] {}: expected {expected:?}, got {} {}",
                        case["request"], answer.status, answer.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(searched, 2 * (60 + 18 + 120));
}
