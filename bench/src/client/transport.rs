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
