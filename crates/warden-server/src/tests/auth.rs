//! Caller authentication: bearer tokens and verified client certificates, `/health` open.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::{PATIENT, clinic_dir, nurse};
use crate::{Server, VerifiedClientCertificate};

fn guarded() -> Server {
    let server = Server::builder()
        .policy_dir(clinic_dir())
        .bearer_token("t0ken-one")
        .bearer_token("t0ken-two")
        .build();
    server.load().unwrap();
    server
}

const ENDPOINTS: [(&str, &str); 10] = [
    ("POST", "/access/v1/evaluation"),
    ("POST", "/access/v1/evaluations"),
    ("POST", "/access/v1/search/subject"),
    ("POST", "/access/v1/search/resource"),
    ("POST", "/access/v1/search/action"),
    ("GET", "/.well-known/authzen-configuration"),
    ("POST", "/v1/data/clinic/decision"),
    ("GET", "/metrics"),
    ("GET", "/v1/revision"),
    ("GET", "/no/such/endpoint"),
];

async fn status(server: &Server, method: &str, uri: &str, auth: Option<&str>) -> StatusCode {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "pdp.test")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let body = if method == "POST" {
        nurse(PATIENT, "c1").to_string()
    } else {
        String::new()
    };
    let response = server
        .router()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    if response.status() == StatusCode::UNAUTHORIZED {
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"warden\""
        );
    }
    response.status()
}

#[tokio::test]
async fn every_endpoint_but_health_needs_a_known_token() {
    let server = guarded();
    for (method, uri) in ENDPOINTS {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer "),
            Some("Bearer t0ken-on"),
            Some("Bearer t0ken-one-and-more"),
            Some("Basic dDBrZW4tb25lOg=="),
            Some("t0ken-one"),
        ] {
            assert_eq!(
                status(&server, method, uri, auth).await,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {auth:?}"
            );
        }
        for auth in ["Bearer t0ken-one", "bearer t0ken-two"] {
            assert_ne!(
                status(&server, method, uri, Some(auth)).await,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {auth}"
            );
        }
    }
    assert_eq!(
        status(&server, "GET", "/health", None).await,
        StatusCode::OK
    );
    // Only `/health` itself is open.
    for uri in ["/health/", "/health/../metrics", "/Health"] {
        assert_eq!(
            status(&server, "GET", uri, None).await,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_verified_client_certificate_counts_only_when_accepted() {
    async fn with_certificate(server: &Server) -> StatusCode {
        let mut request = Request::post("/access/v1/evaluation")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(nurse(PATIENT, "c1").to_string()))
            .unwrap();
        request.extensions_mut().insert(VerifiedClientCertificate);
        server.router().oneshot(request).await.unwrap().status()
    }
    let server = guarded();
    assert_eq!(with_certificate(&server).await, StatusCode::UNAUTHORIZED);
    let server = Server::builder()
        .policy_dir(clinic_dir())
        .accept_client_certificates()
        .build();
    server.load().unwrap();
    assert_eq!(with_certificate(&server).await, StatusCode::OK);
    assert_eq!(
        status(&server, "POST", "/access/v1/evaluation", None).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn without_credentials_configured_the_server_is_open() {
    let server = super::clinic();
    assert_eq!(
        status(&server, "POST", "/access/v1/evaluation", None).await,
        StatusCode::OK
    );
}
