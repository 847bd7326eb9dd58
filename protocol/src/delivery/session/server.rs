//! The edge's end of a delivery connection: send `Challenge`, accept exactly one `Auth`
//! (capped at `AUTH_FRAME_LEN`), answer `AuthOk`, derive the connection's frame keys and lift
//! the frame cap; then hand out `Deliver` / `Broadcast` frames whose tags verified and seal
//! `Answers`.

use super::{FrameMacs, SessionError};
use crate::delivery::{
    encode, encode_answers, Answer, BroadcastMsg, DeliverMsg, Frame, FrameReader, AUTH_FRAME_LEN,
    MAX_BATCH, NONCE_LEN,
};
use crate::delivery_auth::ServerAuth;

/// Something the processor sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The processor proved it knows the secret; `AuthOk` is queued in `transmit` and the
    /// frame cap is lifted to the session's maximum.
    Authenticated,
    /// A batch of targeted pushes, from a frame whose tag verified; answer every `seq` with
    /// [`ServerSession::send_answers`].
    Deliver(Vec<DeliverMsg>),
    /// A push for every connection of the shard, from a frame whose tag verified; answer its
    /// `seq`.
    Broadcast(BroadcastMsg),
}

/// The edge's side of one delivery connection, sans-io (see the [module](super) docs).
#[derive(Debug)]
pub struct ServerSession {
    /// The HMAC handshake.
    auth: ServerAuth,
    /// Splits the processor's bytes into frames; capped at [`AUTH_FRAME_LEN`] until
    /// authenticated.
    reader: FrameReader,
    /// The frame cap once authenticated.
    max_frame_len: usize,
    /// The frame tags, once the processor authenticated.
    macs: Option<FrameMacs>,
    /// Bytes for the processor, not yet taken by the driver (starts with the `Challenge`).
    out: Vec<u8>,
    /// The error that ended the session, repeated by every later `poll_event`.
    failed: Option<SessionError>,
}

impl ServerSession {
    /// A session over the shared `secret` with this connection's fresh random `nonce`; after
    /// authentication it accepts frames of at most `max_frame_len` declared bytes. The
    /// `Challenge` is queued in [`transmit`](Self::transmit) at once.
    pub fn new(secret: &[u8], nonce: [u8; NONCE_LEN], max_frame_len: usize) -> Self {
        let auth = ServerAuth::new(secret, nonce);
        let mut out = Vec::new();
        // A Challenge has fixed-size fields: it always encodes.
        let _ = encode(&auth.challenge(), &mut out);
        ServerSession {
            auth,
            reader: FrameReader::new(AUTH_FRAME_LEN),
            max_frame_len,
            macs: None,
            out,
            failed: None,
        }
    }

    /// Feeds bytes received from the processor; then call [`poll_event`](Self::poll_event).
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.reader.feed(bytes);
        }
    }

    /// The next event, `Ok(None)` when more input is needed. Before authentication the only
    /// frame accepted is an `Auth` with a valid MAC; after it, only frames whose tag verifies
    /// at their position. Anything else ends the session, and an event never comes from a
    /// frame that failed.
    pub fn poll_event(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.step();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    fn step(&mut self) -> Result<Option<ServerEvent>, SessionError> {
        let Some(macs) = &mut self.macs else {
            let Some(frame) = self.reader.next_frame()? else {
                return Ok(None);
            };
            let (ok, keys) = self.auth.verify_keyed(&frame)?;
            encode(&ok, &mut self.out).map_err(SessionError::Encode)?;
            self.macs = Some(FrameMacs::new(keys.for_edge()));
            self.reader.set_max_frame_len(self.max_frame_len);
            return Ok(Some(ServerEvent::Authenticated));
        };
        let Some(frame) = macs.next_frame(&mut self.reader)? else {
            return Ok(None);
        };
        match frame {
            Frame::Deliver(msgs) => Ok(Some(ServerEvent::Deliver(msgs))),
            Frame::Broadcast(b) => Ok(Some(ServerEvent::Broadcast(b))),
            other => Err(SessionError::UnexpectedFrame(other.frame_type())),
        }
    }

    /// Whether the processor authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.macs.is_some()
    }

    /// Queues `answers` (in sealed frames of at most [`MAX_BATCH`]). Before authentication,
    /// or once the session failed, nothing is queued.
    pub fn send_answers(&mut self, answers: &[Answer]) -> Result<(), SessionError> {
        let Some(macs) = &mut self.macs else {
            return Err(SessionError::NotOpen);
        };
        if self.failed.is_some() {
            return Err(SessionError::NotOpen);
        }
        for chunk in answers.chunks(MAX_BATCH) {
            if let Err(err) = macs
                .sealer
                .seal(&mut self.out, |out| encode_answers(chunk, out))
            {
                // Chunks of at most MAX_BATCH answers always encode: only the frame counter
                // can fail, and that ends the session.
                self.failed = Some(err.clone());
                return Err(err);
            }
        }
        Ok(())
    }

    /// Bytes to write to the processor, in order.
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
    use crate::delivery::{DecodeError, FrameType, IntegrityError, Outcome, DEFAULT_MAX_FRAME_LEN};
    use crate::delivery_auth::{AuthError, ClientAuth};

    const SECRET: &[u8] = b"0123456789abcdef-shared";

    fn bytes(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(frame, &mut out).unwrap();
        out
    }

    fn first_frame(buf: &[u8]) -> (Frame, usize) {
        crate::delivery::decode(buf, DEFAULT_MAX_FRAME_LEN)
            .unwrap()
            .unwrap()
    }

    /// A server session and the `Auth` frame a client with `secret` answers its challenge with.
    fn challenged(secret: &[u8]) -> (ServerSession, Frame, ClientAuth) {
        let s = ServerSession::new(SECRET, [1; 16], 4096);
        let (challenge, n) = first_frame(s.transmit());
        assert_eq!(n, s.transmit().len());
        let mut client = ClientAuth::new(secret, [2; 16]);
        let auth = client.respond(&challenge).unwrap();
        (s, auth, client)
    }

    /// The processor's sealer for the connection `challenged` opens.
    fn processor_sealer() -> FrameSealer {
        SessionKeys::for_test(SECRET, &[1; 16], &[2; 16])
            .for_processor()
            .0
    }

    /// An authenticated server session and the processor's sealer for it.
    fn authenticated() -> (ServerSession, FrameSealer) {
        let (mut s, auth, _) = challenged(SECRET);
        s.handle_input(&bytes(&auth));
        assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Authenticated)));
        s.clear_transmit();
        (s, processor_sealer())
    }

    fn broadcast(seq: u64) -> BroadcastMsg {
        BroadcastMsg {
            seq,
            message_id: "b".into(),
            expires_at_ms: 1,
            payload: vec![0; 1000],
        }
    }

    #[test]
    fn challenge_first_then_authok_then_deliveries() {
        let (mut s, auth, client) = challenged(SECRET);
        s.clear_transmit();
        assert!(!s.is_authenticated());
        s.handle_input(&bytes(&auth));
        assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Authenticated)));
        let (ok, _) = first_frame(s.transmit());
        let (mut sealer, mut opener) = client.confirm_keyed(&ok).unwrap().for_processor();
        s.clear_transmit();
        let b = broadcast(9);
        s.handle_input(&sealer.sealed(&Frame::Broadcast(b.clone())));
        assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Broadcast(b))));
        assert_eq!(s.poll_event(), Ok(None));
        let a = Answer {
            seq: 9,
            outcome: Outcome::Delivered,
            delivered: 3,
        };
        s.send_answers(&[a]).unwrap();
        let (ty, body) = opener.open(s.transmit()).expect("the answers are sealed");
        assert_eq!(
            crate::delivery::codec::decode_parts(ty, body),
            Ok(Frame::Answers(vec![a]))
        );
    }

    #[test]
    fn an_untagged_frame_after_auth_fails_and_yields_nothing() {
        let (mut s, _) = authenticated();
        s.handle_input(&bytes(&Frame::Broadcast(broadcast(1))));
        assert!(matches!(
            s.poll_event(),
            Err(SessionError::Integrity(IntegrityError::BadTag {
                frame: 0,
                ..
            }))
        ));
        // A frame too short to hold a tag is refused as such.
        let (mut s, _) = authenticated();
        s.handle_input(&bytes(&Frame::Deliver(vec![])));
        assert!(matches!(
            s.poll_event(),
            Err(SessionError::Integrity(IntegrityError::MissingTag {
                frame: 0,
                ..
            }))
        ));
        assert_eq!(s.send_answers(&[]), Err(SessionError::NotOpen));
    }

    #[test]
    fn a_bad_mac_fails() {
        let (mut s, auth, _) = challenged(b"not-the-secret-00000000");
        s.handle_input(&bytes(&auth));
        assert_eq!(
            s.poll_event(),
            Err(SessionError::Auth(AuthError::BadClientMac))
        );
        assert!(!s.is_authenticated());
        assert_eq!(s.send_answers(&[]), Err(SessionError::NotOpen));
    }

    #[test]
    fn a_first_frame_other_than_auth_fails() {
        let mut s = ServerSession::new(SECRET, [1; 16], 4096);
        s.handle_input(&bytes(&Frame::AuthOk { mac: [0; 32] }));
        assert_eq!(
            s.poll_event(),
            Err(SessionError::Auth(AuthError::UnexpectedFrame {
                expected: FrameType::Auth,
                got: FrameType::AuthOk
            }))
        );
    }

    #[test]
    fn nothing_larger_than_auth_is_read_before_authentication() {
        let mut s = ServerSession::new(SECRET, [1; 16], 4096);
        // Only the length prefix of a big Deliver frame: refused before its body arrives.
        s.handle_input(&1000u32.to_be_bytes());
        assert_eq!(
            s.poll_event(),
            Err(SessionError::Decode(DecodeError::FrameTooLarge {
                len: 1000,
                max: AUTH_FRAME_LEN
            }))
        );
    }

    #[test]
    fn the_cap_lifts_after_auth_even_for_frames_behind_it() {
        let (mut s, auth, _) = challenged(SECRET);
        let big = DeliverMsg {
            seq: 1,
            user: "u".into(),
            device: None,
            message_id: "m".into(),
            expires_at_ms: 5,
            payload: vec![7; 2000],
            position: None,
        };
        let mut input = bytes(&auth);
        input.extend(processor_sealer().sealed(&Frame::Deliver(vec![big.clone()])));
        s.handle_input(&input);
        assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Authenticated)));
        assert_eq!(s.poll_event(), Ok(Some(ServerEvent::Deliver(vec![big]))));
    }

    #[test]
    fn processors_may_not_send_answers_or_handshake_frames_later() {
        let (mut s, auth, _) = challenged(SECRET);
        s.handle_input(&bytes(&auth));
        s.poll_event().unwrap();
        // Even correctly tagged, an Auth after the handshake is refused.
        s.handle_input(&processor_sealer().sealed(&auth));
        assert_eq!(
            s.poll_event(),
            Err(SessionError::UnexpectedFrame(FrameType::Auth))
        );
    }

    #[test]
    fn answers_are_split_into_frames_of_max_batch() {
        let (mut s, _) = authenticated();
        let mut opener = SessionKeys::for_test(SECRET, &[1; 16], &[2; 16])
            .for_processor()
            .1;
        let answers: Vec<Answer> = (0..MAX_BATCH as u64 + 3)
            .map(|seq| Answer {
                seq,
                outcome: Outcome::NotHere,
                delivered: 0,
            })
            .collect();
        s.send_answers(&answers).unwrap();
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME_LEN);
        reader.feed(s.transmit());
        let mut sizes = Vec::new();
        while let Some(frame) = reader.next_frame_bytes().unwrap() {
            let (ty, body) = opener.open(frame).expect("sealed in order");
            let Ok(Frame::Answers(a)) = crate::delivery::codec::decode_parts(ty, body) else {
                panic!("answers")
            };
            sizes.push(a.len());
        }
        assert_eq!(sizes, [MAX_BATCH, 3]);
    }
}
