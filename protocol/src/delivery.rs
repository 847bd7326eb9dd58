//! # Delivery port frames — processor → edge, answers back
//!
//! A processor forwards pushes straight to the edge shard that owns the target connection over
//! a TCP "delivery port". Every frame on that stream is `u32 BE length` (of what follows) ·
//! `u8 type` · body, so frames are self-delimiting: the declared fields of a body must fill its
//! frame exactly, and anything else is a [`DecodeError`] naming what is wrong. A length above the
//! receiver's `max_frame_len` is rejected as soon as the four length bytes are in, before any
//! byte of the body is buffered, and no count or length field ever drives an allocation before
//! the bytes it describes have arrived. Encoders never truncate: a batch above `u16::MAX` items
//! or a string above `u16::MAX` bytes is an [`EncodeError`]. The byte layout is documented in
//! `docs/protocol.md` ("Delivery port"). The handshake and the frames each side may send after
//! it are driven by [`session`] (`ClientSession` for the processor, `ServerSession` for the
//! edge), so no socket driver reimplements them. After the handshake every frame, both ways,
//! ends in a [`TAG_LEN`]-byte tag under per-connection, per-direction keys (`frame_mac`,
//! decision 0008): the sessions add and check it; [`encode`] and [`decode`] deal in untagged
//! frames (the handshake's, and the layout under the tag).

use std::fmt;

mod codec;
pub(crate) mod frame_mac;
mod reader;
pub mod session;

pub use codec::{decode, encode, encode_answers, encode_broadcast, encode_deliver_batch};
pub use frame_mac::{Direction, IntegrityError, TAG_LEN};
pub use reader::FrameReader;

/// Version carried in the edge's [`Frame::Challenge`]; a processor speaking another version
/// refuses the connection instead of guessing at the layout. Version 2 added the tag on every
/// frame after the handshake: a version-1 peer fails the handshake with a version mismatch.
/// Version 3 added the optional history position of a `Deliver` message.
pub const PROTOCOL_VERSION: u8 = 3;

/// Encoded size of a [`crate::history::Position`] in a `Deliver` message: epoch, ms, seq.
pub const POSITION_LEN: usize = 24;

/// Default limit on a frame's declared length: one 1 MiB payload plus room for its header
/// fields, so a single maximal push always fits in a frame of its own.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024 + 4 * 1024;

/// Length of the random nonces exchanged by the authentication handshake.
pub const NONCE_LEN: usize = 16;

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// The declared length of an `Auth` frame (type byte + client nonce + MAC): all a server
/// needs to read before the peer has authenticated.
pub const AUTH_FRAME_LEN: usize = 1 + NONCE_LEN + MAC_LEN;

/// Most items a `Deliver` or `Answers` frame can carry (the count is a `u16`).
pub const MAX_BATCH: usize = u16::MAX as usize;

/// Longest string field in bytes (its length prefix is a `u16`).
pub const MAX_STR_LEN: usize = u16::MAX as usize;

/// Bytes every frame spends before its body: the `u32` length and the `u8` type.
pub const FRAME_HEADER_LEN: usize = 5;

/// Bytes a `Deliver` frame spends on the wire besides its messages: the frame header, the
/// `u16` count and the tag. With [`DeliverMsg::encoded_len`] a sender can fill batches up to
/// the receiver's limit.
pub const DELIVER_FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 2 + TAG_LEN;

/// Smallest possible encoded [`DeliverMsg`] (empty strings, no device, empty payload); used to
/// reject a count that the body cannot possibly hold before allocating for it.
const MIN_DELIVER_MSG_LEN: usize = 8 + 2 + 1 + 2 + 8 + 4;

/// Encoded size of one [`Answer`].
const ANSWER_LEN: usize = 8 + 1 + 4;

/// `flags` bit of a [`DeliverMsg`] saying a device string follows the user.
const FLAG_HAS_DEVICE: u8 = 0x01;

/// `flags` bit of a [`DeliverMsg`] saying a history position ([`POSITION_LEN`] bytes) follows
/// the message id.
const FLAG_HAS_POSITION: u8 = 0x02;

/// The type byte of a frame.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Edge → processor, first frame on every connection.
    Challenge = 0x01,
    /// Processor → edge, answer to the challenge.
    Auth = 0x02,
    /// Edge → processor, proves the edge knows the secret too.
    AuthOk = 0x03,
    /// Processor → edge, a batch of targeted pushes.
    Deliver = 0x10,
    /// Processor → edge, one push for every connection on the shard.
    Broadcast = 0x11,
    /// Edge → processor, one answer per delivered or broadcast sequence number.
    Answers = 0x20,
}

impl FrameType {
    /// The frame type for a type byte, `None` for a byte no frame uses.
    pub fn from_u8(byte: u8) -> Option<FrameType> {
        Some(match byte {
            0x01 => FrameType::Challenge,
            0x02 => FrameType::Auth,
            0x03 => FrameType::AuthOk,
            0x10 => FrameType::Deliver,
            0x11 => FrameType::Broadcast,
            0x20 => FrameType::Answers,
            _ => return None,
        })
    }

    /// Human-readable name, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Challenge => "Challenge",
            FrameType::Auth => "Auth",
            FrameType::AuthOk => "AuthOk",
            FrameType::Deliver => "Deliver",
            FrameType::Broadcast => "Broadcast",
            FrameType::Answers => "Answers",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One frame of the delivery port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Edge → processor, first frame: the edge's protocol version and a fresh random nonce
    /// the processor must MAC, so a recorded `Auth` cannot be replayed.
    Challenge {
        /// The edge's [`PROTOCOL_VERSION`].
        version: u8,
        /// Fresh randomness chosen by the edge for this connection.
        nonce: [u8; NONCE_LEN],
    },
    /// Processor → edge: proof that the processor knows the shared secret.
    Auth {
        /// Fresh randomness chosen by the processor, bound into both MACs.
        client_nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256 over the client label and both nonces (see `delivery_auth`).
        mac: [u8; MAC_LEN],
    },
    /// Edge → processor: proof that the edge knows the secret too (mutual authentication).
    AuthOk {
        /// HMAC-SHA256 over the server label and both nonces.
        mac: [u8; MAC_LEN],
    },
    /// Processor → edge: pushes for specific users or devices on this shard.
    Deliver(Vec<DeliverMsg>),
    /// Processor → edge: one push for every connection on this shard.
    Broadcast(BroadcastMsg),
    /// Edge → processor: the outcome of each sequence number it was sent.
    Answers(Vec<Answer>),
}

impl Frame {
    /// The type byte this frame is encoded with.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Challenge { .. } => FrameType::Challenge,
            Frame::Auth { .. } => FrameType::Auth,
            Frame::AuthOk { .. } => FrameType::AuthOk,
            Frame::Deliver(_) => FrameType::Deliver,
            Frame::Broadcast(_) => FrameType::Broadcast,
            Frame::Answers(_) => FrameType::Answers,
        }
    }
}

/// One targeted push inside a [`Frame::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverMsg {
    /// Sender-chosen number, unique among the sender's unanswered messages on this connection;
    /// the edge echoes it in the [`Answer`] so answers can be matched to messages.
    pub seq: u64,
    /// Target user; the edge looks the user up in its connection table.
    pub user: String,
    /// Target device of the user, or `None` for all of the user's connections on this shard.
    pub device: Option<String>,
    /// The push's `herald-id`, handed to the client so it can de-duplicate redeliveries.
    pub message_id: String,
    /// Unix time in ms after which the push must not be delivered
    /// ([`NEVER_EXPIRES`] for none).
    pub expires_at_ms: u64,
    /// The bytes to hand to the client, verbatim.
    pub payload: Vec<u8>,
    /// Where the push sits in the user's history (missed-push recovery), `None` when history
    /// is off or the push has no history entry.
    pub position: Option<crate::history::Position>,
}

/// `expires_at_ms` value meaning "never expires".
pub const NEVER_EXPIRES: u64 = u64::MAX;

/// Whether a push expiring at `expires_at_ms` must no longer be delivered at `now_ms`: the
/// expiry instant itself is already too late. One definition for processor and edge.
pub fn is_expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms != NEVER_EXPIRES && now_ms >= expires_at_ms
}

impl DeliverMsg {
    /// Bytes this message adds to a `Deliver` frame (see [`DELIVER_FRAME_OVERHEAD`]).
    pub fn encoded_len(&self) -> usize {
        8 + 2
            + self.user.len()
            + 1
            + self.device.as_ref().map_or(0, |d| 2 + d.len())
            + 2
            + self.message_id.len()
            + 8
            + 4
            + self.payload.len()
            + self.position.map_or(0, |_| POSITION_LEN)
    }

    /// Whether the message must no longer be delivered at `now_ms` (see [`is_expired`]).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        is_expired(self.expires_at_ms, now_ms)
    }
}

/// A push for every connection on the shard, inside a [`Frame::Broadcast`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastMsg {
    /// Sequence number echoed in the [`Answer`].
    pub seq: u64,
    /// The push's `herald-id`.
    pub message_id: String,
    /// Unix time in ms after which the push must not be delivered.
    pub expires_at_ms: u64,
    /// The bytes to hand to every client, verbatim.
    pub payload: Vec<u8>,
}

impl BroadcastMsg {
    /// Whether the broadcast must no longer be delivered at `now_ms` (see [`is_expired`]).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        is_expired(self.expires_at_ms, now_ms)
    }
}

/// The edge's answer for one sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The `seq` of the [`DeliverMsg`] or [`BroadcastMsg`] answered.
    pub seq: u64,
    /// What happened to it.
    pub outcome: Outcome,
    /// How many connections it was written to (0 unless `outcome` is `Delivered`), for
    /// fan-out accounting.
    pub delivered: u32,
}

/// What the edge did with a message; drives the processor's settle / retry / invalidate logic.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written to at least one connection's outbound queue.
    Delivered = 0,
    /// No connection for that target on this shard (the registry entry is stale).
    NotHere = 1,
    /// `expires_at_ms` passed before delivery.
    Expired = 2,
    /// The target's outbound queue was full; that connection is closed.
    SlowConsumer = 3,
    /// The shard is draining and takes no new deliveries.
    Draining = 4,
    /// No connection of the target can carry the payload (e.g. non-UTF-8 to an SSE-only target).
    Unencodable = 5,
    /// Every connection of the target is over its per-connection push rate
    /// (`push_rate_per_conn`); final, not retried.
    RateLimited = 6,
}

impl Outcome {
    /// Every outcome, in wire order; handy for per-outcome metrics.
    pub const ALL: [Outcome; 7] = [
        Outcome::Delivered,
        Outcome::NotHere,
        Outcome::Expired,
        Outcome::SlowConsumer,
        Outcome::Draining,
        Outcome::Unencodable,
        Outcome::RateLimited,
    ];

    /// The outcome for a wire byte, `None` for a byte no outcome uses.
    pub fn from_u8(byte: u8) -> Option<Outcome> {
        Outcome::ALL.get(usize::from(byte)).copied()
    }

    /// Stable snake_case name, used as a metric label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::NotHere => "not_here",
            Outcome::Expired => "expired",
            Outcome::SlowConsumer => "slow_consumer",
            Outcome::Draining => "draining",
            Outcome::Unencodable => "unencodable",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be encoded. Nothing is written to `out` when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// More than `u16::MAX` items in a batch; split it.
    TooManyItems {
        /// Items offered.
        count: usize,
    },
    /// A string field longer than `u16::MAX` bytes.
    StringTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A payload longer than `u32::MAX` bytes.
    PayloadTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The frame's length does not fit the `u32` length prefix.
    FrameTooLong {
        /// Bytes after the length prefix.
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooManyItems { count } => {
                write!(f, "batch of {count} items exceeds the limit of {MAX_BATCH}")
            }
            EncodeError::StringTooLong { field, len } => {
                write!(f, "{field} is {len} bytes, the limit is {MAX_STR_LEN}")
            }
            EncodeError::PayloadTooLong { len } => {
                write!(f, "payload is {len} bytes, the limit is {}", u32::MAX)
            }
            EncodeError::FrameTooLong { len } => {
                write!(f, "frame is {len} bytes, the limit is {}", u32::MAX)
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why bytes on the delivery port are not a valid frame. Any of these ends the connection:
/// a length-prefixed stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The declared length exceeds the receiver's limit; rejected before buffering the body.
    FrameTooLarge {
        /// Declared length (bytes after the length prefix).
        len: usize,
        /// The receiver's `max_frame_len`.
        max: usize,
    },
    /// A declared length of zero: not even a type byte.
    EmptyFrame,
    /// A type byte no frame uses.
    UnknownType(u8),
    /// A field runs past the end of its frame.
    Truncated {
        /// The frame being decoded.
        frame: FrameType,
        /// The field that did not fit.
        field: &'static str,
    },
    /// The body's fields end before its frame does.
    TrailingBytes {
        /// The frame being decoded.
        frame: FrameType,
        /// Bytes left over.
        extra: usize,
    },
    /// A string field is not UTF-8.
    BadUtf8 {
        /// The frame being decoded.
        frame: FrameType,
        /// The offending field.
        field: &'static str,
    },
    /// A batch declares more items than its body holds.
    CountMismatch {
        /// The frame being decoded.
        frame: FrameType,
        /// The declared count.
        declared: u16,
        /// How many items the body can hold at most.
        fits: usize,
    },
    /// A `DeliverMsg` flags byte with bits this version does not define.
    UnknownFlags(u8),
    /// An `Answer` outcome byte no outcome uses.
    UnknownOutcome(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge { len, max } => {
                write!(f, "frame declares {len} bytes, the limit is {max}")
            }
            DecodeError::EmptyFrame => f.write_str("frame declares length 0 (no type byte)"),
            DecodeError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            DecodeError::Truncated { frame, field } => {
                write!(
                    f,
                    "{frame} frame truncated: {field} runs past the end of the frame"
                )
            }
            DecodeError::TrailingBytes { frame, extra } => {
                write!(
                    f,
                    "{frame} frame has {extra} trailing bytes after its last field"
                )
            }
            DecodeError::BadUtf8 { frame, field } => {
                write!(f, "{frame} frame: {field} is not valid UTF-8")
            }
            DecodeError::CountMismatch {
                frame,
                declared,
                fits,
            } => write!(
                f,
                "{frame} frame declares {declared} items but its body holds at most {fits}"
            ),
            DecodeError::UnknownFlags(flags) => {
                write!(f, "Deliver message has unknown flag bits 0x{flags:02x}")
            }
            DecodeError::UnknownOutcome(o) => write!(f, "unknown answer outcome {o}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, device: Option<&str>, payload: &[u8]) -> DeliverMsg {
        DeliverMsg {
            seq,
            user: "alice".into(),
            device: device.map(str::to_owned),
            message_id: format!("m-{seq}"),
            expires_at_ms: 1_700_000_000_000 + seq,
            payload: payload.to_vec(),
            position: None,
        }
    }

    fn enc(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, &mut out).expect("encodable");
        out
    }

    #[test]
    fn challenge_layout_is_pinned() {
        let bytes = enc(&Frame::Challenge {
            version: 1,
            nonce: [7; 16],
        });
        let mut expected = vec![0, 0, 0, 18, 0x01, 1];
        expected.extend_from_slice(&[7; 16]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn deliver_layout_is_pinned() {
        let bytes = enc(&Frame::Deliver(vec![DeliverMsg {
            seq: 0x0102,
            user: "u".into(),
            device: Some("d".into()),
            message_id: "m".into(),
            expires_at_ms: 5,
            payload: b"hi".to_vec(),
            position: None,
        }]));
        let expected: Vec<u8> = [
            &[0, 0, 0, 35, 0x10][..],
            &[0, 1],
            &[0, 0, 0, 0, 0, 0, 1, 2],
            &[0, 1, b'u'],
            &[1],
            &[0, 1, b'd'],
            &[0, 1, b'm'],
            &[0, 0, 0, 0, 0, 0, 0, 5],
            &[0, 0, 0, 2, b'h', b'i'],
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(
            DELIVER_FRAME_OVERHEAD - TAG_LEN + msg_len(&bytes),
            bytes.len(),
            "encoded_len agrees with the encoder (the session appends the tag)"
        );
    }

    fn msg_len(bytes: &[u8]) -> usize {
        match decode(bytes, DEFAULT_MAX_FRAME_LEN) {
            Ok(Some((Frame::Deliver(m), _))) => m.iter().map(DeliverMsg::encoded_len).sum(),
            other => panic!("not a deliver frame: {other:?}"),
        }
    }

    #[test]
    fn answers_layout_is_pinned() {
        let bytes = enc(&Frame::Answers(vec![Answer {
            seq: 9,
            outcome: Outcome::SlowConsumer,
            delivered: 0,
        }]));
        assert_eq!(
            bytes,
            [
                &[0, 0, 0, 16, 0x20, 0, 1][..],
                &[0, 0, 0, 0, 0, 0, 0, 9],
                &[3],
                &[0, 0, 0, 0]
            ]
            .concat()
        );
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::Challenge {
                version: PROTOCOL_VERSION,
                nonce: [1; 16],
            },
            Frame::Auth {
                client_nonce: [2; 16],
                mac: [3; 32],
            },
            Frame::AuthOk { mac: [4; 32] },
            Frame::Deliver(vec![]),
            Frame::Deliver(vec![
                msg(1, None, b""),
                msg(2, Some("phone"), &[0, 255, 10]),
            ]),
            Frame::Broadcast(BroadcastMsg {
                seq: 3,
                message_id: "b".into(),
                expires_at_ms: NEVER_EXPIRES,
                payload: vec![9; 1000],
            }),
            Frame::Answers(vec![]),
            Frame::Answers(
                Outcome::ALL
                    .iter()
                    .enumerate()
                    .map(|(i, &outcome)| Answer {
                        seq: i as u64,
                        outcome,
                        delivered: i as u32 * 1000,
                    })
                    .collect(),
            ),
        ];
        for frame in frames {
            let bytes = enc(&frame);
            let (decoded, used) = decode(&bytes, DEFAULT_MAX_FRAME_LEN)
                .expect("valid")
                .expect("complete");
            assert_eq!(decoded, frame);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn outcome_bytes_and_names() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as u8 as usize, i);
            assert_eq!(Outcome::from_u8(i as u8), Some(*o));
        }
        assert_eq!(Outcome::from_u8(7), None);
        let names: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "delivered",
                "not_here",
                "expired",
                "slow_consumer",
                "draining",
                "unencodable",
                "rate_limited"
            ]
        );
    }

    #[test]
    fn oversized_batch_and_string_are_errors_and_write_nothing() {
        let mut out = vec![0xAA];
        let answers = vec![
            Answer {
                seq: 0,
                outcome: Outcome::Delivered,
                delivered: 1
            };
            MAX_BATCH + 1
        ];
        assert_eq!(
            encode_answers(&answers, &mut out),
            Err(EncodeError::TooManyItems {
                count: MAX_BATCH + 1
            })
        );
        let mut long = msg(1, None, b"x");
        long.message_id = "x".repeat(MAX_STR_LEN + 1);
        assert_eq!(
            encode_deliver_batch(&[msg(0, None, b""), long], &mut out),
            Err(EncodeError::StringTooLong {
                field: "message_id",
                len: MAX_STR_LEN + 1
            })
        );
        let mut long_device = msg(1, Some("d"), b"x");
        long_device.device = Some("d".repeat(MAX_STR_LEN + 1));
        assert!(matches!(
            encode(&Frame::Deliver(vec![long_device]), &mut out),
            Err(EncodeError::StringTooLong {
                field: "device",
                ..
            })
        ));
        assert_eq!(out, [0xAA]);
        // The limits themselves are fine.
        encode_answers(&answers[..MAX_BATCH], &mut out).expect("u16::MAX answers encode");
        let mut max = msg(1, None, b"");
        max.user = "u".repeat(MAX_STR_LEN);
        encode_deliver_batch(&[max], &mut out).expect("u16::MAX-byte string encodes");
    }

    #[test]
    fn expiry_is_inclusive_and_never_means_never() {
        assert!(!is_expired(100, 99));
        assert!(is_expired(100, 100));
        assert!(is_expired(100, 101));
        assert!(!is_expired(NEVER_EXPIRES, u64::MAX));
    }

    #[test]
    fn header_errors_come_before_the_body() {
        // Length above the limit with no body at all.
        assert_eq!(
            decode(&[0, 0, 1, 0], 255),
            Err(DecodeError::FrameTooLarge { len: 256, max: 255 })
        );
        assert_eq!(decode(&[0, 0, 0, 0], 255), Err(DecodeError::EmptyFrame));
        assert_eq!(
            decode(&[0, 0, 0, 9, 0x7f], 255),
            Err(DecodeError::UnknownType(0x7f))
        );
    }

    #[test]
    fn reader_is_sticky_after_an_error() {
        let mut reader = FrameReader::new(64);
        reader.feed(&[0, 0, 1, 0]);
        let err = reader.next_frame().unwrap_err();
        assert_eq!(err, DecodeError::FrameTooLarge { len: 256, max: 64 });
        reader.feed(&enc(&Frame::AuthOk { mac: [0; 32] }));
        assert_eq!(reader.next_frame(), Err(err));
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn an_auth_frame_fits_the_pre_auth_cap_and_nothing_larger_does() {
        let auth = Frame::Auth {
            client_nonce: [1; NONCE_LEN],
            mac: [2; MAC_LEN],
        };
        let bytes = enc(&auth);
        assert_eq!(bytes.len(), 4 + AUTH_FRAME_LEN);
        let mut reader = FrameReader::new(AUTH_FRAME_LEN);
        reader.feed(&bytes);
        // a Deliver frame declared right behind it, read after the cap is lifted
        let deliver = enc(&Frame::Deliver(Vec::new()));
        reader.feed(&deliver);
        assert_eq!(reader.next_frame(), Ok(Some(auth)));
        reader.set_max_frame_len(DEFAULT_MAX_FRAME_LEN);
        assert!(matches!(reader.next_frame(), Ok(Some(Frame::Deliver(_)))));
        // before authentication, a frame one byte over the cap is refused on its length alone
        let mut reader = FrameReader::new(AUTH_FRAME_LEN);
        reader.feed(&((AUTH_FRAME_LEN + 1) as u32).to_be_bytes());
        assert!(matches!(
            reader.next_frame(),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn reader_compacts_consumed_bytes() {
        let frame = Frame::AuthOk { mac: [5; 32] };
        let bytes = enc(&frame);
        let mut reader = FrameReader::default();
        reader.feed(&bytes);
        reader.feed(&bytes[..10]);
        assert_eq!(reader.next_frame(), Ok(Some(frame.clone())));
        assert_eq!(reader.buffered(), 10);
        assert_eq!(reader.next_frame(), Ok(None));
        reader.feed(&bytes[10..]);
        assert_eq!(reader.buf.len(), bytes.len(), "consumed frame was dropped");
        assert_eq!(reader.next_frame(), Ok(Some(frame)));
        assert_eq!(reader.buffered(), 0);
    }
}
