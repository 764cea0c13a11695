//! Verification keys from JSON Web Key sets: a set given as JSON, or one fetched from a JWKS URL
//! or through OpenID Connect discovery and kept fresh (feature `jwks`).
//!
//! A key's algorithms come from the key, never from the token: its `alg` member when it has one,
//! else every algorithm of its type (RSA: RS256/384/512 and PS256/384/512; EC: ES256 on P-256,
//! ES384 on P-384; OKP: EdDSA on Ed25519). A symmetric (`oct`) key must name its `alg`. A key
//! whose `use` is not `sig`, or whose `key_ops` lack `verify`, is left out.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One verification key: the algorithms it verifies and its `kid`.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
}

/// The keys of a set, and why the others were left out.
pub(crate) fn keys_of(set: &JwkSet) -> (Vec<Key>, Vec<String>) {
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        match key_of(jwk) {
            Ok(key) => keys.push(key),
            Err(why) => skipped.push(format!(
                "key {} ({}): {why}",
                i,
                jwk.common.key_id.as_deref().unwrap_or("no kid")
            )),
        }
    }
    (keys, skipped)
}

fn key_of(jwk: &Jwk) -> Result<Key, String> {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("not a signing key (`use`)".into());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("`key_ops` does not allow `verify`".into());
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("unsupported elliptic curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return Err("unsupported octet key pair curve".into()),
        },
        AlgorithmParameters::OctetKey(_) => {
            vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        }
        _ => return Err("unsupported key type".into()),
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(alg) => {
            let alg = algorithm(alg).ok_or("unsupported `alg`")?;
            if !family.contains(&alg) {
                return Err(format!("`alg` {alg:?} does not fit the key type"));
            }
            vec![alg]
        }
        None if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) => {
            return Err("a symmetric key must name its `alg`".into());
        }
        None => family,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        algorithms,
        kid: jwk.common.key_id.clone(),
        key,
    })
}

fn algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The keys a token may be verified with, in order: a token that names a `kid` matches only keys
/// with that `kid` (and, in a set without any `kid`, the keys without one); a token without a
/// `kid` matches keys without one, or every key of a set when none has a `kid`. Each key must
/// verify the token's algorithm.
pub(crate) fn candidates<'k>(
    keys: &'k [Key],
    alg: Algorithm,
    kid: Option<&str>,
) -> impl Iterator<Item = &'k Key> {
    let any_kid = keys.iter().any(|k| k.kid.is_some());
    keys.iter().filter(move |k| {
        k.algorithms.contains(&alg)
            && match (kid, k.kid.as_deref()) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => !any_kid,
                (None, None) => true,
                (None, Some(_)) => false,
            }
    })
}

#[cfg(feature = "jwks")]
pub(crate) mod remote;
