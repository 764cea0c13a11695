//! Token verification against a real identity provider: a JWKS and OpenID Connect discovery
//! server on 127.0.0.1 (in the test), with key rotation, an unreachable provider, floods of
//! unknown `kid`s, algorithms from the key, `typ` and the subject's type.
#![expect(clippy::unwrap_used, reason = "test helpers fail the test loudly")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{Request, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::Decision;
use warden_http::{JwksOptions, JwtVerifier, PolicyLayer, TokenError};
use warden_test::{Answer, ScriptedPdp, TestTokens};

const RSA_PRIVATE_PEM: &str = include_str!("../crates/warden-test/keys/rsa-private.pem");
const EC_PRIVATE_PEM: &str = include_str!("../crates/warden-test/keys/ec-private.pem");

/// The public halves of warden-test's RSA and P-256 keys as JWKs.
fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
    let mut jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig", "e": "AQAB",
        "n": "qlDjdB93nP0dVjV5MQLJ7mI6QZqeMOmrKnuGirqlKyEEF97u2wQxogC4C9-0lz2fgZZpOYdjTPlLJcQ4onEd044DzOpyw5BX6GXdR-8khE1BhuVA5_5KOgUnuglbBfh_bKD_vvDjDja5CRLfsgzUxep15IbEdHEAQNfM3vMv5gTZYrhN7z07W48LjtaCShL-jhFGoR6AbFOuG3dTQyYZP6gfsZs8on6VF6Kd2piS4TlYJf0bZBoFJRRKsoB2sLKrHvesSbCo_-BHlAm_VHhpEMEx--f2RgIkz5hWlT4SKRZQIteNhQo0ZJumEJUEMuQxXrDFvh39qZoeYQG0DG4VKw"
    });
    if let Some(alg) = alg {
        jwk.as_object_mut()
            .unwrap()
            .insert("alg".into(), alg.into());
    }
    jwk
}

fn ec_jwk(kid: &str) -> Value {
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": "gvmyctuE2NNgpbPw61XIfc9sVK63aVkDV6Jhpq0E2fw",
        "y": "HzE6AFh3YzWRYKI0ndhS1KBf9fkKz3m0_c6iZx2-bT0"
    })
}

fn secret(n: u8) -> Vec<u8> {
    format!("a shared secret number {n:02} of 32+ bytes!").into_bytes()
}

fn oct_jwk(kid: Option<&str>, n: u8) -> Value {
    let mut jwk = json!({"kty": "oct", "alg": "HS256", "k": warden_test::base64url(&secret(n))});
    if let Some(kid) = kid {
        jwk.as_object_mut()
            .unwrap()
            .insert("kid".into(), kid.into());
    }
    jwk
}

fn sign(
    alg: Algorithm,
    kid: Option<&str>,
    typ: Option<&str>,
    key: &EncodingKey,
    claims: &Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(kid: Option<&str>, n: u8, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        kid,
        Some("JWT"),
        &EncodingKey::from_secret(&secret(n)).unwrap(),
        claims,
    )
}

fn rsa(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    sign(alg, Some(kid), Some("JWT"), &key, claims)
}

fn claims(sub: &str) -> Value {
    TestTokens::claims(sub, json!({}))
}

/// A JWKS and discovery server: its key set can be swapped, it can go down, and it counts the
/// key set requests it answered.
#[derive(Clone)]
struct Idp {
    set: Arc<Mutex<Value>>,
    issuer: Arc<Mutex<String>>,
    cache_control: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let idp = Self {
            set: Arc::new(Mutex::new(json!({"keys": keys}))),
            issuer: Arc::new(Mutex::new(format!("http://{addr}"))),
            cache_control: Arc::new(Mutex::new("max-age=3600".into())),
            down: Arc::new(AtomicBool::new(false)),
            hits: Arc::new(AtomicUsize::new(0)),
            addr,
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(idp): State<Idp>| async move {
                    axum::Json(json!({
                        "issuer": *idp.issuer.lock().unwrap(),
                        "jwks_uri": format!("http://{}/jwks", idp.addr),
                    }))
                }),
            )
            .route(
                "/jwks",
                get(|State(idp): State<Idp>| async move {
                    idp.hits.fetch_add(1, Ordering::SeqCst);
                    if idp.down.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                    }
                    let cache_control = idp.cache_control.lock().unwrap().clone();
                    (
                        [(header::CACHE_CONTROL, cache_control)],
                        axum::Json(idp.set.lock().unwrap().clone()),
                    )
                        .into_response()
                }),
            )
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn rotate(&self, keys: Vec<Value>) {
        *self.set.lock().unwrap() = json!({"keys": keys});
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

use axum::response::IntoResponse;

/// Waits (up to 10 s) until `done` holds; the background refresh runs on its own schedule.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done(), "the condition did not hold within 10 s");
}

fn options(min_refetch_ms: u64) -> JwksOptions {
    JwksOptions::default().min_refetch_interval(Duration::from_millis(min_refetch_ms))
}

/// A router whose one route is permitted to everyone the verifier lets through.
fn app(verifier: JwtVerifier, pdp: ScriptedPdp) -> Router {
    Router::new()
        .route("/patients", get(|| async { "ok" }))
        .layer(PolicyLayer::new(pdp).jwt(verifier))
}

fn permit() -> ScriptedPdp {
    ScriptedPdp::new(|_| Answer::Decision(Decision::permit()))
}

async fn status(app: &Router, token: &str) -> StatusCode {
    let request = Request::get("/patients")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn oidc_discovery_finds_the_keys_and_requires_the_issuer() {
    let idp = Idp::start(vec![rsa_jwk("rsa1", Some("RS256")), ec_jwk("ec1")]).await;
    let verifier = JwtVerifier::new()
        .with_oidc_discovery(&idp.url(), options(1000))
        .await
        .unwrap();
    let with_iss = |iss: &str| TestTokens::claims("alice", json!({"iss": iss}));
    assert_eq!(
        verifier
            .verify(&rsa(Algorithm::RS256, "rsa1", &with_iss(&idp.url())))
            .unwrap()
            .subject,
        "alice"
    );
    let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
    let es = sign(
        Algorithm::ES256,
        Some("ec1"),
        None,
        &ec_key,
        &with_iss(&idp.url()),
    );
    assert!(verifier.verify(&es).is_ok());
    assert_eq!(
        verifier.verify(&rsa(Algorithm::RS256, "rsa1", &with_iss("http://evil"))),
        Err(TokenError::Claims)
    );
    assert_eq!(
        verifier.verify(&rsa(Algorithm::RS256, "rsa1", &claims("alice"))),
        Err(TokenError::Claims),
        "the discovered issuer is required"
    );
    // A discovery document that names another issuer is refused.
    *idp.issuer.lock().unwrap() = "http://127.0.0.1:1".into();
    assert!(
        JwtVerifier::new()
            .with_oidc_discovery(&idp.url(), options(1000))
            .await
            .is_err()
    );
    // Plain http to anything but a loopback address is refused before any request.
    assert!(
        JwtVerifier::new()
            .with_jwks_url("http://idp.example/jwks", options(1000))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rotation_retires_the_old_key_and_picks_up_a_new_kid_without_a_restart() {
    let idp = Idp::start(vec![oct_jwk(Some("a"), 1)]).await;
    let verifier = JwtVerifier::new()
        .with_jwks_url(&format!("{}/jwks", idp.url()), options(200))
        .await
        .unwrap();
    let app = app(verifier.clone(), permit());
    let old = hs(Some("a"), 1, &claims("alice"));
    let new = hs(Some("b"), 2, &claims("alice"));
    assert_eq!(status(&app, &old).await, StatusCode::OK);
    assert_eq!(
        status(&app, &new).await,
        StatusCode::UNAUTHORIZED,
        "b is not published yet"
    );
    idp.rotate(vec![oct_jwk(Some("b"), 2)]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        status(&app, &new).await,
        StatusCode::OK,
        "the new kid is fetched on first use"
    );
    assert_eq!(
        status(&app, &old).await,
        StatusCode::UNAUTHORIZED,
        "the retired key verifies nothing, remembered token or not"
    );
    assert_eq!(verifier.verify(&old), Err(TokenError::UnknownKey));
}

#[tokio::test]
async fn floods_of_unknown_kids_cost_one_fetch_per_interval() {
    let idp = Idp::start(vec![oct_jwk(Some("a"), 1)]).await;
    let verifier = JwtVerifier::new()
        .with_jwks_url(&format!("{}/jwks", idp.url()), options(1000))
        .await
        .unwrap();
    let app = app(verifier.clone(), permit());
    assert_eq!(idp.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let app = app.clone();
            let token = hs(Some(&format!("unknown-{i}")), 1, &claims("mallory"));
            tokio::spawn(async move { status(&app, &token).await })
        })
        .collect();
    for answer in flood {
        assert_eq!(answer.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idp.hits(), 2, "one refetch for forty unknown kids");
    assert_eq!(verifier.jwks_fetches(), 2);
}

#[tokio::test]
async fn the_last_good_key_set_is_kept_while_the_provider_is_down() {
    let idp = Idp::start(vec![oct_jwk(Some("a"), 1)]).await;
    // max-age=0: refreshed every interval (100 ms).
    *idp.cache_control.lock().unwrap() = "max-age=0".into();
    let verifier = JwtVerifier::new()
        .with_jwks_url(
            &format!("{}/jwks", idp.url()),
            options(100).ttl(Duration::from_millis(100)),
        )
        .await
        .unwrap()
        .remember_verified(0);
    let token = hs(Some("a"), 1, &claims("alice"));
    idp.down.store(true, Ordering::SeqCst);
    let failing_since = idp.hits();
    eventually(|| idp.hits() >= failing_since + 3).await;
    assert!(verifier.verify(&token).is_ok(), "the last good set stays");
    // Back up with a rotated set: the background refresh picks it up without any token asking.
    idp.rotate(vec![oct_jwk(Some("b"), 2)]);
    idp.down.store(false, Ordering::SeqCst);
    eventually(|| verifier.verify(&token).is_err()).await;
    assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
    assert!(verifier.verify(&hs(Some("b"), 2, &claims("alice"))).is_ok());
}

#[test]
fn algorithms_come_from_the_key_never_from_the_token() {
    let pinned = JwtVerifier::new()
        .jwks(&json!({"keys": [rsa_jwk("r", Some("RS256"))]}).to_string())
        .unwrap();
    assert!(
        pinned
            .verify(&rsa(Algorithm::RS256, "r", &claims("a")))
            .is_ok()
    );
    assert_eq!(
        pinned.verify(&rsa(Algorithm::RS384, "r", &claims("a"))),
        Err(TokenError::UnacceptedAlgorithm),
        "the key names RS256"
    );
    let family = JwtVerifier::new()
        .jwks(&json!({"keys": [rsa_jwk("r", None)]}).to_string())
        .unwrap();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        assert!(
            family.verify(&rsa(alg, "r", &claims("a"))).is_ok(),
            "{alg:?}"
        );
    }
    // Algorithm confusion: an HS256 token keyed with the RSA key's public modulus.
    let n = rsa_jwk("r", None)["n"].as_str().unwrap().to_owned();
    let confused = sign(
        Algorithm::HS256,
        Some("r"),
        None,
        &EncodingKey::from_secret(n.as_bytes()).unwrap(),
        &claims("a"),
    );
    assert_eq!(
        family.verify(&confused),
        Err(TokenError::UnacceptedAlgorithm)
    );
    // Keys that cannot be used are left out; a set of only those is an error.
    for unusable in [
        json!({"kty": "oct", "k": warden_test::base64url(&secret(1))}),
        json!({"kty": "RSA", "alg": "ES256", "n": "AQAB", "e": "AQAB"}),
        rsa_jwk("enc", None)
            .as_object()
            .cloned()
            .map(|mut k| {
                k.insert("use".into(), "enc".into());
                Value::Object(k)
            })
            .unwrap(),
    ] {
        assert!(
            JwtVerifier::new()
                .jwks(&json!({"keys": [unusable]}).to_string())
                .is_err(),
            "{unusable}"
        );
    }
}

#[test]
fn a_key_without_kid_never_matches_a_token_that_names_one_in_a_set_with_kids() {
    let set = json!({"keys": [oct_jwk(Some("a"), 1), oct_jwk(None, 2)]}).to_string();
    let verifier = JwtVerifier::new().jwks(&set).unwrap();
    assert!(verifier.verify(&hs(Some("a"), 1, &claims("a"))).is_ok());
    assert_eq!(
        verifier.verify(&hs(Some("zzz"), 2, &claims("a"))),
        Err(TokenError::UnknownKey)
    );
    assert!(
        verifier.verify(&hs(None, 2, &claims("a"))).is_ok(),
        "a token without kid may use it"
    );
    let no_kids = JwtVerifier::new()
        .jwks(&json!({"keys": [oct_jwk(None, 2)]}).to_string())
        .unwrap();
    assert!(
        no_kids.verify(&hs(Some("any"), 2, &claims("a"))).is_ok(),
        "a set without kids"
    );
}

#[test]
fn typ_is_checked_when_required() {
    let verifier = JwtVerifier::new().hs256(&secret(1)).unwrap().typ("at+jwt");
    let key = EncodingKey::from_secret(&secret(1)).unwrap();
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("application/at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("JWT"), false),
        (Some("application/"), false),
        (None, false),
    ] {
        let token = sign(Algorithm::HS256, None, typ, &key, &claims("a"));
        assert_eq!(verifier.verify(&token).is_ok(), ok, "{typ:?}");
        if !ok {
            assert_eq!(verifier.verify(&token), Err(TokenError::Type));
        }
    }
}

#[tokio::test]
async fn the_subject_type_comes_from_a_claim_or_a_rule() {
    let machine = TestTokens::claims(
        "svc-1",
        json!({"client_id": "svc-1", "sub_type": "service"}),
    );
    let person = TestTokens::claims("alice", json!({"client_id": "web"}));
    let by_claim = JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)
        .unwrap()
        .subject_type_claim("sub_type");
    assert_eq!(
        by_claim.verify(&TestTokens::hs256(&machine)).unwrap().kind,
        "service"
    );
    assert_eq!(
        by_claim.verify(&TestTokens::hs256(&person)).unwrap().kind,
        "user"
    );
    let by_rule = JwtVerifier::new()
        .hs256(warden_test::HS256_SECRET)
        .unwrap()
        .subject_type_rule(|claims| {
            (claims.get("client_id") == claims.get("sub")).then(|| "service".to_owned())
        });
    let pdp = permit();
    let app = app(by_rule, pdp.clone());
    assert_eq!(
        status(&app, &TestTokens::hs256(&machine)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &TestTokens::hs256(&person)).await,
        StatusCode::OK
    );
    let kinds: Vec<String> = pdp.requests().into_iter().map(|r| r.subject.kind).collect();
    assert_eq!(kinds, ["service", "user"]);
}
