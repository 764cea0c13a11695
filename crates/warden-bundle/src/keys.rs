//! Ed25519 keys as files: `warden keygen` writes them, `warden build` signs with the secret key,
//! every PDP verifies with the public key.
//!
//! A key file is one line, `warden-ed25519-secret:<base64 of the 32-byte seed>` or
//! `warden-ed25519-public:<base64 of the 32-byte key>`. The key id is the first 16 hex digits of
//! the SHA-256 of the public key; a bundle's signature names it.
//!
//! # Example
//!
//! ```
//! use warden_bundle::{PublicKey, SecretKey};
//!
//! let secret = SecretKey::generate().unwrap();
//! let public = secret.public_key();
//! let again = PublicKey::parse(&public.to_file_text()).unwrap();
//! assert_eq!(again.id(), public.id());
//! assert_eq!(public.id().len(), 16);
//! ```

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::BundleError;

const SECRET_PREFIX: &str = "warden-ed25519-secret:";
const PUBLIC_PREFIX: &str = "warden-ed25519-public:";

/// An Ed25519 signing key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.public_key().id())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 verification key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.id()).finish()
    }
}

fn decode32(text: &str, prefix: &str) -> Result<[u8; 32], String> {
    let body = text
        .trim()
        .strip_prefix(prefix)
        .ok_or_else(|| format!("does not start with `{prefix}`"))?;
    let bytes = STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "is not 32 bytes long".to_owned())
}

impl SecretKey {
    /// A new random key, from the operating system's random source.
    pub fn generate() -> Result<Self, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Parses the text of a secret key file.
    pub fn parse(text: &str) -> Result<Self, String> {
        decode32(text, SECRET_PREFIX).map(|seed| Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io("read", path, e))?;
        Self::parse(&text).map_err(|message| BundleError::Key {
            path: path.to_owned(),
            message,
        })
    }

    /// The text of the key file.
    pub fn to_file_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", STANDARD.encode(self.0.to_bytes()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl PublicKey {
    /// Parses the text of a public key file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = decode32(text, PUBLIC_PREFIX)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| "is not a valid Ed25519 public key".to_owned())
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::io("read", path, e))?;
        Self::parse(&text).map_err(|message| BundleError::Key {
            path: path.to_owned(),
            message,
        })
    }

    /// The text of the key file.
    pub fn to_file_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", STANDARD.encode(self.0.to_bytes()))
    }

    /// The key id: the first 16 hex digits of the SHA-256 of the key.
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.0.to_bytes()))
            .chars()
            .take(16)
            .collect()
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), String> {
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| "malformed Ed25519 signature".to_owned())?;
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| format!("not made by key `{}`", self.id()))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
