//! One TLS connection, sans-io: ciphertext in → plaintext out, plaintext in → ciphertext out.
//!
//! The handshake runs on rustls' unbuffered API, so the caller owns the buffers: the driver
//! reads ciphertext into the shard's TLS buffer ([`TlsSession::restore_partial`] puts a kept
//! partial record in front of it), [`TlsSession::receive`] decrypts from there and hands
//! plaintext to a callback, and [`TlsSession::encrypt`] turns one chunk of a queued frame into
//! records in [`TlsSession::pending`]. The moment the handshake is done, rustls' connection is
//! traded for its traffic keys ([`super::record::Traffic`], the user-space equivalent of
//! kTLS): everything the handshake needed is freed, and an established connection keeps two
//! AEAD keys and, *only while they exist*, the bytes of an incomplete incoming record and
//! ciphertext the socket has not taken yet (docs/density.md).
//!
//! Encrypted bytes count as written for the connection's outbound queue (like bytes handed to
//! the kernel): at most one chunk ([`CHUNK`] bytes of plaintext) is ever in flight here, so the
//! queue's bound still holds every byte but that one chunk, and a frame the queue keeps
//! because it is partly written stays well-formed on the wire.

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;

use super::record::{Opened, RecordError, Traffic};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, InsufficientSizeError};
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
    /// After the handshake: a record that failed authentication, a KeyUpdate, an alert, …
    Record(RecordError),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "TLS: {e}"),
            TlsError::PlaintextHttp => f.write_str("plaintext HTTP on the TLS port"),
            TlsError::RecordTooLarge(n) => {
                write!(
                    f,
                    "a {n}-byte record after the handshake is more than a client may send"
                )
            }
            TlsError::PeerClosed => f.write_str("the client sent close_notify"),
            TlsError::Record(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Protocol(e)
    }
}

/// Where a connection is: rustls' handshake (boxed: freed whole when it ends), or the record
/// layer with the negotiated keys.
enum Phase {
    Handshake(Box<UnbufferedServerConnection>),
    Traffic(Traffic),
    /// A conversion failed; nothing more is accepted.
    Broken,
}

/// One connection's TLS state and its transient buffers.
pub struct TlsSession {
    phase: Phase,
    /// An incomplete incoming record, kept between reads (unallocated when there is none).
    partial: Vec<u8>,
    /// Ciphertext waiting for the socket: handshake flights, alerts, encrypted chunks.
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_off: u32,
    /// Largest record accepted once the handshake is done.
    max_client_record: u32,
    /// The connection saw bytes (the plaintext-HTTP check applies to the very first ones).
    started: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("established", &self.is_established())
            .field("partial", &self.partial.len())
            .field("pending", &self.pending().len())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A server session; `max_client_record` caps the plaintext of one client record after the
    /// handshake (clients send a request head and small control frames). The configuration
    /// must allow secret extraction (see [`super::TlsSettings::build`]).
    pub fn new(config: Arc<ServerConfig>, max_client_record: usize) -> Result<Self, TlsError> {
        Ok(TlsSession {
            phase: Phase::Handshake(Box::new(UnbufferedServerConnection::new(config)?)),
            partial: Vec::new(),
            out: Vec::new(),
            out_off: 0,
            max_client_record: max_client_record.min(16 * 1024) as u32,
            started: false,
        })
    }

    /// Whether the handshake is complete (application data may flow).
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Traffic(_))
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
    ) -> Result<(), TlsError> {
        if !self.started && !input.is_empty() {
            self.started = true;
            if input[0].is_ascii_uppercase() {
                return Err(TlsError::PlaintextHttp);
            }
        }
        let mut start = 0;
        if let Phase::Handshake(conn) = &mut self.phase {
            match handshake_input(conn, &mut self.out, input, &mut on_plain)? {
                HandshakeProgress::Blocked(at) => {
                    self.keep_partial(&input[at..]);
                    return Ok(());
                }
                HandshakeProgress::Done(at) => {
                    start = at;
                    self.enter_traffic()?;
                }
            }
        }
        let Phase::Traffic(traffic) = &mut self.phase else {
            return Err(TlsError::Record(RecordError::Malformed));
        };
        // The ciphertext of a record may exceed its plaintext by at most 256 bytes (TLS 1.3).
        let max_ciphertext = self.max_client_record as usize + 256;
        start += records_input(traffic, &mut input[start..], max_ciphertext, &mut on_plain)?;
        self.keep_partial(&input[start..]);
        Ok(())
    }

    /// Keeps an incomplete record for the next read (nothing is allocated when there is none).
    fn keep_partial(&mut self, tail: &[u8]) {
        if !tail.is_empty() {
            self.partial = tail.to_vec();
        }
    }

    /// Trades rustls' connection for the record layer: the handshake is over and its last
    /// flight is in `out`.
    fn enter_traffic(&mut self) -> Result<(), TlsError> {
        let Phase::Handshake(conn) = std::mem::replace(&mut self.phase, Phase::Broken) else {
            return Ok(());
        };
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let traffic = Traffic::new(kernel.protocol_version(), secrets).map_err(TlsError::Record)?;
        self.phase = Phase::Traffic(traffic);
        Ok(())
    }

    /// Encrypts `plain` (at most [`CHUNK`] bytes) and appends the records to
    /// [`TlsSession::pending`]. Only after the handshake.
    pub fn encrypt(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        match &mut self.phase {
            Phase::Traffic(traffic) => traffic.seal(plain, &mut self.out).map_err(TlsError::Record),
            _ => Err(TlsError::Protocol(rustls::Error::HandshakeNotComplete)),
        }
    }

    /// Appends a close_notify alert to [`TlsSession::pending`] (after the handshake; a
    /// no-op before it).
    pub fn close_notify(&mut self) {
        if let Phase::Traffic(traffic) = &mut self.phase {
            let _ = traffic.seal_close_notify(&mut self.out);
        }
    }

    /// Ciphertext waiting for the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_off as usize..]
    }

    /// The socket took `n` bytes of [`TlsSession::pending`]; the buffer is freed once empty.
    pub fn advance(&mut self, n: usize) {
        self.out_off = (self.out_off as usize + n).min(self.out.len()) as u32;
        if self.out_off as usize == self.out.len() {
            self.out = Vec::new();
            self.out_off = 0;
        }
    }

    /// Heap bytes this session holds outside rustls (partial record, pending ciphertext).
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.out.capacity()
    }
}

/// Where a handshake read left off: how much of the input was consumed, and whether the
/// handshake is done.
enum HandshakeProgress {
    Blocked(usize),
    Done(usize),
}

/// Feeds `input` to rustls during the handshake; flights go to `out`, early application data
/// (a request right behind the client's Finished) to `on_plain`.
fn handshake_input(
    conn: &mut UnbufferedServerConnection,
    out: &mut Vec<u8>,
    input: &mut [u8],
    on_plain: &mut impl FnMut(&[u8]),
) -> Result<HandshakeProgress, TlsError> {
    let mut start = 0usize;
    loop {
        let status = conn.process_tls_records(&mut input[start..]);
        let discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                start += discard;
                drain_alert(conn, out, &e, &mut input[start..]);
                return Err(e.into());
            }
        };
        let mut done = None;
        match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    on_plain(record.payload);
                }
            }
            ConnectionState::EncodeTlsData(mut encode) => encode_into(out, &mut encode),
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            ConnectionState::BlockedHandshake => done = Some(false),
            ConnectionState::WriteTraffic(_) => done = Some(true),
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
        match done {
            Some(true) => return Ok(HandshakeProgress::Done(start)),
            Some(false) => return Ok(HandshakeProgress::Blocked(start)),
            None => {}
        }
    }
}

/// Opens every complete record in `input`; returns where the incomplete rest starts. A record
/// whose header declares more than `max_ciphertext` bytes is refused as soon as its header is
/// in, complete or not: a client cannot make the edge hold a large partial record.
fn records_input(
    traffic: &mut Traffic,
    input: &mut [u8],
    max_ciphertext: usize,
    on_plain: &mut impl FnMut(&[u8]),
) -> Result<usize, TlsError> {
    let mut start = 0usize;
    while input.len() - start >= 5 {
        let declared = usize::from(u16::from_be_bytes([input[start + 3], input[start + 4]]));
        if declared > max_ciphertext {
            return Err(TlsError::RecordTooLarge(declared));
        }
        let len = 5 + declared;
        if input.len() - start < len {
            break;
        }
        let record = &mut input[start..start + len];
        match traffic.open(record) {
            Ok(Opened::Data { start: s, len: l }) => on_plain(&record[s..s + l]),
            Ok(Opened::Nothing) => {}
            Err(RecordError::CloseNotify) => return Err(TlsError::PeerClosed),
            Err(e) => return Err(TlsError::Record(e)),
        }
        start += len;
    }
    Ok(start)
}

/// After a handshake error: whatever alert rustls queued goes to `out`. `rest` is the
/// unprocessed input (rustls keeps positions into it until it is discarded).
fn drain_alert(
    conn: &mut UnbufferedServerConnection,
    out: &mut Vec<u8>,
    error: &rustls::Error,
    rest: &mut [u8],
) {
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
        match conn.process_tls_records(rest).state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => encode_into(out, &mut encode),
            _ => return,
        }
        if record_level {
            return;
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
