//! Property tests of the WebSocket codec (proptest, a fixed case budget): the server's frame
//! reader on arbitrary bytes and on valid frame sequences split at arbitrary points — no
//! panic, the same events whatever the split, never more buffered than one capped frame — and
//! round trips between the two halves.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::client::{self, ServerEvent, WsDecoder};
use super::server::{self, ControlOnly, DataFrame, DataMode, MessageKind, WsEvent, WsReader};
use super::utf8::Utf8Stream;
use super::{Control, Data, OpCode};

/// Longest header (2 + 8 length bytes + 4 mask bytes).
const MAX_HEADER: usize = 14;
/// Frame cap used throughout.
const MAX_FRAME: usize = 512;

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Feeds `bytes` cut at `cuts` (sorted, inside the buffer), stopping after the first close or
/// violation; returns the events and the most bytes the reader held between feeds.
fn read<M: DataMode>(mut r: WsReader<M>, bytes: &[u8], cuts: &[usize]) -> (Vec<WsEvent>, usize) {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.push(0);
    bounds.push(bytes.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut events = Vec::new();
    let mut held = 0;
    for w in bounds.windows(2) {
        let mut stop = false;
        r.feed(&bytes[w[0]..w[1]], MAX_FRAME, |e| {
            stop |= matches!(e, WsEvent::Close(_) | WsEvent::Violation(_));
            events.push(e);
        });
        held = held.max(r.buffered());
        if stop {
            break;
        }
    }
    (events, held)
}

fn messages() -> WsReader<server::Messages> {
    WsReader::messages(4 * MAX_FRAME)
}

/// One thing a well-behaved client sends.
#[derive(Debug, Clone)]
enum Piece {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A message cut into frames at the given byte offsets, with a ping after the first frame
    /// when `ping_inside`.
    Message {
        kind: MessageKind,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        ping_inside: bool,
    },
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=125)
}

fn piece() -> impl Strategy<Value = Piece> {
    let text =
        vec(any::<char>(), 0..60).prop_map(|cs| cs.into_iter().collect::<String>().into_bytes());
    let message = (
        prop_oneof![
            text.prop_map(|p| (MessageKind::Text, p)),
            vec(any::<u8>(), 0..MAX_FRAME).prop_map(|p| (MessageKind::Binary, p)),
        ],
        vec(any::<usize>(), 0..4),
        any::<bool>(),
    )
        .prop_map(|((kind, payload), cuts, ping_inside)| Piece::Message {
            kind,
            payload,
            cuts,
            ping_inside,
        });
    prop_oneof![
        control_payload().prop_map(Piece::Ping),
        control_payload().prop_map(Piece::Pong),
        message,
    ]
}

/// The frames of a message: payload ranges between the cut points (each under the frame cap).
fn fragments(payload: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    bounds.extend([0, payload.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    if bounds.len() == 1 {
        return vec![Vec::new()];
    }
    bounds
        .windows(2)
        .map(|w| payload[w[0]..w[1]].to_vec())
        .collect()
}

/// Encodes `pieces` as a client would, and the events each reader mode must report for them.
fn encode(pieces: &[Piece], mask: [u8; 4]) -> (Vec<u8>, Vec<WsEvent>, Vec<WsEvent>) {
    let (mut bytes, mut control_only, mut messages) = (Vec::new(), Vec::new(), Vec::new());
    let both = |control_only: &mut Vec<WsEvent>, messages: &mut Vec<WsEvent>, e: WsEvent| {
        control_only.push(e.clone());
        messages.push(e);
    };
    for p in pieces {
        match p {
            Piece::Ping(pl) => {
                client::encode_frame(OpCode::Control(Control::Ping), true, pl, mask, &mut bytes);
                both(&mut control_only, &mut messages, WsEvent::Ping(pl.clone()));
            }
            Piece::Pong(pl) => {
                client::encode_pong(pl, mask, &mut bytes);
                both(&mut control_only, &mut messages, WsEvent::Pong);
            }
            Piece::Message {
                kind,
                payload,
                cuts,
                ping_inside,
            } => {
                let frames = fragments(payload, cuts);
                let n = frames.len();
                for (i, f) in frames.into_iter().enumerate() {
                    let op = match (i, kind) {
                        (0, MessageKind::Text) => Data::Text,
                        (0, MessageKind::Binary) => Data::Binary,
                        _ => Data::Continue,
                    };
                    client::encode_frame(OpCode::Data(op), i + 1 == n, &f, mask, &mut bytes);
                    control_only.push(WsEvent::Data(f.len()));
                    messages.push(WsEvent::Frame(DataFrame {
                        kind: *kind,
                        first: i == 0,
                        last: i + 1 == n,
                        payload: f,
                    }));
                    if i == 0 && *ping_inside {
                        client::encode_frame(
                            OpCode::Control(Control::Ping),
                            true,
                            b"in",
                            mask,
                            &mut bytes,
                        );
                        both(
                            &mut control_only,
                            &mut messages,
                            WsEvent::Ping(b"in".to_vec()),
                        );
                    }
                }
            }
        }
    }
    (bytes, control_only, messages)
}

/// Close codes a client may send.
fn sendable_close_code() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011
        ]),
        3000u16..5000,
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_split_does_not_matter(
        bytes in vec(any::<u8>(), 0..2048),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        for (events, held, whole) in [
            {
                let (e, h) = read(WsReader::<ControlOnly>::default(), &bytes, &cuts);
                (e, h, read(WsReader::<ControlOnly>::default(), &bytes, &[]).0)
            },
            {
                let (e, h) = read(messages(), &bytes, &cuts);
                (e, h, read(messages(), &bytes, &[]).0)
            },
        ] {
            prop_assert_eq!(events, whole);
            prop_assert!(held <= MAX_FRAME + MAX_HEADER, "held {} bytes", held);
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic_and_split_does_not_matter(
        pieces in vec(piece(), 1..8),
        mask in any::<[u8; 4]>(),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let (mut bytes, _, _) = encode(&pieces, mask);
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let (split, held) = read(messages(), &bytes, &cuts);
        prop_assert_eq!(split, read(messages(), &bytes, &[]).0);
        prop_assert!(held <= MAX_FRAME + MAX_HEADER);
        let (split, held) = read(WsReader::<ControlOnly>::default(), &bytes, &cuts);
        prop_assert_eq!(split, read(WsReader::<ControlOnly>::default(), &bytes, &[]).0);
        prop_assert!(held <= MAX_FRAME + MAX_HEADER);
    }

    #[test]
    fn valid_streams_give_the_same_events_at_any_split(
        pieces in vec(piece(), 0..8),
        mask in any::<[u8; 4]>(),
        code in sendable_close_code(),
        reason in vec(any::<char>(), 0..20),
        cuts in vec(any::<usize>(), 0..16),
    ) {
        let (mut bytes, mut want_control, mut want_messages) = encode(&pieces, mask);
        let reason: String = reason.into_iter().collect();
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(reason.as_bytes());
        body.truncate(125);
        let body_ok = std::str::from_utf8(&body[2..]).is_ok();
        client::encode_frame(OpCode::Control(Control::Close), true, &body, mask, &mut bytes);
        let close = if body_ok { WsEvent::Close(Some(code)) } else { WsEvent::Violation(1002) };
        want_control.push(close.clone());
        want_messages.push(close);

        let (got, held) = read(WsReader::<ControlOnly>::default(), &bytes, &cuts);
        prop_assert_eq!(got, want_control);
        prop_assert!(held <= MAX_FRAME + MAX_HEADER);
        let (got, held) = read(messages(), &bytes, &cuts);
        prop_assert_eq!(got, want_messages);
        prop_assert!(held <= MAX_FRAME + MAX_HEADER);
    }

    #[test]
    fn client_frames_round_trip_through_the_server_reader(
        ping in control_payload(),
        len in 0..=MAX_FRAME,
        mask in any::<[u8; 4]>(),
        code in sendable_close_code(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut bytes = Vec::new();
        client::encode_frame(OpCode::Control(Control::Ping), true, &ping, mask, &mut bytes);
        client::encode_pong(&ping, mask, &mut bytes);
        client::encode_frame(OpCode::Data(Data::Binary), true, &payload, mask, &mut bytes);
        client::encode_close(code, mask, &mut bytes);
        let (got, _) = read(WsReader::<ControlOnly>::default(), &bytes, &[]);
        prop_assert_eq!(got, vec![
            WsEvent::Ping(ping.clone()),
            WsEvent::Pong,
            WsEvent::Data(len),
            WsEvent::Close(Some(code)),
        ]);
        let (got, _) = read(messages(), &bytes, &[]);
        prop_assert_eq!(&got[2], &WsEvent::Frame(DataFrame {
            kind: MessageKind::Binary,
            first: true,
            last: true,
            payload,
        }));
    }

    #[test]
    fn server_frames_round_trip_through_the_client_decoder(
        payloads in vec(vec(any::<u8>(), 0..70_000), 1..4),
        ping in control_payload(),
        code in any::<u16>(),
        step in 1usize..70_000,
    ) {
        let mut bytes = Vec::new();
        for p in &payloads {
            server::encode_message(p, &mut bytes);
        }
        server::encode_pong(&ping, &mut bytes);
        server::encode_close(code, "bye", &mut bytes);
        let mut d = WsDecoder::default();
        let mut got: Vec<String> = Vec::new();
        for c in bytes.chunks(step) {
            d.feed(c, &mut |e| got.push(match e {
                ServerEvent::Message(m) => format!("{m:?}"),
                ServerEvent::Ping(p) => format!("ping {p:?}"),
                ServerEvent::Pong => "pong".into(),
                ServerEvent::Close(c) => format!("close {c:?}"),
            })).unwrap();
        }
        let mut want: Vec<String> = payloads.iter().map(|p| format!("{p:?}")).collect();
        want.push("pong".into());
        want.push(format!("close {:?}", Some(code)));
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn utf8_in_pieces_agrees_with_std(
        bytes in prop_oneof![
            vec(any::<char>(), 0..40).prop_map(|cs| cs.into_iter().collect::<String>().into_bytes()),
            vec(any::<u8>(), 0..40),
        ],
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let mut s = Utf8Stream::default();
        let valid = fragments(&bytes, &cuts).iter().all(|f| s.push(f)) && s.is_complete();
        prop_assert_eq!(valid, std::str::from_utf8(&bytes).is_ok());
    }
}
