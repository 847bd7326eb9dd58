//! The record layer of an established TLS connection, without rustls' connection state:
//! what kTLS would do in the kernel, done here in user space with the keys rustls negotiated.
//!
//! rustls does the handshake; once it is over, [`Traffic::new`] takes the traffic secrets
//! rustls hands out for kernel offload (`dangerous_into_kernel_connection`) and drops
//! everything else — transcript, certificates, handshake state, rustls' buffers and the
//! ~1.1 KB connection object. What stays per connection is two raw keys, two IVs and two
//! sequence numbers (~130 bytes): the record layer of RFC 8446 §5 (TLS 1.3) and RFC 5246
//! §6.2.3.3 / RFC 7905 (TLS 1.2 AES-GCM / ChaCha20-Poly1305), sealing and opening with
//! aws-lc-rs. The expanded AEAD context (aws-lc keeps ~580 bytes per key: AES round keys and
//! the GHASH table) is built for each record and freed after it — a push connection is idle
//! almost all the time, so keeping two of them would double its memory to save well under a
//! microsecond per record (docs/density.md has both numbers). Key bytes are zeroed on drop.
//!
//! Post-handshake messages a push client has no reason to send — TLS 1.3 KeyUpdate, a TLS 1.2
//! renegotiation — end the connection (`UnexpectedHandshake`): the client reconnects with a
//! fresh handshake. A close_notify ends the stream; any other alert is an error. Each direction
//! stops at [`RECORD_LIMIT`] records, far below the AEAD limits (RFC 8446 §5.5): a connection
//! that sent that many is closed and reconnects with new keys.

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

/// Records per direction before the connection is closed (AES-GCM's TLS 1.3 limit is 2^24.5).
pub const RECORD_LIMIT: u64 = 1 << 23;

/// Bytes of the AEAD tag.
const TAG: usize = 16;

/// Content types.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The AEAD tag did not verify (tampered, truncated, or not from this peer).
    BadRecordMac,
    /// The record is malformed (length, padding, content type).
    Malformed,
    /// A post-handshake handshake message (KeyUpdate, renegotiation): not supported here.
    UnexpectedHandshake,
    /// The peer sent a fatal alert (its description code).
    Alert(u8),
    /// The peer sent close_notify.
    CloseNotify,
    /// A direction used up [`RECORD_LIMIT`] records.
    Exhausted,
    /// The negotiated cipher suite is not one this layer implements.
    Unsupported,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::BadRecordMac => f.write_str("TLS record failed authentication"),
            RecordError::Malformed => f.write_str("malformed TLS record"),
            RecordError::UnexpectedHandshake => {
                f.write_str("post-handshake message (KeyUpdate/renegotiation) not supported")
            }
            RecordError::Alert(d) => write!(f, "the client sent alert {d}"),
            RecordError::CloseNotify => f.write_str("close_notify"),
            RecordError::Exhausted => f.write_str("record limit reached"),
            RecordError::Unsupported => f.write_str("cipher suite not supported"),
        }
    }
}

/// One direction: key, IV, next sequence number.
struct Direction {
    alg: &'static Algorithm,
    /// The raw key (16 or 32 bytes used); the AEAD context is built per record.
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl Drop for Direction {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl Direction {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Direction, RecordError> {
        let (alg, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err(RecordError::Unsupported),
        };
        let raw = key.as_ref();
        if raw.len() != alg.key_len() || raw.len() > 32 {
            return Err(RecordError::Unsupported);
        }
        let mut k = [0u8; 32];
        k[..raw.len()].copy_from_slice(raw);
        let iv: [u8; 12] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::Unsupported)?;
        Ok(Direction {
            alg,
            key: k,
            iv,
            seq,
        })
    }

    /// The AEAD context for one record.
    fn aead(&self) -> Result<LessSafeKey, RecordError> {
        UnboundKey::new(self.alg, &self.key[..self.alg.key_len()])
            .map(LessSafeKey::new)
            .map_err(|_| RecordError::Unsupported)
    }

    /// IV XOR the sequence number (RFC 8446 §5.3; TLS 1.2 ChaCha20 and the AES-GCM nonce
    /// rustls uses for TLS 1.2, whose last 8 bytes are the explicit nonce on the wire).
    fn nonce(&self) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    fn next(&mut self) -> Result<(), RecordError> {
        if self.seq >= RECORD_LIMIT {
            return Err(RecordError::Exhausted);
        }
        self.seq += 1;
        Ok(())
    }
}

/// The two directions of an established connection.
pub struct Traffic {
    tls13: bool,
    /// TLS 1.2 AES-GCM carries an explicit 8-byte nonce in each record.
    explicit_nonce: bool,
    tx: Direction,
    rx: Direction,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("tls13", &self.tls13)
            .field("tx_seq", &self.tx.seq)
            .field("rx_seq", &self.rx.seq)
            .finish_non_exhaustive()
    }
}

/// What a complete incoming record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application data: `plaintext` bytes from the record's start (after the header).
    Data {
        /// Offset of the plaintext in the record buffer.
        start: usize,
        /// Its length.
        len: usize,
    },
    /// An application-data record with no data in it.
    Nothing,
}

impl Traffic {
    /// The record layer from the secrets rustls extracted after the handshake.
    pub fn new(
        version: ProtocolVersion,
        secrets: ExtractedSecrets,
    ) -> Result<Traffic, RecordError> {
        let tls13 = match version {
            ProtocolVersion::TLSv1_3 => true,
            ProtocolVersion::TLSv1_2 => false,
            _ => return Err(RecordError::Unsupported),
        };
        let explicit_nonce = !tls13
            && !matches!(
                secrets.tx.1,
                ConnectionTrafficSecrets::Chacha20Poly1305 { .. }
            );
        Ok(Traffic {
            tls13,
            explicit_nonce,
            tx: Direction::new(secrets.tx.0, secrets.tx.1)?,
            rx: Direction::new(secrets.rx.0, secrets.rx.1)?,
        })
    }

    /// Bytes a record adds to its plaintext.
    pub fn overhead(&self) -> usize {
        5 + TAG
            + if self.tls13 {
                1
            } else if self.explicit_nonce {
                8
            } else {
                0
            }
    }

    /// Appends `plain` (at most 2^14 bytes) to `out` as one application-data record.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.seal_typed(APPLICATION_DATA, plain, out)
    }

    /// Appends a close_notify alert record to `out`.
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.seal_typed(ALERT, &[1, 0], out)
    }

    fn seal_typed(&mut self, typ: u8, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        debug_assert!(plain.len() <= 1 << 14);
        let nonce = self.tx.nonce();
        let start = out.len();
        let body_len = plain.len() + self.overhead() - 5;
        // TLS 1.3 hides the real type inside; TLS 1.2 shows it.
        let outer = if self.tls13 { APPLICATION_DATA } else { typ };
        out.extend_from_slice(&[outer, 3, 3]);
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        if self.explicit_nonce {
            out.extend_from_slice(&nonce[4..]);
        }
        let text = out.len();
        out.extend_from_slice(plain);
        if self.tls13 {
            out.push(typ);
        }
        // The additional data: TLS 1.3 the record header (RFC 8446 §5.2), TLS 1.2
        // seq ‖ type ‖ version ‖ length.
        let header: [u8; 5] = out[start..start + 5].try_into().expect("5 bytes");
        let aad12 = tls12_aad(self.tx.seq, typ, plain.len());
        let aad: &[u8] = if self.tls13 { &header } else { &aad12 };
        let tag = self
            .tx
            .aead()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[text..],
            )
            .map_err(|_| RecordError::Unsupported)?;
        out.extend_from_slice(tag.as_ref());
        self.tx.next()
    }

    /// Opens the complete record `rec` in place.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<Opened, RecordError> {
        if rec.len() < 5 + TAG || rec[1] != 3 {
            return Err(RecordError::Malformed);
        }
        let outer = rec[0];
        let header: [u8; 5] = rec[..5].try_into().expect("5 bytes");
        if self.tls13 {
            if outer != APPLICATION_DATA {
                // TLS 1.3 allows a plaintext ChangeCipherSpec only during the handshake.
                return Err(RecordError::Malformed);
            }
            let nonce = self.rx.nonce();
            let plain = self
                .rx
                .aead()?
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&header[..]),
                    &mut rec[5..],
                )
                .map_err(|_| RecordError::BadRecordMac)?;
            self.rx.next()?;
            // Inner plaintext: content, the real type, zero padding (RFC 8446 §5.4).
            let Some(last) = plain.iter().rposition(|&b| b != 0) else {
                return Err(RecordError::Malformed);
            };
            let typ = plain[last];
            let content = &plain[..last];
            inner(typ, content, 5, last)
        } else {
            let explicit = if self.explicit_nonce { 8 } else { 0 };
            if rec.len() < 5 + explicit + TAG {
                return Err(RecordError::Malformed);
            }
            let nonce = if self.explicit_nonce {
                let mut n = [0u8; 12];
                n[..4].copy_from_slice(&self.rx.iv[..4]);
                n[4..].copy_from_slice(&rec[5..13]);
                n
            } else {
                self.rx.nonce()
            };
            let plain_len = rec.len() - 5 - explicit - TAG;
            let aad = tls12_aad(self.rx.seq, outer, plain_len);
            let plain = self
                .rx
                .aead()?
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..]),
                    &mut rec[5 + explicit..],
                )
                .map_err(|_| RecordError::BadRecordMac)?;
            self.rx.next()?;
            let len = plain.len();
            inner(outer, plain, 5 + explicit, len)
        }
    }
}

/// What a decrypted record of type `typ` means.
fn inner(typ: u8, content: &[u8], start: usize, len: usize) -> Result<Opened, RecordError> {
    match typ {
        APPLICATION_DATA if len == 0 => Ok(Opened::Nothing),
        APPLICATION_DATA => Ok(Opened::Data { start, len }),
        ALERT => match content {
            [_, 0] => Err(RecordError::CloseNotify),
            [_, d] => Err(RecordError::Alert(*d)),
            _ => Err(RecordError::Malformed),
        },
        HANDSHAKE => Err(RecordError::UnexpectedHandshake),
        _ => Err(RecordError::Malformed),
    }
}

/// TLS 1.2 additional data: seq ‖ type ‖ version ‖ plaintext length (RFC 5246 §6.2.3.3).
fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = typ;
    a[9] = 3;
    a[10] = 3;
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}
