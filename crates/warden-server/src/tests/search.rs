//! The search endpoints over the certification fixture's entity source, on Rego and Cedar.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::call;
use crate::Server;

fn fixture(engine: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/authzen/fixture-{engine}"))
}

fn server(engine: &str) -> Server {
    let server = Server::builder().policy_dir(fixture(engine)).build();
    server.load().unwrap();
    server
}

fn ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|r| r["id"].as_str().or(r["name"].as_str()).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_three_searches_answer_what_the_policies_permit() {
    for engine in ["rego", "cedar"] {
        let server = server(engine);
        let cases = [
            (
                "subject",
                json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                       "resource": {"type": "record", "id": "record-1"}}),
                vec!["alice", "bob"],
            ),
            (
                "subject",
                json!({"subject": {"type": "user"}, "action": {"name": "write"},
                       "resource": {"type": "record", "id": "record-2", "properties": {"status": "archived"}}}),
                vec!["bob"],
            ),
            (
                "subject",
                json!({"subject": {"type": "user", "properties": {"role": "admin"}},
                       "action": {"name": "read"}, "resource": {"type": "record", "id": "record-1"}}),
                vec!["bob"],
            ),
            (
                "resource",
                json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "write"},
                       "resource": {"type": "record", "id": "record-2"}}),
                vec!["record-1"],
            ),
            (
                "resource",
                json!({"subject": {"type": "user", "id": "bob", "properties": {"role": "admin"}},
                       "action": {"name": "write"}, "resource": {"type": "record"}}),
                vec!["record-1", "record-2"],
            ),
            (
                "action",
                json!({"subject": {"type": "user", "id": "alice"},
                       "resource": {"type": "record", "id": "record-1"}, "context": {"ip": "192.0.2.1"}}),
                vec!["read", "write"],
            ),
            (
                "subject",
                json!({"subject": {"type": "spaceship"}, "action": {"name": "read"},
                       "resource": {"type": "record", "id": "record-1"}}),
                vec![],
            ),
            (
                "action",
                json!({"subject": {"type": "user", "id": "nonexistent-user"},
                       "resource": {"type": "record", "id": "record-1", "properties": {"status": "archived"}}}),
                vec![],
            ),
        ];
        for (kind, body, expected) in cases {
            let (status, content_type, answer) = call(
                &server,
                "POST",
                &format!("/access/v1/search/{kind}"),
                &body.to_string(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{engine} {kind} {body}: {answer}");
            assert_eq!(content_type, "application/json");
            assert_eq!(ids(&answer), expected, "{engine} {kind} {body}");
            assert_eq!(answer["page"]["next_token"], "");
        }
    }
}

#[tokio::test]
async fn a_search_missing_an_input_is_a_400() {
    let server = server("rego");
    let cases = [
        (
            "subject",
            json!({"subject": {"type": "user"}, "resource": {"type": "record", "id": "record-1"}}),
        ),
        (
            "subject",
            json!({"subject": {"type": "user"}, "action": {"name": "read"}, "resource": {"type": "record"}}),
        ),
        (
            "subject",
            json!({"subject": {}, "action": {"name": "read"}, "resource": {"type": "record", "id": "r"}}),
        ),
        (
            "resource",
            json!({"action": {"name": "read"}, "resource": {"type": "record"}}),
        ),
        (
            "resource",
            json!({"subject": {"type": "user"}, "action": {"name": "read"}, "resource": {"type": "record"}}),
        ),
        (
            "action",
            json!({"subject": {"type": "user", "id": "alice"}}),
        ),
        (
            "action",
            json!({"subject": {"type": "user"}, "resource": {"type": "record", "id": "record-1"}}),
        ),
        (
            "resource",
            json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "record"}, "page": {"limit": 0}}),
        ),
        (
            "resource",
            json!({"subject": {"type": "user", "id": "a"}, "action": {"name": "read"}, "resource": {"type": "record"}, "page": {"token": 5}}),
        ),
    ];
    for (kind, body) in cases {
        let (status, _, answer) = call(
            &server,
            "POST",
            &format!("/access/v1/search/{kind}"),
            &body.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {body}: {answer}");
    }
}

async fn page(server: &Server, body: &Value) -> (StatusCode, Value) {
    let (status, _, answer) = call(
        server,
        "POST",
        "/access/v1/search/subject",
        &body.to_string(),
    )
    .await;
    (status, answer)
}

/// A copy of the Rego fixture, removed on drop.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_fixture() -> Copy {
    let dir = std::env::temp_dir().join(format!("warden-search-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("rego")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    // Every user reads, so that made-up subjects are results.
    std::fs::write(
        dir.join("fixture.rego"),
        "package authzen.fixture\nimport rego.v1\ndefault decision := false\n\
         decision if input.action.name == \"read\"\n",
    )
    .unwrap();
    Copy(dir)
}

#[tokio::test]
async fn pages_follow_tokens_to_an_empty_one_and_never_mix_revisions() {
    let copy = copy_fixture();
    let subjects: Vec<Value> = (0..7)
        .map(|i| json!({"type": "user", "id": format!("user-{i}")}))
        .collect();
    std::fs::write(
        copy.0.join("entities.search.json"),
        json!({"subjects": subjects}).to_string(),
    )
    .unwrap();
    let server = Server::builder().policy_dir(&copy.0).build();
    server.load().unwrap();
    let first = json!({"subject": {"type": "user"}, "action": {"name": "read"},
                       "resource": {"type": "record", "id": "record-1"}, "page": {"limit": 3}});
    let mut seen = Vec::new();
    let mut request = first.clone();
    let mut pages = 0;
    loop {
        let (status, answer) = page(&server, &request).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let results = ids(&answer);
        assert!(results.len() <= 3);
        assert_eq!(answer["page"]["count"], results.len());
        assert_eq!(answer["page"]["total"], 7);
        seen.extend(results);
        pages += 1;
        let token = answer["page"]["next_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
        // The follow-up may leave out the limit.
        request = first.clone();
        request["page"] = if pages == 1 {
            json!({"token": token, "limit": 3})
        } else {
            json!({"token": token})
        };
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).map(|i| format!("user-{i}")).collect();
    assert_eq!(seen, expected, "every result once, in order");

    let (_, answer) = page(&server, &first).await;
    let token = answer["page"]["next_token"].as_str().unwrap().to_owned();
    // A changed request, or a changed limit, with the token is refused.
    for (path, value) in [
        ("action", json!({"name": "write"})),
        ("context", json!({"ip": "192.0.2.1"})),
        ("page", json!({"token": token, "limit": 4})),
        ("page", json!({"token": format!("{token}x")})),
        ("page", json!({"token": "bm90IGEgdG9rZW4"})),
    ] {
        let mut changed = first.clone();
        changed["page"] = json!({"token": token});
        changed[path] = value;
        let (status, answer) = page(&server, &changed).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
    }
    // A new revision of the entities between pages is a 409, not a page of the new revision.
    let mut follow = first.clone();
    follow["page"] = json!({"token": token});
    std::fs::write(
        copy.0.join("entities.search.json"),
        json!({"subjects": [{"type": "user", "id": "zed"}]}).to_string(),
    )
    .unwrap();
    server.load().unwrap();
    let (status, answer) = page(&server, &follow).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // And so is a new revision of the policies.
    let (_, answer) = page(&server, &first).await;
    assert_eq!(
        answer["page"]["next_token"], "",
        "one subject now: {answer}"
    );
    let rego = copy.0.join("fixture.rego");
    let text = std::fs::read_to_string(&rego).unwrap();
    std::fs::write(
        copy.0.join("entities.search.json"),
        json!({"subjects": subjects}).to_string(),
    )
    .unwrap();
    server.load().unwrap();
    let (_, answer) = page(&server, &first).await;
    let token = answer["page"]["next_token"].as_str().unwrap().to_owned();
    std::fs::write(&rego, format!("{text}\n# changed\n")).unwrap();
    server.load().unwrap();
    let mut follow = first.clone();
    follow["page"] = json!({"token": token});
    let (status, _) = page(&server, &follow).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn without_a_limit_a_large_result_set_is_paged_not_cut() {
    let copy = copy_fixture();
    let subjects: Vec<Value> = (0..crate::MAX_PAGE + 5)
        .map(|i| json!({"type": "user", "id": format!("u{i}")}))
        .collect();
    std::fs::write(
        copy.0.join("entities.search.json"),
        json!({"subjects": subjects}).to_string(),
    )
    .unwrap();
    let server = Server::builder().policy_dir(&copy.0).build();
    server.load().unwrap();
    let first = json!({"subject": {"type": "user"}, "action": {"name": "read"},
                       "resource": {"type": "record", "id": "record-1"}, "page": {"limit": 1_000_000}});
    let (status, answer) = page(&server, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&answer).len(), crate::MAX_PAGE);
    let token = answer["page"]["next_token"].as_str().unwrap();
    assert!(!token.is_empty(), "a cut result set has a token");
    let mut follow = first.clone();
    follow["page"] = json!({"token": token});
    let (status, answer) = page(&server, &follow).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(ids(&answer).len(), 5);
    assert_eq!(answer["page"]["next_token"], "");
}

#[tokio::test]
async fn a_package_without_an_entity_source_finds_nothing() {
    let server = super::clinic();
    let (status, _, answer) = call(
        &server,
        "POST",
        "/access/v1/search/resource",
        &json!({"subject": {"type": "user", "id": "nina"}, "action": {"name": "GET"},
                "resource": {"type": "route"}})
        .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["results"], json!([]));
}
