//! Authentication before any upgrade: who is this client?
//!
//! The handshake hands an [`AuthRequest`] (the credentials-bearing parts of the request head)
//! to an [`Authenticator`]; the answer is an [`Identity`] (user = JWT `sub`, device = claim
//! `did` or a server-generated id) or an [`AuthError`] whose [`AuthError::reason`] labels the
//! `herald_edge_auth_failures_total` metric. Built-in methods: JWT with a pinned algorithm
//! ([`jwt`]) and HMAC-signed session cookies ([`session_cookie`]); embedders implement the
//! trait for anything else. Verification is synchronous and pure (`now` is passed in).

pub mod jwt;
pub mod session_cookie;

use crate::config::AuthConfig;

/// Longest accepted user or device id, bytes.
pub const MAX_ID_LEN: usize = 256;

/// The credential-bearing parts of a request, borrowed from the parsed head.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthRequest<'a> {
    /// The query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// The `Authorization` header value.
    pub authorization: Option<&'a str>,
    /// All `Cookie` header values joined by `; `.
    pub cookie: Option<&'a str>,
    /// Wall clock, seconds since the Unix epoch.
    pub now_secs: u64,
}

impl<'a> AuthRequest<'a> {
    /// The value of cookie `name`, if present.
    pub fn cookie_value(&self, name: &str) -> Option<&'a str> {
        self.cookie?.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    }

    /// The value of query parameter `name` (no percent-decoding: tokens are URL-safe).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then_some(v)
        })
    }

    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer(&self) -> Option<&'a str> {
        let h = self.authorization?.trim();
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (JWT `sub`).
    pub user: String,
    /// The device id (claim `did`), or `None` to let the edge generate one.
    pub device: Option<String>,
}

/// Why authentication failed. Every variant answers 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials in any accepted place.
    MissingCredentials,
    /// Not a well-formed token/cookie.
    Malformed,
    /// Signature does not verify (includes wrong key).
    BadSignature,
    /// Algorithm other than the pinned one (`none`, confusion attempts).
    WrongAlgorithm,
    /// `exp` passed (beyond leeway) or missing.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// `iss` mismatch.
    WrongIssuer,
    /// `aud` mismatch.
    WrongAudience,
    /// The identity is unusable (empty, too long, forbidden characters).
    BadIdentity,
    /// A custom authenticator's refusal.
    Rejected(&'static str),
}

impl AuthError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing_credentials",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::BadIdentity => "bad_identity",
            AuthError::Rejected(r) => r,
        }
    }
}

/// Something that turns request credentials into an identity. Implement it to plug in a
/// custom scheme; it runs on the shard thread, so it must not block.
pub trait Authenticator {
    /// Authenticates one request.
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError>;
}

/// Checks an id: non-empty, at most [`MAX_ID_LEN`] bytes, no control characters, no `/`
/// (the Kafka target grammar splits `user/device` at the first `/`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(|c| c.is_control() || c == '/')
}

/// The configured built-in methods, tried in order: JWT (bearer, query, cookie), then the
/// signed session cookie. The first method that finds credentials decides.
#[derive(Debug)]
pub struct ConfiguredAuth {
    jwt: Option<jwt::JwtVerifier>,
    cookie: Option<session_cookie::SessionCookieVerifier>,
}

impl ConfiguredAuth {
    /// Builds the verifiers from validated configuration.
    pub fn new(cfg: &AuthConfig) -> Result<Self, String> {
        Ok(ConfiguredAuth {
            jwt: cfg.jwt.as_ref().map(jwt::JwtVerifier::new).transpose()?,
            cookie: cfg
                .session_cookie
                .as_ref()
                .map(|c| session_cookie::SessionCookieVerifier::new(&c.secret, &c.name)),
        })
    }
}

impl Authenticator for ConfiguredAuth {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        if let Some(j) = &self.jwt {
            if let Some(token) = j.find_token(req) {
                return j.verify(token, req.now_secs);
            }
        }
        if let Some(c) = &self.cookie {
            if let Some(value) = req.cookie_value(c.name()) {
                return c.verify(value, req.now_secs);
            }
        }
        Err(AuthError::MissingCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_places() {
        let r = AuthRequest {
            query: Some("a=1&access_token=tok&b"),
            authorization: Some("Bearer   abc "),
            cookie: Some("x=1; herald_token=\"ck\"; y=2"),
            now_secs: 0,
        };
        assert_eq!(r.query_param("access_token"), Some("tok"));
        assert_eq!(r.query_param("b"), None);
        assert_eq!(r.bearer(), Some("abc"));
        assert_eq!(r.cookie_value("herald_token"), Some("ck"));
        assert_eq!(r.cookie_value("herald"), None);
        let basic = AuthRequest {
            authorization: Some("Basic abc"),
            ..Default::default()
        };
        assert_eq!(basic.bearer(), None);
    }

    #[test]
    fn ids() {
        assert!(valid_id("user-1@example"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a\nb"));
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
    }
}
