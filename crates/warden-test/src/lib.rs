//! Test doubles for Warden: PDPs whose answers a test controls, and signed test tokens.
//!
//! * [`StaticPdp`] answers every request with the same decision.
//! * [`ScriptedPdp`] answers from a script: a decision, an error, a delay or no answer at all,
//!   chosen per request by a closure, and records every request it was asked.
//! * [`TestTokens`] signs JWTs with the test keys shipped in this crate (HS256, RS256, ES256),
//!   so tests and examples can exercise the JWT verification of the HTTP PEP.
//! * [`service_url`] reads the URL of a server a test needs, and tells a newcomer which tests
//!   did not run without it.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use warden_decision::{AccessRequest, Action, Decision, Pdp, PdpError, Resource, Subject};
//! use warden_test::{Answer, ScriptedPdp};
//!
//! let pdp = ScriptedPdp::new(|request: &AccessRequest| match request.action.name.as_str() {
//!     "GET" => Answer::Decision(Decision::permit()),
//!     "DELETE" => Answer::Error(PdpError::unavailable("scripted outage")),
//!     _ => Answer::Delay(Duration::from_millis(5), Box::new(Answer::Decision(Decision::deny()))),
//! });
//! let get = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
//! assert!(pdp.decide(&get).await.unwrap().allowed);
//! assert_eq!(pdp.requests().len(), 1);
//! # });
//! ```

mod services;

pub use services::{REQUIRE, service_url};

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use warden_decision::{AccessRequest, Decision, Pdp, PdpError, PdpFuture, PolicyRevision};

/// A PDP that answers every request with the same decision (a fresh id each time).
#[derive(Debug, Clone)]
pub struct StaticPdp {
    decision: Decision,
}

impl StaticPdp {
    /// Answers with `decision`.
    pub fn new(decision: Decision) -> Self {
        Self { decision }
    }

    /// Permits everything.
    pub fn permit() -> Self {
        Self::new(Decision::permit())
    }

    /// Denies everything.
    pub fn deny() -> Self {
        Self::new(Decision::deny())
    }
}

impl Pdp for StaticPdp {
    fn decide<'a>(&'a self, _request: &'a AccessRequest) -> PdpFuture<'a> {
        let mut decision = self.decision.clone();
        decision.id = warden_decision::DecisionId::new();
        Box::pin(std::future::ready(Ok(decision)))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(self.decision.policy.clone())
    }
}

/// What a [`ScriptedPdp`] does with one request.
#[derive(Debug)]
pub enum Answer {
    /// Answer with this decision.
    Decision(Decision),
    /// Fail with this error.
    Error(PdpError),
    /// Wait, then do the inner answer.
    Delay(Duration, Box<Answer>),
    /// Never answer.
    Hang,
}

type Script = dyn Fn(&AccessRequest) -> Answer + Send + Sync;

/// A PDP that answers from a script and records the requests it was asked.
#[derive(Clone)]
pub struct ScriptedPdp {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<AccessRequest>>>,
}

impl fmt::Debug for ScriptedPdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedPdp")
            .field("requests", &self.requests().len())
            .finish()
    }
}

impl ScriptedPdp {
    /// A PDP that runs `script` for every request.
    pub fn new(script: impl Fn(&AccessRequest) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A PDP that never answers.
    pub fn hang() -> Self {
        Self::new(|_| Answer::Hang)
    }

    /// A PDP that always fails with `error`.
    pub fn failing(error: PdpError) -> Self {
        Self::new(move |_| Answer::Error(error.clone()))
    }

    /// The requests asked so far, in order.
    pub fn requests(&self) -> Vec<AccessRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Pdp for ScriptedPdp {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request.clone());
        }
        let answer = (self.script)(request);
        Box::pin(play(answer))
    }
}

async fn play(mut answer: Answer) -> Result<Decision, PdpError> {
    loop {
        match answer {
            Answer::Decision(decision) => return Ok(decision),
            Answer::Error(error) => return Err(error),
            Answer::Delay(delay, then) => {
                tokio::time::sleep(delay).await;
                answer = *then;
            }
            Answer::Hang => std::future::pending::<()>().await,
        }
    }
}

/// The HS256 secret of the test tokens.
pub const HS256_SECRET: &[u8] = b"warden-test-secret-do-not-use-in-production";
/// The RSA public key (PEM) that verifies RS256 test tokens.
pub const RSA_PUBLIC_PEM: &str = include_str!("../keys/rsa-public.pem");
/// The EC P-256 public key (PEM) that verifies ES256 test tokens.
pub const EC_PUBLIC_PEM: &str = include_str!("../keys/ec-public.pem");
const RSA_PRIVATE_PEM: &str = include_str!("../keys/rsa-private.pem");
const EC_PRIVATE_PEM: &str = include_str!("../keys/ec-private.pem");

/// Signs JWTs with the test keys. The keys are public: only for tests and examples.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestTokens;

impl TestTokens {
    /// Seconds since the Unix epoch.
    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Claims for `sub` valid for an hour, plus `extra` (an object).
    pub fn claims(sub: &str, extra: Value) -> Value {
        let now = Self::now();
        let mut claims = json!({"sub": sub, "iat": now, "exp": now + 3600});
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        claims
    }

    /// An HS256 token for `claims`.
    pub fn hs256(claims: &Value) -> String {
        match EncodingKey::from_secret(HS256_SECRET) {
            Ok(key) => Self::sign(Algorithm::HS256, &key, claims),
            Err(e) => format!("invalid-test-key:{e}"),
        }
    }

    /// An RS256 token for `claims`.
    pub fn rs256(claims: &Value) -> String {
        match EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()) {
            Ok(key) => Self::sign(Algorithm::RS256, &key, claims),
            Err(e) => format!("invalid-test-key:{e}"),
        }
    }

    /// An ES256 token for `claims`.
    pub fn es256(claims: &Value) -> String {
        match EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()) {
            Ok(key) => Self::sign(Algorithm::ES256, &key, claims),
            Err(e) => format!("invalid-test-key:{e}"),
        }
    }

    /// An unsigned token with header `{"alg": "none"}`, which every verifier must refuse.
    pub fn unsigned(claims: &Value) -> String {
        format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes())
        )
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, key)
            .unwrap_or_else(|e| format!("unsignable-test-token:{e}"))
    }
}

/// Unpadded base64url, enough to forge test tokens.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            if let Some(&c) = ALPHABET.get(index as usize) {
                out.push(char::from(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn signs_with_every_test_key() {
        let claims = TestTokens::claims("alice", json!({"role": "nurse"}));
        for token in [
            TestTokens::hs256(&claims),
            TestTokens::rs256(&claims),
            TestTokens::es256(&claims),
        ] {
            assert_eq!(token.split('.').count(), 3, "{token}");
            assert!(
                !token.contains("invalid") && !token.contains("unsignable"),
                "{token}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scripted_pdp_plays_delays_and_errors() {
        use warden_decision::{Action, Resource, Subject};
        let pdp = ScriptedPdp::new(|r| {
            if r.subject.id == "slow" {
                Answer::Delay(
                    Duration::from_secs(5),
                    Box::new(Answer::Decision(Decision::deny())),
                )
            } else {
                Answer::Error(PdpError::policy("broken"))
            }
        });
        let slow = AccessRequest::new(
            Subject::user("slow"),
            Action::new("GET"),
            Resource::new("r", "1"),
        );
        assert!(!pdp.decide(&slow).await.unwrap().allowed);
        let other = AccessRequest::new(
            Subject::user("x"),
            Action::new("GET"),
            Resource::new("r", "1"),
        );
        assert!(pdp.decide(&other).await.is_err());
        assert_eq!(pdp.requests().len(), 2);
    }
}
