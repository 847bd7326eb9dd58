//! The shard's delivery port: processors connect straight to the core that owns the target.
//!
//! Per connection: send `Challenge`, require a valid `Auth` within [`AUTH_TIMEOUT`] (a wrong
//! secret closes the connection, nothing delivered), answer `AuthOk`; then every `Deliver`
//! batch and `Broadcast` is applied to the shard's table and answered — one `Answers` frame
//! per read, one answer per message. Frames are decoded by `herald_protocol::delivery`.
//!
//! Before authentication a connection costs almost nothing and cannot make the shard
//! allocate: it is read through a 64-byte buffer, its first frame may declare no more than an
//! `Auth` frame needs ([`AUTH_FRAME_LEN`]) and must be `Auth`, and at most
//! `delivery_max_pending` connections per shard may be waiting to authenticate — more are
//! closed on accept. The 64 KiB read buffer and the full frame cap come after `AuthOk`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use herald_protocol::delivery::{self, Answer, Frame, FrameReader, AUTH_FRAME_LEN};
use herald_protocol::delivery_auth::ServerAuth;

use crate::shard::Shard;

/// Time a processor has to authenticate.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts processor connections until the task is dropped.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
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

async fn read_frame(
    stream: &mut TcpStream,
    reader: &mut FrameReader,
    buf: &mut [u8],
) -> Result<Option<Frame>, String> {
    loop {
        if let Some(f) = reader.next_frame().map_err(|e| e.to_string())? {
            return Ok(Some(f));
        }
        let n = stream.read(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        reader.feed(&buf[..n]);
    }
}

async fn handle(shard: &Shard, mut stream: TcpStream, waiting: Pending) -> Result<(), String> {
    let server = ServerAuth::new(&shard.cfg.delivery_secret, random_nonce());
    let mut out = Vec::new();
    delivery::encode(&server.challenge(), &mut out).map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    // Before authentication: a small buffer, and nothing larger than an Auth frame.
    let mut reader = FrameReader::new(AUTH_FRAME_LEN);
    let mut small = [0u8; 64];
    let auth = glommio::timer::timeout(AUTH_TIMEOUT, async {
        read_frame(&mut stream, &mut reader, &mut small)
            .await
            .map_err(|e| glommio::GlommioError::IoError(std::io::Error::other(e)))
    })
    .await;
    let auth = match auth {
        Ok(Some(auth)) => auth,
        Ok(None) => return Ok(()),
        Err(e) => {
            shard.with(|st, _| st.delivery_auth_failed());
            return Err(format!("no authentication: {e}"));
        }
    };
    let ok = match server.verify(&auth) {
        Ok(ok) => ok,
        Err(e) => {
            shard.with(|st, _| st.delivery_auth_failed());
            log::warn!(
                "shard {}: delivery port authentication failed: {e}",
                shard.index
            );
            return Err(e.to_string());
        }
    };
    out.clear();
    delivery::encode(&ok, &mut out).map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    drop(waiting);
    reader.set_max_frame_len(shard.cfg.delivery_max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    // Frames that arrived behind the Auth frame are already in the reader.
    let mut answers: Vec<Answer> = Vec::new();
    serve_frames(shard, &mut reader, &mut answers, &mut out, &mut stream).await?;

    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        reader.feed(&buf[..n]);
        serve_frames(shard, &mut reader, &mut answers, &mut out, &mut stream).await?;
    }
}

/// Applies every complete frame in `reader` and writes their answers.
async fn serve_frames(
    shard: &Shard,
    reader: &mut FrameReader,
    answers: &mut Vec<Answer>,
    out: &mut Vec<u8>,
    stream: &mut TcpStream,
) -> Result<(), String> {
    while let Some(frame) = reader.next_frame().map_err(|e| e.to_string())? {
        match frame {
            Frame::Deliver(msgs) => answers.extend(shard.deliver_batch(&msgs)),
            Frame::Broadcast(b) => answers.push(shard.broadcast(&b).await),
            other => {
                return Err(format!(
                    "unexpected {} frame from a processor",
                    other.frame_type()
                ))
            }
        }
    }
    if !answers.is_empty() {
        out.clear();
        for chunk in answers.chunks(delivery::MAX_BATCH) {
            delivery::encode_answers(chunk, out).map_err(|e| e.to_string())?;
        }
        answers.clear();
        stream.write_all(out).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
