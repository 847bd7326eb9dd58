//! The registry's one error type.
//!
//! Errors fall in two groups that callers treat differently: *permanent* ones (a bad URL, an
//! input the registry refuses) are the caller's bug and retrying cannot help, while *transient*
//! ones (Redis down, failing over, slow) go away by themselves. [`RegistryError::is_permanent`]
//! tells them apart; the [`crate::RegistryWriter`] drops permanently failing operations and
//! retries the rest.

use std::fmt;

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// The Redis URL is malformed or uses a scheme other than `redis://` / `redis-cluster://`.
    BadUrl(String),
    /// The input was refused before anything was sent (empty user or device, invalid node id,
    /// expiry too far in the future, …).
    InvalidInput(String),
    /// Redis failed, refused the command or did not answer in time (the text is fred's).
    Redis(String),
    /// Redis answered something the registry does not understand (a script returned an
    /// unexpected value).
    Protocol(String),
}

impl RegistryError {
    /// Whether retrying the same call can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RegistryError::BadUrl(_) | RegistryError::InvalidInput(_)
        )
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::BadUrl(msg) => write!(f, "bad registry URL: {msg}"),
            RegistryError::InvalidInput(msg) => write!(f, "invalid registry input: {msg}"),
            RegistryError::Redis(msg) => write!(f, "redis: {msg}"),
            RegistryError::Protocol(msg) => write!(f, "unexpected redis reply: {msg}"),
        }
    }
}

impl std::error::Error for RegistryError {}

impl From<fred::error::Error> for RegistryError {
    fn from(e: fred::error::Error) -> Self {
        RegistryError::Redis(format!("{:?}: {}", e.kind(), e.details()))
    }
}
