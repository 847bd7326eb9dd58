//! What a client process counts, and the report it sends to the harness (one JSON line).
//!
//! Latency goes into an hdrhistogram (µs, 3 significant digits) that the harness merges
//! across client processes bucket by bucket, so percentiles are over every message, not
//! averages of per-process percentiles. Each connection keeps a bitmap of the sequence
//! numbers it received, which separates duplicates from distinct deliveries; losses are
//! what the harness sent minus the distinct deliveries.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Width of a timeline bucket, ms.
pub const BUCKET_MS: u64 = 10;

/// Highest sequence number tracked per connection (larger ones count as foreign).
pub const MAX_SEQ: u64 = 1 << 22;

/// Highest latency recorded, µs (one hour); larger values are clamped.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new latency histogram (µs).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Sequence numbers one connection received.
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    /// One bit per sequence number.
    bits: Vec<u64>,
}

impl SeqSet {
    /// Marks `seq`; true if it was new.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let new = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        new
    }
}

/// Connection events in one [`BUCKET_MS`] slice of time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBucket {
    /// Start of the slice, unix ms.
    pub t_ms: u64,
    /// Handshakes completed (reconnects; initial connects are not on the timeline).
    pub connects: u32,
    /// Connections back for the first time since they were lost (after the last reset).
    pub back: u32,
    /// Connections lost.
    pub disconnects: u32,
    /// Handshakes refused with 503.
    pub rejects: u32,
    /// Connect or handshake failures other than 503.
    pub errors: u32,
}

/// The report of one client process, and the merge of several.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsReport {
    /// Connections open now.
    pub open: u64,
    /// Benchmark payloads received (including duplicates).
    pub received: u64,
    /// Distinct (connection, sequence number) pairs received.
    pub unique: u64,
    /// Payloads received again on the same connection.
    pub duplicates: u64,
    /// Messages that were not benchmark payloads.
    pub foreign: u64,
    /// Handshakes refused with 503 (admission control).
    pub rejects: u64,
    /// Failures by kind ("connect: Connection refused", "status 401", …).
    pub errors: BTreeMap<String, u64>,
    /// First and last benchmark payload received, unix µs (0 = none).
    pub first_recv_us: u64,
    /// See `first_recv_us`.
    pub last_recv_us: u64,
    /// Latency histogram as (value µs, count) pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// Connection events over time (reconnecting clients only).
    pub timeline: Vec<TimeBucket>,
}

impl StatsReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StatsReport) {
        self.open += other.open;
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.foreign += other.foreign;
        self.rejects += other.rejects;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        if other.first_recv_us != 0
            && (self.first_recv_us == 0 || other.first_recv_us < self.first_recv_us)
        {
            self.first_recv_us = other.first_recv_us;
        }
        self.last_recv_us = self.last_recv_us.max(other.last_recv_us);
        self.latency_us.extend_from_slice(&other.latency_us);
        let mut by_t: BTreeMap<u64, TimeBucket> =
            self.timeline.drain(..).map(|b| (b.t_ms, b)).collect();
        for b in &other.timeline {
            let e = by_t.entry(b.t_ms).or_insert_with(|| TimeBucket {
                t_ms: b.t_ms,
                ..TimeBucket::default()
            });
            e.connects += b.connects;
            e.back += b.back;
            e.disconnects += b.disconnects;
            e.rejects += b.rejects;
            e.errors += b.errors;
        }
        self.timeline = by_t.into_values().collect();
    }

    /// The latency pairs as one histogram.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(v, n) in &self.latency_us {
            h.saturating_record_n(v, n);
        }
        h
    }
}

/// Live counters of a client process.
#[derive(Debug)]
pub struct ClientStats {
    /// Per connection index: sequence numbers seen.
    seen: Vec<SeqSet>,
    /// Per connection index since the last reset: 0 untouched, 1 lost, 2 back.
    moved: Vec<u8>,
    /// Latency of benchmark payloads, µs.
    hist: Histogram<u64>,
    /// Counters and timeline, reported as is.
    report: StatsReport,
    /// Timeline by bucket start.
    timeline: BTreeMap<u64, TimeBucket>,
}

/// A connection event for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Handshake completed after a reconnect.
    Connect,
    /// A lost connection's first return since the last reset.
    Back,
    /// Connection lost.
    Disconnect,
    /// Handshake refused with 503.
    Reject,
    /// Connect/handshake failure.
    Error,
}

impl ClientStats {
    /// Counters for `conns` connections.
    pub fn new(conns: usize) -> ClientStats {
        ClientStats {
            seen: vec![SeqSet::default(); conns],
            moved: vec![0; conns],
            hist: new_histogram(),
            report: StatsReport::default(),
            timeline: BTreeMap::new(),
        }
    }

    /// A message arrived on connection `idx` at `now_us`.
    pub fn message(&mut self, idx: usize, payload: &[u8], now_us: u64) {
        let Some((seq, sent_us)) = crate::wire::payload::parse(payload) else {
            self.report.foreign += 1;
            return;
        };
        if seq >= MAX_SEQ || idx >= self.seen.len() {
            self.report.foreign += 1;
            return;
        }
        self.report.received += 1;
        if self.seen[idx].insert(seq) {
            self.report.unique += 1;
        } else {
            self.report.duplicates += 1;
        }
        self.hist
            .saturating_record(now_us.saturating_sub(sent_us).max(1));
        if self.report.first_recv_us == 0 {
            self.report.first_recv_us = now_us;
        }
        self.report.last_recv_us = self.report.last_recv_us.max(now_us);
    }

    /// Connection `idx` completed a handshake (`initial`: its very first one).
    pub fn connected(&mut self, idx: usize, initial: bool, now_ms: u64) {
        self.report.open += 1;
        if initial {
            return;
        }
        self.event(Event::Connect, now_ms);
        if let Some(m) = self.moved.get_mut(idx) {
            if *m == 1 {
                *m = 2;
                self.event(Event::Back, now_ms);
            }
        }
    }

    /// Connection `idx` was lost.
    pub fn disconnected(&mut self, idx: usize, now_ms: u64) {
        self.report.open = self.report.open.saturating_sub(1);
        self.event(Event::Disconnect, now_ms);
        if let Some(m) = self.moved.get_mut(idx) {
            if *m == 0 {
                *m = 1;
            }
        }
    }

    /// A failure of kind `what`.
    pub fn error(&mut self, what: String) {
        *self.report.errors.entry(what).or_default() += 1;
    }

    /// A 503 refusal.
    pub fn reject(&mut self) {
        self.report.rejects += 1;
    }

    /// Puts `event` on the timeline at `now_ms`.
    pub fn event(&mut self, event: Event, now_ms: u64) {
        let t = now_ms - now_ms % BUCKET_MS;
        let b = self.timeline.entry(t).or_insert_with(|| TimeBucket {
            t_ms: t,
            ..TimeBucket::default()
        });
        match event {
            Event::Connect => b.connects += 1,
            Event::Back => b.back += 1,
            Event::Disconnect => b.disconnects += 1,
            Event::Reject => b.rejects += 1,
            Event::Error => b.errors += 1,
        }
    }

    /// Forgets everything but the open count (start of a measured phase).
    pub fn reset(&mut self) {
        let open = self.report.open;
        for s in &mut self.seen {
            *s = SeqSet::default();
        }
        self.moved.iter_mut().for_each(|m| *m = 0);
        self.hist.reset();
        self.report = StatsReport {
            open,
            ..StatsReport::default()
        };
        self.timeline.clear();
    }

    /// The report as of now.
    pub fn report(&self) -> StatsReport {
        let mut r = self.report.clone();
        r.latency_us = self
            .hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        r.timeline = self.timeline.values().cloned().collect();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload;

    #[test]
    fn duplicates_foreign_and_latency() {
        let mut s = ClientStats::new(2);
        s.message(0, &payload::make(0, 1_000, 10), 3_000);
        s.message(0, &payload::make(0, 1_000, 10), 3_500);
        s.message(1, &payload::make(0, 1_000, 10), 4_000);
        s.message(1, b"not ours", 4_000);
        let r = s.report();
        assert_eq!(
            (r.received, r.unique, r.duplicates, r.foreign),
            (3, 2, 1, 1)
        );
        let h = r.histogram();
        assert_eq!(h.len(), 3);
        assert!((1_990..=2_010).contains(&h.min()));
        assert!((2_990..=3_010).contains(&h.max()));
        s.reset();
        assert_eq!(s.report().received, 0);
        s.message(0, &payload::make(0, 1_000, 10), 3_000);
        assert_eq!(s.report().unique, 1, "reset forgets seen sequence numbers");
    }

    #[test]
    fn merge_adds_counts_and_timelines() {
        let mut a = ClientStats::new(1);
        a.connected(0, true, 900);
        a.disconnected(0, 1_003);
        a.connected(0, false, 1_005);
        a.event(Event::Reject, 1_012);
        let mut b = ClientStats::new(1);
        b.event(Event::Connect, 1_001);
        b.error("connect: refused".into());
        b.message(0, &payload::make(5, 10, 0), 20);
        let mut m = StatsReport::default();
        m.merge(&a.report());
        m.merge(&b.report());
        assert_eq!(m.open, 1);
        assert_eq!(m.timeline.len(), 2);
        assert_eq!(m.timeline[0].t_ms, 1_000);
        assert_eq!(m.timeline[0].connects, 2);
        assert_eq!(m.timeline[0].back, 1);
        assert_eq!(m.timeline[0].disconnects, 1);
        assert_eq!(m.timeline[1].rejects, 1);
        assert_eq!(m.errors["connect: refused"], 1);
        assert_eq!(m.histogram().len(), 1);
        let json = serde_json::to_string(&m).unwrap();
        let back: StatsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timeline, m.timeline);
    }

    #[test]
    fn a_connection_comes_back_once_per_reset() {
        let mut s = ClientStats::new(2);
        s.connected(0, true, 0);
        s.connected(1, true, 0);
        s.disconnected(0, 100);
        s.connected(0, false, 200);
        s.disconnected(0, 300);
        s.connected(0, false, 400);
        let r = s.report();
        assert_eq!(r.open, 2);
        assert_eq!(r.timeline.iter().map(|b| b.back).sum::<u32>(), 1);
        assert_eq!(r.timeline.iter().map(|b| b.connects).sum::<u32>(), 2);
        s.reset();
        s.disconnected(1, 500);
        s.connected(1, false, 600);
        assert_eq!(s.report().timeline.iter().map(|b| b.back).sum::<u32>(), 1);
    }

    #[test]
    fn seq_set() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(200));
        assert!(!s.insert(200));
        assert!(s.insert(63));
    }
}
