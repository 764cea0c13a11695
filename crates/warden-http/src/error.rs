//! Errors in the configuration of the HTTP PEP.

/// A configuration the PEP cannot work with; reported when the layer is built, never on a
/// request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A verification key could not be read.
    #[error("invalid {what}: {message}")]
    Key {
        /// Which key.
        what: &'static str,
        /// Why.
        message: String,
    },
}
