//! Many lightweight async edge clients (tokio, raw WebSocket framing, SSE) for tests that
//! need thousands of connections: they connect from chosen source addresses (spreading
//! ephemeral ports), read pushes, answer the edge's reconnect request by closing first
//! (compliant) or ignore it, and report what happened when.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A server frame: opcode and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Source address number `i` in 127.0.1.0/24 … (spreads ephemeral ports).
pub fn source_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250 % 200) as u8,
        2 + (i % 250) as u8,
    ))
}

/// Connects from `src`, sends `request`, reads the response head: the stream when the status
/// is `expect`, else the status (0 when the exchange failed).
async fn open(addr: SocketAddr, src: IpAddr, request: &str, expect: u16) -> Result<TcpStream, u16> {
    let sock = TcpSocket::new_v4().map_err(|_| 0u16)?;
    sock.bind(SocketAddr::new(src, 0)).map_err(|_| 0u16)?;
    let mut s = sock.connect(addr).await.map_err(|_| 0u16)?;
    s.write_all(request.as_bytes()).await.map_err(|_| 0u16)?;
    let head = read_head_async(&mut s).await.map_err(|_| 0u16)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status == expect {
        Ok(s)
    } else {
        Err(status)
    }
}

/// Opens an SSE stream from `src`; returns the stream after a 200 head, or the status code.
pub async fn sse_open(addr: SocketAddr, src: IpAddr, token: &str) -> Result<TcpStream, u16> {
    let req = format!(
        "GET /sse?access_token={token} HTTP/1.1\r\nHost: e\r\nAccept: text/event-stream\r\n\r\n"
    );
    open(addr, src, &req, 200).await
}

/// Opens an SSE stream from `src` that resumes from `last_event_id` (sent as `Last-Event-ID`,
/// as a browser's EventSource does on its reconnects); returns the stream after a 200 head.
pub async fn sse_resume(
    addr: SocketAddr,
    src: IpAddr,
    token: &str,
    last_event_id: &str,
) -> Result<TcpStream, u16> {
    let req = format!(
        "GET /sse?access_token={token} HTTP/1.1\r\nHost: e\r\nAccept: text/event-stream\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
    );
    open(addr, src, &req, 200).await
}

/// Reads SSE events from a stream opened with [`sse_open`].
#[derive(Debug, Default)]
pub struct SseReader {
    parser: herald_protocol::sse::SseParser,
}

impl SseReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next event (EOF or an error ends the stream).
    pub async fn next(
        &mut self,
        s: &mut TcpStream,
    ) -> std::io::Result<herald_protocol::sse::SseEvent> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(ev) = self.parser.next_event() {
                return Ok(ev);
            }
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.parser.feed(&buf[..n]);
        }
    }
}

/// Opens a WebSocket (raw) from `src`; returns the stream after a 101, or the status code.
pub async fn ws_open(addr: SocketAddr, src: IpAddr, token: &str) -> Result<TcpStream, u16> {
    let req = format!(
        "GET /ws?access_token={token} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    open(addr, src, &req, 101).await
}

/// Reads a response head (byte-wise; heads are small).
pub async fn read_head_async(s: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Reads one unmasked server frame.
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<ServerFrame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    Ok(ServerFrame {
        opcode: h[0] & 0x0f,
        payload,
    })
}

/// Sends a masked client frame.
pub async fn send_frame(s: &mut TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    assert!(payload.len() < 126);
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&out).await
}

/// Answers the edge's close frame and closes the TCP connection first (TIME_WAIT on our side).
pub async fn close_first(mut s: TcpStream) {
    let _ = send_frame(&mut s, 0x8, &1000u16.to_be_bytes()).await;
    let _ = s.shutdown().await;
    drop(s);
}

/// Waits for the server to close: returns when EOF or an error arrives (or `limit` passes).
pub async fn wait_eof(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Counts TCP sockets in TIME_WAIT whose local port is `port` (from /proc/net/tcp).
pub fn time_wait_on_port(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3
                && cols[3] == "06"
                && cols[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}
