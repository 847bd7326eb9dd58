//! The shard's behaviour on simulated time: no sockets, no sleeps.

use std::time::Duration;

use herald_protocol::delivery::Outcome;

use super::{client_frame, Sim};
use crate::conn::{Class, Wire};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn quiet(c: &mut crate::config::EdgeConfig) {
    c.conn.ping_interval = Duration::from_secs(600);
    c.conn.sse_keepalive = Duration::from_secs(600);
    c.conn.max_lifetime = Duration::from_secs(3600);
    c.conn.lifetime_jitter = Duration::ZERO;
}

#[test]
fn websocket_and_sse_clients_get_pushes_encoded_for_their_wire() {
    let mut s = Sim::new(quiet);
    let plain = s.ws("ann", "phone", false);
    let v1 = s.ws("ann", "tab", true);
    let sse = s.sse("ann", "laptop");
    let a = s.deliver("m1", "ann", None, b"hello\nworld");
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 3));
    let (head, ev) = s.ws_events(plain);
    assert!(head.starts_with("HTTP/1.1 101") && !head.contains("Sec-WebSocket-Protocol"));
    assert_eq!(ev, vec!["msg:hello\nworld"]);
    let (head, ev) = s.ws_events(v1);
    assert!(
        head.contains("Sec-WebSocket-Protocol: herald.v1\r\n"),
        "{head}"
    );
    assert!(
        ev[0].starts_with(r#"msg:{"type":"welcome","device":"tab""#),
        "{ev:?}"
    );
    let push: serde_json::Value = serde_json::from_str(&ev[1][4..]).unwrap();
    assert_eq!(
        (push["id"].as_str(), push["data"].as_str()),
        (Some("m1"), Some("hello\nworld"))
    );
    let events = s.sse_events(sse);
    assert_eq!(events[0].id.as_deref(), Some("m1"));
    assert_eq!(events[0].data, "hello\nworld");
    // A binary payload: verbatim on plain WebSocket, base64 on herald.v1, not for SSE.
    let a = s.deliver("m2", "ann", Some("laptop"), &[0xff]);
    assert_eq!(a.outcome, Outcome::Unencodable);
    let snap = s.st.snapshot(s.now());
    assert_eq!(
        (snap.websocket, snap.herald_v1, snap.sse, snap.connections),
        (2, 1, 1, 3)
    );
}

#[test]
fn pings_pongs_and_a_client_that_stops_answering() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.ping_interval = ms(1000);
        c.conn.pong_timeout = ms(300);
        c.conn.close_grace = ms(500);
    });
    let id = s.ws("bo", "d", false);
    s.advance(ms(1000));
    assert_eq!(s.ws_events(id).1, vec!["ping"]);
    s.send(id, &client_frame(0xA, b""));
    s.advance(ms(900));
    assert_eq!(
        s.ws_events(id).1.len(),
        1,
        "the next ping is a full interval after the pong"
    );
    s.advance(ms(100));
    assert_eq!(s.ws_events(id).1, vec!["ping", "ping"]);
    // No pong: close 4003 where the socket takes it, then the socket closes.
    s.advance(ms(300));
    assert_eq!(s.ws_events(id).1, vec!["ping", "ping", "close:4003"]);
    assert!(s.clients[&id].closed);
    assert_eq!(s.st.probe.deadline_closes.get("pong_timeout"), Some(&1));
    assert_eq!(s.st.probe.closes.get("pong_timeout"), Some(&1));
}

#[test]
fn a_lifetime_ends_with_an_ask_and_a_linger_before_the_record_goes() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.max_lifetime = ms(2000);
        c.conn.lifetime_jitter = ms(1000);
        c.conn.close_grace = ms(500);
    });
    let id = s.ws("cy", "d", true);
    s.advance(ms(990));
    assert_eq!(
        s.ws_events(id).1.len(),
        1,
        "only the welcome before max − jitter"
    );
    while s.ws_events(id).1.len() == 1 {
        s.advance(ms(10));
    }
    let asked_at = s.mono;
    assert!(
        asked_at >= ms(1000) && asked_at <= ms(2000),
        "asked at {asked_at:?}"
    );
    let ev = s.ws_events(id).1;
    assert!(
        ev[1].contains(r#""type":"reconnect","reason":"lifetime""#),
        "{ev:?}"
    );
    assert_eq!(ev[2], "close:4001");
    // While asked, the client is leaving: deliveries say draining (look it up again).
    assert_eq!(s.deliver("m1", "cy", None, b"x").outcome, Outcome::Draining);
    // The client closes first; its entry lingers for the grace, then the record goes.
    s.client_closes(id);
    assert_eq!(s.st.table.count(Class::Departed), 1);
    assert!(!s.registry().contains(&(false, "cy".into(), "d".into())));
    assert_eq!(s.deliver("m2", "cy", None, b"x").outcome, Outcome::Draining);
    s.advance(ms(510));
    assert_eq!(s.st.live(), 0);
    assert_eq!(s.registry().last(), Some(&(false, "cy".into(), "d".into())));
    assert_eq!(s.st.probe.closes.get("lifetime"), Some(&1));
    assert!(s.st.probe.deadline_closes.is_empty(), "it left in time");
}

#[test]
fn a_client_that_ignores_the_ask_is_closed_when_its_grace_ends() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.max_lifetime = ms(1000);
        c.conn.close_grace = ms(700);
    });
    let id = s.ws("di", "d", false);
    s.advance(ms(1000));
    assert_eq!(s.ws_events(id).1, vec!["close:4001"]);
    s.advance(ms(690));
    assert!(!s.clients[&id].closed, "not before the grace ends");
    s.advance(ms(10));
    assert!(s.clients[&id].closed);
    assert_eq!(
        s.st.probe.deadline_closes.get("close_grace_expired"),
        Some(&1)
    );
    // Asked to move: the entry still lingers a grace, then goes.
    s.advance(ms(700));
    assert_eq!(
        s.st.live(),
        0,
        "the linger of a force-closed client ends too"
    );
}

#[test]
fn a_drain_asks_at_a_bounded_rate_then_forces_the_rest() {
    let mut s = Sim::new(quiet);
    let ids: Vec<_> = (0..100).map(|i| s.sse(&format!("u{i}"), "d")).collect();
    let now = s.now();
    s.st.start_drain(ms(2000), 25.0, now);
    let mut asked_by = Vec::new();
    for _ in 0..20 {
        s.advance(ms(100));
        asked_by.push(s.st.probe.drain_asked);
    }
    // 25 per second cap: 100 connections cannot all be asked in a 2 s window.
    assert_eq!(asked_by[9], 25);
    assert!(
        asked_by.windows(2).all(|w| w[1] - w[0] <= 3),
        "{asked_by:?}"
    );
    assert!(s.st.snapshot(s.now()).draining);
    let forced = ids.iter().filter(|id| s.clients[id].closed).count();
    assert_eq!(
        forced, 50,
        "the rest is force-closed at the end of the window"
    );
    assert_eq!(s.st.probe.closes.get("drain_forced"), Some(&50));
    // New handshakes are refused while draining.
    let late = s.sse("late", "d");
    assert!(String::from_utf8_lossy(&s.clients[&late].received).starts_with("HTTP/1.1 503"));
}

#[test]
fn a_newer_connection_of_a_device_replaces_the_older() {
    let mut s = Sim::new(quiet);
    let old = s.ws("ed", "phone", true);
    let new = s.ws("ed", "phone", false);
    let ev = s.ws_events(old).1;
    assert_eq!(&ev[1..], [r#"msg:{"type":"replaced"}"#, "close:4000"]);
    let a = s.deliver("m1", "ed", Some("phone"), b"to the new one");
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 1));
    assert_eq!(s.ws_events(new).1, vec!["msg:to the new one"]);
    let snap = s.st.snapshot(s.now());
    assert_eq!((snap.websocket, snap.leaving), (1, 1));
}

#[test]
fn a_repeated_push_reaches_each_connection_once() {
    let mut s = Sim::new(quiet);
    let a = s.ws("fi", "a", false);
    let b = s.ws("fi", "b", false);
    assert_eq!(s.deliver("m1", "fi", Some("a"), b"x").delivered, 1);
    let again = s.deliver("m1", "fi", None, b"x");
    assert_eq!((again.outcome, again.delivered), (Outcome::Delivered, 2));
    assert_eq!((s.ws_events(a).1.len(), s.ws_events(b).1.len()), (1, 1));
    assert_eq!(s.broadcast("b1", b"all").delivered, 2);
    assert_eq!(
        s.broadcast("b1", b"all").delivered,
        2,
        "answered as the first time"
    );
    assert_eq!(s.ws_events(a).1.len(), 2);
    assert_eq!(s.st.probe.dedupe_hits, 1 + 2);
}

#[test]
fn a_ping_flood_from_a_client_that_never_reads_is_bounded_and_closed() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.outbound_queue_bytes = 4096;
    });
    let id = s.ws("gi", "d", false);
    s.reading(id, false);
    let ping = client_frame(0x9, &[7u8; 100]);
    let mut sent = 0;
    while !s.clients[&id].closed && sent < 10_000 {
        s.send(id, &ping);
        sent += 1;
        let queued = s.st.conn(id).map_or(0, |c| c.out.bytes());
        assert!(queued <= 4096 + 200, "{queued} bytes queued for a client");
        if s.st.conn(id).is_some_and(|c| c.close_reason.is_some()) {
            break;
        }
    }
    assert!(sent < 60, "closed after {sent} pings");
    assert_eq!(s.st.probe.slow_consumer_closes, 1);
    // The close frame waits behind nothing: once the client reads, it gets 4002.
    s.reading(id, true);
    let ev = s.ws_events(id).1;
    assert_eq!(ev.last().map(String::as_str), Some("close:4002"), "{ev:?}");
    assert!(s.clients[&id].closed);
}

#[test]
fn a_slow_consumer_gets_a_close_frame_instead_of_its_backlog() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.outbound_queue_bytes = 1024;
        c.conn.close_grace = ms(500);
    });
    let ws = s.ws("ho", "w", false);
    let sse = s.sse("ho", "s");
    s.reading(ws, false);
    s.reading(sse, false);
    for i in 0..3 {
        s.deliver(&format!("m{i}"), "ho", None, &[b'x'; 600]);
    }
    assert_eq!(s.st.probe.slow_consumer_closes, 2);
    assert!(
        s.clients[&sse].closed,
        "SSE has no close frame: closed at once"
    );
    // What was queued is dropped (a half-written frame would be finished first: see
    // `OutQueue::keep_partial_front`); the close frame is what the client reads next.
    s.reading(ws, true);
    assert_eq!(s.ws_events(ws).1, vec!["close:4002"]);
    assert!(s.clients[&ws].closed);
    // A socket that never takes the last frame is closed when the grace ends.
    let stuck = s.ws("ho", "w2", false);
    s.reading(stuck, false);
    for i in 0..3 {
        s.deliver(&format!("n{i}"), "ho", Some("w2"), &[b'x'; 600]);
    }
    s.advance(ms(500));
    assert!(s.clients[&stuck].closed);
}

#[test]
fn bytes_after_the_upgrade_request_are_client_frames() {
    let mut s = Sim::new(quiet);
    let mut head = b"GET /ws?access_token=io:d HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    head.extend(client_frame(0x9, b"hi"));
    let id = s.connect_raw(&head);
    assert_eq!(s.ws_events(id).1, vec!["pong"]);
}

#[test]
fn a_fragmented_head_is_decided_once_it_is_complete() {
    let mut s = Sim::new(quiet);
    let head = b"GET /sse?access_token=jo:d HTTP/1.1\r\nHost: e\r\n\r\n";
    let id = s.connect_raw(&head[..5]);
    for chunk in head[5..].chunks(3) {
        assert!(s.clients[&id].received.is_empty());
        s.send(id, chunk);
    }
    assert!(String::from_utf8_lossy(&s.clients[&id].received).starts_with("HTTP/1.1 200"));
    // Garbage is refused on its first read.
    let g = s.connect_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert!(String::from_utf8_lossy(&s.clients[&g].received).starts_with("HTTP/1.1 400"));
}

#[test]
fn devices_per_user_are_capped_but_a_reconnect_always_fits() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.max_devices_per_user = 2;
    });
    s.ws("ka", "a", false);
    s.ws("ka", "b", false);
    let third = s.ws("ka", "c", false);
    let (head, _) = s.ws_events(third);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let again = s.ws("ka", "a", false);
    assert!(s.ws_events(again).0.starts_with("HTTP/1.1 101"));
    assert_eq!(s.st.probe.handshake_rejects.get(&429), Some(&1));
}

#[test]
fn a_broadcast_in_steps_answers_for_every_connection_it_wrote() {
    let mut s = Sim::new(quiet);
    for i in 0..10 {
        s.sse(&format!("lu{i}"), "d");
    }
    let now = s.now();
    let b = herald_protocol::delivery::BroadcastMsg {
        seq: 3,
        message_id: "b".into(),
        expires_at_ms: herald_protocol::delivery::NEVER_EXPIRES,
        payload: b"all".to_vec(),
    };
    let super::super::Broadcast::Job(mut job) = s.st.broadcast_begin(&b, now) else {
        panic!("a job");
    };
    s.st.broadcast_step(&mut job, 4, now);
    // A connection that arrives mid-broadcast is not part of it.
    let late = s.sse("late", "d");
    while !job.is_done() {
        s.st.broadcast_step(&mut job, 4, now);
    }
    let a = s.st.broadcast_end(job);
    s.pump();
    assert_eq!((a.seq, a.outcome, a.delivered), (3, Outcome::Delivered, 10));
    assert!(s.sse_events(late).is_empty());
}

#[test]
fn a_retried_broadcast_arriving_while_the_first_is_being_written_is_not_written_twice() {
    use super::super::Broadcast;
    let mut s = Sim::new(quiet);
    let ids: Vec<_> = (0..10).map(|i| s.sse(&format!("re{i}"), "d")).collect();
    let now = s.now();
    let b = herald_protocol::delivery::BroadcastMsg {
        seq: 4,
        message_id: "once".into(),
        expires_at_ms: herald_protocol::delivery::NEVER_EXPIRES,
        payload: b"x".to_vec(),
    };
    let Broadcast::Job(mut job) = s.st.broadcast_begin(&b, now) else {
        panic!("a job");
    };
    s.st.broadcast_step(&mut job, 4, now);
    // The processor timed out and sent it again (on another connection) mid-broadcast.
    assert!(matches!(s.st.broadcast_begin(&b, now), Broadcast::Running));
    while !job.is_done() {
        s.st.broadcast_step(&mut job, 4, now);
    }
    assert_eq!(s.st.broadcast_end(job).delivered, 10);
    // Asked again once the first ended: the first's answer, nothing written.
    let Broadcast::Answered(a) = s.st.broadcast_begin(&b, now) else {
        panic!("an answer");
    };
    assert_eq!((a.seq, a.outcome, a.delivered), (4, Outcome::Delivered, 10));
    s.pump();
    for id in ids {
        assert_eq!(s.sse_events(id).len(), 1, "exactly once");
    }
    // A broadcast that reached nobody leaves no mark: a retry tries again.
    let mut empty = Sim::new(quiet);
    let now = empty.now();
    let Broadcast::Job(job) = empty.st.broadcast_begin(&b, now) else {
        panic!("a job");
    };
    assert_eq!(empty.st.broadcast_end(job).outcome, Outcome::NotHere);
    assert!(matches!(
        empty.st.broadcast_begin(&b, now),
        Broadcast::Job(_)
    ));
}

#[test]
fn a_reassert_walks_open_connections_in_steps_without_replacing_anything() {
    let mut s = Sim::new(quiet);
    for i in 0..5 {
        s.sse(&format!("mo{i}"), "d");
    }
    s.connect_raw(b"GET /sse HTTP/1.1\r\n"); // handshaking: not registered
    s.events.clear();
    let mut from = Some(0);
    while let Some(f) = from {
        from = s.st.reassert_step(f, 2);
    }
    s.pump();
    let regs: Vec<_> = s
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                crate::control::messages::ControlEvent::Register { reassert: true, .. }
            )
        })
        .collect();
    assert_eq!(regs.len(), 5);
}

#[test]
fn wires_are_counted_without_scanning() {
    let mut s = Sim::new(quiet);
    s.ws("no", "a", true);
    let sse = s.sse("no", "b");
    s.connect_raw(b"GET /ws HTTP/1.1\r\n");
    assert_eq!(s.st.table.count(Class::Open(Wire::WsV1)), 1);
    assert_eq!(s.st.table.count(Class::Handshaking), 1);
    s.client_closes(sse);
    let snap = s.st.snapshot(s.now());
    assert_eq!(
        (snap.sse, snap.herald_v1, snap.handshaking, snap.connections),
        (0, 1, 1, 2)
    );
}

#[test]
fn a_connection_over_its_push_rate_is_answered_rate_limited() {
    let mut s = Sim::new(|c| {
        quiet(c);
        c.conn.push_rate = crate::conn::PushRate::new(3, Duration::from_secs(2), 0);
    });
    let phone = s.ws("cy", "phone", false);
    let tab = s.ws("cy", "tab", false);
    // Three pushes pass at once, the fourth is refused on both connections.
    for i in 0..3 {
        let a = s.deliver(&format!("m{i}"), "cy", None, b"x");
        assert_eq!(
            (a.outcome, a.delivered),
            (Outcome::Delivered, 2),
            "push {i}"
        );
    }
    let a = s.deliver("m3", "cy", None, b"x");
    assert_eq!((a.outcome, a.delivered), (Outcome::RateLimited, 0));
    // Addressed to one device only: the tab took those three too.
    let a = s.deliver("m4", "cy", Some("tab"), b"x");
    assert_eq!(a.outcome, Outcome::RateLimited);
    assert_eq!(s.st.probe.rate_limited, 3);
    // Broadcasts are not limited.
    assert_eq!(s.broadcast("b1", b"all").delivered, 2);
    // 2/3 s later one push per connection is back; the refused one can be sent again.
    s.advance(Duration::from_millis(700));
    let a = s.deliver("m3", "cy", None, b"x");
    assert_eq!((a.outcome, a.delivered), (Outcome::Delivered, 2));
    assert_eq!(s.ws_events(phone).1.len(), 5);
    assert_eq!(s.ws_events(tab).1.len(), 5);
    assert!(s.ws_events(phone).1.iter().all(|e| e.starts_with("msg:")));
}

mod recovery {
    use herald_protocol::history::{EntryId, HistoryEntry, NotRecovered, Position};

    use super::{quiet, Sim};
    use crate::shard::recovery::RecoveryRead;

    const EPOCH: u64 = 0x00c0_ffee_1234_5678;

    fn pos(ms: u64) -> Position {
        Position {
            epoch: EPOCH,
            id: EntryId { ms, seq: 0 },
        }
    }

    fn entry(ms: u64, payload: &str) -> HistoryEntry {
        HistoryEntry {
            id: EntryId { ms, seq: 0 },
            message_id: format!("m{ms}"),
            device: None,
            expires_at_ms: u64::MAX,
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn sse_from(s: &mut Sim, user: &str, device: &str, from: &str) -> crate::conn::ConnId {
        let head = format!(
            "GET /sse?access_token={user}:{device} HTTP/1.1\r\nHost: e\r\nLast-Event-ID: {from}\r\n\r\n"
        );
        s.connect_raw(head.as_bytes())
    }

    fn v1_from(s: &mut Sim, user: &str, device: &str, query_pos: &str) -> crate::conn::ConnId {
        let head = format!(
            "GET /ws?access_token={user}:{device}&last_event_id={query_pos} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n"
        );
        s.connect_raw(head.as_bytes())
    }

    /// Live pushes that race the history read are held, then merged by position: the
    /// answer first, then the missed pushes in order, then the held ones not already given.
    #[test]
    fn live_pushes_wait_for_the_history_and_the_seam_has_no_duplicate() {
        let mut s = Sim::new(quiet);
        let c = sse_from(&mut s, "ann", "tab", &pos(10).to_string());
        let asked = s.recoveries();
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].0, asked[0].3), (c, pos(10)));
        assert!(
            s.registry().contains(&(true, "ann".into(), "tab".into())),
            "registered as usual"
        );
        // m12 was appended before the read (so it is in it) and also arrives live; m13 is
        // only live. Both wait.
        s.deliver_at("m12", "ann", None, b"twelve", Some(pos(12)));
        s.deliver_at("m13", "ann", None, b"thirteen", Some(pos(13)));
        assert!(
            s.sse_events(c)
                .iter()
                .all(|e| e.data == "herald" || e.data.is_empty()),
            "nothing before the answer: {:?}",
            s.sse_events(c)
        );
        s.finish_recovery(
            c,
            RecoveryRead::Recovered {
                epoch: EPOCH,
                entries: vec![entry(11, "eleven"), entry(12, "twelve")],
                last: EntryId { ms: 12, seq: 0 },
            },
        );
        let got: Vec<(Option<String>, Option<String>, String)> = s
            .sse_events(c)
            .into_iter()
            .map(|e| (e.event, e.id, e.data))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Some("recovery".into()),
                    None,
                    r#"{"recovered":true,"count":2}"#.into()
                ),
                (None, Some(pos(11).to_string()), "eleven".into()),
                (None, Some(pos(12).to_string()), "twelve".into()),
                (None, Some(pos(13).to_string()), "thirteen".into()),
            ]
        );
        // Afterwards pushes go straight through.
        s.deliver_at("m14", "ann", None, b"fourteen", Some(pos(14)));
        assert_eq!(
            s.sse_events(c).last().map(|e| e.data.clone()),
            Some("fourteen".into())
        );
    }

    #[test]
    fn a_gap_that_cannot_be_filled_is_said_and_live_pushes_follow() {
        let mut s = Sim::new(quiet);
        let encoded = pos(10).to_string().replace(':', "%3A");
        let c = v1_from(&mut s, "bob", "phone", &encoded);
        assert_eq!(
            s.recoveries()[0].3,
            pos(10),
            "the query parameter is percent-decoded"
        );
        s.deliver_at("m20", "bob", None, b"live", Some(pos(20)));
        s.finish_recovery(c, RecoveryRead::NotRecovered(NotRecovered::TooOld));
        let (_, ev) = s.ws_events(c);
        let msgs: Vec<serde_json::Value> = ev
            .iter()
            .filter_map(|e| e.strip_prefix("msg:"))
            .map(|m| serde_json::from_str(m).unwrap())
            .collect();
        assert_eq!(msgs[0]["type"], "welcome");
        assert_eq!(
            (
                msgs[1]["type"].as_str(),
                msgs[1]["recovered"].as_bool(),
                msgs[1]["reason"].as_str()
            ),
            (Some("recovery"), Some(false), Some("too_old"))
        );
        assert_eq!(
            (
                msgs[2]["id"].as_str(),
                msgs[2]["pos"].as_str(),
                msgs[2]["data"].as_str()
            ),
            (Some("m20"), Some(&*pos(20).to_string()), Some("live"))
        );
    }

    #[test]
    fn malformed_positions_are_answered_at_once_and_plain_websocket_cannot_resume() {
        let mut s = Sim::new(quiet);
        let c = sse_from(&mut s, "cy", "tab", "m-17");
        assert!(s.recoveries().is_empty(), "nothing to read");
        let ev = s.sse_events(c);
        assert_eq!(ev[0].event.as_deref(), Some("recovery"));
        assert!(ev[0].data.contains("malformed_position"), "{ev:?}");
        let head = format!(
            "GET /ws?access_token=cy:p&last_event_id={} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            pos(1)
        );
        let plain = s.connect_raw(head.as_bytes());
        let (head, _) = s.ws_events(plain);
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    }

    #[test]
    fn a_gap_larger_than_the_queue_bound_is_not_recovered_and_held_pushes_count() {
        let mut s = Sim::new(|c| {
            quiet(c);
            c.conn.outbound_queue_bytes = 4096;
        });
        let c = sse_from(&mut s, "di", "tab", &pos(1).to_string());
        let big = "x".repeat(1500);
        s.finish_recovery(
            c,
            RecoveryRead::Recovered {
                epoch: EPOCH,
                entries: (2..6).map(|i| entry(i, &big)).collect(),
                last: EntryId { ms: 5, seq: 0 },
            },
        );
        let ev = s.sse_events(c);
        assert!(ev[0].data.contains("too_large"), "{ev:?}");
        // Held pushes beyond the bound close the connection as a slow consumer.
        let c2 = sse_from(&mut s, "eve", "tab", &pos(1).to_string());
        s.reading(c2, false);
        for i in 0..4 {
            s.deliver_at(
                &format!("h{i}"),
                "eve",
                None,
                big.as_bytes(),
                Some(pos(10 + i)),
            );
        }
        assert!(
            s.st.conn(c2).is_none_or(|conn| !conn.is_open()),
            "closed as a slow consumer"
        );
    }
}
