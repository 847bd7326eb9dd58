//! A blocking HTTP/1.1 client for loopback control endpoints: the edge's admin API
//! (`/stats`, `/admin/drain`) and nchan's publisher. One request per connection
//! (`Connection: close`), bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body (de-chunked when the server chunked it).
    pub body: Vec<u8>,
}

/// Sends `method path` with `body` and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let err = |e: std::io::Error| format!("{method} http://{addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(err)?;
    s.set_read_timeout(Some(timeout)).map_err(err)?;
    s.set_write_timeout(Some(timeout)).map_err(err)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let (head, len) = crate::wire::handshake::parse_response(&raw)
        .map_err(|e| format!("{method} http://{addr}{path}: {e}"))?
        .ok_or_else(|| format!("{method} http://{addr}{path}: incomplete response"))?;
    let body = if head.chunked {
        let mut out = Vec::new();
        crate::wire::handshake::Dechunker::default()
            .feed(&raw[len..], &mut out)
            .map_err(|e| format!("{method} http://{addr}{path}: {e}"))?;
        out
    } else {
        raw[len..].to_vec()
    };
    Ok(Response {
        status: head.status,
        body,
    })
}

/// GETs `path` and parses the body as JSON (status must be 200).
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let r = request(addr, "GET", path, b"", Duration::from_secs(10))?;
    if r.status != 200 {
        return Err(format!("GET http://{addr}{path}: status {}", r.status));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_status_and_body() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\nhi") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short: {req:?}");
                req.extend_from_slice(&buf[..n]);
            }
            assert!(req.starts_with(b"POST /x HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n")
                .unwrap();
        });
        let r = request(addr, "POST", "/x", b"hi", Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"{\"a\":1}");
    }
}
