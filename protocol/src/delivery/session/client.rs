//! The processor's end of a delivery connection: wait for `Challenge`, send `Auth`, check
//! `AuthOk` and derive the connection's frame keys; then seal `Deliver` / `Broadcast` frames
//! and hand back the edge's `Answers` once their tags verified.

use super::{FrameMacs, SessionError};
use crate::delivery::{
    encode, encode_broadcast, encode_deliver_batch, Answer, BroadcastMsg, DeliverMsg, EncodeError,
    Frame, FrameReader, NONCE_LEN,
};
use crate::delivery_auth::ClientAuth;

/// Something the edge said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The edge proved it knows the secret: the session is open for sending.
    Authenticated,
    /// One `Answers` frame: the outcome of each sequence number in it, in the edge's order.
    Answers(Vec<Answer>),
}

/// Where the handshake stands.
#[derive(Debug)]
enum State {
    /// Waiting for the edge's `Challenge`.
    AwaitChallenge,
    /// `Auth` queued; waiting for `AuthOk`.
    AwaitAuthOk,
    /// Both sides authenticated; every frame from now on is tagged (boxed: the HMAC states
    /// are a few hundred bytes).
    Open(Box<FrameMacs>),
}

/// The processor's side of one delivery connection, sans-io (see the [module](super) docs).
#[derive(Debug)]
pub struct ClientSession {
    /// The HMAC handshake.
    auth: ClientAuth,
    /// Splits the edge's bytes into frames.
    reader: FrameReader,
    /// Handshake progress, and the frame tags once open.
    state: State,
    /// Bytes for the edge, not yet taken by the driver.
    out: Vec<u8>,
    /// The error that ended the session, repeated by every later `poll_event`.
    failed: Option<SessionError>,
}

impl ClientSession {
    /// A session that authenticates with the shared `secret` and a fresh random
    /// `client_nonce`, accepting edge frames of at most `max_frame_len` declared bytes.
    pub fn new(secret: &[u8], client_nonce: [u8; NONCE_LEN], max_frame_len: usize) -> Self {
        ClientSession {
            auth: ClientAuth::new(secret, client_nonce),
            reader: FrameReader::new(max_frame_len),
            state: State::AwaitChallenge,
            out: Vec::new(),
            failed: None,
        }
    }

    /// Feeds bytes received from the edge; then call [`poll_event`](Self::poll_event).
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.reader.feed(bytes);
        }
    }

    /// The next event, `Ok(None)` when more input is needed. Answering the `Challenge` queues
    /// the `Auth` frame in [`transmit`](Self::transmit) and yields no event. After the
    /// handshake an `Answers` event comes only from a frame whose tag verified.
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.fail(err.clone());
        }
        result
    }

    fn fail(&mut self, err: SessionError) {
        self.failed = Some(err);
        self.out.clear();
    }

    fn step(&mut self) -> Result<Option<ClientEvent>, SessionError> {
        loop {
            match &mut self.state {
                State::AwaitChallenge => {
                    let Some(frame) = self.reader.next_frame()? else {
                        return Ok(None);
                    };
                    let auth = self.auth.respond(&frame)?;
                    encode(&auth, &mut self.out).map_err(SessionError::Encode)?;
                    self.state = State::AwaitAuthOk;
                }
                State::AwaitAuthOk => {
                    let Some(frame) = self.reader.next_frame()? else {
                        return Ok(None);
                    };
                    let keys = self.auth.confirm_keyed(&frame)?;
                    self.state = State::Open(Box::new(FrameMacs::new(keys.for_processor())));
                    return Ok(Some(ClientEvent::Authenticated));
                }
                State::Open(macs) => {
                    let Some(frame) = macs.next_frame(&mut self.reader)? else {
                        return Ok(None);
                    };
                    return match frame {
                        Frame::Answers(answers) => Ok(Some(ClientEvent::Answers(answers))),
                        other => Err(SessionError::UnexpectedFrame(other.frame_type())),
                    };
                }
            }
        }
    }

    /// Whether the handshake completed (sending is allowed).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_)) && self.failed.is_none()
    }

    /// Encodes one frame with `encode` and seals it. On error nothing is queued; an encoding
    /// error leaves the session usable, anything else ends it.
    fn send(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), SessionError> {
        let State::Open(macs) = &mut self.state else {
            return Err(SessionError::NotOpen);
        };
        if self.failed.is_some() {
            return Err(SessionError::NotOpen);
        }
        let result = macs.sealer.seal(&mut self.out, encode);
        if let Err(err) = &result {
            if err.is_fatal() {
                self.fail(err.clone());
            }
        }
        result
    }

    /// Queues one `Deliver` frame carrying `msgs` (their `seq`s are the caller's). On error
    /// (not open, or a message over the wire limits) nothing is queued.
    pub fn send_deliver(&mut self, msgs: &[DeliverMsg]) -> Result<(), SessionError> {
        self.send(|out| encode_deliver_batch(msgs, out))
    }

    /// Queues one `Broadcast` frame. On error nothing is queued.
    pub fn send_broadcast(&mut self, msg: &BroadcastMsg) -> Result<(), SessionError> {
        self.send(|out| encode_broadcast(msg, out))
    }

    /// Bytes to write to the edge, in order.
    pub fn transmit(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the bytes of [`transmit`](Self::transmit) (they were written).
    pub fn clear_transmit(&mut self) {
        self.out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::frame_mac::{FrameSealer, SessionKeys};
    use crate::delivery::{FrameType, IntegrityError, DEFAULT_MAX_FRAME_LEN, NEVER_EXPIRES};
    use crate::delivery_auth::{AuthError, ServerAuth};

    const SECRET: &[u8] = b"0123456789abcdef-shared";

    fn bytes(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, &mut out).unwrap();
        out
    }

    fn decode_all(mut buf: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some((f, n)) = crate::delivery::decode(buf, DEFAULT_MAX_FRAME_LEN).unwrap() {
            frames.push(f);
            buf = &buf[n..];
        }
        assert!(buf.is_empty());
        frames
    }

    /// An open client session and the edge's sealer for its connection.
    fn open_client(server: &ServerAuth) -> (ClientSession, FrameSealer) {
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        c.handle_input(&bytes(&server.challenge()));
        assert_eq!(c.poll_event(), Ok(None));
        let [auth] = decode_all(c.transmit()).try_into().unwrap();
        c.clear_transmit();
        let (ok, keys) = server.verify_keyed(&auth).unwrap();
        c.handle_input(&bytes(&ok));
        assert_eq!(c.poll_event(), Ok(Some(ClientEvent::Authenticated)));
        (c, keys.for_edge().0)
    }

    fn answers(seq: u64) -> Vec<Answer> {
        vec![Answer {
            seq,
            outcome: crate::delivery::Outcome::Delivered,
            delivered: 1,
        }]
    }

    #[test]
    fn handshake_then_answers() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let (mut c, mut edge) = open_client(&server);
        assert!(c.is_open());
        for seq in [4, 5] {
            c.handle_input(&edge.sealed(&Frame::Answers(answers(seq))));
            assert_eq!(c.poll_event(), Ok(Some(ClientEvent::Answers(answers(seq)))));
        }
        assert_eq!(c.poll_event(), Ok(None));
    }

    #[test]
    fn deliveries_are_sealed_for_the_edge() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let (mut c, _) = open_client(&server);
        let msg = DeliverMsg {
            seq: 1,
            user: "u".into(),
            device: None,
            message_id: "m".into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: b"p".to_vec(),
            position: None,
        };
        c.send_deliver(std::slice::from_ref(&msg)).unwrap();
        assert_eq!(
            c.transmit().len(),
            crate::delivery::DELIVER_FRAME_OVERHEAD + msg.encoded_len(),
            "the overhead counts the tag"
        );
        let (_, mut opener) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_edge();
        let (ty, body) = opener.open(c.transmit()).expect("tag verifies");
        assert_eq!(
            crate::delivery::codec::decode_parts(ty, body),
            Ok(Frame::Deliver(vec![msg]))
        );
    }

    #[test]
    fn nothing_is_sent_before_authok() {
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        let b = BroadcastMsg {
            seq: 1,
            message_id: "m".into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: vec![],
        };
        assert_eq!(c.send_broadcast(&b), Err(SessionError::NotOpen));
        assert_eq!(c.send_deliver(&[]), Err(SessionError::NotOpen));
        assert!(c.transmit().is_empty());
    }

    #[test]
    fn wrong_server_mac_fails_and_stays_failed() {
        let server = ServerAuth::new(b"another-secret-0000000", [1; 16]);
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        c.handle_input(&bytes(&server.challenge()));
        assert_eq!(c.poll_event(), Ok(None));
        c.handle_input(&bytes(&Frame::AuthOk { mac: [9; 32] }));
        let err = Err(SessionError::Auth(AuthError::BadServerMac));
        assert_eq!(c.poll_event(), err);
        assert_eq!(c.poll_event(), err);
        assert!(!c.is_open());
    }

    #[test]
    fn a_first_frame_other_than_challenge_is_refused() {
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        c.handle_input(&bytes(&Frame::Answers(vec![])));
        assert_eq!(
            c.poll_event(),
            Err(SessionError::Auth(AuthError::UnexpectedFrame {
                expected: FrameType::Challenge,
                got: FrameType::Answers
            }))
        );
        assert!(c.transmit().is_empty());
    }

    #[test]
    fn only_answers_after_the_handshake() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let (mut c, mut edge) = open_client(&server);
        c.handle_input(&edge.sealed(&server.challenge()));
        assert_eq!(
            c.poll_event(),
            Err(SessionError::UnexpectedFrame(FrameType::Challenge))
        );
    }

    #[test]
    fn untagged_answers_end_the_session_and_sending_stops() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let (mut c, _) = open_client(&server);
        c.send_deliver(&[]).unwrap();
        // Two answers: long enough to be read as a body and a tag, and the tag is wrong.
        c.handle_input(&bytes(&Frame::Answers([answers(1), answers(2)].concat())));
        assert!(matches!(
            c.poll_event(),
            Err(SessionError::Integrity(IntegrityError::BadTag {
                frame: 0,
                ..
            }))
        ));
        assert!(c.transmit().is_empty(), "queued frames are dropped");
        assert!(!c.is_open());
        assert_eq!(c.send_deliver(&[]), Err(SessionError::NotOpen));
    }

    #[test]
    fn an_unencodable_message_queues_nothing_and_keeps_the_session() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let (mut c, _) = open_client(&server);
        let bad = DeliverMsg {
            seq: 1,
            user: "u".repeat(70_000),
            device: None,
            message_id: "m".into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: vec![],
            position: None,
        };
        let err = c.send_deliver(&[bad]).unwrap_err();
        assert!(matches!(err, SessionError::Encode(_)) && !err.is_fatal());
        assert!(c.transmit().is_empty() && c.is_open());
        // The refused frame used no position: the next one still verifies as frame 0.
        c.send_deliver(&[]).unwrap();
        let (_, mut opener) = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16]).for_edge();
        assert!(opener.open(c.transmit()).is_ok());
    }
}
