//! A client and a server session talking to each other through byte buffers, with every
//! transfer cut into fragments (fixed sizes 1, 2, 5, 10, 100 and seeded random sizes).

use super::*;
use crate::delivery::{
    Answer, BroadcastMsg, DeliverMsg, Outcome, DEFAULT_MAX_FRAME_LEN, NEVER_EXPIRES,
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

/// Frames the client pipelines right behind its Auth reach the server once it lifts its cap.
#[test]
fn a_server_takes_frames_pipelined_behind_auth() {
    let mut pipe = Pipe::new(Cut::Fixed(1 << 20));
    let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
    let mut s = ServerSession::new(SECRET, [1; 16], DEFAULT_MAX_FRAME_LEN);
    server_to_client(&mut s, &mut c, &mut pipe).unwrap();
    let auth = c.transmit().to_vec();
    c.clear_transmit();
    let mut input = auth;
    let mut deliver = Vec::new();
    crate::delivery::encode_deliver_batch(&[msg(1, 5000)], &mut deliver).unwrap();
    input.extend(deliver);
    s.handle_input(&input);
    assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Authenticated)));
    assert_eq!(
        s.poll_event(),
        Ok(Some(ServerEvent::Deliver(vec![msg(1, 5000)])))
    );
}
