//! Verifying bearer JWTs to learn the subject of a request.

use std::fmt;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::ConfigError;

/// Verifies bearer JWTs with configured keys: HS256 secrets, RS256 and ES256 public keys.
///
/// A token is accepted only when its header names the algorithm of a configured key (and that
/// key's `kid`, when the key has one), its signature verifies, it carries `exp` and `sub`, it has
/// not expired and is not used before `nbf`, and — when they are configured — it carries an
/// `iss` equal to the issuer (a single string) and an `aud` holding the audience. `alg: none` and every algorithm without a configured key are refused.
///
/// ```
/// use warden_http::JwtVerifier;
///
/// let verifier = JwtVerifier::new()
///     .hs256(b"a shared secret of at least 32 bytes!")
///     .unwrap()
///     .issuer("https://idp.example")
///     .audience("clinic-api");
/// assert!(verifier.verify("not.a.token").is_err());
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    verified: Option<moka::sync::Cache<String, Arc<VerifiedToken>>>,
}

impl Default for JwtVerifier {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: 0,
            verified: Some(verified_cache(DEFAULT_VERIFIED_TOKENS)),
        }
    }
}

/// How many verified tokens a verifier remembers by default.
pub const DEFAULT_VERIFIED_TOKENS: u64 = 10_000;

fn verified_cache(entries: u64) -> moka::sync::Cache<String, Arc<VerifiedToken>> {
    moka::sync::Cache::builder()
        .max_capacity(entries)
        .time_to_live(std::time::Duration::from_secs(300))
        .build()
}

#[derive(Clone)]
struct Key {
    algorithm: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.algorithm, k.kid.as_deref()))
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a bearer token was refused. The message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is not a well-formed JWT.
    #[error("the access token is malformed")]
    Malformed,
    /// The token's algorithm (or key id) matches no configured key; `none` included.
    #[error("the access token is signed with an unaccepted algorithm or key")]
    UnacceptedAlgorithm,
    /// The signature does not verify.
    #[error("the access token signature is invalid")]
    BadSignature,
    /// The token has expired.
    #[error("the access token has expired")]
    Expired,
    /// The token is not valid yet.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// A required claim (`exp`, `sub`) is missing or the issuer or audience does not match.
    #[error("the access token has missing or unexpected claims")]
    Claims,
}

/// A verified token: the subject id and every claim.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: String,
    /// All claims.
    pub claims: Map<String, Value>,
}

impl JwtVerifier {
    /// A verifier without keys (it refuses every token until a key is added).
    pub fn new() -> Self {
        Self::default()
    }

    fn with_key(
        mut self,
        algorithm: Algorithm,
        kid: Option<String>,
        key: Result<DecodingKey, jsonwebtoken::errors::Error>,
        what: &'static str,
    ) -> Result<Self, ConfigError> {
        let key = key.map_err(|e| ConfigError::Key {
            what,
            message: e.to_string(),
        })?;
        self.keys.push(Key {
            algorithm,
            kid,
            key,
        });
        self.forget();
        Ok(self)
    }

    /// Accepts HS256 tokens signed with `secret` (at least 32 bytes).
    pub fn hs256(self, secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::Key {
                what: "HS256 secret",
                message: format!("{} bytes is too short (at least 32)", secret.len()),
            });
        }
        self.with_key(
            Algorithm::HS256,
            None,
            DecodingKey::from_secret(secret),
            "HS256 secret",
        )
    }

    /// Accepts RS256 tokens verified by the RSA public key in `pem`.
    pub fn rs256_pem(self, pem: &str) -> Result<Self, ConfigError> {
        self.with_key(
            Algorithm::RS256,
            None,
            DecodingKey::from_rsa_pem(pem.as_bytes()),
            "RS256 public key",
        )
    }

    /// Accepts ES256 tokens verified by the P-256 public key in `pem`.
    pub fn es256_pem(self, pem: &str) -> Result<Self, ConfigError> {
        self.with_key(
            Algorithm::ES256,
            None,
            DecodingKey::from_ec_pem(pem.as_bytes()),
            "ES256 public key",
        )
    }

    /// Restricts the key added last to tokens whose header carries this `kid`.
    #[must_use]
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        if let Some(last) = self.keys.last_mut() {
            last.kid = Some(kid.into());
        }
        self.forget();
        self
    }

    /// Requires the `iss` claim: present, a string, equal to `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self.forget();
        self
    }

    /// Requires the `aud` claim: present, `audience` or an array of strings holding it.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self.forget();
        self
    }

    /// Seconds of clock skew tolerated on `exp` and `nbf` (default 0).
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Forgets remembered tokens (the configuration they were verified under changed).
    fn forget(&mut self) {
        // Clones share a cache; a changed configuration gets a cache of its own.
        if let Some(verified) = &self.verified {
            let entries = verified
                .policy()
                .max_capacity()
                .unwrap_or(DEFAULT_VERIFIED_TOKENS);
            self.verified = Some(verified_cache(entries));
        }
    }

    /// Remembers up to `entries` verified tokens (default [`DEFAULT_VERIFIED_TOKENS`]; `0`
    /// turns remembering off). A remembered token is the exact string whose signature was
    /// verified; its `exp` and `nbf` are checked again on every use.
    #[must_use]
    pub fn remember_verified(mut self, entries: u64) -> Self {
        self.verified = (entries > 0).then(|| verified_cache(entries));
        self
    }

    /// Verifies `token` (without the `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let Some(verified) = &self.verified else {
            return self.verify_signature(token);
        };
        if let Some(known) = verified.get(token) {
            self.check_times(&known.claims)?;
            return Ok((*known).clone());
        }
        let fresh = self.verify_signature(token)?;
        verified.insert(token.to_owned(), Arc::new(fresh.clone()));
        Ok(fresh)
    }

    /// `exp` and `nbf` against the clock, as the full verification checks them.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::Claims)?;
        if exp.saturating_add(self.leeway) <= now {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// The configured issuer and audience, checked again on the claims themselves: `iss` must
    /// be the one string configured (an array of issuers is refused), `aud` the configured
    /// audience or an array of strings that holds it.
    fn check_issuer_and_audience(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(TokenError::Claims);
        }
        if let Some(audience) = &self.audience {
            let holds = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => {
                    auds.iter().all(Value::is_string)
                        && auds.iter().any(|a| a.as_str() == Some(audience.as_str()))
                }
                _ => false,
            };
            if !holds {
                return Err(TokenError::Claims);
            }
        }
        Ok(())
    }

    fn verify_signature(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        // `decode_header` refuses `alg: none` and every algorithm it does not know.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => TokenError::UnacceptedAlgorithm,
            _ => TokenError::Malformed,
        })?;
        let key = self
            .keys
            .iter()
            .find(|k| {
                k.algorithm == header.alg
                    && (k.kid.is_none() || k.kid.as_deref() == header.kid.as_deref())
            })
            .ok_or(TokenError::UnacceptedAlgorithm)?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when present: configured, they are required.
        let mut required = vec!["exp", "sub"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::MissingRequiredClaim(_)
                    | ErrorKind::InvalidIssuer
                    | ErrorKind::InvalidAudience
                    | ErrorKind::InvalidSubject => TokenError::Claims,
                    ErrorKind::InvalidAlgorithm => TokenError::UnacceptedAlgorithm,
                    _ => TokenError::Malformed,
                }
            })?;
        self.check_issuer_and_audience(&data.claims)?;
        let subject = match data.claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(TokenError::Claims),
        };
        Ok(VerifiedToken {
            subject,
            claims: data.claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_test::TestTokens;

    fn verifier() -> JwtVerifier {
        JwtVerifier::new().hs256(warden_test::HS256_SECRET).unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let v = verifier();
        let token = TestTokens::hs256(&json!({"sub": "a", "exp": TestTokens::now() + 1}));
        assert_eq!(v.verify(&token).unwrap().subject, "a");
        assert_eq!(v.verify(&token).unwrap().subject, "a");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(v.verify(&token), Err(TokenError::Expired));
        let no_cache = verifier().remember_verified(0);
        let token = TestTokens::hs256(&json!({"sub": "a", "exp": TestTokens::now() + 60}));
        assert!(no_cache.verify(&token).is_ok());
    }

    #[test]
    fn a_changed_configuration_verifies_again() {
        let open = verifier();
        let token = TestTokens::hs256(&TestTokens::claims("a", json!({"iss": "https://other"})));
        assert!(open.verify(&token).is_ok());
        let strict = open.clone().issuer("https://idp");
        assert_eq!(strict.verify(&token), Err(TokenError::Claims));
        assert!(
            open.verify(&token).is_ok(),
            "the original keeps its configuration"
        );
    }

    #[test]
    fn a_configured_issuer_or_audience_must_be_present_and_match() {
        let strict = verifier().issuer("https://idp").audience("api");
        let ok = json!({"iss": "https://idp", "aud": "api"});
        let token = |extra: Value| TestTokens::hs256(&TestTokens::claims("a", extra));
        assert!(strict.verify(&token(ok)).is_ok());
        assert!(
            strict
                .verify(&token(json!({"iss": "https://idp", "aud": ["x", "api"]})))
                .is_ok()
        );
        for claims in [
            json!({"aud": "api"}),
            json!({"iss": "https://idp"}),
            json!({}),
            json!({"iss": ["https://idp"], "aud": "api"}),
            json!({"iss": ["https://idp", "https://evil"], "aud": "api"}),
            json!({"iss": "https://idp", "aud": ["x"]}),
            json!({"iss": "https://idp", "aud": [["api"]]}),
            json!({"iss": "https://idp", "aud": null}),
            json!({"iss": null, "aud": "api"}),
            json!({"iss": "https://idp/", "aud": "api"}),
        ] {
            assert_eq!(
                strict.verify(&token(claims.clone())),
                Err(TokenError::Claims),
                "{claims}"
            );
        }
        let issuer_only = verifier().issuer("https://idp");
        assert!(
            issuer_only
                .verify(&token(json!({"iss": "https://idp"})))
                .is_ok()
        );
        assert_eq!(
            issuer_only.verify(&token(json!({}))),
            Err(TokenError::Claims)
        );
        let audience_only = verifier().audience("api");
        assert!(audience_only.verify(&token(json!({"aud": "api"}))).is_ok());
        assert_eq!(
            audience_only.verify(&token(json!({}))),
            Err(TokenError::Claims)
        );
    }

    #[test]
    fn weak_hs256_secrets_are_refused() {
        assert!(JwtVerifier::new().hs256(b"short").is_err());
        assert!(JwtVerifier::new().rs256_pem("not a key").is_err());
        assert!(
            JwtVerifier::new()
                .es256_pem(warden_test::RSA_PUBLIC_PEM)
                .is_err()
        );
    }
}
