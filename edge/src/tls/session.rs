//! One TLS connection, sans-io: ciphertext in → plaintext out, plaintext in → ciphertext out.
//!
//! Built on rustls' unbuffered API so that the caller owns the buffers: the driver reads
//! ciphertext into the shard's TLS buffer ([`TlsSession::restore_partial`] puts a kept partial
//! record in front of it), [`TlsSession::receive`] decrypts from there and hands plaintext to a
//! callback, and [`TlsSession::encrypt`] turns one chunk of a queued frame into records in
//! [`TlsSession::pending`]. Per connection this keeps only the rustls state and, *only while
//! they exist*, the bytes of an incomplete incoming record and ciphertext the socket has not
//! taken yet: an idle connection holds neither (docs/density.md).
//!
//! Encrypted bytes count as written for the connection's outbound queue (like bytes handed to
//! the kernel): at most one chunk ([`CHUNK`] bytes of plaintext) is ever in flight here, so the
//! queue's bound still holds every byte but that one chunk, and a frame the queue keeps
//! because it is partly written stays well-formed on the wire.

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
};
use rustls::ServerConfig;

/// Most plaintext encrypted at once: one full TLS record.
pub const CHUNK: usize = 16 * 1024;

/// Largest TLS record on the wire (header + TLS 1.2's largest ciphertext).
pub const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Room the shard's TLS read buffer needs: a kept partial record plus a full read.
pub const READ_BUFFER: usize = 2 * MAX_RECORD + 1024;

/// Why a TLS connection ends.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsError {
    /// rustls refused the peer (bad record, failed handshake, wrong ALPN, …). An alert for
    /// the peer may be waiting in [`TlsSession::pending`].
    Protocol(rustls::Error),
    /// The first bytes are a plaintext HTTP request, not a TLS record.
    PlaintextHttp,
    /// After the handshake the client started a record larger than it may send (clients
    /// send only small control traffic): holding it would let one client pin memory.
    RecordTooLarge(usize),
    /// The peer sent close_notify.
    PeerClosed,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "TLS: {e}"),
            TlsError::PlaintextHttp => f.write_str("plaintext HTTP on the TLS port"),
            TlsError::RecordTooLarge(n) => {
                write!(f, "a {n}-byte record after the handshake is more than a client may send")
            }
            TlsError::PeerClosed => f.write_str("the client sent close_notify"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Protocol(e)
    }
}

/// One connection's TLS state and its transient buffers.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// An incomplete incoming record, kept between reads (unallocated when there is none).
    partial: Vec<u8>,
    /// Ciphertext waiting for the socket: handshake flights, alerts, encrypted chunks.
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_off: usize,
    /// Largest record accepted once the handshake is done.
    max_client_record: usize,
    established: bool,
    /// The connection saw bytes (the plaintext-HTTP check applies to the very first ones).
    started: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("established", &self.established)
            .field("partial", &self.partial.len())
            .field("pending", &self.pending().len())
            .finish_non_exhaustive()
    }
}

/// What [`TlsSession::receive`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The handshake completed during this call.
    pub established_now: bool,
}

impl TlsSession {
    /// A server session; `max_client_record` caps the plaintext of one client record after the
    /// handshake (clients send a request head and small control frames).
    pub fn new(config: Arc<ServerConfig>, max_client_record: usize) -> Result<Self, TlsError> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            partial: Vec::new(),
            out: Vec::new(),
            out_off: 0,
            max_client_record: max_client_record.min(16 * 1024),
            established: false,
            started: false,
        })
    }

    /// Whether the handshake is complete (application data may flow).
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Length of the incomplete record kept from the last read: read fresh bytes into the
    /// shard's buffer after that many bytes.
    pub fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// Moves the kept partial record into `front` (exactly [`TlsSession::partial_len`] bytes,
    /// just before the fresh bytes), freeing it; then call [`TlsSession::receive`] on the
    /// partial and the fresh bytes together.
    pub fn restore_partial(&mut self, front: &mut [u8]) {
        front.copy_from_slice(&self.partial);
        self.partial = Vec::new();
    }

    /// Processes the ciphertext in `input`: handshake messages are answered into
    /// [`TlsSession::pending`], application data goes to `on_plain` in order, and an
    /// incomplete last record is kept for the next call.
    pub fn receive(
        &mut self,
        input: &mut [u8],
        mut on_plain: impl FnMut(&[u8]),
    ) -> Result<Received, TlsError> {
        if !self.started && !input.is_empty() {
            self.started = true;
            if input[0].is_ascii_uppercase() {
                return Err(TlsError::PlaintextHttp);
            }
        }
        let was_established = self.established;
        let mut start = 0usize;
        loop {
            let status = self.conn.process_tls_records(&mut input[start..]);
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    start += discard;
                    self.drain_alert(&e, &mut input[start..]);
                    return Err(e.into());
                }
            };
            let mut done = false;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        on_plain(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut self.out, &mut encode),
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::BlockedHandshake => done = true,
                ConnectionState::WriteTraffic(_) => {
                    self.established = true;
                    done = true;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(TlsError::PeerClosed)
                }
                // Early data is off (max_early_data_size = 0); anything else is unexpected.
                _ => {
                    return Err(TlsError::Protocol(rustls::Error::General(
                        "unexpected TLS state".into(),
                    )))
                }
            }
            start += discard;
            if done {
                break;
            }
        }
        let tail = &input[start..];
        if !tail.is_empty() {
            if self.established && tail.len() >= 5 {
                let declared = usize::from(u16::from_be_bytes([tail[3], tail[4]]));
                // The record's ciphertext may exceed its plaintext by at most 256 bytes (TLS 1.3).
                if declared > self.max_client_record + 256 {
                    return Err(TlsError::RecordTooLarge(declared));
                }
            }
            self.partial = tail.to_vec();
        }
        Ok(Received {
            established_now: self.established && !was_established,
        })
    }

    /// Encrypts `plain` (at most [`CHUNK`] bytes) and appends the records to
    /// [`TlsSession::pending`]. Only after the handshake.
    pub fn encrypt(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        loop {
            let status = self.conn.process_tls_records(&mut []);
            match status.state? {
                ConnectionState::EncodeTlsData(mut encode) => encode_into(&mut self.out, &mut encode),
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let len = self.out.len();
                    let mut room = plain.len() + 64;
                    loop {
                        self.out.resize(len + room, 0);
                        match traffic.encrypt(plain, &mut self.out[len..]) {
                            Ok(n) => {
                                self.out.truncate(len + n);
                                return Ok(());
                            }
                            Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => room = required_size,
                            Err(e) => {
                                self.out.truncate(len);
                                return Err(TlsError::Protocol(rustls::Error::General(
                                    e.to_string(),
                                )));
                            }
                        }
                    }
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(TlsError::PeerClosed)
                }
                _ => {
                    return Err(TlsError::Protocol(rustls::Error::General(
                        "encrypt before the handshake is done".into(),
                    )))
                }
            }
        }
    }

    /// Appends a close_notify alert to [`TlsSession::pending`] (after the handshake; a
    /// no-op before it).
    pub fn close_notify(&mut self) {
        if !self.established {
            return;
        }
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) =
            self.conn.process_tls_records(&mut []).state
        {
            let len = self.out.len();
            self.out.resize(len + 64, 0);
            match traffic.queue_close_notify(&mut self.out[len..]) {
                Ok(n) => self.out.truncate(len + n),
                Err(_) => self.out.truncate(len),
            }
        }
    }

    /// Ciphertext waiting for the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_off..]
    }

    /// The socket took `n` bytes of [`TlsSession::pending`]; the buffer is freed once empty.
    pub fn advance(&mut self, n: usize) {
        self.out_off = (self.out_off + n).min(self.out.len());
        if self.out_off == self.out.len() {
            self.out = Vec::new();
            self.out_off = 0;
        }
    }

    /// Heap bytes this session holds outside rustls (partial record, pending ciphertext).
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.out.capacity()
    }

    /// After an error: whatever alert rustls queued goes to [`TlsSession::pending`]. `rest`
    /// is the unprocessed input (rustls keeps positions into it until it is discarded).
    fn drain_alert(&mut self, error: &rustls::Error, rest: &mut [u8]) {
        // A record-level error queues just its alert, and the offending bytes are still in
        // `rest`: one call, since another would make rustls parse them again. A handshake
        // error may have queued flights before its alert (TLS 1.3: the ServerHello): take
        // chunks until none is left.
        let record_level = matches!(
            error,
            rustls::Error::InvalidMessage(_)
                | rustls::Error::PeerSentOversizedRecord
                | rustls::Error::DecryptError
        );
        for _ in 0..8 {
            match self.conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.out, &mut encode)
                }
                _ => return,
            }
            if record_level {
                return;
            }
        }
    }
}

/// Appends one handshake/alert chunk to `out`.
fn encode_into<Data>(out: &mut Vec<u8>, encode: &mut EncodeTlsData<'_, Data>) {
    let len = out.len();
    let mut room = 4096;
    loop {
        out.resize(len + room, 0);
        match encode.encode(&mut out[len..]) {
            Ok(n) => {
                out.truncate(len + n);
                return;
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size
            }
            Err(EncodeError::AlreadyEncoded) => {
                out.truncate(len);
                return;
            }
        }
    }
}
