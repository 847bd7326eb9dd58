//! The live demo of `herald dev`: extra routes on the edge's admin port (an
//! [`AdminExtension`]; `herald-edge` has none of them).
//!
//! - `GET /demo` — a page that holds a push stream with the JavaScript client (`clients/js`,
//!   served from the binary at `/demo/client/*.js`), shows connection state, reconnects and
//!   pushes as they arrive, and has a form that publishes a push through Kafka;
//! - `GET /demo/config` — where the edges are (`{"edge": "http://…", "edges": ["http://…", …]}`:
//!   this admin address's edge, then the others of `herald dev --edges N`);
//! - `GET /demo/token?user=…[&device=…]` — a token signed with the dev JWT secret (dev only:
//!   anyone who can reach the admin port of `herald dev` may act as any user);
//! - `POST /demo/send` with `{"user", "device"?, "payload", "priority"?}` — publishes with the
//!   `Sender` API and answers `{"id"}` or `{"error"}`.
//!
//! The page's origin is the admin address, so `herald dev` puts it on the edge's
//! `allowed_origins` (see `dev.rs`).

use std::sync::Arc;
use std::time::Duration;

use herald_edge::auth::jwt::{issue_hs256, Claims};
use herald_edge::control::admin::{AdminExtension, AdminRequest, AdminResponse};
use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Sender, SenderConfig};
use serde::Deserialize;

/// The demo page.
const PAGE: &str = include_str!("page.html");

/// The JavaScript client's modules, by file name.
const CLIENT: [(&str, &str); 7] = [
    ("index.js", include_str!("../../clients/js/src/index.js")),
    ("client.js", include_str!("../../clients/js/src/client.js")),
    (
        "backoff.js",
        include_str!("../../clients/js/src/backoff.js"),
    ),
    ("dedup.js", include_str!("../../clients/js/src/dedup.js")),
    (
        "emitter.js",
        include_str!("../../clients/js/src/emitter.js"),
    ),
    (
        "protocol.js",
        include_str!("../../clients/js/src/protocol.js"),
    ),
    ("url.js", include_str!("../../clients/js/src/url.js")),
];

/// What the demo routes need.
struct Demo {
    /// The edges' client addresses as `http://` URLs: this admin address's edge first.
    edge_urls: Vec<String>,
    /// The dev JWT secret.
    jwt_secret: String,
    /// Publishes the form's pushes.
    sender: Sender,
}

/// The form's push.
#[derive(Debug, Deserialize)]
struct SendForm {
    user: String,
    #[serde(default)]
    device: Option<String>,
    payload: String,
    #[serde(default)]
    priority: Option<String>,
}

/// The demo's admin routes for the edges at `edge_urls` (the own one first), tokens signed with `jwt_secret`,
/// pushes published to Kafka at `bootstrap`.
pub(crate) fn extension(
    edge_urls: Vec<String>,
    jwt_secret: String,
    bootstrap: &str,
) -> Result<AdminExtension, String> {
    let mut config = SenderConfig::new(bootstrap);
    config.delivery_timeout = Duration::from_secs(10);
    let sender = Sender::new(&config).map_err(|e| format!("demo sender: {e}"))?;
    let demo = Arc::new(Demo {
        edge_urls,
        jwt_secret,
        sender,
    });
    Ok(Arc::new(move |req: AdminRequest| {
        let demo = demo.clone();
        Box::pin(async move { demo.route(req).await })
    }))
}

fn response(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> AdminResponse {
    AdminResponse {
        status,
        content_type,
        body: body.into(),
    }
}

fn json(status: u16, value: serde_json::Value) -> AdminResponse {
    response(status, "application/json", value.to_string())
}

/// A query parameter (percent-decoded).
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Demo {
    async fn route(&self, req: AdminRequest) -> Option<AdminResponse> {
        let get = req.method == "GET";
        Some(match req.path.as_str() {
            "/demo" | "/demo/" if get => response(200, "text/html; charset=utf-8", PAGE),
            "/demo/config" if get => json(
                200,
                serde_json::json!({ "edge": self.edge_urls.first(), "edges": self.edge_urls }),
            ),
            "/demo/token" if get => self.token(req.query.as_deref()),
            "/demo/send" if req.method == "POST" => self.send(&req.body).await,
            p if get && p.starts_with("/demo/client/") => {
                let file = &p["/demo/client/".len()..];
                match CLIENT.iter().find(|(name, _)| *name == file) {
                    Some((_, src)) => response(200, "text/javascript; charset=utf-8", *src),
                    None => response(404, "text/plain", "no such module\n"),
                }
            }
            p if p == "/demo" || p.starts_with("/demo/") => {
                response(405, "text/plain", "method not allowed\n")
            }
            _ => return None,
        })
    }

    fn token(&self, query: Option<&str>) -> AdminResponse {
        let Some(user) = param(query, "user").filter(|u| herald_edge::auth::valid_id(u)) else {
            return response(400, "text/plain", "user: a non-empty id without `/`\n");
        };
        let device = param(query, "device").filter(|d| !d.is_empty());
        let now = herald_protocol::clock::unix_ms() / 1000;
        let token = issue_hs256(
            self.jwt_secret.as_bytes(),
            &Claims {
                sub: user,
                did: device,
                exp: now + 3600,
                nbf: None,
                iss: None,
                aud: None,
            },
        );
        response(200, "text/plain", token)
    }

    async fn send(&self, body: &[u8]) -> AdminResponse {
        let form: SendForm = match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => {
                return json(
                    400,
                    serde_json::json!({ "error": format!("bad form: {e}") }),
                )
            }
        };
        let priority = match form.priority.as_deref().unwrap_or("normal") {
            "high" => Priority::High,
            "normal" => Priority::Normal,
            "low" => Priority::Low,
            other => {
                return json(
                    400,
                    serde_json::json!({ "error": format!("priority {other:?}: high, normal or low") }),
                )
            }
        };
        let target = match form.device {
            Some(d) if !d.is_empty() => Target::Device {
                user: form.user,
                device: d,
            },
            _ => Target::User(form.user),
        };
        match self
            .sender
            .send(&target, form.payload.as_bytes(), priority, None)
            .await
        {
            Ok(id) => json(200, serde_json::json!({ "id": id.as_str() })),
            Err(e) => json(400, serde_json::json!({ "error": e.to_string() })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            param(Some("user=al%20ice&x=1"), "user").as_deref(),
            Some("al ice")
        );
        assert_eq!(param(Some("x=1"), "user"), None);
        assert_eq!(param(None, "user"), None);
    }

    #[test]
    fn every_module_the_client_imports_is_served() {
        for (_, src) in CLIENT {
            for line in src.lines().filter(|l| l.contains(" from './")) {
                let file = line
                    .split("from './")
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .unwrap();
                assert!(
                    CLIENT.iter().any(|(name, _)| *name == file),
                    "{file} is imported but not served"
                );
            }
        }
    }
}
