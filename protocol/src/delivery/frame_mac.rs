//! # Frame integrity after the handshake — an HMAC-SHA256/128 tag on every frame
//!
//! The handshake proves both ends know the shared secret `K`; without more, the frames after
//! it could be altered or injected by anyone on the path. So every frame after `AuthOk`, in
//! both directions, ends in a 16-byte tag:
//!
//! - one key per connection and direction, `K_d = HMAC-SHA256(K, "herald-delivery-v1/session/"
//!   ‖ d ‖ Ns ‖ Nc)` for `d` = `processor-to-edge` or `edge-to-processor`, so a tag from another
//!   connection (other nonces) or from the other direction never verifies;
//! - frame `i` of a direction (counted from 0 by both ends, never sent) carries
//!   `HMAC-SHA256(K_d, "herald-delivery-v1/frame/" ‖ d ‖ u64_be(i) ‖ header ‖ body)`
//!   truncated to [`TAG_LEN`] bytes, appended after the body and counted in the length prefix;
//!   a replayed, dropped, reordered or injected frame is checked against the wrong `i` and fails;
//! - the receiver checks the tag (in constant time) over the complete frame before parsing its
//!   body, so nothing of a bad frame is decoded or applied, and the first bad tag ends the
//!   connection.
//!
//! The session keys are never sent; the handshake MACs use other labels, so no value seen on
//! the wire is a session key. Sans-io like the rest: [`FrameSealer`] appends tags to frames in
//! an output buffer, [`FrameOpener`] checks and strips them.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::session::SessionError;
use super::{EncodeError, NONCE_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Length of the tag that ends every frame after the handshake: HMAC-SHA256 truncated to
/// 128 bits.
pub const TAG_LEN: usize = 16;

/// Prefix of the labels session keys are derived under (followed by the direction's name).
const SESSION_LABEL: &[u8] = b"herald-delivery-v1/session/";

/// Prefix of the labels frame tags are computed under (followed by the direction's name).
const FRAME_LABEL: &[u8] = b"herald-delivery-v1/frame/";

/// Which way a frame travels; each direction has its own key, label and frame counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `Deliver` and `Broadcast` frames.
    ProcessorToEdge,
    /// `Answers` frames.
    EdgeToProcessor,
}

impl Direction {
    /// The direction's name in key and tag labels (ASCII).
    pub fn name(self) -> &'static str {
        match self {
            Direction::ProcessorToEdge => "processor-to-edge",
            Direction::EdgeToProcessor => "edge-to-processor",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame after the handshake was refused. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityError {
    /// The frame is too short to end in a tag.
    MissingTag {
        /// The direction it travelled.
        direction: Direction,
        /// Its position in that direction (from 0).
        frame: u64,
    },
    /// The tag does not match the frame at this position: it was altered, injected, replayed,
    /// reordered, or belongs to another connection or direction.
    BadTag {
        /// The direction it travelled.
        direction: Direction,
        /// The position it was checked at (from 0).
        frame: u64,
    },
    /// 2^64 frames went one way; the counter cannot go on without repeating.
    CounterExhausted {
        /// The direction whose counter ran out.
        direction: Direction,
    },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityError::MissingTag { direction, frame } => write!(
                f,
                "{direction} frame {frame} is too short to carry its {TAG_LEN}-byte tag"
            ),
            IntegrityError::BadTag { direction, frame } => write!(
                f,
                "{direction} frame {frame} has a wrong tag (altered, injected, replayed or reordered)"
            ),
            IntegrityError::CounterExhausted { direction } => {
                write!(f, "{direction} frame counter exhausted")
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

/// A direction's tag state: HMAC keyed with `K_d` with the frame label already absorbed
/// (cloned per frame), and the position of the next frame.
#[derive(Clone)]
struct DirectionMac {
    /// `HMAC(K_d, …)` fed `FRAME_LABEL ‖ d`.
    keyed: HmacSha256,
    /// Which direction.
    direction: Direction,
    /// Position of the next frame (from 0).
    next: u64,
}

impl fmt::Debug for DirectionMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("DirectionMac")
            .field("direction", &self.direction)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl DirectionMac {
    /// Derives `K_d` for this connection from `secret_key` (HMAC keyed with the shared secret).
    fn derive(
        secret_key: &HmacSha256,
        direction: Direction,
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
    ) -> DirectionMac {
        let mut kdf = secret_key.clone();
        kdf.update(SESSION_LABEL);
        kdf.update(direction.name().as_bytes());
        kdf.update(server_nonce);
        kdf.update(client_nonce);
        let key = kdf.finalize().into_bytes();
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut keyed =
            <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!());
        keyed.update(FRAME_LABEL);
        keyed.update(direction.name().as_bytes());
        DirectionMac {
            keyed,
            direction,
            next: 0,
        }
    }

    /// The MAC of the next frame over `frame` (header and body, no tag), not yet finalized.
    fn mac_next(&self, frame: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(&self.next.to_be_bytes());
        mac.update(frame);
        mac
    }

    /// Moves to the next position; fails once 2^64 frames were counted.
    fn advance(&mut self) -> Result<(), IntegrityError> {
        self.next = self
            .next
            .checked_add(1)
            .ok_or(IntegrityError::CounterExhausted {
                direction: self.direction,
            })?;
        Ok(())
    }
}

/// Both directions' keys of one connection, derived once the handshake has seen both nonces.
pub(crate) struct SessionKeys {
    /// `Deliver` / `Broadcast`.
    processor_to_edge: DirectionMac,
    /// `Answers`.
    edge_to_processor: DirectionMac,
}

impl SessionKeys {
    /// Derives a connection's keys from `secret_key` (HMAC keyed with the shared secret) and
    /// both handshake nonces.
    pub(crate) fn derive(
        secret_key: &HmacSha256,
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
    ) -> SessionKeys {
        let d = |direction| DirectionMac::derive(secret_key, direction, server_nonce, client_nonce);
        SessionKeys {
            processor_to_edge: d(Direction::ProcessorToEdge),
            edge_to_processor: d(Direction::EdgeToProcessor),
        }
    }

    /// The processor's halves: it seals `processor-to-edge`, opens `edge-to-processor`.
    pub(crate) fn for_processor(self) -> (FrameSealer, FrameOpener) {
        (
            FrameSealer(self.processor_to_edge),
            FrameOpener(self.edge_to_processor),
        )
    }

    /// The edge's halves: it seals `edge-to-processor`, opens `processor-to-edge`.
    pub(crate) fn for_edge(self) -> (FrameSealer, FrameOpener) {
        (
            FrameSealer(self.edge_to_processor),
            FrameOpener(self.processor_to_edge),
        )
    }
}

/// Appends tags to the frames one end sends.
#[derive(Debug, Clone)]
pub(crate) struct FrameSealer(DirectionMac);

impl FrameSealer {
    /// Seals the frame `encode` appends to `out`: adds [`TAG_LEN`] to its length prefix and
    /// appends the tag of the next position. On error `out` is left as it was (nothing of the
    /// frame is sent) and the position is not used up; an encoding error leaves the session
    /// usable, [`SessionError::Integrity`] (the counter ran out) does not.
    pub(crate) fn seal(
        &mut self,
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), SessionError> {
        let start = out.len();
        encode(out).map_err(SessionError::Encode)?;
        let result = self.seal_from(out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Seals the complete frame from `out[start]` to the end of `out`.
    fn seal_from(&mut self, out: &mut Vec<u8>, start: usize) -> Result<(), SessionError> {
        let mut prefix = [0u8; 4];
        // Every encoder writes at least the length prefix and the type byte on success.
        prefix.copy_from_slice(&out[start..start + 4]);
        let len = u32::from_be_bytes(prefix);
        let sealed = len.checked_add(TAG_LEN as u32).ok_or(SessionError::Encode(
            EncodeError::FrameTooLong {
                len: len as usize + TAG_LEN,
            },
        ))?;
        out[start..start + 4].copy_from_slice(&sealed.to_be_bytes());
        let tag = self.0.mac_next(&out[start..]).finalize().into_bytes();
        self.0.advance().map_err(SessionError::Integrity)?;
        out.extend_from_slice(&tag[..TAG_LEN]);
        Ok(())
    }
}

/// Checks and strips the tags of the frames one end receives.
#[derive(Debug, Clone)]
pub(crate) struct FrameOpener(DirectionMac);

impl FrameOpener {
    /// Checks the tag of `frame` (one complete frame: length prefix, type, body, tag) at the
    /// next position and returns its type byte and body. Any error means the frame must not be
    /// used and the connection must end.
    pub(crate) fn open<'a>(&mut self, frame: &'a [u8]) -> Result<(u8, &'a [u8]), IntegrityError> {
        let mac = &mut self.0;
        // A frame's declared length is at least 1 (its type byte): the reader refuses 0.
        if frame.len() < 5 + TAG_LEN {
            return Err(IntegrityError::MissingTag {
                direction: mac.direction,
                frame: mac.next,
            });
        }
        let (covered, tag) = frame.split_at(frame.len() - TAG_LEN);
        mac.mac_next(covered)
            .verify_truncated_left(tag)
            .map_err(|_| IntegrityError::BadTag {
                direction: mac.direction,
                frame: mac.next,
            })?;
        mac.advance()?;
        Ok((covered[4], &covered[5..]))
    }
}

#[cfg(test)]
impl SessionKeys {
    /// The keys of the connection with these nonces under `secret`, as both ends derive them.
    pub(crate) fn for_test(
        secret: &[u8],
        server_nonce: &[u8; NONCE_LEN],
        client_nonce: &[u8; NONCE_LEN],
    ) -> SessionKeys {
        let key = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        SessionKeys::derive(&key, server_nonce, client_nonce)
    }
}

#[cfg(test)]
impl FrameSealer {
    /// `frame`, encoded and sealed at the next position.
    pub(crate) fn sealed(&mut self, frame: &super::Frame) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal(&mut out, |out| super::encode(frame, out))
            .expect("encodable");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-shared";

    fn secret_key(secret: &[u8]) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap()
    }

    fn frame(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(ty);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn tag_matches_the_pinned_construction() {
        let keys = SessionKeys::derive(&secret_key(SECRET), &[1; 16], &[2; 16]);
        let (mut sealer, _) = keys.for_processor();
        let mut out = vec![0xAA];
        sealer
            .seal(&mut out, |out| {
                out.extend(frame(0x10, b"body"));
                Ok(())
            })
            .unwrap();
        let mut kdf = secret_key(SECRET);
        kdf.update(b"herald-delivery-v1/session/processor-to-edge");
        kdf.update(&[1; 16]);
        kdf.update(&[2; 16]);
        let k = kdf.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&k).unwrap();
        mac.update(b"herald-delivery-v1/frame/processor-to-edge");
        mac.update(&0u64.to_be_bytes());
        mac.update(&[0, 0, 0, 5 + 16, 0x10]);
        mac.update(b"body");
        let expected = mac.finalize().into_bytes();
        let mut want = vec![0xAA, 0, 0, 0, 21, 0x10];
        want.extend_from_slice(b"body");
        want.extend_from_slice(&expected[..16]);
        assert_eq!(out, want);
    }
    #[test]
    fn a_refused_seal_leaves_the_buffer_and_the_position_alone() {
        let (mut sealer, _) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_processor();
        let (_, mut opener) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_edge();
        let mut out = vec![0xAA];
        // The encoder's own error.
        let err = sealer.seal(&mut out, |_| {
            Err(EncodeError::TooManyItems { count: 70_000 })
        });
        assert_eq!(
            err,
            Err(SessionError::Encode(EncodeError::TooManyItems {
                count: 70_000
            }))
        );
        // A frame whose length prefix has no room left for the tag.
        let err = sealer.seal(&mut out, |out| {
            out.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
            out.push(0x10);
            Ok(())
        });
        assert!(
            matches!(
                err,
                Err(SessionError::Encode(EncodeError::FrameTooLong { .. }))
            ),
            "{err:?}"
        );
        assert_eq!(out, [0xAA]);
        // Neither used up position 0.
        let mut good = Vec::new();
        sealer
            .seal(&mut good, |out| {
                out.extend(frame(0x20, &[0, 0]));
                Ok(())
            })
            .unwrap();
        assert_eq!(opener.open(&good), Ok((0x20, &[0u8, 0][..])));
    }

    #[test]
    fn the_last_position_is_never_used() {
        let (mut sealer, _) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_processor();
        sealer.0.next = u64::MAX;
        let mut out = Vec::new();
        let err = sealer.seal(&mut out, |out| {
            out.extend(frame(0x10, &[0, 0]));
            Ok(())
        });
        assert_eq!(
            err,
            Err(SessionError::Integrity(IntegrityError::CounterExhausted {
                direction: Direction::ProcessorToEdge
            }))
        );
        assert!(out.is_empty());
        assert!(err.unwrap_err().is_fatal());
    }

    #[test]
    fn debug_does_not_print_key_material() {
        let (sealer, opener) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_edge();
        let text = format!("{sealer:?} {opener:?}");
        assert!(
            text.contains("EdgeToProcessor") && !text.contains("Hmac"),
            "{text}"
        );
    }
}

/// What a tag costs, per frame and per delivery, beside encoding and decoding the frame.
/// Run with `cargo test --release -p herald-protocol frame_mac_cost -- --ignored --nocapture`.
#[cfg(test)]
mod cost {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::delivery::codec::decode_parts;
    use crate::delivery::{encode_deliver_batch, DeliverMsg, NEVER_EXPIRES};

    /// Mean time of `f` over as many runs as fit in about 300 ms (at least 100).
    fn mean(mut f: impl FnMut()) -> Duration {
        for _ in 0..10 {
            f();
        }
        let started = Instant::now();
        let mut runs = 0u32;
        while runs < 100 || started.elapsed() < Duration::from_millis(300) {
            f();
            runs += 1;
        }
        started.elapsed() / runs
    }

    fn ns(d: Duration) -> f64 {
        d.as_nanos() as f64
    }

    #[test]
    #[ignore = "a measurement: run in release with --nocapture"]
    fn frame_mac_cost() {
        println!(
            "{:>6} {:>8} {:>9} | {:>9} {:>9} {:>9} {:>9} | {:>10} {:>10} {:>8}",
            "msgs",
            "payload",
            "frame B",
            "encode",
            "seal",
            "decode",
            "open",
            "MAC/frame",
            "MAC/deliv",
            "MAC/B"
        );
        for (count, payload) in [
            (1, 64),
            (1, 1024),
            (16, 256),
            (64, 256),
            (256, 512),
            (1, 1024 * 1024),
        ] {
            let msgs: Vec<DeliverMsg> = (0..count as u64)
                .map(|seq| DeliverMsg {
                    seq,
                    user: format!("user-{seq:08}"),
                    device: Some("phone".into()),
                    message_id: format!("01J{seq:023}"),
                    expires_at_ms: NEVER_EXPIRES,
                    payload: vec![b'x'; payload],
                    position: None,
                })
                .collect();
            let keys = SessionKeys::for_test(b"0123456789abcdef-shared", &[1; 16], &[2; 16]);
            let (mut sealer, _) = keys.for_processor();
            let (_, mut opener) =
                SessionKeys::for_test(b"0123456789abcdef-shared", &[1; 16], &[2; 16]).for_edge();
            let mut plain = Vec::new();
            encode_deliver_batch(&msgs, &mut plain).unwrap();
            let mut out = Vec::with_capacity(plain.len() + TAG_LEN);

            let encode = mean(|| {
                out.clear();
                encode_deliver_batch(black_box(&msgs), &mut out).unwrap();
                black_box(&out);
            });
            // Sealing a frame already encoded: the copy is timed alone and subtracted.
            let copy = mean(|| {
                out.clear();
                out.extend_from_slice(black_box(&plain));
                black_box(&out);
            });
            let seal = mean(|| {
                out.clear();
                sealer
                    .seal(&mut out, |o| {
                        o.extend_from_slice(black_box(&plain));
                        Ok(())
                    })
                    .unwrap();
                black_box(&out);
            });
            let seal = seal.saturating_sub(copy);
            // One frame sealed at position 0, opened at position 0 every time.
            let mut frame = Vec::new();
            let (mut first, _) =
                SessionKeys::for_test(b"0123456789abcdef-shared", &[1; 16], &[2; 16])
                    .for_processor();
            first
                .seal(&mut frame, |o| encode_deliver_batch(&msgs, o))
                .unwrap();
            let open = mean(|| {
                opener.0.next = 0;
                black_box(opener.open(black_box(&frame)).unwrap());
            });
            let decode = mean(|| {
                black_box(decode_parts(frame[4], &frame[5..frame.len() - TAG_LEN]).unwrap());
            });
            let mac = (ns(seal) + ns(open)) / 2.0;
            println!(
                "{:>6} {:>8} {:>9} | {:>7.0}ns {:>7.0}ns {:>7.0}ns {:>7.0}ns | {:>8.0}ns {:>8.1}ns {:>6.2}ns",
                count,
                payload,
                frame.len(),
                ns(encode),
                ns(seal),
                ns(decode),
                ns(open),
                mac,
                mac / count as f64,
                mac / frame.len() as f64,
            );
        }
    }
}
