//! Frame integrity on a real edge's delivery port: after a real handshake (the protocol's
//! `ClientSession` over TCP), a `Deliver` frame altered on the way — in its type byte, its
//! payload or its tag — or replayed closes the connection and delivers nothing to the
//! WebSocket client it targets, while the same push sent intact on a new connection arrives.
//! Absence is shown without timing: the first push the client receives is the intact one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::*;
use herald_protocol::delivery::session::{ClientEvent, ClientSession};
use herald_protocol::delivery::{self, Answer, DeliverMsg, Outcome, TAG_LEN};
use tungstenite::Message;

/// Bound on every wait for the edge (handshake, answers, closing): generous for a loaded
/// machine; the tests wait for conditions, never for a fixed time.
const WAIT: Duration = Duration::from_secs(60);

/// The processor's end of one delivery connection, driven by hand so the test can touch the
/// sealed bytes before they leave.
struct RawLink {
    stream: TcpStream,
    session: ClientSession,
}

impl RawLink {
    /// Connects and completes the real handshake (Challenge, Auth, AuthOk).
    fn open(addr: SocketAddr) -> RawLink {
        let stream = TcpStream::connect(addr).expect("connect to the delivery port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).unwrap();
        let mut link = RawLink {
            stream,
            session: ClientSession::new(
                DELIVERY_SECRET.as_bytes(),
                nonce,
                delivery::DEFAULT_MAX_FRAME_LEN,
            ),
        };
        assert_eq!(link.next_event(), Some(ClientEvent::Authenticated));
        link
    }

    /// Writes what the session queued, then reads until it has an event; `None` when the
    /// edge closed the connection.
    fn next_event(&mut self) -> Option<ClientEvent> {
        let mut buf = [0u8; 4096];
        loop {
            self.stream.write_all(self.session.transmit()).unwrap();
            self.session.clear_transmit();
            if let Some(ev) = self.session.poll_event().expect("the edge's frames verify") {
                return Some(ev);
            }
            if !self.session.transmit().is_empty() {
                continue;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.session.handle_input(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no answer from the edge within {WAIT:?}: {e}"),
            }
        }
    }

    /// The sealed `Deliver` frame for `msgs`, taken out of the session instead of sent.
    fn sealed_deliver(&mut self, msgs: &[DeliverMsg]) -> Vec<u8> {
        self.session.send_deliver(msgs).unwrap();
        let frame = self.session.transmit().to_vec();
        self.session.clear_transmit();
        frame
    }

    /// Sends `msgs` intact and returns their answers.
    fn deliver(&mut self, msgs: &[DeliverMsg]) -> Vec<Answer> {
        self.session.send_deliver(msgs).unwrap();
        let mut answers = Vec::new();
        while answers.len() < msgs.len() {
            match self.next_event() {
                Some(ClientEvent::Answers(a)) => answers.extend(a),
                other => panic!("expected answers, got {other:?}"),
            }
        }
        answers
    }

    /// Whether the edge closes the connection (EOF or reset) within [`WAIT`]; bytes it sends
    /// first (answers to earlier frames) are skipped.
    fn closed_by_edge(mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false, // timed out: still open
            }
        }
    }
}

/// The edge's `delivery_integrity_failures` summed over its shards, from `/stats`.
fn integrity_failures(edge: &herald_edge::EdgeHandle) -> u64 {
    stats(edge)["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            s["probe"]["delivery_integrity_failures"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

/// The index of the shard that holds `user`'s connection, found by delivering `m` to every
/// shard on fresh connections; that shard's answer is `Delivered`, the others' `NotHere`.
fn deliver_to_owner(edge: &herald_edge::EdgeHandle, m: &DeliverMsg) -> usize {
    let mut owner = None;
    for shard in 0..edge.shards {
        let [a] = RawLink::open(edge.delivery_addr(shard))
            .deliver(std::slice::from_ref(m))
            .try_into()
            .expect("one answer");
        match a.outcome {
            Outcome::Delivered => {
                assert_eq!(owner, None, "two shards delivered one push");
                owner = Some(shard);
            }
            Outcome::NotHere => {}
            other => panic!("shard {shard} answered {other}"),
        }
    }
    owner.expect("one shard holds the client")
}

#[test]
fn a_tampered_deliver_frame_closes_the_connection_and_reaches_no_client() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "ivy", None);
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let before = integrity_failures(&edge);

    let mut tampered = 0u64;
    for shard in 0..edge.shards {
        for (part, offset_from_end) in [
            ("type byte", None),
            ("payload", Some(TAG_LEN + 1)),
            ("tag", Some(1)),
        ] {
            let mut link = RawLink::open(edge.delivery_addr(shard));
            let mut frame =
                link.sealed_deliver(&[msg(1, "ivy", None, b"tampered payload, never delivered")]);
            let at = offset_from_end.map_or(4, |k| frame.len() - k);
            frame[at] ^= 0x01;
            link.stream.write_all(&frame).unwrap();
            assert!(
                link.closed_by_edge(),
                "shard {shard}: a frame with its {part} altered left the connection open"
            );
            tampered += 1;
        }
    }
    let failures = integrity_failures(&edge) - before;
    assert_eq!(
        failures, tampered,
        "one integrity failure per tampered frame"
    );

    // The intact push on a new connection is delivered, and it is the first thing the client
    // receives: nothing of the tampered frames reached it.
    deliver_to_owner(&edge, &msg(2, "ivy", None, b"intact"));
    assert_eq!(ws.read().unwrap(), Message::Text("intact".into()));
}

#[test]
fn a_replayed_deliver_frame_closes_the_connection_and_is_not_delivered_twice() {
    let edge = start(config());
    let mut ws = ws_connect(&edge, "jack", None);
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    let owner = deliver_to_owner(&edge, &msg(1, "jack", None, b"first"));
    assert_eq!(ws.read().unwrap(), Message::Text("first".into()));
    let before = integrity_failures(&edge);

    // A recorded frame sent twice on its connection: the copy is checked at the next
    // position and refused. (A new push id, so the edge's de-duplication plays no part.)
    let mut link = RawLink::open(edge.delivery_addr(owner));
    let frame = link.sealed_deliver(&[msg(2, "jack", None, b"once")]);
    link.stream
        .write_all(&[frame.clone(), frame].concat())
        .unwrap();
    assert!(
        link.closed_by_edge(),
        "a replayed frame left the connection open"
    );
    assert_eq!(ws.read().unwrap(), Message::Text("once".into()));
    assert_eq!(integrity_failures(&edge) - before, 1);

    // The next push the client receives is the next one sent, not a second "once".
    deliver_to_owner(&edge, &msg(3, "jack", None, b"after"));
    assert_eq!(ws.read().unwrap(), Message::Text("after".into()));
}
