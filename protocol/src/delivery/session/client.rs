//! The processor's end of a delivery connection: wait for `Challenge`, send `Auth`, check
//! `AuthOk`; then encode `Deliver` / `Broadcast` frames and hand back the edge's `Answers`.

use super::SessionError;
use crate::delivery::{
    encode, encode_broadcast, encode_deliver_batch, Answer, BroadcastMsg, DeliverMsg, Frame,
    FrameReader, NONCE_LEN,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the edge's `Challenge`.
    AwaitChallenge,
    /// `Auth` queued; waiting for `AuthOk`.
    AwaitAuthOk,
    /// Both sides authenticated.
    Open,
}

/// The processor's side of one delivery connection, sans-io (see the [module](super) docs).
#[derive(Debug)]
pub struct ClientSession {
    /// The HMAC handshake.
    auth: ClientAuth,
    /// Decodes the edge's frames.
    reader: FrameReader,
    /// Handshake progress.
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
    /// the `Auth` frame in [`transmit`](Self::transmit) and yields no event.
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
            self.out.clear();
        }
        result
    }

    fn step(&mut self) -> Result<Option<ClientEvent>, SessionError> {
        loop {
            let Some(frame) = self.reader.next_frame()? else {
                return Ok(None);
            };
            match self.state {
                State::AwaitChallenge => {
                    let auth = self.auth.respond(&frame)?;
                    encode(&auth, &mut self.out).map_err(SessionError::Encode)?;
                    self.state = State::AwaitAuthOk;
                }
                State::AwaitAuthOk => {
                    self.auth.confirm(&frame)?;
                    self.state = State::Open;
                    return Ok(Some(ClientEvent::Authenticated));
                }
                State::Open => {
                    return match frame {
                        Frame::Answers(answers) => Ok(Some(ClientEvent::Answers(answers))),
                        other => Err(SessionError::UnexpectedFrame(other.frame_type())),
                    }
                }
            }
        }
    }

    /// Whether the handshake completed (sending is allowed).
    pub fn is_open(&self) -> bool {
        self.state == State::Open && self.failed.is_none()
    }

    fn check_open(&self) -> Result<(), SessionError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(SessionError::NotOpen)
        }
    }

    /// Queues one `Deliver` frame carrying `msgs` (their `seq`s are the caller's). On error
    /// (not open, or a message over the wire limits) nothing is queued.
    pub fn send_deliver(&mut self, msgs: &[DeliverMsg]) -> Result<(), SessionError> {
        self.check_open()?;
        encode_deliver_batch(msgs, &mut self.out).map_err(SessionError::Encode)
    }

    /// Queues one `Broadcast` frame. On error nothing is queued.
    pub fn send_broadcast(&mut self, msg: &BroadcastMsg) -> Result<(), SessionError> {
        self.check_open()?;
        encode_broadcast(msg, &mut self.out).map_err(SessionError::Encode)
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
    use crate::delivery::{FrameType, DEFAULT_MAX_FRAME_LEN, NEVER_EXPIRES};
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

    fn open_client(server: &ServerAuth) -> ClientSession {
        let mut c = ClientSession::new(SECRET, [2; 16], DEFAULT_MAX_FRAME_LEN);
        c.handle_input(&bytes(&server.challenge()));
        assert_eq!(c.poll_event(), Ok(None));
        let [auth] = decode_all(c.transmit()).try_into().unwrap();
        c.clear_transmit();
        let ok = server.verify(&auth).unwrap();
        c.handle_input(&bytes(&ok));
        assert_eq!(c.poll_event(), Ok(Some(ClientEvent::Authenticated)));
        c
    }

    #[test]
    fn handshake_then_answers() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let mut c = open_client(&server);
        assert!(c.is_open());
        let answers = vec![Answer {
            seq: 4,
            outcome: crate::delivery::Outcome::Delivered,
            delivered: 1,
        }];
        c.handle_input(&bytes(&Frame::Answers(answers.clone())));
        assert_eq!(c.poll_event(), Ok(Some(ClientEvent::Answers(answers))));
        assert_eq!(c.poll_event(), Ok(None));
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
        let mut c = open_client(&server);
        c.handle_input(&bytes(&server.challenge()));
        assert_eq!(
            c.poll_event(),
            Err(SessionError::UnexpectedFrame(FrameType::Challenge))
        );
    }

    #[test]
    fn an_unencodable_message_queues_nothing_and_keeps_the_session() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let mut c = open_client(&server);
        let bad = DeliverMsg {
            seq: 1,
            user: "u".repeat(70_000),
            device: None,
            message_id: "m".into(),
            expires_at_ms: NEVER_EXPIRES,
            payload: vec![],
        };
        let err = c.send_deliver(&[bad]).unwrap_err();
        assert!(matches!(err, SessionError::Encode(_)) && !err.is_fatal());
        assert!(c.transmit().is_empty() && c.is_open());
    }
}
