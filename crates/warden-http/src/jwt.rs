//! Verifying bearer JWTs to learn the subject of a request.

use std::fmt;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::jwks::{self, Key};

/// Verifies bearer JWTs with configured keys: HS256 secrets, RS256 and ES256 public keys (PEM), a
/// JSON Web Key set ([`jwks`](Self::jwks)), or — with the `jwks` feature — the keys of an
/// identity provider, fetched from a JWKS URL or through OpenID Connect discovery and kept fresh
/// ([`with_jwks_url`](Self::with_jwks_url), [`with_oidc_discovery`](Self::with_oidc_discovery)).
///
/// A token is accepted only when its header names an algorithm a key verifies (the algorithm
/// comes from the key, never from the token) and that key's `kid` (a key without `kid` never
/// matches a token that names one when the set has `kid`s), its signature verifies, it carries `exp` and `sub`, it has
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
    #[cfg(feature = "jwks")]
    remote: Option<Arc<jwks::remote::Remote>>,
    issuer: Option<String>,
    audience: Option<String>,
    typ: Option<String>,
    subject_type: SubjectType,
    leeway: u64,
    verified: Option<moka::sync::Cache<String, Arc<(VerifiedToken, u64)>>>,
}

type SubjectTypeRule = dyn Fn(&Map<String, Value>) -> Option<String> + Send + Sync;

/// The rule that gives a verified token's subject its type.
#[derive(Clone, Default)]
enum SubjectType {
    /// Always `user`.
    #[default]
    User,
    /// The value of a claim (a string), else `user`.
    Claim(String),
    /// A function of the claims, else `user`.
    Rule(Arc<SubjectTypeRule>),
}

impl fmt::Debug for SubjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User => f.write_str("User"),
            Self::Claim(claim) => f.debug_tuple("Claim").field(claim).finish(),
            Self::Rule(_) => f.write_str("Rule"),
        }
    }
}

impl Default for JwtVerifier {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            #[cfg(feature = "jwks")]
            remote: None,
            issuer: None,
            audience: None,
            typ: None,
            subject_type: SubjectType::User,
            leeway: 0,
            verified: Some(verified_cache(DEFAULT_VERIFIED_TOKENS)),
        }
    }
}

/// How many verified tokens a verifier remembers by default.
pub const DEFAULT_VERIFIED_TOKENS: u64 = 10_000;

fn verified_cache(entries: u64) -> moka::sync::Cache<String, Arc<(VerifiedToken, u64)>> {
    moka::sync::Cache::builder()
        .max_capacity(entries)
        .time_to_live(std::time::Duration::from_secs(300))
        .build()
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.algorithms.clone(), k.kid.as_deref()))
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("typ", &self.typ)
            .field("subject_type", &self.subject_type)
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
    /// The token names a `kid` that no key has (the key set may be re-fetched).
    #[error("the access token names an unknown key")]
    UnknownKey,
    /// The token's `typ` header is not the one required.
    #[error("the access token has an unexpected type")]
    Type,
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

/// A verified token: the subject id and type, and every claim.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: String,
    /// The subject's type: `user` unless [a claim or a rule](JwtVerifier::subject_type_claim)
    /// says otherwise (`service` for a machine client).
    pub kind: String,
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
            algorithms: vec![algorithm],
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

    /// Accepts tokens verified by the keys of a JSON Web Key set (RFC 7517), given as its JSON
    /// text; each key verifies the algorithms it names or its type allows (see the crate docs).
    /// A set without a single usable key is an error.
    ///
    /// ```
    /// let jwks = r#"{"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256",
    ///     "k": "d2FyZGVuLXRlc3Qtc2VjcmV0LWRvLW5vdC11c2UtaW4tcHJvZHVjdGlvbg"}]}"#;
    /// let verifier = warden_http::JwtVerifier::new().jwks(jwks).unwrap();
    /// # let _ = verifier;
    /// ```
    pub fn jwks(mut self, json: &str) -> Result<Self, ConfigError> {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(json).map_err(|e| ConfigError::Key {
                what: "JWKS",
                message: e.to_string(),
            })?;
        let (keys, skipped) = jwks::keys_of(&set);
        if keys.is_empty() {
            return Err(ConfigError::Key {
                what: "JWKS",
                message: format!("no usable key ({})", skipped.join("; ")),
            });
        }
        self.keys.extend(keys);
        self.forget();
        Ok(self)
    }

    /// Fetches the key set at `url` (https, or http to a loopback address) now — an error if it
    /// cannot be had — and keeps it fresh: cached for its `Cache-Control: max-age` or the
    /// options' TTL, refreshed in the background, re-fetched (at most once per refetch interval)
    /// when a token names an unknown `kid`, and kept as it was when the provider is unreachable.
    /// Needs a Tokio runtime (the refresh is a task).
    #[cfg(feature = "jwks")]
    pub async fn with_jwks_url(
        mut self,
        url: &str,
        options: crate::JwksOptions,
    ) -> Result<Self, ConfigError> {
        self.remote = Some(jwks::remote::Remote::start(url, options).await?);
        self.forget();
        Ok(self)
    }

    /// OpenID Connect discovery: reads `{issuer}/.well-known/openid-configuration`, which must
    /// name the same `issuer`, then fetches its `jwks_uri` as [`with_jwks_url`] does, and
    /// requires `iss` to be `issuer`.
    ///
    /// ```no_run
    /// # async fn setup() -> Result<(), warden_http::ConfigError> {
    /// use warden_http::{JwksOptions, JwtVerifier};
    ///
    /// let verifier = JwtVerifier::new()
    ///     .with_oidc_discovery("https://idp.example/realms/clinic", JwksOptions::default())
    ///     .await?
    ///     .audience("clinic-api")
    ///     .typ("at+jwt");
    /// # let _ = verifier; Ok(()) }
    /// ```
    ///
    /// [`with_jwks_url`]: Self::with_jwks_url
    #[cfg(feature = "jwks")]
    pub async fn with_oidc_discovery(
        self,
        issuer: &str,
        options: crate::JwksOptions,
    ) -> Result<Self, ConfigError> {
        let jwks_uri = jwks::remote::Remote::discover(issuer, &options).await?;
        Ok(self.with_jwks_url(&jwks_uri, options).await?.issuer(issuer))
    }

    /// How many times the fetched key set was requested from the provider (0 without one).
    #[cfg(feature = "jwks")]
    pub fn jwks_fetches(&self) -> u64 {
        self.remote.as_ref().map_or(0, |remote| remote.fetches())
    }

    /// When `error` says a token named an unknown `kid` and keys are fetched: the refetch
    /// (rate limited) after which the token is worth verifying again.
    #[cfg(feature = "jwks")]
    pub(crate) fn refetch_for(
        &self,
        error: &TokenError,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let remote = self
            .remote
            .clone()
            .filter(|_| *error == TokenError::UnknownKey)?;
        Some(async move { remote.refetch_for_unknown_kid().await })
    }

    /// Requires the token header's `typ` to be `typ` (`at+jwt` for RFC 9068 access tokens;
    /// compared without case, `application/` prefix allowed). A token without `typ` is refused.
    #[must_use]
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self.forget();
        self
    }

    /// The subject's type is the value of `claim` (a string), else `user`.
    #[must_use]
    pub fn subject_type_claim(mut self, claim: impl Into<String>) -> Self {
        self.subject_type = SubjectType::Claim(claim.into());
        self.forget();
        self
    }

    /// The subject's type is what `rule` makes of the claims, else `user`: a machine client
    /// (a client-credentials token) is a `service`, not a `user`.
    ///
    /// ```
    /// use warden_http::JwtVerifier;
    ///
    /// let verifier = JwtVerifier::new().subject_type_rule(|claims| {
    ///     // Client-credentials tokens carry the client id as their subject.
    ///     (claims.get("client_id") == claims.get("sub")).then(|| "service".to_owned())
    /// });
    /// # let _ = verifier;
    /// ```
    #[must_use]
    pub fn subject_type_rule(
        mut self,
        rule: impl Fn(&Map<String, Value>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.subject_type = SubjectType::Rule(Arc::new(rule));
        self.forget();
        self
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
        let generation = self.generation();
        let Some(verified) = &self.verified else {
            return self.verify_signature(token);
        };
        if let Some(known) = verified.get(token)
            && known.1 == generation
        {
            self.check_times(&known.0.claims)?;
            return Ok(known.0.clone());
        }
        let fresh = self.verify_signature(token)?;
        verified.insert(token.to_owned(), Arc::new((fresh.clone(), generation)));
        Ok(fresh)
    }

    /// The generation of the fetched keys (0 without them): a token remembered under another
    /// generation is verified again, so a retired key stops verifying at once.
    fn generation(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(remote) = &self.remote {
            return remote.keys().generation;
        }
        0
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
        if let Some(want) = &self.typ {
            let typ = header.typ.as_deref().unwrap_or("");
            let typ = typ
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .map_or(typ, |_| typ.get(12..).unwrap_or(""));
            if !typ.eq_ignore_ascii_case(want) {
                return Err(TokenError::Type);
            }
        }
        #[cfg(feature = "jwks")]
        let fetched = self.remote.as_ref().map(|remote| remote.keys());
        #[cfg(feature = "jwks")]
        let fetched_keys: &[Key] = fetched.as_ref().map_or(&[], |set| set.keys.as_slice());
        #[cfg(not(feature = "jwks"))]
        let fetched_keys: &[Key] = &[];
        let mut candidates = jwks::candidates(&self.keys, header.alg, header.kid.as_deref())
            .chain(jwks::candidates(
                fetched_keys,
                header.alg,
                header.kid.as_deref(),
            ))
            .peekable();
        if candidates.peek().is_none() {
            let known_kid = header.kid.as_deref().is_some_and(|kid| {
                self.keys
                    .iter()
                    .chain(fetched_keys)
                    .any(|k| k.kid.as_deref() == Some(kid))
            });
            return Err(match header.kid {
                Some(_) if !known_kid => TokenError::UnknownKey,
                _ => TokenError::UnacceptedAlgorithm,
            });
        }
        let mut validation = Validation::new(header.alg);
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
        // Every candidate key is tried; a signature that verifies with none is a bad one.
        let mut outcome = Err(TokenError::BadSignature);
        for key in candidates {
            outcome = decode(token, &key.key, &validation);
            if outcome != Err(TokenError::BadSignature) {
                break;
            }
        }
        let claims = outcome?;
        exact_numbers(token)?;
        self.check_issuer_and_audience(&claims)?;
        let kind = match &self.subject_type {
            SubjectType::User => None,
            SubjectType::Claim(claim) => {
                claims.get(claim).and_then(Value::as_str).map(str::to_owned)
            }
            SubjectType::Rule(rule) => rule(&claims),
        }
        .filter(|kind| !kind.is_empty())
        .unwrap_or_else(|| "user".to_owned());
        let data = Decoded { claims };
        let subject = match data.claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(TokenError::Claims),
        };
        Ok(VerifiedToken {
            subject,
            kind,
            claims: data.claims,
        })
    }
}

struct Decoded {
    claims: Map<String, Value>,
}

/// Refuses a token whose claims hold a number that parsing rounded into another value (an
/// integer beyond 64 bits, a fraction with more digits than a double keeps): the policy would
/// decide on a value the identity provider never issued.
fn exact_numbers(token: &str) -> Result<(), TokenError> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    warden_decision::numbers::check(&json).map_err(|_| TokenError::Claims)
}

/// Checks the signature and the registered claims of `token` with one key.
fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, TokenError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
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
        })
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

    /// An HS256 token whose payload is `payload` exactly as written.
    fn raw_hs256(payload: &str) -> String {
        use base64::Engine as _;
        let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let message = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(payload));
        let key = jsonwebtoken::EncodingKey::from_secret(warden_test::HS256_SECRET).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
                .unwrap();
        format!("{message}.{signature}")
    }

    #[test]
    fn a_claim_the_parser_would_round_into_another_number_is_refused() {
        let exp = TestTokens::now() + 60;
        let ok = raw_hs256(&format!(r#"{{"sub":"a","exp":{exp},"clinics":[7,0.25]}}"#));
        assert!(verifier().verify(&ok).is_ok());
        for number in ["100000000000000000001", "0.30000000000000001"] {
            let token = raw_hs256(&format!(
                r#"{{"sub":"a","exp":{exp},"clinics":[{number}]}}"#
            ));
            assert_eq!(
                verifier().verify(&token),
                Err(TokenError::Claims),
                "{number}"
            );
        }
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
