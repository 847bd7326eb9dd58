//! The admin HTTP API on the control thread: `/healthz`, `/readyz`, `/stats`, `/metrics`,
//! `POST /admin/drain`, plus whatever an embedder's [`AdminExtension`] serves (`herald dev`
//! serves its demo page there; `herald-edge` has none).
//!
//! A deliberately small HTTP/1.1 server (httparse for the head, one request per connection,
//! `Connection: close`, bodies up to [`MAX_BODY`]): it serves operators and scrapers, never
//! clients. Each request that needs numbers asks every shard for a snapshot through its
//! command channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::messages::{ControlRequest, ShardCommand};
use super::metrics_export;
use crate::shard::probe::ShardSnapshot;

/// Largest request body the admin server reads (larger → 413).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// A request for an [`AdminExtension`].
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// The request body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

/// An [`AdminExtension`]'s answer.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

/// Extra admin routes an embedder serves; asked for every path the admin API does not know,
/// `None` = 404.
pub type AdminExtension = Arc<
    dyn Fn(AdminRequest) -> Pin<Box<dyn Future<Output = Option<AdminResponse>> + Send>>
        + Send
        + Sync,
>;

/// What the admin server needs from the control thread.
#[derive(Clone)]
pub struct AdminState {
    /// This edge's node id.
    pub node_id: String,
    /// One command channel per shard.
    pub shards: Vec<mpsc::UnboundedSender<ShardCommand>>,
    /// Registry writer queue depth and health, updated by the control loop.
    pub registry: Arc<std::sync::Mutex<RegistryStatus>>,
    /// Drain requests go to the control loop.
    pub requests: mpsc::UnboundedSender<ControlRequest>,
    /// An embedder's extra routes.
    pub extension: Option<AdminExtension>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("node_id", &self.node_id)
            .field("shards", &self.shards.len())
            .field("extension", &self.extension.is_some())
            .finish_non_exhaustive()
    }
}

/// Registry health as the control loop last saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistryStatus {
    /// `in-process`, `redis` or `redis-cluster`.
    pub kind: String,
    /// Operations waiting to be written.
    pub queue_depth: usize,
}

/// Totals across shards.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// All client connections.
    pub connections: usize,
    /// Authenticated WebSocket connections.
    pub websocket: usize,
    /// Authenticated SSE connections.
    pub sse: usize,
    /// Still handshaking.
    pub handshaking: usize,
    /// Distinct users (summed per shard).
    pub users: usize,
}

/// The `/stats` document.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// Node id.
    pub node_id: String,
    /// Sums.
    pub totals: Totals,
    /// Per shard.
    pub shards: Vec<ShardSnapshot>,
    /// Registry.
    pub registry: RegistryStatus,
    /// Whether the edge is draining.
    pub draining: bool,
}

/// Asks every shard for a snapshot (shards that do not answer within a second are skipped).
pub async fn snapshots(shards: &[mpsc::UnboundedSender<ShardCommand>]) -> Vec<ShardSnapshot> {
    let mut pending = Vec::new();
    for s in shards {
        let (tx, rx) = oneshot::channel();
        if s.send(ShardCommand::Snapshot(tx)).is_ok() {
            pending.push(rx);
        }
    }
    let mut out = Vec::new();
    for rx in pending {
        if let Ok(Ok(snap)) = tokio::time::timeout(Duration::from_secs(1), rx).await {
            out.push(snap);
        }
    }
    out
}

/// Builds the `/stats` document.
pub async fn stats(state: &AdminState) -> Stats {
    let shards = snapshots(&state.shards).await;
    let mut totals = Totals::default();
    for s in &shards {
        totals.connections += s.connections;
        totals.websocket += s.websocket;
        totals.sse += s.sse;
        totals.handshaking += s.handshaking;
        totals.users += s.users;
    }
    Stats {
        draining: shards.iter().any(|s| s.draining),
        node_id: state.node_id.clone(),
        totals,
        shards,
        registry: state.registry.lock().map(|r| r.clone()).unwrap_or_default(),
    }
}

/// Serves the admin API until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &state)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (method, target, head_len, body_len) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("/").to_string(),
                    head_len,
                    body_len,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => return respond(&mut stream, 400, "text/plain", b"bad request\n").await,
        }
    };
    if body_len > MAX_BODY {
        return respond(&mut stream, 413, "text/plain", b"body too large\n").await;
    }
    while buf.len() < head_len + body_len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target.as_str(), None),
    };
    match (method.as_str(), path) {
        ("GET", "/healthz") => respond(&mut stream, 200, "text/plain", b"ok\n").await,
        ("GET", "/readyz") => {
            let snaps = snapshots(&state.shards).await;
            let ready = snaps.len() == state.shards.len() && snaps.iter().all(|s| !s.draining);
            if ready {
                respond(&mut stream, 200, "text/plain", b"ready\n").await
            } else {
                respond(&mut stream, 503, "text/plain", b"not ready\n").await
            }
        }
        ("GET", "/stats") => {
            let body = serde_json::to_vec_pretty(&stats(state).await).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body).await
        }
        ("GET", "/metrics") => {
            let snaps = snapshots(&state.shards).await;
            let queue = state.registry.lock().map(|r| r.queue_depth).unwrap_or(0);
            metrics_export::publish(&state.node_id, &snaps, queue);
            let body = metrics_export::render();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                body.as_bytes(),
            )
            .await
        }
        ("POST", "/admin/drain") => {
            let _ = state.requests.send(ControlRequest::Drain);
            respond(
                &mut stream,
                202,
                "application/json",
                b"{\"draining\":true}\n",
            )
            .await
        }
        (_, "/healthz" | "/readyz" | "/stats" | "/metrics" | "/admin/drain") => {
            respond(&mut stream, 405, "text/plain", b"method not allowed\n").await
        }
        _ => {
            let answer = match &state.extension {
                Some(ext) => {
                    ext(AdminRequest {
                        method: method.clone(),
                        path: path.to_string(),
                        query,
                        body: buf[head_len..head_len + body_len].to_vec(),
                    })
                    .await
                }
                None => None,
            };
            match answer {
                Some(r) => respond(&mut stream, r.status, r.content_type, &r.body).await,
                None => respond(&mut stream, 404, "text/plain", b"not found\n").await,
            }
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::handshake::reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
