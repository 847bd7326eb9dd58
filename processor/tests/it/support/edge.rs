//! A delivery-port server that behaves like an edge node: per shard a listener on
//! `base_port + shard`, the `Challenge` / `Auth` / `AuthOk` handshake with the shared secret,
//! then `Deliver` / `Broadcast` frames in and `Answers` out. What it answers is decided per
//! message by a policy closure; every message received is recorded. The conversation is the
//! protocol's `ServerSession`, as on the real edge.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use herald_protocol::delivery::session::{ServerEvent, ServerSession};
use herald_protocol::delivery::{Answer, Outcome, DEFAULT_MAX_FRAME_LEN};
use herald_registry::{EdgeInfo, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message the edge received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Node id of the edge.
    pub node: String,
    /// Shard it arrived on.
    pub shard: u16,
    /// When.
    pub at: Instant,
    /// User (`None` for a broadcast).
    pub user: Option<String>,
    /// Device, if targeted.
    pub device: Option<String>,
    /// The push id.
    pub message_id: String,
    /// Expiry the processor sent.
    pub expires_at_ms: u64,
    /// Payload.
    pub payload: Vec<u8>,
    /// History position (user-targeted pushes with history on).
    pub position: Option<herald_protocol::history::Position>,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    /// Answer with this outcome and delivered count.
    Answer(Outcome, u32),
    /// Answer like `Answer`, but only after this delay (a slow edge; other messages on the
    /// connection are not held up).
    Delayed(Outcome, u32, std::time::Duration),
    /// Never answer.
    Silent,
}

/// Decides the reply for a received message.
pub(crate) type Policy = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

/// Answers every message `delivered` to one connection.
pub(crate) fn deliver_all() -> Policy {
    Arc::new(|_| Reply::Answer(Outcome::Delivered, 1))
}

/// A running test edge.
pub(crate) struct TestEdge {
    /// Node id.
    pub node: String,
    /// First delivery port.
    pub base_port: u16,
    /// Shards listening.
    pub shards: u16,
    /// Everything received, in arrival order.
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Accept loops.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind_consecutive(shards: u16) -> (u16, Vec<TcpListener>) {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = first.local_addr().unwrap().port();
        if u32::from(base) + u32::from(shards) > 65535 {
            continue;
        }
        let mut listeners = vec![first];
        for s in 1..shards {
            match TcpListener::bind(("127.0.0.1", base + s)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == usize::from(shards) {
            return (base, listeners);
        }
    }
    panic!("no {shards} consecutive free ports");
}

impl TestEdge {
    /// Starts `shards` shard listeners answering with `policy`, and registers the edge's
    /// membership in `registry`.
    pub(crate) async fn start(
        registry: &Registry,
        node: &str,
        shards: u16,
        policy: Policy,
    ) -> TestEdge {
        let (base_port, listeners) = bind_consecutive(shards).await;
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (shard, listener) in listeners.into_iter().enumerate() {
            let received = received.clone();
            let policy = policy.clone();
            let node = node.to_string();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(serve(
                        stream,
                        node.clone(),
                        shard as u16,
                        policy.clone(),
                        received.clone(),
                    ));
                }
            }));
        }
        let edge = TestEdge {
            node: node.to_string(),
            base_port,
            shards,
            received,
            tasks,
        };
        registry
            .heartbeat_edge(&edge.info())
            .await
            .expect("heartbeat");
        // Keep the membership fresh, like a real edge.
        let (registry, mut info) = (registry.clone(), edge.info());
        let mut edge = edge;
        edge.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                info.heartbeat_ms = super::now_ms();
                let _ = registry.heartbeat_edge(&info).await;
            }
        }));
        edge
    }

    /// The membership entry.
    pub(crate) fn info(&self) -> EdgeInfo {
        EdgeInfo {
            node_id: self.node.clone(),
            delivery_host: "127.0.0.1".into(),
            delivery_base_port: self.base_port,
            shards: self.shards,
            heartbeat_ms: super::now_ms(),
        }
    }

    /// A copy of what was received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many messages were received.
    pub(crate) fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Reads into `session` until it has an event; `None` when the connection ended or the
/// session failed (a wrong secret, a bad frame: close, like the edge).
async fn next_event<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    session: &mut ServerSession,
) -> Option<ServerEvent> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(ev) = session.poll_event().ok()? {
            return Some(ev);
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        session.handle_input(&buf[..n]);
    }
}

async fn serve(
    mut stream: TcpStream,
    node: String,
    shard: u16,
    policy: Policy,
    received: Arc<Mutex<Vec<Received>>>,
) {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).unwrap();
    let mut session = ServerSession::new(super::SECRET, nonce, DEFAULT_MAX_FRAME_LEN);
    if stream.write_all(session.transmit()).await.is_err() {
        return;
    }
    session.clear_transmit();
    let Some(ServerEvent::Authenticated) = next_event(&mut stream, &mut session).await else {
        return;
    };
    if stream.write_all(session.transmit()).await.is_err() {
        return;
    }
    session.clear_transmit();
    // Delayed answers come back through a channel; the session seals every Answers frame in
    // the order it is written, so one task owns both the session and the socket.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Answer>>();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Frames already in the session (behind the Auth, or from the last read).
        loop {
            let event = match session.poll_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => return,
            };
            let answers = on_event(event, &node, shard, &policy, &received, &tx);
            if !answers.is_empty() && tx.send(answers).is_err() {
                return;
            }
        }
        tokio::select! {
            Some(mut answers) = rx.recv() => {
                // Answer in reverse order: the processor must match by seq.
                answers.reverse();
                if session.send_answers(&answers).is_err()
                    || stream.write_all(session.transmit()).await.is_err()
                {
                    return;
                }
                session.clear_transmit();
            }
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => session.handle_input(&buf[..n]),
            },
        }
    }
}

/// Records the messages of one event and returns the answers due now (delayed ones are sent
/// to `tx` later).
fn on_event(
    event: ServerEvent,
    node: &str,
    shard: u16,
    policy: &Policy,
    received: &Mutex<Vec<Received>>,
    tx: &tokio::sync::mpsc::UnboundedSender<Vec<Answer>>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut record = |r: Received, seq: u64| {
        let reply = policy(&r);
        received.lock().unwrap().push(r);
        match reply {
            Reply::Answer(outcome, delivered) => answers.push(Answer {
                seq,
                outcome,
                delivered,
            }),
            Reply::Delayed(outcome, delivered, delay) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(vec![Answer {
                        seq,
                        outcome,
                        delivered,
                    }]);
                });
            }
            Reply::Silent => {}
        }
    };
    match event {
        ServerEvent::Deliver(msgs) => {
            for m in msgs {
                record(
                    Received {
                        node: node.to_string(),
                        shard,
                        at: Instant::now(),
                        user: Some(m.user),
                        device: m.device,
                        message_id: m.message_id,
                        expires_at_ms: m.expires_at_ms,
                        payload: m.payload,
                        position: m.position,
                    },
                    m.seq,
                );
            }
        }
        ServerEvent::Broadcast(b) => record(
            Received {
                node: node.to_string(),
                shard,
                at: Instant::now(),
                user: None,
                device: None,
                message_id: b.message_id,
                expires_at_ms: b.expires_at_ms,
                payload: b.payload,
                position: None,
            },
            b.seq,
        ),
        ServerEvent::Authenticated => {}
    }
    answers
}
