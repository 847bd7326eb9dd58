//! The shard's delivery port: processors connect straight to the core that owns the target.
//!
//! Per connection: send `Challenge`, require a valid `Auth` within [`AUTH_TIMEOUT`] (a wrong
//! secret closes the connection, nothing delivered), answer `AuthOk`; then every `Deliver`
//! batch and `Broadcast` is applied to the shard's table and answered — one `Answers` frame
//! per read, one answer per message. The conversation itself (handshake, which frames are
//! allowed when, the tag on every later frame) is
//! `herald_protocol::delivery::session::ServerSession`; this file moves its bytes and applies
//! its events to the shard. The session yields a batch only once the whole frame's tag
//! verified, so a frame altered, injected, replayed or reordered on the path delivers nothing:
//! it ends the connection (counted in `delivery_integrity_failures`), and the processor
//! retries what was unanswered on a new one.
//!
//! Before authentication a connection costs almost nothing and cannot make the shard
//! allocate: it is read through a 64-byte buffer, its first frame may declare no more than an
//! `Auth` frame needs (`AUTH_FRAME_LEN`) and must be `Auth`, and at most
//! `delivery_max_pending` connections per shard may be waiting to authenticate — more are
//! closed on accept. The 64 KiB read buffer and the full frame cap come after `AuthOk`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use herald_protocol::delivery::session::{ServerEvent, ServerSession, SessionError};
use herald_protocol::delivery::Answer;

use crate::shard::Shard;

/// Time a processor has to authenticate.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts processor connections until the task is dropped.
pub(crate) async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    let pending = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if pending.get() >= shard.cfg.delivery_max_pending {
                    shard.with(|st, _| st.delivery_pending_refused());
                    log::warn!(
                        "shard {}: {} delivery connections are waiting to authenticate; closing a new one",
                        shard.index,
                        pending.get()
                    );
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                shard.with(|st, _| st.delivery_connection());
                let shard = shard.clone();
                let waiting = Pending::new(&pending);
                glommio::spawn_local(async move {
                    if let Err(e) = handle(&shard, stream, waiting).await {
                        log::debug!("shard {}: delivery connection ended: {e}", shard.index);
                    }
                })
                .detach();
            }
            Err(e) => {
                log::warn!("shard {}: delivery accept failed: {e}", shard.index);
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection waiting to authenticate; dropping it (authenticated or gone) frees its
/// place among the shard's `delivery_max_pending`.
struct Pending(Rc<Cell<usize>>);

impl Pending {
    fn new(count: &Rc<Cell<usize>>) -> Pending {
        count.set(count.get() + 1);
        Pending(count.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn random_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("the OS random source works");
    n
}

/// Writes whatever the session queued.
async fn flush(stream: &mut TcpStream, session: &mut ServerSession) -> Result<(), String> {
    if !session.transmit().is_empty() {
        stream
            .write_all(session.transmit())
            .await
            .map_err(|e| e.to_string())?;
        session.clear_transmit();
    }
    Ok(())
}

/// Why a connection did not authenticate.
#[derive(Debug)]
enum NoAuth {
    /// The session refused the peer's bytes (bad MAC, not an `Auth`, too large).
    Session(SessionError),
    /// Reading failed.
    Io(std::io::Error),
}

impl std::fmt::Display for NoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAuth::Session(e) => e.fmt(f),
            NoAuth::Io(e) => e.fmt(f),
        }
    }
}

/// Reads until the session authenticated the peer (`Ok(true)`) or the peer left (`Ok(false)`).
async fn authenticate(
    stream: &mut TcpStream,
    session: &mut ServerSession,
    buf: &mut [u8],
) -> Result<bool, NoAuth> {
    loop {
        // Before authentication the session yields no other event.
        if let Some(ServerEvent::Authenticated) = session.poll_event().map_err(NoAuth::Session)? {
            return Ok(true);
        }
        let n = stream.read(buf).await.map_err(NoAuth::Io)?;
        if n == 0 {
            return Ok(false);
        }
        session.handle_input(&buf[..n]);
    }
}

async fn handle(shard: &Shard, mut stream: TcpStream, waiting: Pending) -> Result<(), String> {
    let mut session = ServerSession::new(
        &shard.cfg.delivery_secret,
        random_nonce(),
        shard.cfg.delivery_max_frame,
    );
    flush(&mut stream, &mut session).await?;
    // Before authentication: a small buffer; the session reads nothing larger than an Auth
    // frame (AUTH_FRAME_LEN).
    let mut small = [0u8; 64];
    let auth = glommio::timer::timeout(AUTH_TIMEOUT, async {
        Ok(authenticate(&mut stream, &mut session, &mut small).await)
    })
    .await;
    match auth {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(()),
        Ok(Err(NoAuth::Session(e @ SessionError::Auth(_)))) => {
            shard.with(|st, _| st.delivery_auth_failed());
            log::warn!(
                "shard {}: delivery port authentication failed: {e}",
                shard.index
            );
            return Err(e.to_string());
        }
        Ok(Err(e)) => {
            shard.with(|st, _| st.delivery_auth_failed());
            return Err(format!("no authentication: {e}"));
        }
        Err(e) => {
            shard.with(|st, _| st.delivery_auth_failed());
            return Err(format!("no authentication: {e}"));
        }
    }
    flush(&mut stream, &mut session).await?;
    drop(waiting);
    let mut buf = vec![0u8; 64 * 1024];
    // Frames that arrived behind the Auth frame are already in the session.
    let mut answers: Vec<Answer> = Vec::new();
    serve_frames(shard, &mut session, &mut answers, &mut stream).await?;

    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        session.handle_input(&buf[..n]);
        serve_frames(shard, &mut session, &mut answers, &mut stream).await?;
    }
}

/// Applies every complete frame in `session` and writes their answers.
async fn serve_frames(
    shard: &Shard,
    session: &mut ServerSession,
    answers: &mut Vec<Answer>,
    stream: &mut TcpStream,
) -> Result<(), String> {
    loop {
        let event = match session.poll_event() {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e @ SessionError::Integrity(_)) => {
                shard.with(|st, _| st.probe.delivery_integrity_failures += 1);
                log::warn!(
                    "shard {}: delivery frame refused, closing the connection: {e}",
                    shard.index
                );
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
        match event {
            ServerEvent::Deliver(msgs) => answers.extend(shard.deliver_batch(&msgs)),
            ServerEvent::Broadcast(b) => answers.push(shard.broadcast(&b).await),
            ServerEvent::Authenticated => {}
        }
    }
    if !answers.is_empty() {
        session.send_answers(answers).map_err(|e| e.to_string())?;
        answers.clear();
        flush(stream, session).await?;
    }
    Ok(())
}
