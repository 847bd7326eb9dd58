//! A WebSocket echo server built from the edge's own parts, for conformance testing
//! (Autobahn|Testsuite's `fuzzingclient`; see docs/conformance.md and scripts/autobahn.sh).
//!
//! The request head goes through the edge's handshake ([`herald_edge::handshake::decide`],
//! with an authenticator that accepts everyone), and frames through the protocol codec's
//! reader — in its opt-in `Messages` mode, which surfaces data frames (the edge itself
//! ignores client data) — and its encoders. Every data message is echoed with its kind;
//! pings are answered, a close is answered with 1000 like the edge does, and a protocol
//! violation closes with the reader's code. One thread per connection: this is a test
//! fixture, not a server design.
//!
//! Run: `cargo run -p herald-edge --example echo -- 127.0.0.1:9001`, then point a client at
//! `ws://127.0.0.1:9001/ws`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_edge::auth::{AuthError, AuthRequest, Authenticator, Identity};
use herald_edge::handshake::{self, ConnKind, Decision, Policy};
use herald_protocol::ws::close_code;
use herald_protocol::ws::server::{self, WsEvent, WsReader};

/// Largest frame and message accepted (Autobahn's section 9 sends 16 MiB messages).
const MAX_MESSAGE: usize = 16 << 20;
/// Largest request head (the edge's default).
const MAX_HEAD: usize = 8 * 1024;
/// How long to wait for the client to close its side after our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Lets every request in.
#[derive(Debug)]
struct AcceptAll;

impl Authenticator for AcceptAll {
    fn authenticate(&self, _req: &AuthRequest<'_>) -> Result<Identity, AuthError> {
        Ok(Identity {
            user: "echo".into(),
            device: None,
        })
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    println!("echo: listening on ws://{}/ws", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(s) {
                        eprintln!("echo: connection ended: {e}");
                    }
                });
            }
            Err(e) => eprintln!("echo: accept failed: {e}"),
        }
    }
    Ok(())
}

/// One connection: handshake, then frames until a close or a violation.
fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let accepted = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let policy = Policy {
            max_head_bytes: MAX_HEAD,
            allowed_origins: &[],
        };
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match handshake::decide(&head, &policy, &AcceptAll, now_secs) {
            Decision::NeedMore => continue,
            Decision::Accept(acc) if acc.kind == ConnKind::WebSocket => break acc,
            Decision::Accept(_) => return s.write_all(&handshake::reject_response(404, None)),
            Decision::Health => return s.write_all(handshake::health_response()),
            Decision::Reject(r) => return s.write_all(&handshake::reject_response(r.status, None)),
        }
    };
    s.write_all(&handshake::accept_response(&accepted))?;

    let mut reader = WsReader::messages(MAX_MESSAGE);
    let mut echo = Echo::default();
    // Bytes the client sent right after its head are its first frames.
    let mut input = head.split_off(accepted.head_len);
    loop {
        let mut out = Vec::new();
        let mut end = false;
        reader.feed(&input, MAX_MESSAGE, |ev| end |= echo.on_event(ev, &mut out));
        s.write_all(&out)?;
        if end {
            return linger(s, &mut buf);
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        input.clear();
        input.extend_from_slice(&buf[..n]);
    }
}

/// The message being echoed.
#[derive(Debug, Default)]
struct Echo {
    /// Payload of the message so far (its frames' kind is on each frame).
    message: Vec<u8>,
}

impl Echo {
    /// Appends the answer to `ev` to `out`; true when the connection is to be closed.
    fn on_event(&mut self, ev: WsEvent, out: &mut Vec<u8>) -> bool {
        match ev {
            WsEvent::Ping(p) => server::encode_pong(&p, out),
            WsEvent::Pong | WsEvent::Data(_) => {}
            WsEvent::Frame(f) => {
                if f.first {
                    self.message.clear();
                }
                self.message.extend_from_slice(&f.payload);
                if f.last {
                    server::encode_data(f.kind, &self.message, out);
                    self.message = Vec::new();
                }
            }
            WsEvent::Close(_) => {
                server::encode_close(close_code::NORMAL, "", out);
                return true;
            }
            WsEvent::Violation(code) => {
                server::encode_close(code, "", out);
                return true;
            }
        }
        false
    }
}

/// After our close frame: stop sending, let the client close its side (bounded), then close.
fn linger(mut s: TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    s.shutdown(Shutdown::Write)?;
    s.set_read_timeout(Some(CLOSE_GRACE))?;
    loop {
        match s.read(buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
    }
}
