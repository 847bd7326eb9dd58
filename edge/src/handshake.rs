//! The client handshake, sans-io: request-head bytes (+ the clock) in, a [`Decision`] out.
//!
//! Routes `GET /ws` (RFC 6455 upgrade), `GET /sse` (`text/event-stream`) and `GET /healthz`.
//! Errors map to statuses: unknown path 404, wrong method 405, malformed request or missing /
//! bad upgrade headers 400, head over the cap (or too many headers) 431, Origin not in the
//! allow-list 403, failed authentication 401. The caller enforces the deadline and writes the
//! bytes from `Decision::response`; nothing from the head is kept after it.
//!
//! Who may connect with cookies: browsers attach cookies to any page's WebSocket or
//! EventSource request, so a cookie-borne credential (JWT cookie or session cookie) is only
//! accepted when the request has no `Origin` (a native client) or an `Origin` that is
//! explicitly on `allowed_origins`. With no allow-list every request carrying `Origin`
//! (`null` included) is refused cookie authentication with 403 `cookie_origin`; tokens in
//! `Authorization: Bearer` or `?access_token=` are not sent by browsers on their own and stay
//! usable.

use herald_protocol::history::{Position, PositionError};

use crate::auth::{AuthError, AuthRequest, Authenticator, CookieAccess, Identity};

/// Most headers accepted in a request head (more → 431).
pub const MAX_HEADERS: usize = 48;

/// The kind of client connection being established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// WebSocket (RFC 6455).
    WebSocket,
    /// Server-Sent Events.
    Sse,
}

/// A refusal: status code and a short reason (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status.
    pub status: u16,
    /// Metric label / log reason.
    pub reason: &'static str,
    /// The authenticator refused the credentials (401, or 403 `cookie_origin`): counted in
    /// `herald_edge_auth_failures_total` under `reason`.
    pub auth_failure: bool,
}

impl Reject {
    const fn new(status: u16, reason: &'static str) -> Self {
        Reject {
            status,
            reason,
            auth_failure: false,
        }
    }

    fn auth(e: &AuthError) -> Self {
        Reject {
            status: e.status(),
            reason: e.reason(),
            auth_failure: true,
        }
    }
}

/// What to do with the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The head is incomplete and under the cap: read more.
    NeedMore,
    /// Refuse with this status, then close.
    Reject(Reject),
    /// Answer `/healthz` with 200, then close.
    Health,
    /// Upgrade: write the response, then the connection is open for pushes.
    Accept(Accepted),
}

/// A successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// WebSocket or SSE.
    pub kind: ConnKind,
    /// Who the client is.
    pub identity: Identity,
    /// `Sec-WebSocket-Accept` value (WebSocket only).
    pub ws_accept: Option<String>,
    /// The allowed Origin to echo in CORS headers (SSE with an allow-list).
    pub cors_origin: Option<String>,
    /// Bytes of the buffer that belonged to the head (anything after is client data).
    pub head_len: usize,
    /// The WebSocket subprotocol agreed on: `herald.v1` when the client offered it
    /// (`Sec-WebSocket-Protocol`), else none (plain mode).
    pub subprotocol: Option<&'static str>,
    /// The history position the client resumes from (SSE `Last-Event-ID`, or
    /// `?last_event_id=` on either kind), or why it is not one; `None` when none was given.
    pub resume_from: Option<Result<Position, PositionError>>,
}

/// The query parameter naming the position a client resumes from.
pub const RESUME_PARAM: &str = "last_event_id";

/// The position a request resumes from: SSE's `Last-Event-ID` header (what a browser's
/// EventSource sends on its own reconnects) first, else the `last_event_id` query parameter
/// (percent-decoded; a new EventSource or a WebSocket cannot set headers).
fn resume_from(
    route: ConnKind,
    h: &Headers<'_, '_>,
    request: &AuthRequest<'_>,
) -> Option<Result<Position, PositionError>> {
    let header = (route == ConnKind::Sse)
        .then(|| h.get_str("last-event-id"))
        .flatten()
        .map(|v| v.trim().to_string());
    let text = header.or_else(|| {
        let value = request.query_param(RESUME_PARAM)?;
        Some(
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned(),
        )
    })?;
    // An empty value (EventSource's initial state) resumes from nothing.
    (!text.is_empty()).then(|| text.parse())
}

/// The WebSocket subprotocol with ids and typed control messages (docs/protocol.md).
pub const SUBPROTOCOL_V1: &str = "herald.v1";

/// Handshake policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Head size cap (431 above).
    pub max_head_bytes: usize,
    /// Exact Origin allow-list, lower-case, no trailing slash; empty = unchecked.
    pub allowed_origins: &'a [String],
}

/// Examines `buf` (everything read so far) and decides.
pub fn decide(
    buf: &[u8],
    policy: &Policy<'_>,
    auth: &dyn Authenticator,
    now_secs: u64,
) -> Decision {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= policy.max_head_bytes {
                Decision::Reject(Reject::new(431, "head_too_large"))
            } else {
                Decision::NeedMore
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Decision::Reject(Reject::new(431, "too_many_headers"))
        }
        Err(_) => return Decision::Reject(Reject::new(400, "malformed")),
    };
    if head_len > policy.max_head_bytes {
        return Decision::Reject(Reject::new(431, "head_too_large"));
    }
    if req.version != Some(1) {
        return Decision::Reject(Reject::new(400, "http_version"));
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let route = match path {
        "/ws" => ConnKind::WebSocket,
        "/sse" => ConnKind::Sse,
        "/healthz" => {
            return if req.method == Some("GET") {
                Decision::Health
            } else {
                Decision::Reject(Reject::new(405, "method"))
            }
        }
        _ => return Decision::Reject(Reject::new(404, "not_found")),
    };
    if req.method != Some("GET") {
        return Decision::Reject(Reject::new(405, "method"));
    }
    let h = Headers(req.headers);
    let ws_accept = if route == ConnKind::WebSocket {
        match check_upgrade(&h) {
            Ok(accept) => Some(accept),
            Err(r) => return Decision::Reject(r),
        }
    } else {
        None
    };
    let (cors_origin, cookie_access) = match check_origin(&h, policy.allowed_origins) {
        Ok(OriginCheck::Absent) => (None, CookieAccess::Allowed),
        Ok(OriginCheck::Allowed(origin)) => (Some(origin), CookieAccess::Allowed),
        Ok(OriginCheck::Unchecked) => (None, CookieAccess::Refused),
        Err(r) => return Decision::Reject(r),
    };
    let cookies = h.joined("cookie");
    let request = AuthRequest {
        query,
        authorization: h.get_str("authorization"),
        cookie: cookies.as_deref(),
        now_secs,
        cookie_access,
    };
    let subprotocol = (route == ConnKind::WebSocket
        && h.has_token("sec-websocket-protocol", SUBPROTOCOL_V1))
    .then_some(SUBPROTOCOL_V1);
    let resume_from = resume_from(route, &h, &request);
    if resume_from.is_some() && route == ConnKind::WebSocket && subprotocol.is_none() {
        // Plain WebSocket messages carry no position: a client that has one speaks herald.v1.
        return Decision::Reject(Reject::new(400, "resume_needs_herald_v1"));
    }
    match auth.authenticate(&request) {
        Ok(identity) => Decision::Accept(Accepted {
            kind: route,
            identity,
            subprotocol,
            resume_from,
            ws_accept,
            cors_origin: if route == ConnKind::Sse {
                cors_origin
            } else {
                None
            },
            head_len,
        }),
        Err(e) => Decision::Reject(Reject::auth(&e)),
    }
}

struct Headers<'h, 'b>(&'h [httparse::Header<'b>]);

impl<'b> Headers<'_, 'b> {
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
    fn get_str(&self, name: &str) -> Option<&'b str> {
        self.all(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    fn joined(&self, name: &str) -> Option<String> {
        let parts: Vec<&str> = self
            .all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name).any(|v| {
            std::str::from_utf8(v)
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    }
}

fn check_upgrade(h: &Headers<'_, '_>) -> Result<String, Reject> {
    if !h.has_token("upgrade", "websocket") {
        return Err(Reject::new(400, "no_upgrade"));
    }
    if !h.has_token("connection", "upgrade") {
        return Err(Reject::new(400, "no_connection_upgrade"));
    }
    if h.get_str("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Reject::new(400, "ws_version"));
    }
    let key = h
        .get_str("sec-websocket-key")
        .map(str::trim)
        .ok_or(Reject::new(400, "no_ws_key"))?;
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(Reject::new(400, "bad_ws_key")),
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// What the request's `Origin` allows.
#[derive(Debug, PartialEq, Eq)]
enum OriginCheck {
    /// No `Origin`: not a browser page; cookies may be used.
    Absent,
    /// On the allow-list (the value as sent, for CORS); cookies may be used.
    Allowed(String),
    /// An `Origin` (any value, `null` included) with no allow-list to check it against: the
    /// connection may proceed, but not with cookie credentials.
    Unchecked,
}

/// Checks `Origin` against the allow-list. A request without `Origin` is not from a browser
/// page and is allowed; `null` never matches; a listed origin must appear exactly once.
fn check_origin(h: &Headers<'_, '_>, allowed: &[String]) -> Result<OriginCheck, Reject> {
    let mut origins = h.all("origin");
    let Some(first) = origins.next() else {
        return Ok(OriginCheck::Absent);
    };
    if allowed.is_empty() {
        return Ok(OriginCheck::Unchecked);
    }
    if origins.next().is_some() {
        return Err(Reject::new(403, "origin"));
    }
    let origin = std::str::from_utf8(first)
        .map_err(|_| Reject::new(403, "origin"))?
        .trim();
    let normalised = origin.trim_end_matches('/').to_ascii_lowercase();
    if normalised == "null" || !allowed.contains(&normalised) {
        return Err(Reject::new(403, "origin"));
    }
    Ok(OriginCheck::Allowed(origin.to_string()))
}

/// Reason phrase of the statuses the edge sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete error response (closes the connection).
pub fn reject_response(status: u16, retry_after_secs: Option<u32>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n",
        reason_phrase(status)
    );
    if status == 400 {
        out.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if status == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    if let Some(s) = retry_after_secs {
        out.push_str(&format!("Retry-After: {s}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The `/healthz` answer on the client port.
pub fn health_response() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
}

/// The response that opens an accepted connection.
pub fn accept_response(acc: &Accepted) -> Vec<u8> {
    match acc.kind {
        ConnKind::WebSocket => format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{}\r\n",
            acc.ws_accept.as_deref().unwrap_or_default(),
            acc.subprotocol
                .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
                .unwrap_or_default()
        )
        .into_bytes(),
        ConnKind::Sse => {
            let mut out = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
            );
            if let Some(o) = &acc.cors_origin {
                out.push_str(&format!(
                    "Access-Control-Allow-Origin: {o}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
                ));
            }
            out.push_str("\r\n");
            out.into_bytes()
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `Bearer user:device`, refuses anything else.
    struct FakeAuth;
    impl Authenticator for FakeAuth {
        fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
            let t = req
                .bearer()
                .or_else(|| req.query_param("access_token"))
                .ok_or(AuthError::MissingCredentials)?;
            let (u, d) = t.split_once(':').ok_or(AuthError::Malformed)?;
            Ok(Identity {
                user: u.into(),
                device: (!d.is_empty()).then(|| d.into()),
            })
        }
    }

    const WS: &str = "GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer alice:phone\r\n\r\n";

    fn run(req: &str, origins: &[String]) -> Decision {
        decide(
            req.as_bytes(),
            &Policy {
                max_head_bytes: 8192,
                allowed_origins: origins,
            },
            &FakeAuth,
            0,
        )
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Reject(r) => r.status,
            Decision::Accept(_) => 101,
            Decision::Health => 200,
            Decision::NeedMore => 0,
        }
    }

    #[test]
    fn websocket_accept_key_is_rfc6455() {
        match run(WS, &[]) {
            Decision::Accept(a) => {
                assert_eq!(a.kind, ConnKind::WebSocket);
                assert_eq!(a.ws_accept.as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
                assert_eq!(a.identity.user, "alice");
                assert_eq!(a.head_len, WS.len());
                let resp = String::from_utf8(accept_response(&a)).unwrap();
                assert!(resp.starts_with("HTTP/1.1 101 "));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_status() {
        let sse = "GET /sse?access_token=bob: HTTP/1.1\r\nHost: e\r\n\r\n";
        assert_eq!(status(&run(sse, &[])), 101);
        assert_eq!(status(&run("GET /healthz HTTP/1.1\r\n\r\n", &[])), 200);
        assert_eq!(status(&run("GET /nope HTTP/1.1\r\n\r\n", &[])), 404);
        assert_eq!(status(&run(&WS.replace("GET", "POST"), &[])), 405);
        assert_eq!(status(&run(&sse.replace("GET", "PUT"), &[])), 405);
        assert_eq!(status(&run("GARBAGE\r\n\r\n", &[])), 400);
        assert_eq!(status(&run(&WS.replace("HTTP/1.1", "HTTP/1.0"), &[])), 400);
        assert_eq!(
            status(&run(&WS.replace("Upgrade: websocket\r\n", ""), &[])),
            400
        );
        assert_eq!(
            status(&run(&WS.replace("keep-alive, Upgrade", "keep-alive"), &[])),
            400
        );
        assert_eq!(
            status(&run(&WS.replace("Version: 13", "Version: 8"), &[])),
            400
        );
        assert_eq!(
            status(&run(&WS.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), &[])),
            400
        );
        assert_eq!(
            status(&run(
                &WS.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                &[]
            )),
            400
        );
        assert_eq!(
            status(&run(&WS.replace("Bearer alice:phone", "Bearer x"), &[])),
            401
        );
        assert_eq!(
            status(&run(
                &WS.replace("Authorization: Bearer alice:phone\r\n", ""),
                &[]
            )),
            401
        );
        let big = WS.replace("Host: edge", &format!("Host: {}", "x".repeat(9000)));
        assert_eq!(status(&run(&big, &[])), 431);
        let many: String = (0..60).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&run(&WS.replace("Host: edge\r\n", &many), &[])), 431);
        // an incomplete head under the cap waits; over the cap it is refused
        assert_eq!(
            run("GET /ws HTTP/1.1\r\nHost: e\r\n", &[]),
            Decision::NeedMore
        );
        let endless = format!("GET /ws HTTP/1.1\r\nX: {}", "y".repeat(9000));
        assert_eq!(status(&run(&endless, &[])), 431);
    }

    #[test]
    fn origin_matrix() {
        let allowed = vec!["https://app.example.com".to_string()];
        let with = |o: &str| {
            run(
                &WS.replace("Host: edge", &format!("Host: edge\r\nOrigin: {o}")),
                &allowed,
            )
        };
        assert_eq!(status(&with("https://app.example.com")), 101);
        assert_eq!(
            status(&with("HTTPS://APP.EXAMPLE.COM")),
            101,
            "scheme/host are case-insensitive"
        );
        assert_eq!(status(&with("https://evil-app.example.com")), 403);
        assert_eq!(status(&with("https://app.example.com.evil.net")), 403);
        assert_eq!(status(&with("https://example.com")), 403);
        assert_eq!(status(&with("http://app.example.com")), 403);
        assert_eq!(status(&with("null")), 403);
        assert_eq!(
            status(&run(WS, &allowed)),
            101,
            "no Origin: not a browser page"
        );
        let twice = WS.replace(
            "Host: edge",
            "Host: edge\r\nOrigin: https://app.example.com\r\nOrigin: https://evil.com",
        );
        assert_eq!(status(&run(&twice, &allowed)), 403);
        // unchecked when no allow-list
        assert_eq!(status(&with("null")), 403);
        assert_eq!(
            status(&run(
                &WS.replace("Host: edge", "Host: e\r\nOrigin: null"),
                &[]
            )),
            101
        );
    }

    /// The built-in methods as configured by default: JWT (bearer, query, cookie
    /// `herald_token`) and the signed session cookie `herald_session`.
    fn configured_auth() -> crate::auth::ConfiguredAuth {
        crate::auth::ConfiguredAuth::new(&crate::config::AuthConfig {
            jwt: Some(crate::config::JwtConfig {
                algorithm: crate::auth::jwt::JwtAlgorithm::Hs256,
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

    /// `GET /ws` (with `extra` headers) through the configured methods.
    fn ws_with(extra: &str, origins: &[String]) -> Decision {
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        decide(
            head.as_bytes(),
            &Policy {
                max_head_bytes: 8192,
                allowed_origins: origins,
            },
            &configured_auth(),
            1000,
        )
    }

    fn cookie_credentials() -> [(&'static str, String); 2] {
        let jwt = crate::auth::jwt::issue_hs256(
            b"jwt-secret-0123456789",
            &crate::auth::jwt::Claims {
                sub: "alice".into(),
                did: None,
                exp: 2000,
                nbf: None,
                iss: None,
                aud: None,
            },
        );
        let session =
            crate::auth::session_cookie::sign(b"cookie-secret-0123456", "alice", None, 2000);
        [
            ("jwt cookie", format!("Cookie: herald_token={jwt}\r\n")),
            (
                "session cookie",
                format!("Cookie: theme=dark\r\nCookie: herald_session={session}\r\n"),
            ),
        ]
    }

    fn cookie_origin_refusal() -> Decision {
        Decision::Reject(Reject {
            status: 403,
            reason: "cookie_origin",
            auth_failure: true,
        })
    }

    #[test]
    fn cookies_without_an_allow_list_only_from_requests_without_origin() {
        for (what, cookie) in cookie_credentials() {
            assert_eq!(status(&ws_with(&cookie, &[])), 101, "{what}, no Origin");
            for origin in ["https://app.example.com", "https://evil.example", "null"] {
                assert_eq!(
                    ws_with(&format!("Origin: {origin}\r\n{cookie}"), &[]),
                    cookie_origin_refusal(),
                    "{what} from {origin}"
                );
            }
            // A repeated or non-UTF-8 Origin is an Origin too.
            let twice = format!("Origin: https://a.example\r\nOrigin: null\r\n{cookie}");
            assert_eq!(ws_with(&twice, &[]), cookie_origin_refusal(), "{what}");
        }
    }

    #[test]
    fn cookies_with_an_allow_list_only_from_listed_origins() {
        let allowed = vec!["https://app.example.com".to_string()];
        for (what, cookie) in cookie_credentials() {
            let from = |o: &str| ws_with(&format!("Origin: {o}\r\n{cookie}"), &allowed);
            assert_eq!(status(&from("https://app.example.com")), 101, "{what}");
            assert_eq!(status(&from("HTTPS://APP.EXAMPLE.COM/")), 101, "{what}");
            assert_eq!(
                status(&ws_with(&cookie, &allowed)),
                101,
                "{what}, no Origin"
            );
            for refused in ["https://evil.example", "null"] {
                let d = from(refused);
                assert!(
                    matches!(d, Decision::Reject(Reject { status: 403, .. })),
                    "{what} from {refused}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn header_and_query_tokens_need_no_allow_list() {
        let [(_, jwt_cookie), _] = cookie_credentials();
        let token = jwt_cookie
            .trim_end()
            .trim_start_matches("Cookie: herald_token=")
            .to_string();
        let bearer = format!("Origin: https://any.example\r\nAuthorization: Bearer {token}\r\n");
        assert_eq!(status(&ws_with(&bearer, &[])), 101);
        // With a (refused) cookie beside it, the header token still decides.
        assert_eq!(status(&ws_with(&format!("{bearer}{jwt_cookie}"), &[])), 101);
        let sse =
            format!("GET /sse?access_token={token} HTTP/1.1\r\nHost: e\r\nOrigin: null\r\n\r\n");
        let d = decide(
            sse.as_bytes(),
            &Policy {
                max_head_bytes: 8192,
                allowed_origins: &[],
            },
            &configured_auth(),
            1000,
        );
        assert_eq!(status(&d), 101);
    }

    #[test]
    fn fragment_sweep_gives_the_same_decision() {
        for req in [
            WS.to_string(),
            "GET /sse?access_token=bob:tab HTTP/1.1\r\nHost: e\r\nCookie: a=b\r\n\r\n".to_string(),
            "GET /nope HTTP/1.1\r\n\r\n".to_string(),
            "POST /ws HTTP/1.1\r\n\r\n".to_string(),
        ] {
            let whole = run(&req, &[]);
            for frag in [1usize, 2, 5, 10, 100, 1000] {
                let mut buf = Vec::new();
                let mut last = Decision::NeedMore;
                for chunk in req.as_bytes().chunks(frag) {
                    assert_eq!(
                        last,
                        Decision::NeedMore,
                        "decided before the head was complete"
                    );
                    buf.extend_from_slice(chunk);
                    last = decide(
                        &buf,
                        &Policy {
                            max_head_bytes: 8192,
                            allowed_origins: &[],
                        },
                        &FakeAuth,
                        0,
                    );
                }
                assert_eq!(last, whole, "fragment size {frag}");
            }
        }
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(reject_response(503, Some(7))).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(r.contains("Retry-After: 7\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }
}
