//! The gRPC service on a real port, called with tonic's generated client as Envoy calls it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::collections::HashMap;
use std::path::PathBuf;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use warden_server::Server;

const POLICY: &str = r#"package warden
import rego.v1

default decision := {"allow": false}

decision := {"allow": true} if {
	input.action.name == "GET"
	input.resource.id == "/public"
}

decision := {"allow": true} if {
	input.resource.id == "/mine"
	input.subject.id == "alice"
	input.resource.properties.query.v == "1"
}

decision := {"allow": true, "obligations": [{"type": "step_up", "acr_values": "urn:example:mfa"}]} if {
	input.resource.id == "/secret"
}
"#;

struct Running {
    dir: PathBuf,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(load: bool) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "warden-ext-authz-grpc-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), POLICY).unwrap();
    let server = Server::builder().policy_dir(&dir).build();
    if load {
        server.load().unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(warden_ext_authz::serve(server, listener, async {
        let _ = stopped.await;
    }));
    Running {
        dir,
        url,
        stop: Some(stop),
    }
}

fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain([(":path".to_owned(), path.to_owned())])
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

async fn call(url: &str, request: CheckRequest) -> Result<CheckResponse, tonic::Status> {
    let mut client = AuthorizationClient::connect(url.to_owned()).await.unwrap();
    client.check(request).await.map(tonic::Response::into_inner)
}

fn code(response: &CheckResponse) -> i32 {
    response.status.as_ref().map_or(0, |s| s.code)
}

fn header<'a>(
    headers: &'a [envoy_types::ext_authz::v3::pb::HeaderValueOption],
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

#[tokio::test]
async fn permits_are_ok_with_decision_headers_and_denials_carry_status_and_body() {
    let running = start(true).await;
    let ok = call(&running.url, check("GET", "/public", &[]))
        .await
        .unwrap();
    assert_eq!(code(&ok), 0, "OK");
    let Some(HttpResponse::OkResponse(ok)) = ok.http_response else {
        panic!("no ok_response: {ok:?}");
    };
    assert!(header(&ok.headers, "x-warden-decision-id").is_some());

    let denied = call(&running.url, check("DELETE", "/public", &[]))
        .await
        .unwrap();
    assert_eq!(code(&denied), 7, "PERMISSION_DENIED");
    let Some(HttpResponse::DeniedResponse(denied)) = denied.http_response else {
        panic!("no denied_response");
    };
    assert_eq!(denied.status.unwrap().code, 403);
    assert_eq!(
        header(&denied.headers, "content-type"),
        Some("application/problem+json")
    );
    assert!(denied.body.contains("\"status\":403"), "{}", denied.body);
}

#[tokio::test]
async fn the_principal_and_query_reach_the_policy_and_step_up_is_a_401_challenge() {
    let running = start(true).await;
    let alice = [("x-warden-subject", "alice")];
    assert_eq!(
        code(
            &call(&running.url, check("GET", "/mine?v=1", &alice))
                .await
                .unwrap()
        ),
        0
    );
    assert_eq!(
        code(
            &call(&running.url, check("GET", "/mine?v=2", &alice))
                .await
                .unwrap()
        ),
        7
    );
    assert_eq!(
        code(
            &call(&running.url, check("GET", "/mine?v=1", &[]))
                .await
                .unwrap()
        ),
        7
    );
    let secret = call(&running.url, check("GET", "/secret", &[]))
        .await
        .unwrap();
    assert_eq!(code(&secret), 16, "UNAUTHENTICATED");
    let Some(HttpResponse::DeniedResponse(denied)) = secret.http_response else {
        panic!("no denied_response");
    };
    assert_eq!(denied.status.unwrap().code, 401);
    let challenge = header(&denied.headers, "www-authenticate").unwrap();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
}

#[tokio::test]
async fn without_policies_or_http_attributes_nothing_is_allowed() {
    let running = start(false).await;
    let unavailable = call(&running.url, check("GET", "/public", &[]))
        .await
        .unwrap();
    assert_eq!(code(&unavailable), 14, "UNAVAILABLE");
    let running = start(true).await;
    let error = call(&running.url, CheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}
