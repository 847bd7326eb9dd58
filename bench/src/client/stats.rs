//! What a client process counts, and the report it sends to the harness (one JSON line).
//!
//! Latency goes into an hdrhistogram (µs, 3 significant digits) that the harness merges
//! across client processes bucket by bucket, so percentiles are over every message, not
//! averages of per-process percentiles. Each connection keeps a bitmap of the sequence
//! numbers it received, which separates duplicates from distinct deliveries; losses are
//! what the harness sent minus the distinct deliveries. When something was lost the harness
//! asks for a [`MissingReport`]: per connection, which sequence numbers it lacks and what
//! happened to it (closed? how? reconnected?), so a loss explains itself.

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
    /// Whether `seq` was received.
    pub fn contains(&self, seq: u64) -> bool {
        self.bits
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// Sequence numbers received.
    pub fn len(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

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
    /// Benchmark payloads the last `RESET` forgot (counted before the reset was processed).
    pub received_before_reset: u64,
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
        self.received_before_reset += other.received_before_reset;
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

/// Connections listed one by one in a [`MissingReport`] (the totals cover all of them).
pub const MISSING_LISTED: usize = 50;

/// One connection that lacks deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingConn {
    /// Global connection index (the user name is the prefix + this).
    pub index: usize,
    /// Sequence numbers it lacks (of `0..messages`).
    pub missing: Vec<u64>,
    /// Distinct sequence numbers it received.
    pub received: u64,
    /// Whether it is open now.
    pub open: bool,
    /// Handshakes since the reset (reconnects).
    pub connects: u32,
    /// How its last connection ended since the reset ("eof", "broken", "asked", "replaced").
    pub end: Option<String>,
    /// When that was, unix ms.
    pub ended_ms: u64,
}

/// Which deliveries of `0..messages` are missing where (one process, or merged).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MissingReport {
    /// Missing (connection, sequence number) pairs.
    pub lost: u64,
    /// Connections that lack at least one.
    pub conns: u64,
    /// Of those, connections not open now.
    pub closed: u64,
    /// Of those, connections that ended (and maybe reconnected) since the reset, by how.
    pub ends: BTreeMap<String, u64>,
    /// Missing deliveries per sequence number: `(seq, connections lacking it)`.
    pub by_seq: Vec<(u64, u64)>,
    /// Benchmark payloads the last `RESET` forgot (see [`StatsReport`]).
    pub received_before_reset: u64,
    /// The first [`MISSING_LISTED`] such connections, one by one.
    pub listed: Vec<MissingConn>,
}

impl MissingReport {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &MissingReport) {
        self.lost += other.lost;
        self.conns += other.conns;
        self.closed += other.closed;
        self.received_before_reset += other.received_before_reset;
        for (k, v) in &other.ends {
            *self.ends.entry(k.clone()).or_default() += v;
        }
        let mut by_seq: BTreeMap<u64, u64> = self.by_seq.drain(..).collect();
        for &(s, n) in &other.by_seq {
            *by_seq.entry(s).or_default() += n;
        }
        self.by_seq = by_seq.into_iter().collect();
        let room = MISSING_LISTED.saturating_sub(self.listed.len());
        self.listed.extend(other.listed.iter().take(room).cloned());
    }

    /// One line: how many were lost where, and the likely reason.
    pub fn summary(&self) -> String {
        let mut s = format!("lost {} on {} connections", self.lost, self.conns);
        if self.closed > 0 || !self.ends.is_empty() {
            let ends: Vec<String> = self.ends.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s += &format!(
                "; {} of them not open at the end, connections ended since the reset: {}",
                self.closed,
                if ends.is_empty() {
                    "none".into()
                } else {
                    ends.join(", ")
                }
            );
        } else {
            s += " (all open throughout)";
        }
        let seqs: Vec<String> = self
            .by_seq
            .iter()
            .take(10)
            .map(|(q, n)| format!("#{q}×{n}"))
            .collect();
        s += &format!(
            "; missing broadcasts: {}{}",
            seqs.join(" "),
            if self.by_seq.len() > 10 { " …" } else { "" }
        );
        if self.received_before_reset > 0 {
            s += &format!(
                "; {} payloads had arrived before the clients processed RESET and were forgotten",
                self.received_before_reset
            );
        }
        s
    }
}

/// What happened to one connection index since the last reset.
#[derive(Debug, Clone, Copy, Default)]
struct ConnLog {
    open: bool,
    connects: u32,
    end: Option<&'static str>,
    ended_ms: u64,
}

/// Live counters of a client process.
#[derive(Debug)]
pub struct ClientStats {
    /// Per connection index: sequence numbers seen.
    seen: Vec<SeqSet>,
    /// Per connection index: open or not, ends since the reset.
    log: Vec<ConnLog>,
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
            log: vec![ConnLog::default(); conns],
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
        if let Some(l) = self.log.get_mut(idx) {
            l.open = true;
            l.connects += 1;
        }
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

    /// Connection `idx` was lost (`how`: why it ended, for the loss diagnosis).
    pub fn disconnected(&mut self, idx: usize, how: &'static str, now_ms: u64) {
        self.report.open = self.report.open.saturating_sub(1);
        if let Some(l) = self.log.get_mut(idx) {
            *l = ConnLog {
                open: false,
                connects: l.connects,
                end: Some(how),
                ended_ms: now_ms,
            };
        }
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

    /// Forgets everything but the open count (start of a measured phase); returns how many
    /// benchmark payloads it forgot.
    pub fn reset(&mut self) -> u64 {
        let open = self.report.open;
        let received_before_reset = self.report.received;
        for s in &mut self.seen {
            *s = SeqSet::default();
        }
        for l in &mut self.log {
            *l = ConnLog {
                open: l.open,
                ..ConnLog::default()
            };
        }
        self.moved.iter_mut().for_each(|m| *m = 0);
        self.hist.reset();
        self.report = StatsReport {
            open,
            received_before_reset,
            ..StatsReport::default()
        };
        self.timeline.clear();
        received_before_reset
    }

    /// Which of sequence numbers `0..messages` each connection lacks; connection `i` is
    /// reported as `first_index + i`.
    pub fn missing(&self, messages: u64, first_index: usize) -> MissingReport {
        let mut r = MissingReport {
            received_before_reset: self.report.received_before_reset,
            ..MissingReport::default()
        };
        let mut by_seq = vec![0u64; messages.min(MAX_SEQ) as usize];
        for (i, (seen, log)) in self.seen.iter().zip(&self.log).enumerate() {
            let missing: Vec<u64> = (0..by_seq.len() as u64)
                .filter(|&q| !seen.contains(q))
                .collect();
            if missing.is_empty() {
                continue;
            }
            for &q in &missing {
                by_seq[q as usize] += 1;
            }
            r.lost += missing.len() as u64;
            r.conns += 1;
            r.closed += u64::from(!log.open);
            if let Some(end) = log.end {
                *r.ends.entry(end.to_string()).or_default() += 1;
            }
            if r.listed.len() < MISSING_LISTED {
                r.listed.push(MissingConn {
                    index: first_index + i,
                    missing,
                    received: seen.len(),
                    open: log.open,
                    connects: log.connects,
                    end: log.end.map(str::to_string),
                    ended_ms: log.ended_ms,
                });
            }
        }
        r.by_seq = by_seq
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .map(|(q, n)| (q as u64, n))
            .collect();
        r
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
        a.disconnected(0, "eof", 1_003);
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
        s.disconnected(0, "eof", 100);
        s.connected(0, false, 200);
        s.disconnected(0, "eof", 300);
        s.connected(0, false, 400);
        let r = s.report();
        assert_eq!(r.open, 2);
        assert_eq!(r.timeline.iter().map(|b| b.back).sum::<u32>(), 1);
        assert_eq!(r.timeline.iter().map(|b| b.connects).sum::<u32>(), 2);
        s.reset();
        s.disconnected(1, "eof", 500);
        s.connected(1, false, 600);
        assert_eq!(s.report().timeline.iter().map(|b| b.back).sum::<u32>(), 1);
    }

    #[test]
    fn missing_says_which_broadcasts_each_connection_lacks_and_why() {
        let mut s = ClientStats::new(3);
        for i in 0..3 {
            s.connected(i, true, 0);
        }
        s.message(0, &payload::make(0, 1, 8), 2);
        s.reset();
        assert_eq!(
            s.report().received_before_reset,
            1,
            "a reset says what it forgot"
        );
        for q in 0..4 {
            s.message(0, &payload::make(q, 1, 8), 2);
        }
        s.message(1, &payload::make(0, 1, 8), 2);
        s.message(1, &payload::make(3, 1, 8), 2);
        s.disconnected(2, "asked", 50);
        s.message(2, &payload::make(0, 1, 8), 2);
        let r = s.missing(4, 100);
        assert_eq!((r.lost, r.conns, r.closed), (5, 2, 1));
        assert_eq!(r.by_seq, vec![(1, 2), (2, 2), (3, 1)]);
        assert_eq!(r.ends.get("asked"), Some(&1));
        assert_eq!(r.listed[0].index, 101);
        assert_eq!(r.listed[0].missing, vec![1, 2]);
        assert!(r.listed[0].open);
        assert_eq!(r.listed[1].end.as_deref(), Some("asked"));
        let mut m = MissingReport::default();
        m.merge(&r);
        m.merge(&r);
        assert_eq!((m.lost, m.conns), (10, 4));
        assert_eq!(m.by_seq, vec![(1, 4), (2, 4), (3, 2)]);
        assert!(
            m.summary().contains("lost 10 on 4 connections"),
            "{}",
            m.summary()
        );
        assert!(m.summary().contains("#1×4"), "{}", m.summary());
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
