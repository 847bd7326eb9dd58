//! Authentication before any upgrade: who is this client?
//!
//! The handshake hands an [`AuthRequest`] (the credentials-bearing parts of the request head)
//! to an [`Authenticator`]; the answer is an [`Identity`] (user = JWT `sub`, device = claim
//! `did` or a server-generated id) or an [`AuthError`] whose [`AuthError::reason`] labels the
//! `herald_edge_auth_failures_total` metric. Built-in methods: JWT with a pinned algorithm
//! ([`jwt`]) and HMAC-signed session cookies ([`session_cookie`]); embedders implement the
//! trait for anything else. Verification is synchronous and pure (`now` is passed in).
//!
//! Cookies are the one credential a browser attaches on its own, to any page's WebSocket or
//! EventSource request, so a cookie proves nothing about which page opened the connection. The
//! handshake therefore says per request, in [`AuthRequest::cookie_access`], whether
//! cookie-borne credentials may be used (only with no `Origin`, or an `Origin` on the
//! allow-list); the built-in methods read cookies through [`AuthRequest::cookie_credential`],
//! which refuses a present credential cookie with [`AuthError::CookieOrigin`] (403).

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
    /// Whether credentials found in `cookie` may be used (decided from `Origin`).
    pub cookie_access: CookieAccess,
}

/// May a request authenticate with a cookie? Browsers attach cookies to cross-site WebSocket
/// and EventSource requests, so only the request's `Origin` tells a trusted page from any
/// other page the victim happens to visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookieAccess {
    /// No `Origin` header (a native client, not a web page) or an `Origin` on the allow-list.
    #[default]
    Allowed,
    /// An `Origin` that is not explicitly allowed: with no allow-list, any `Origin`
    /// (`null` included). Header and query tokens stay usable.
    Refused,
}

impl<'a> AuthRequest<'a> {
    /// The value of cookie `name`, if present.
    pub fn cookie_value(&self, name: &str) -> Option<&'a str> {
        self.cookie?.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
    }

    /// A credential-carrying cookie `name`: `Ok(None)` when absent, its value when present and
    /// [`CookieAccess::Allowed`], [`AuthError::CookieOrigin`] when present but refused.
    /// Authenticators must read credential cookies through this, never [`Self::cookie_value`].
    pub fn cookie_credential(&self, name: &str) -> Result<Option<&'a str>, AuthError> {
        match self.cookie_value(name) {
            Some(_) if self.cookie_access == CookieAccess::Refused => Err(AuthError::CookieOrigin),
            found => Ok(found),
        }
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

/// Why authentication failed. Every variant answers 401 except [`AuthError::CookieOrigin`]
/// (403, see [`AuthError::status`]).
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
    /// A credential cookie on a request whose `Origin` is not on the allow-list (with no
    /// allow-list: any `Origin`): the page that opened the connection may not be trusted with
    /// the user's cookies.
    CookieOrigin,
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
            AuthError::CookieOrigin => "cookie_origin",
            AuthError::Rejected(r) => r,
        }
    }

    /// The HTTP status of the refusal: 403 when the credentials may be fine but were sent from
    /// a page that may not use them, 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::CookieOrigin => 403,
            _ => 401,
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
/// signed session cookie. The first method that finds credentials decides; a credential
/// cookie the request may not use ([`CookieAccess::Refused`]) decides too, as a 403.
#[derive(Debug)]
pub struct ConfiguredAuth {
    jwt: Option<jwt::JwtVerifier>,
    cookie: Option<session_cookie::SessionCookieVerifier>,
    /// `insecure_user_param`: `?user=` is trusted (loopback listeners only, see the config).
    trust_user_param: bool,
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
            trust_user_param: cfg.trust_user_param,
        })
    }
}

impl Authenticator for ConfiguredAuth {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        if let Some(j) = &self.jwt {
            if let Some(token) = j.find_token(req)? {
                return j.verify(token, req.now_secs);
            }
        }
        if let Some(c) = &self.cookie {
            if let Some(value) = req.cookie_credential(c.name())? {
                return c.verify(value, req.now_secs);
            }
        }
        if self.trust_user_param {
            if let Some(user) = req.query_param("user") {
                let device = req.query_param("device");
                if !valid_id(user) || device.is_some_and(|d| !valid_id(d)) {
                    return Err(AuthError::BadIdentity);
                }
                return Ok(Identity {
                    user: user.to_string(),
                    device: device.map(str::to_string),
                });
            }
        }
        Err(AuthError::MissingCredentials)
    }
}

#[cfg(test)]
mod proptests;

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
            cookie_access: CookieAccess::Allowed,
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

    fn configured() -> ConfiguredAuth {
        ConfiguredAuth::new(&AuthConfig {
            jwt: Some(crate::config::JwtConfig {
                algorithm: jwt::JwtAlgorithm::Hs256,
                key: b"jwt-secret-0123456789".to_vec(),
                issuer: None,
                audience: None,
                leeway_secs: 0,
                cookie: "herald_token".into(),
            }),
            session_cookie: Some(crate::config::SessionCookieConfig {
                secret: b"cookie-secret-0123456".to_vec(),
                name: "herald_session".into(),
            }),
            trust_user_param: false,
        })
        .unwrap()
    }

    fn token() -> String {
        jwt::issue_hs256(
            b"jwt-secret-0123456789",
            &jwt::Claims {
                sub: "alice".into(),
                did: None,
                exp: 2000,
                nbf: None,
                iss: None,
                aud: None,
            },
        )
    }

    #[test]
    fn the_trusted_user_param_is_used_only_when_configured() {
        let req = |q: &'static str| AuthRequest {
            query: Some(q),
            now_secs: 1000,
            ..Default::default()
        };
        let jwt_only = configured();
        assert_eq!(
            jwt_only.authenticate(&req("user=alice")),
            Err(AuthError::MissingCredentials)
        );
        let trusting = ConfiguredAuth::new(&AuthConfig {
            trust_user_param: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            trusting.authenticate(&req("user=alice&device=phone")),
            Ok(Identity {
                user: "alice".into(),
                device: Some("phone".into())
            })
        );
        assert_eq!(
            trusting.authenticate(&req("user=bob")).unwrap().device,
            None
        );
        assert_eq!(
            trusting.authenticate(&req("user=a/b")),
            Err(AuthError::BadIdentity)
        );
        assert_eq!(
            trusting.authenticate(&req("x=1")),
            Err(AuthError::MissingCredentials)
        );
    }

    #[test]
    fn refused_cookie_access_refuses_both_cookie_methods_with_403() {
        let auth = configured();
        let jwt_cookie = format!("herald_token={}", token());
        let session = format!(
            "herald_session={}",
            session_cookie::sign(b"cookie-secret-0123456", "bob", None, 2000)
        );
        for cookie in [jwt_cookie.as_str(), session.as_str()] {
            let mut req = AuthRequest {
                cookie: Some(cookie),
                now_secs: 1000,
                ..Default::default()
            };
            assert!(auth.authenticate(&req).is_ok(), "allowed: {cookie}");
            req.cookie_access = CookieAccess::Refused;
            let err = auth.authenticate(&req).unwrap_err();
            assert_eq!(err, AuthError::CookieOrigin, "{cookie}");
            assert_eq!((err.status(), err.reason()), (403, "cookie_origin"));
        }
    }

    #[test]
    fn refused_cookie_access_keeps_header_and_query_tokens() {
        let auth = configured();
        let bearer = format!("Bearer {}", token());
        let query = format!("access_token={}", token());
        let refused = |authorization, query| AuthRequest {
            query,
            authorization,
            cookie: Some("herald_token=stale; herald_session=stale"),
            now_secs: 1000,
            cookie_access: CookieAccess::Refused,
        };
        assert_eq!(
            auth.authenticate(&refused(Some(&bearer), None))
                .unwrap()
                .user,
            "alice"
        );
        assert_eq!(
            auth.authenticate(&refused(None, Some(&query)))
                .unwrap()
                .user,
            "alice"
        );
        // Unrelated cookies are no credentials: the answer stays 401 missing_credentials.
        let other = AuthRequest {
            cookie: Some("theme=dark"),
            cookie_access: CookieAccess::Refused,
            ..Default::default()
        };
        assert_eq!(
            auth.authenticate(&other),
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(AuthError::MissingCredentials.status(), 401);
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
