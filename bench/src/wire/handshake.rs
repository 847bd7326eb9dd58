//! The client half of the HTTP/1.1 handshake: build a WebSocket or SSE request, parse the
//! response head (status, `Retry-After`).
//!
//! The WebSocket key is fixed: the harness does not check `Sec-WebSocket-Accept` (a peer that
//! answers 101 is upgraded), and a constant key keeps requests prebuilt and cheap.

use std::time::Duration;

/// Which client protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// RFC 6455 WebSocket.
    Ws,
    /// Server-Sent Events.
    Sse,
}

impl Kind {
    /// `ws` or `sse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ws => "ws",
            Kind::Sse => "sse",
        }
    }

    /// Parses `ws` or `sse`.
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "ws" | "websocket" => Ok(Kind::Ws),
            "sse" => Ok(Kind::Sse),
            other => Err(format!("unknown connection kind {other:?} (ws or sse)")),
        }
    }
}

/// The request that opens a connection of `kind` to `path` (with query) on `host`.
pub fn request(kind: Kind, host: &str, path: &str) -> String {
    match kind {
        Kind::Ws => format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        Kind::Sse => {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
        }
    }
}

/// What a response head said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when present and numeric.
    pub retry_after: Option<Duration>,
    /// Whether the body is chunked (nchan's EventSource answers are).
    pub chunked: bool,
}

impl ResponseHead {
    /// Whether the connection was upgraded or the stream opened.
    pub fn accepted(&self, kind: Kind) -> bool {
        match kind {
            Kind::Ws => self.status == 101,
            Kind::Sse => self.status == 200,
        }
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` = need more bytes,
/// `Ok(Some((head, len)))` = the head and its length (the rest is body or frames).
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() > 16 * 1024 {
                Err("response head over 16 KiB".into())
            } else {
                Ok(None)
            }
        }
        Ok(httparse::Status::Complete(len)) => {
            let mut retry_after = None;
            let mut chunked = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("retry-after") {
                    retry_after = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = h.value.eq_ignore_ascii_case(b"chunked");
                }
            }
            Ok(Some((
                ResponseHead {
                    status: resp.code.unwrap_or(0),
                    retry_after,
                    chunked,
                },
                len,
            )))
        }
        Err(e) => Err(format!("bad response head: {e}")),
    }
}

/// Strips HTTP/1.1 chunked framing from a byte stream, keeping the chunk data (SSE bodies
/// from nginx are chunked). Sans-io: feed bytes, get data bytes.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Data bytes left in the current chunk.
    left: usize,
    /// Partial size line or the CRLF after a chunk.
    line: Vec<u8>,
    /// Expecting the CRLF that ends a chunk's data.
    need_crlf: bool,
    /// The last (empty) chunk was seen; what follows is trailers.
    finished: bool,
}

impl Dechunker {
    /// Appends the data carried by `input` to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() && !self.finished {
            if self.left > 0 {
                let n = self.left.min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n;
                input = &input[n..];
                if self.left == 0 {
                    self.need_crlf = true;
                }
                continue;
            }
            let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(input);
                if self.line.len() > 64 {
                    return Err("chunk size line too long".into());
                }
                return Ok(());
            };
            self.line.extend_from_slice(&input[..nl]);
            input = &input[nl + 1..];
            let line = std::mem::take(&mut self.line);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if self.need_crlf {
                if !text.is_empty() {
                    return Err("missing CRLF after chunk".into());
                }
                self.need_crlf = false;
                continue;
            }
            let size = text.split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            self.finished = self.left == 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let ws = request(Kind::Ws, "127.0.0.1:80", "/ws?access_token=t");
        assert!(ws.starts_with("GET /ws?access_token=t HTTP/1.1\r\n"));
        assert!(ws.contains("Upgrade: websocket\r\n") && ws.ends_with("\r\n\r\n"));
        let sse = request(Kind::Sse, "h", "/sse");
        assert!(sse.contains("Accept: text/event-stream"));
    }

    #[test]
    fn response_heads_in_pieces() {
        let full =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\nrest";
        let head_len = full.len() - 4;
        for cut in 0..head_len {
            assert_eq!(parse_response(&full[..cut]).unwrap(), None, "cut {cut}");
        }
        let (head, len) = parse_response(full).unwrap().unwrap();
        assert_eq!(head.status, 503);
        assert_eq!(head.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(&full[len..], b"rest");
        assert!(!head.accepted(Kind::Ws));
        let (ok, _) = parse_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(ok.accepted(Kind::Ws));
        assert!(parse_response(b"NOT HTTP\r\n\r\n").is_err());
    }

    #[test]
    fn dechunks_across_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for step in [1, 2, 3, 5, 100] {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            for piece in body.chunks(step) {
                d.feed(piece, &mut out).unwrap();
            }
            assert_eq!(out, b"hello, world", "step {step}");
        }
        assert!(Dechunker::default()
            .feed(b"zz\r\n", &mut Vec::new())
            .is_err());
    }
}
