//! How long a shard's thread works without yielding during a large broadcast and a registry
//! re-assert — the longest a shard's timer tick (heartbeats, deadlines) can be held up by
//! them. Runs the shard's state machine on simulated connections (no sockets: one process
//! cannot hold 100,000 of them here), with the same step size the I/O layer uses between
//! yields ([`herald_edge::shard::STEP`]), and prints per-step wall times.
//!
//! ```sh
//! cargo run --release -p herald-edge --example shard_stall -- 100000
//! ```
//!
//! The real shard adds one non-blocking `send(2)` per written connection to each step (the
//! write-through of the settle pass); `herald_edge_tick_stall_max_seconds` shows the whole.

use std::time::{Duration, Instant};

use herald_edge::shard::sim::Sim;
use herald_edge::shard::STEP;
use herald_protocol::delivery::{BroadcastMsg, NEVER_EXPIRES};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().expect("connections: a number"));
    let mut sim = Sim::new(|c| {
        c.conn.ping_interval = Duration::from_secs(3600);
        c.conn.max_lifetime = Duration::from_secs(7200);
        c.conn.lifetime_jitter = Duration::ZERO;
        c.ops.handshake_rate = 0; // all of them at one simulated instant
    });
    let t = Instant::now();
    for i in 0..n {
        sim.ws(&format!("user{i}"), "d", false);
    }
    println!(
        "{n} connections open on one simulated shard in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let b = BroadcastMsg {
        seq: 1,
        message_id: "b1".into(),
        expires_at_ms: NEVER_EXPIRES,
        payload: vec![b'x'; 64],
    };
    let now = sim.now();
    let mut job = match sim.st.broadcast_begin(&b, now) {
        herald_edge::shard::Broadcast::Job(job) => job,
        other => panic!("expected a broadcast job, got {other:?}"),
    };
    let (mut steps, mut longest, total) = (0, Duration::ZERO, Instant::now());
    while !job.is_done() {
        let t = Instant::now();
        let now = sim.now();
        sim.st.broadcast_step(&mut job, STEP, now);
        sim.pump(); // the settle pass: queued frames to the (simulated) sockets
        longest = longest.max(t.elapsed());
        steps += 1;
    }
    let answer = sim.st.broadcast_end(job);
    println!(
        "broadcast to {} connections: {steps} steps of {STEP}, longest step {} µs, all steps {:.1} ms",
        answer.delivered,
        longest.as_micros(),
        total.elapsed().as_secs_f64() * 1e3
    );

    let (mut steps, mut longest, total) = (0, Duration::ZERO, Instant::now());
    let mut from = Some(0);
    while let Some(f) = from {
        let t = Instant::now();
        from = sim.st.reassert_step(f, STEP);
        let sent = sim.st.take_outbox().len();
        std::hint::black_box(sent);
        longest = longest.max(t.elapsed());
        steps += 1;
    }
    println!(
        "re-assert of {n} registrations: {steps} steps of {STEP}, longest step {} µs, all steps {:.1} ms",
        longest.as_micros(),
        total.elapsed().as_secs_f64() * 1e3
    );

    // For comparison: the same broadcast in one pass, as a single event would do it.
    let b2 = BroadcastMsg {
        message_id: "b2".into(),
        ..b
    };
    let t = Instant::now();
    let now = sim.now();
    let a = sim.st.broadcast(&b2, now);
    sim.pump();
    println!(
        "the same broadcast in one pass (no steps): {} connections, {:.1} ms without a yield",
        a.delivered,
        t.elapsed().as_secs_f64() * 1e3
    );
}
