//! A held connection's byte stream: plain TCP, or TLS driven by hand over the same
//! non-blocking socket (rustls' `ClientConnection`, no extra crate).
//!
//! Both variants offer what the connection loop already used — wait until readable, then a
//! non-blocking read into the process's shared scratch buffer, and a complete write — so
//! [`super::conn`] reads the same either way. For TLS, `readable` first flushes whatever
//! rustls wants to send (ClientHello, the client's Finished, the buffered request, alerts) and
//! returns at once when decrypted bytes are already waiting; `try_read` reads ciphertext,
//! decrypts it and hands out plaintext, or says `WouldBlock` while a record is incomplete.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A connection's stream.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream>),
}

/// A TCP socket and the rustls session over it.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    conn: rustls::ClientConnection,
}

/// `std::io` over a tokio socket's non-blocking calls (what rustls reads from and writes to).
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Starts a TLS session (nothing is sent before the first `write_all` or `readable`).
    pub fn new(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let conn = rustls::ClientConnection::new(config, name).map_err(invalid)?;
        Ok(TlsStream { tcp, conn })
    }

    /// Writes out everything rustls has queued.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut TryIo(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// What the handshake negotiated (see [`crate::tls::describe`]).
    pub fn describe(&self) -> String {
        crate::tls::describe(&self.conn)
    }
}

impl Transport {
    /// Waits until [`Transport::try_read`] may have something.
    pub async fn readable(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.readable().await,
            Transport::Tls(t) => {
                t.flush().await?;
                let state = t.conn.process_new_packets().map_err(invalid)?;
                if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                    return Ok(());
                }
                t.tcp.readable().await
            }
        }
    }

    /// Reads what is there without waiting: `Ok(0)` is the end of the stream, `WouldBlock`
    /// means wait for [`Transport::readable`] again.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.try_read(buf),
            Transport::Tls(t) => {
                match t.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => return done,
                }
                if t.conn.read_tls(&mut TryIo(&t.tcp))? == 0 {
                    return Ok(0);
                }
                t.conn.process_new_packets().map_err(invalid)?;
                if t.conn.wants_write() {
                    // Small handshake and alert records: the socket takes them now; what it
                    // does not is flushed by the next `readable`.
                    match t.conn.write_tls(&mut TryIo(&t.tcp)) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                t.conn.reader().read(buf)
            }
        }
    }

    /// Writes all of `bytes` (for TLS: encrypted, or held until the handshake is done).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(bytes).await,
            Transport::Tls(t) => {
                t.conn.writer().write_all(bytes)?;
                t.flush().await
            }
        }
    }

    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub fn tls_description(&self) -> Option<String> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => Some(t.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// A one-connection rustls server on a thread: reads the request head, answers 101 and
    /// `after`, then sends close_notify and closes.
    fn serve_once(
        cert: &crate::tls::RunCert,
        version: &'static rustls::SupportedProtocolVersion,
        after: &'static [u8],
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let certs = vec![CertificateDer::from_pem_file(&cert.cert).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&cert.key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
                .unwrap();
            s.write_all(after).unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            head
        });
        (addr, handle)
    }

    #[test]
    fn tls_round_trip_over_both_versions_ends_with_a_clean_eof() {
        let cert = crate::tls::RunCert::generate().unwrap();
        let config = crate::tls::client_config(&cert.cert).unwrap();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (addr, server) = serve_once(&cert, version, b"frames");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (got, described) = rt.block_on(async {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = crate::tls::server_name("localhost").unwrap();
                let mut t =
                    Transport::Tls(Box::new(TlsStream::new(tcp, config.clone(), name).unwrap()));
                t.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 7]; // smaller than what arrives: reads in pieces
                loop {
                    t.readable().await.unwrap();
                    match t.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                (got, t.tls_description().unwrap())
            });
            let head = server.join().unwrap();
            assert_eq!(head, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(got, b"HTTP/1.1 101 Switching Protocols\r\n\r\nframes");
            let want = if std::ptr::eq(version, &rustls::version::TLS13) {
                "TLSv1_3 "
            } else {
                "TLSv1_2 "
            };
            assert!(described.starts_with(want), "{described}");
            assert!(described.contains("X25519"), "{described}");
            assert!(described.ends_with("alpn=http/1.1"), "{described}");
        }
    }

    #[test]
    fn an_untrusted_certificate_fails_the_handshake() {
        let served = crate::tls::RunCert::generate().unwrap();
        let other = crate::tls::RunCert::generate().unwrap();
        let config = crate::tls::client_config(&other.cert).unwrap();
        let (addr, server) = serve_once(&served, &rustls::version::TLS13, b"");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = crate::tls::server_name("localhost").unwrap();
            let mut t = Transport::Tls(Box::new(TlsStream::new(tcp, config, name).unwrap()));
            t.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 64];
            loop {
                t.readable().await?;
                match t.try_read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("eof")),
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        });
        let err = err.expect_err("a certificate the client does not trust");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(server.join().is_err(), "the server saw the handshake fail");
    }
}
