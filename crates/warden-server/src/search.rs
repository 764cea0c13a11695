//! The AuthZEN 1.0 search endpoints: which subjects, resources or actions the policies permit.
//!
//! The candidates come from the package's [entity source](crate::entities); each is decided by
//! the policies like an evaluation, and the permitted ones are the results, in the source's
//! order. A permitted result whose decision carries obligations lists them in its
//! `obligations` member, as Obligations Profile objects; when the request's
//! `context.supported_obligations` declares what its PEP carries out, a result that needs
//! another type is left out (the others stay). Pagination:
//!
//! * `page.limit` caps a page (at most [`MAX_PAGE`]; a search without a limit gets pages of
//!   [`MAX_PAGE`]). A page that does not end the results has a non-empty `page.next_token`,
//!   the last page an empty one; a result set is never cut without a token.
//! * A request with `page.token` must repeat the first request exactly (every member; the limit
//!   may be left out, and if given must be the same); a changed request is a `400`. When the policies or the entity source changed
//!   since the first page, the answer is a `409` naming both revisions, so pages of different
//!   revisions are never mixed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use warden_decision::authzen::obligation_to_profile;
use warden_decision::{AccessRequest, Action, Properties, Resource, Subject};

use crate::routes::{
    Problem, Shared, body, decide, json_response, malformed, pdp_failed, problem, require_json,
    unavailable,
};
use crate::{Loaded, State};

/// The most results one page holds.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subject,
    Resource,
    Action,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Self::Subject => "search_subject",
            Self::Resource => "search_resource",
            Self::Action => "search_action",
        }
    }
}

pub(crate) async fn subject(
    axum::extract::State(state): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    run(&state, Kind::Subject, &headers, bytes).await
}

pub(crate) async fn resource(
    axum::extract::State(state): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    run(&state, Kind::Resource, &headers, bytes).await
}

pub(crate) async fn action(
    axum::extract::State(state): Shared,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    run(&state, Kind::Action, &headers, bytes).await
}

async fn run(
    state: &State,
    kind: Kind,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let response = search(state, kind, headers, bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state
        .metrics
        .request(kind.endpoint(), response.status().as_u16());
    response
}

/// The searched-for entity: its type (none for actions) and the properties a result must have.
struct Target {
    kind: Option<String>,
    properties: Properties,
}

struct Query {
    /// The request with the searched-for member a placeholder, filled in per candidate.
    template: AccessRequest,
    target: Target,
    /// The limit the request gave, if any.
    limit: Option<usize>,
    token: Option<String>,
    /// A digest of everything but `page`, which every page must repeat.
    digest: String,
}

fn member<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    name: &str,
) -> Result<T, Problem> {
    let value = object
        .remove(name)
        .ok_or_else(|| malformed(format!("the search has no `{name}`")))?;
    serde_json::from_value(value).map_err(|e| malformed(format!("`{name}` is malformed: {e}")))
}

/// The searched-for member: an object with a string `type` (an `id` is ignored, as AuthZEN
/// requires) and optional `properties`.
fn target(object: &mut Map<String, Value>, name: &str, typed: bool) -> Result<Target, Problem> {
    let value = if typed {
        Some(
            object
                .remove(name)
                .ok_or_else(|| malformed(format!("the search has no `{name}`")))?,
        )
    } else {
        object.remove(name)
    };
    let Some(value) = value else {
        return Ok(Target {
            kind: None,
            properties: Properties::new(),
        });
    };
    let Value::Object(mut entity) = value else {
        return Err(malformed(format!("`{name}` is not an object")));
    };
    let kind = if typed {
        match entity.remove("type") {
            Some(Value::String(kind)) => Some(kind),
            Some(_) => return Err(malformed(format!("`{name}.type` is not a string"))),
            None => return Err(malformed(format!("`{name}` has no `type`"))),
        }
    } else {
        None
    };
    let properties = match entity.remove("properties") {
        None => Properties::new(),
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(malformed(format!("`{name}.properties` is not an object"))),
    };
    Ok(Target { kind, properties })
}

fn query(kind: Kind, bytes: &[u8]) -> Result<Query, Problem> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(malformed("the body is not a JSON object"));
    };
    let (limit, token) = match object.remove("page") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(mut page)) => {
            let limit = match page.remove("limit") {
                None | Some(Value::Null) => None,
                Some(value) => Some(
                    value
                        .as_u64()
                        .filter(|l| *l > 0)
                        .and_then(|l| usize::try_from(l).ok())
                        .ok_or_else(|| malformed("`page.limit` is not a positive integer"))?,
                ),
            };
            let token = match page.remove("token") {
                None | Some(Value::Null) => None,
                Some(Value::String(token)) if token.is_empty() => None,
                Some(Value::String(token)) => Some(token),
                Some(_) => return Err(malformed("`page.token` is not a string")),
            };
            (limit, token)
        }
        Some(_) => return Err(malformed("`page` is not an object")),
    };
    let context: Properties = match object.remove("context") {
        None | Some(Value::Null) => Properties::new(),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(malformed("`context` is not an object")),
    };
    let (template, target) = match kind {
        Kind::Subject => {
            let target = target(&mut object, "subject", true)?;
            let action: Action = member(&mut object, "action")?;
            let resource: Resource = member(&mut object, "resource")?;
            let subject = Subject::new(target.kind.clone().unwrap_or_default(), "");
            (AccessRequest::new(subject, action, resource), target)
        }
        Kind::Resource => {
            let subject: Subject = member(&mut object, "subject")?;
            let action: Action = member(&mut object, "action")?;
            let target = target(&mut object, "resource", true)?;
            let resource = Resource::new(target.kind.clone().unwrap_or_default(), "");
            (AccessRequest::new(subject, action, resource), target)
        }
        Kind::Action => {
            let subject: Subject = member(&mut object, "subject")?;
            let resource: Resource = member(&mut object, "resource")?;
            let target = target(&mut object, "action", false)?;
            (
                AccessRequest::new(subject, Action::new(""), resource),
                target,
            )
        }
    };
    let mut template = template;
    template.context = context;
    // The digest covers what the results depend on, as the search read it (unknown members
    // are ignored, so they are not part of it either).
    let canonical = json!({
        "kind": kind.endpoint(),
        "request": template,
        "target": {"type": target.kind, "properties": target.properties},
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    Ok(Query {
        template,
        target,
        limit: limit.map(|l| l.min(MAX_PAGE)),
        token,
        digest: digest.iter().take(12).map(|b| format!("{b:02x}")).collect(),
    })
}

/// What a page token holds: where the next page starts, the search it belongs to, and the
/// revision the results were computed at. It is not a capability: every result of every page
/// is decided again.
#[derive(Debug, Serialize, Deserialize)]
struct Token {
    offset: usize,
    limit: usize,
    search: String,
    revision: String,
}

impl Token {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(token: &str) -> Result<Self, Problem> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| malformed("`page.token` is not a token this server issued"))
    }
}

/// The revision a search's results depend on: the policies' and the entity source's.
fn revision(loaded: &Loaded) -> String {
    let policy = loaded
        .pdp
        .revision()
        .map(|r| format!("{}@{}", r.id, r.revision))
        .unwrap_or_default();
    format!("{policy};entities={}", loaded.entities.digest)
}

/// Whether a candidate has every property the search asks for.
fn matches(properties: &Properties, wanted: &Properties) -> bool {
    wanted.iter().all(|(k, v)| properties.get(k) == Some(v))
}

async fn search(
    state: &State,
    kind: Kind,
    headers: &HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    require_json(headers)?;
    let bytes = body(bytes)?;
    let query = query(kind, &bytes)?;
    let loaded = state
        .current
        .load_full()
        .ok_or_else(|| unavailable(state))?;
    let revision = revision(&loaded);
    let (offset, limit) = match &query.token {
        None => (0, query.limit.unwrap_or(MAX_PAGE)),
        Some(token) => {
            let token = Token::decode(token)?;
            // A follow-up may leave the limit out; one it gives must be the first page's.
            if token.search != query.digest || query.limit.is_some_and(|l| l != token.limit) {
                return Err(malformed(
                    "the request differs from the one that began the search; a page token \
                     must come with the same request",
                ));
            }
            if token.revision != revision {
                return Err(problem(
                    StatusCode::CONFLICT,
                    "Revision changed",
                    format!(
                        "the search began at revision `{}` and the server is now at `{revision}`; \
                         start the search again",
                        token.revision
                    ),
                ));
            }
            (token.offset, token.limit.clamp(1, MAX_PAGE))
        }
    };
    let entities = &loaded.entities;
    let mut permitted = Vec::new();
    let candidates: Vec<AccessRequest> = match kind {
        Kind::Subject => entities
            .subjects
            .iter()
            .filter(|s| Some(&s.kind) == query.target.kind.as_ref())
            .filter(|s| matches(&s.properties, &query.target.properties))
            .map(|s| AccessRequest {
                subject: s.clone(),
                ..query.template.clone()
            })
            .collect(),
        Kind::Resource => entities
            .resources
            .iter()
            .filter(|r| Some(&r.kind) == query.target.kind.as_ref())
            .filter(|r| matches(&r.properties, &query.target.properties))
            .map(|r| AccessRequest {
                resource: r.clone(),
                ..query.template.clone()
            })
            .collect(),
        Kind::Action => entities
            .actions
            .iter()
            .filter(|a| matches(&a.properties, &query.target.properties))
            .map(|a| AccessRequest {
                action: a.clone(),
                ..query.template.clone()
            })
            .collect(),
    };
    for candidate in &candidates {
        let decision = decide(state, &loaded, headers, candidate)
            .await
            .map_err(|e| pdp_failed(&e))?;
        if !decision.allowed {
            continue;
        }
        let mut result = match kind {
            Kind::Subject => json!({"type": candidate.subject.kind, "id": candidate.subject.id}),
            Kind::Resource => {
                json!({"type": candidate.resource.kind, "id": candidate.resource.id})
            }
            Kind::Action => json!({"name": candidate.action.name}),
        };
        if !decision.obligations.is_empty()
            && let Some(object) = result.as_object_mut()
        {
            let obligations: Vec<Value> = decision
                .obligations
                .iter()
                .enumerate()
                .map(|(i, o)| obligation_to_profile(i, o))
                .collect();
            object.insert("obligations".into(), Value::Array(obligations));
        }
        permitted.push(result);
    }
    let total = permitted.len();
    let start = offset.min(total);
    let end = start.saturating_add(limit).min(total);
    let results: Vec<Value> = permitted
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let next_token = if end < total {
        Token {
            offset: end,
            limit,
            search: query.digest.clone(),
            revision,
        }
        .encode()
    } else {
        String::new()
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "page": {"next_token": next_token, "count": results.len(), "total": total},
            "results": results,
        }),
    ))
}
