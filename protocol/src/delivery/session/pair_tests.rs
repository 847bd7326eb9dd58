//! A client and a server session talking to each other through byte buffers, with every
//! transfer cut into fragments (fixed sizes 1, 2, 5, 10, 100 and seeded random sizes).

use super::*;
use crate::delivery::{
    Answer, BroadcastMsg, DeliverMsg, IntegrityError, Outcome, DEFAULT_MAX_FRAME_LEN,
    NEVER_EXPIRES, TAG_LEN,
};
use crate::delivery_auth::AuthError;

const SECRET: &[u8] = b"0123456789abcdef-shared";

/// How transfers are cut.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Every fragment this many bytes (the last one shorter).
    Fixed(usize),
    /// Fragments of 1..=64 bytes from a xorshift seeded with this.
    Random(u64),
}

struct Pipe {
    cut: Cut,
    state: u64,
}

impl Pipe {
    fn new(cut: Cut) -> Pipe {
        let state = match cut {
            Cut::Random(seed) => seed | 1,
            Cut::Fixed(_) => 1,
        };
        Pipe { cut, state }
    }

    fn next_len(&mut self) -> usize {
        match self.cut {
            Cut::Fixed(n) => n,
            Cut::Random(_) => {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                1 + (self.state % 64) as usize
            }
        }
    }

    /// Splits `bytes` into fragments.
    fn fragments<'a>(&mut self, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = self.next_len().min(bytes.len());
            out.push(&bytes[..n]);
            bytes = &bytes[n..];
        }
        out
    }
}

/// Moves the client's transmit buffer to the server fragment by fragment, collecting events.
fn client_to_server(
    c: &mut ClientSession,
    s: &mut ServerSession,
    pipe: &mut Pipe,
) -> Result<Vec<ServerEvent>, SessionError> {
    let bytes = c.transmit().to_vec();
    c.clear_transmit();
    let mut events = Vec::new();
    for frag in pipe.fragments(&bytes) {
        s.handle_input(frag);
        while let Some(ev) = s.poll_event()? {
            events.push(ev);
        }
    }
    Ok(events)
}

/// Moves the server's transmit buffer to the client fragment by fragment, collecting events.
fn server_to_client(
    s: &mut ServerSession,
    c: &mut ClientSession,
    pipe: &mut Pipe,
) -> Result<Vec<ClientEvent>, SessionError> {
    let bytes = s.transmit().to_vec();
    s.clear_transmit();
    let mut events = Vec::new();
    for frag in pipe.fragments(&bytes) {
        c.handle_input(frag);
        while let Some(ev) = c.poll_event()? {
            events.push(ev);
        }
    }
    Ok(events)
}

fn msg(seq: u64, len: usize) -> DeliverMsg {
    DeliverMsg {
        seq,
        user: format!("user{seq}"),
        device: seq.is_multiple_of(2).then(|| "phone".to_string()),
        message_id: format!("m{seq}"),
        expires_at_ms: NEVER_EXPIRES,
        payload: vec![seq as u8; len],
        position: None,
    }
}

fn cuts() -> Vec<Cut> {
    let mut cuts: Vec<Cut> = [1, 2, 5, 10, 100, 1 << 20]
        .into_iter()
        .map(Cut::Fixed)
        .collect();
    cuts.extend((1..=20).map(|seed| Cut::Random(seed * 0x9e37_79b9)));
    cuts
}

/// Handshake, two Deliver batches and a broadcast, answered, under every cut.
#[test]
fn a_pair_converses_under_any_fragmentation() {
    for cut in cuts() {
        let mut pipe = Pipe::new(cut);
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        let mut s = ServerSession::new(SECRET, [1; 16], DEFAULT_MAX_FRAME_LEN);

        assert_eq!(server_to_client(&mut s, &mut c, &mut pipe), Ok(vec![]));
        assert_eq!(
            client_to_server(&mut c, &mut s, &mut pipe),
            Ok(vec![ServerEvent::Authenticated]),
            "{cut:?}"
        );
        assert_eq!(
            server_to_client(&mut s, &mut c, &mut pipe),
            Ok(vec![ClientEvent::Authenticated]),
            "{cut:?}"
        );

        let first = vec![msg(1, 0), msg(2, 300)];
        let second = vec![msg(3, 70)];
        let b = BroadcastMsg {
            seq: 4,
            message_id: "b".into(),
            expires_at_ms: 99,
            payload: b"everyone".to_vec(),
        };
        c.send_deliver(&first).unwrap();
        c.send_broadcast(&b).unwrap();
        c.send_deliver(&second).unwrap();
        let events = client_to_server(&mut c, &mut s, &mut pipe).unwrap();
        assert_eq!(
            events,
            vec![
                ServerEvent::Deliver(first),
                ServerEvent::Broadcast(b),
                ServerEvent::Deliver(second),
            ],
            "{cut:?}"
        );

        let answers: Vec<Answer> = (1..=4)
            .rev()
            .map(|seq| Answer {
                seq,
                outcome: Outcome::ALL[seq as usize % Outcome::ALL.len()],
                delivered: seq as u32,
            })
            .collect();
        s.send_answers(&answers[..1]).unwrap();
        s.send_answers(&answers[1..]).unwrap();
        assert_eq!(
            server_to_client(&mut s, &mut c, &mut pipe),
            Ok(vec![
                ClientEvent::Answers(answers[..1].to_vec()),
                ClientEvent::Answers(answers[1..].to_vec()),
            ]),
            "{cut:?}"
        );
    }
}

/// A wrong secret fails on both sides, whatever the cut: the server never authenticates.
#[test]
fn a_wrong_secret_never_opens_either_side() {
    for cut in cuts() {
        let mut pipe = Pipe::new(cut);
        let mut c = ClientSession::new(b"a-wrong-secret-0000000", [2; 16], DEFAULT_MAX_FRAME_LEN);
        let mut s = ServerSession::new(SECRET, [1; 16], DEFAULT_MAX_FRAME_LEN);
        server_to_client(&mut s, &mut c, &mut pipe).unwrap();
        assert_eq!(
            client_to_server(&mut c, &mut s, &mut pipe),
            Err(SessionError::Auth(AuthError::BadClientMac)),
            "{cut:?}"
        );
        assert!(!s.is_authenticated() && !c.is_open());
        assert!(s.transmit().is_empty(), "no AuthOk for a bad MAC");
    }
}

/// Frames pipelined right behind the Auth (sealed with the connection's keys, which the
/// client knows once it has both nonces) reach the server once it lifts its cap.
#[test]
fn a_server_takes_frames_pipelined_behind_auth() {
    let mut pipe = Pipe::new(Cut::Fixed(1 << 20));
    let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
    let mut s = ServerSession::new(SECRET, [1; 16], DEFAULT_MAX_FRAME_LEN);
    server_to_client(&mut s, &mut c, &mut pipe).unwrap();
    let auth = c.transmit().to_vec();
    c.clear_transmit();
    let mut input = auth;
    let (mut sealer, _) =
        crate::delivery::frame_mac::SessionKeys::for_test(SECRET, &[1; 16], &[2; 16])
            .for_processor();
    input.extend(sealer.sealed(&crate::delivery::Frame::Deliver(vec![msg(1, 5000)])));
    s.handle_input(&input);
    assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Authenticated)));
    assert_eq!(
        s.poll_event(),
        Ok(Some(ServerEvent::Deliver(vec![msg(1, 5000)])))
    );
}

/// A client and a server that completed the handshake with these nonces.
fn open_pair(server_nonce: u8, client_nonce: u8) -> (ClientSession, ServerSession) {
    let mut pipe = Pipe::new(Cut::Fixed(1 << 20));
    let mut c = ClientSession::new(SECRET, [client_nonce; 16], DEFAULT_MAX_FRAME_LEN);
    let mut s = ServerSession::new(SECRET, [server_nonce; 16], DEFAULT_MAX_FRAME_LEN);
    server_to_client(&mut s, &mut c, &mut pipe).unwrap();
    assert_eq!(
        client_to_server(&mut c, &mut s, &mut pipe),
        Ok(vec![ServerEvent::Authenticated])
    );
    assert_eq!(
        server_to_client(&mut s, &mut c, &mut pipe),
        Ok(vec![ClientEvent::Authenticated])
    );
    (c, s)
}

/// The sealed `Deliver` frame the client queues for `msgs` (taken out of its transmit buffer).
fn deliver_frame(c: &mut ClientSession, msgs: &[DeliverMsg]) -> Vec<u8> {
    c.send_deliver(msgs).unwrap();
    let frame = c.transmit().to_vec();
    c.clear_transmit();
    frame
}

/// The sealed `Answers` frame the server queues for `answers`.
fn answers_frame(s: &mut ServerSession, answers: &[Answer]) -> Vec<u8> {
    s.send_answers(answers).unwrap();
    let frame = s.transmit().to_vec();
    s.clear_transmit();
    frame
}

/// Feeds `bytes` to the server: the events it yielded, and how it ended (`Ok` = waiting for
/// more input).
fn server_reads(
    s: &mut ServerSession,
    bytes: &[u8],
) -> (Vec<ServerEvent>, Result<(), SessionError>) {
    s.handle_input(bytes);
    let mut events = Vec::new();
    loop {
        match s.poll_event() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => return (events, Ok(())),
            Err(e) => return (events, Err(e)),
        }
    }
}

/// Feeds `bytes` to the client: its events, and how it ended.
fn client_reads(
    c: &mut ClientSession,
    bytes: &[u8],
) -> (Vec<ClientEvent>, Result<(), SessionError>) {
    c.handle_input(bytes);
    let mut events = Vec::new();
    loop {
        match c.poll_event() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => return (events, Ok(())),
            Err(e) => return (events, Err(e)),
        }
    }
}

fn bad_tag(frame: u64) -> impl Fn(&Result<(), SessionError>) -> bool {
    move |r| matches!(r, Err(SessionError::Integrity(IntegrityError::BadTag { frame: f, .. })) if *f == frame)
}

/// Every bit of a sealed three-message `Deliver` frame flipped in turn: the server never
/// yields a delivery from it. A flip in the type, body or tag is a bad tag — checked before
/// any parsing, so even a type byte turned into another type or an unknown one is caught by
/// the tag; a flip in the length prefix is a bad tag, a frame too large, or (a longer frame)
/// waiting for bytes that would then be checked too.
#[test]
fn a_tampered_deliver_frame_is_refused_and_nothing_of_it_is_delivered() {
    let msgs = vec![msg(1, 10), msg(2, 0), msg(3, 40)];
    let (mut c, _) = open_pair(1, 2);
    let good = deliver_frame(&mut c, &msgs);
    let header_len = 5;
    let tag_start = good.len() - TAG_LEN;
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let (_, mut s) = open_pair(1, 2);
            let (events, end) = server_reads(&mut s, &bad);
            assert_eq!(events, vec![], "byte {i} bit {bit}");
            if i >= 4 {
                let part = if i < header_len {
                    "type"
                } else if i < tag_start {
                    "body"
                } else {
                    "tag"
                };
                assert!(bad_tag(0)(&end), "{part} byte {i} bit {bit}: {end:?}");
            } else {
                assert!(
                    matches!(
                        end,
                        Ok(())
                            | Err(SessionError::Integrity(_))
                            | Err(SessionError::Decode(DecodeError::FrameTooLarge { .. }))
                    ),
                    "length byte {i} bit {bit}: {end:?}"
                );
            }
        }
    }
    // The untouched frame is delivered by a server in the same state.
    let (_, mut s) = open_pair(1, 2);
    assert_eq!(
        server_reads(&mut s, &good),
        (vec![ServerEvent::Deliver(msgs)], Ok(()))
    );
}

/// A frame cut short — its length prefix lowered to drop the tag's tail, or to leave no room
/// for a tag at all — is refused; a frame whose end never arrives yields nothing.
#[test]
fn a_truncated_frame_is_refused() {
    let (mut c, _) = open_pair(1, 2);
    let good = deliver_frame(&mut c, &[msg(1, 30)]);
    let declared = u32::from_be_bytes(good[..4].try_into().unwrap());
    for cut in [1, TAG_LEN / 2, TAG_LEN] {
        let mut short = good[..good.len() - cut].to_vec();
        short[..4].copy_from_slice(&(declared - cut as u32).to_be_bytes());
        let (_, mut s) = open_pair(1, 2);
        let (events, end) = server_reads(&mut s, &short);
        assert_eq!(events, vec![]);
        assert!(bad_tag(0)(&end), "cut {cut}: {end:?}");
    }
    let tiny = [0, 0, 0, 3, 0x10, 0, 0];
    let (_, mut s) = open_pair(1, 2);
    let (events, end) = server_reads(&mut s, &tiny);
    assert_eq!(events, vec![]);
    assert!(
        matches!(
            end,
            Err(SessionError::Integrity(IntegrityError::MissingTag {
                frame: 0,
                ..
            }))
        ),
        "{end:?}"
    );
    // All but the last byte: nothing yet, and nothing ever unless the rest arrives.
    let (_, mut s) = open_pair(1, 2);
    assert_eq!(
        server_reads(&mut s, &good[..good.len() - 1]),
        (vec![], Ok(()))
    );
}

/// A frame the processor never sent, slipped between two it did: the first is delivered, the
/// intruder ends the connection, and the frame behind it is not delivered.
#[test]
fn an_injected_frame_ends_the_connection() {
    let (mut c, mut s) = open_pair(1, 2);
    let first = deliver_frame(&mut c, &[msg(1, 5)]);
    let second = deliver_frame(&mut c, &[msg(2, 5)]);
    // The attacker's best guesses: an untagged frame, and a copy of a real frame's layout
    // with another body (the tag of the real one).
    let mut forged = deliver_frame(&mut open_pair(1, 2).0, &[msg(9, 5)]);
    let tag_at = forged.len() - TAG_LEN;
    forged[tag_at..].copy_from_slice(&second[second.len() - TAG_LEN..]);
    for intruder in [
        {
            let mut b = Vec::new();
            crate::delivery::encode_deliver_batch(&[msg(9, 5)], &mut b).unwrap();
            b
        },
        forged,
    ] {
        let (mut c2, mut s2) = open_pair(1, 2);
        let first2 = deliver_frame(&mut c2, &[msg(1, 5)]);
        let second2 = deliver_frame(&mut c2, &[msg(2, 5)]);
        let stream = [first2, intruder, second2].concat();
        let (events, end) = server_reads(&mut s2, &stream);
        assert_eq!(events, vec![ServerEvent::Deliver(vec![msg(1, 5)])]);
        assert!(bad_tag(1)(&end), "{end:?}");
    }
    // Without the intruder both are delivered.
    let (events, end) = server_reads(&mut s, &[first, second].concat());
    assert_eq!(events.len(), 2);
    assert_eq!(end, Ok(()));
}

/// A frame sent again (a replay of a recorded frame on the same connection) fails: its tag
/// belongs to the position it was first sent at.
#[test]
fn a_replayed_frame_ends_the_connection() {
    let (mut c, mut s) = open_pair(1, 2);
    let first = deliver_frame(&mut c, &[msg(1, 5)]);
    let (events, end) = server_reads(&mut s, &[first.clone(), first].concat());
    assert_eq!(events, vec![ServerEvent::Deliver(vec![msg(1, 5)])]);
    assert!(bad_tag(1)(&end), "{end:?}");
    // A replayed broadcast likewise.
    let (mut c, mut s) = open_pair(1, 2);
    let b = BroadcastMsg {
        seq: 7,
        message_id: "b".into(),
        expires_at_ms: NEVER_EXPIRES,
        payload: b"all".to_vec(),
    };
    c.send_broadcast(&b).unwrap();
    let frame = c.transmit().to_vec();
    let (events, end) = server_reads(&mut s, &[frame.clone(), frame].concat());
    assert_eq!(events, vec![ServerEvent::Broadcast(b)]);
    assert!(bad_tag(1)(&end), "{end:?}");
}

/// Two frames swapped: the first to arrive is checked at the other's position and fails, so
/// neither is delivered.
#[test]
fn a_reordered_pair_ends_the_connection() {
    let (mut c, mut s) = open_pair(1, 2);
    let first = deliver_frame(&mut c, &[msg(1, 5)]);
    let second = deliver_frame(&mut c, &[msg(2, 5)]);
    let (events, end) = server_reads(&mut s, &[second, first].concat());
    assert_eq!(events, vec![]);
    assert!(bad_tag(0)(&end), "{end:?}");
}

/// A dropped frame: the one after it is checked at the wrong position.
#[test]
fn a_dropped_frame_ends_the_connection_at_the_next() {
    let (mut c, mut s) = open_pair(1, 2);
    let _lost = deliver_frame(&mut c, &[msg(1, 5)]);
    let second = deliver_frame(&mut c, &[msg(2, 5)]);
    let (events, end) = server_reads(&mut s, &second);
    assert_eq!(events, vec![]);
    assert!(bad_tag(0)(&end), "{end:?}");
}

/// Two connections with the same secret: a frame recorded on one is refused by the other,
/// at the same position, whichever nonce differs.
#[test]
fn a_frame_from_another_connection_is_refused() {
    for (other_server, other_client) in [(3, 2), (1, 4), (3, 4)] {
        let (mut other, _) = open_pair(other_server, other_client);
        let foreign = deliver_frame(&mut other, &[msg(1, 5)]);
        let (_, mut s) = open_pair(1, 2);
        let (events, end) = server_reads(&mut s, &foreign);
        assert_eq!(events, vec![], "nonces {other_server}/{other_client}");
        assert!(bad_tag(0)(&end), "{end:?}");
    }
}

/// A frame reflected back at its sender fails: each direction has its own key.
#[test]
fn a_frame_reflected_to_its_sender_is_refused() {
    let (mut c, mut s) = open_pair(1, 2);
    let answers = answers_frame(
        &mut s,
        &[Answer {
            seq: 1,
            outcome: Outcome::Delivered,
            delivered: 1,
        }],
    );
    // The edge's own Answers, fed back to it as if the processor had sent them.
    let (events, end) = server_reads(&mut s, &answers);
    assert_eq!(events, vec![]);
    assert!(bad_tag(0)(&end), "{end:?}");
    // The processor's own Deliver, fed back to it.
    let deliver = deliver_frame(&mut c, &[msg(1, 5)]);
    let (events, end) = client_reads(&mut c, &deliver);
    assert_eq!(events, vec![]);
    assert!(bad_tag(0)(&end), "{end:?}");
}

/// The edge → processor direction: every bit of a sealed `Answers` frame flipped in turn is
/// refused by the client with no answers handed out; replayed and reordered answers too.
#[test]
fn tampered_replayed_or_reordered_answers_are_refused_by_the_client() {
    let answers: Vec<Answer> = (1..=3)
        .map(|seq| Answer {
            seq,
            outcome: Outcome::Delivered,
            delivered: 1,
        })
        .collect();
    let (_, mut s) = open_pair(1, 2);
    let good = answers_frame(&mut s, &answers);
    for i in 4..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let (mut c, _) = open_pair(1, 2);
            let (events, end) = client_reads(&mut c, &bad);
            assert_eq!(events, vec![], "byte {i} bit {bit}");
            assert!(bad_tag(0)(&end), "byte {i} bit {bit}: {end:?}");
            assert!(!c.is_open());
        }
    }
    let second = answers_frame(&mut s, &answers[..1]);
    // Replayed.
    let (mut c, _) = open_pair(1, 2);
    let (events, end) = client_reads(&mut c, &[good.clone(), good.clone()].concat());
    assert_eq!(events, vec![ClientEvent::Answers(answers.clone())]);
    assert!(bad_tag(1)(&end), "{end:?}");
    // Reordered.
    let (mut c, _) = open_pair(1, 2);
    let (events, end) = client_reads(&mut c, &[second.clone(), good.clone()].concat());
    assert_eq!(events, vec![]);
    assert!(bad_tag(0)(&end), "{end:?}");
    // In order, both arrive.
    let (mut c, _) = open_pair(1, 2);
    let (events, end) = client_reads(&mut c, &[good, second].concat());
    assert_eq!(
        events,
        vec![
            ClientEvent::Answers(answers.clone()),
            ClientEvent::Answers(answers[..1].to_vec())
        ]
    );
    assert_eq!(end, Ok(()));
}
