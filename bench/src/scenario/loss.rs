//! Where lost broadcast deliveries went. When a fan-out phase loses anything, the harness
//! puts three accounts side by side: the clients' (which connections lack which broadcast,
//! and whether those connections closed, how, or reconnected — [`MissingReport`]), the
//! server's answers to each broadcast (connections written per shard, outcome), and — for
//! Herald — the edge's own counters over the phase from `/stats` (connections written,
//! answers by outcome, closes by reason, slow consumers). A loss the edge never wrote is the
//! edge's (or the publisher's); one it wrote to a connection that stayed open and still never
//! arrived is the client's or the wire's.

use std::collections::BTreeMap;

use herald_protocol::delivery::{Answer, Outcome};
use serde::Serialize;

use crate::client::stats::MissingReport;

/// The edge's counters summed over its shards, as `/stats` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EdgeCounters {
    /// Connections written to by deliveries.
    pub deliveries_written: u64,
    /// Delivery answers by outcome.
    pub answers: BTreeMap<String, u64>,
    /// Closed client connections by reason.
    pub closes: BTreeMap<String, u64>,
    /// Slow-consumer closes.
    pub slow_consumer_closes: u64,
    /// Repeats not written again (`dedupe_hits`).
    pub dedupe_hits: u64,
    /// Authenticated connections (WebSocket + SSE).
    pub connections: u64,
}

impl EdgeCounters {
    /// Sums the shards of a `/stats` document.
    pub fn from_stats(v: &serde_json::Value) -> EdgeCounters {
        let mut c = EdgeCounters::default();
        let Some(shards) = v["shards"].as_array() else {
            return c;
        };
        for s in shards {
            let p = &s["probe"];
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            c.deliveries_written += n("deliveries_written");
            c.slow_consumer_closes += n("slow_consumer_closes");
            c.dedupe_hits += n("dedupe_hits");
            c.connections += s["websocket"].as_u64().unwrap_or(0) + s["sse"].as_u64().unwrap_or(0);
            if let Some(d) = p["deliveries"].as_array() {
                for (i, x) in d.iter().enumerate() {
                    let name = Outcome::ALL
                        .get(i)
                        .map_or_else(|| format!("outcome_{i}"), |o| o.as_str().to_string());
                    *c.answers.entry(name).or_default() += x.as_u64().unwrap_or(0);
                }
            }
            if let Some(m) = p["closes"].as_object() {
                for (k, x) in m {
                    *c.closes.entry(k.clone()).or_default() += x.as_u64().unwrap_or(0);
                }
            }
        }
        c
    }

    /// What changed from `before` to `self` (connections: as of `self`); zero entries dropped.
    pub fn since(&self, before: &EdgeCounters) -> EdgeCounters {
        let diff = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            a.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(*b.get(k).unwrap_or(&0))))
                .filter(|&(_, v)| v > 0)
                .collect()
        };
        EdgeCounters {
            deliveries_written: self
                .deliveries_written
                .saturating_sub(before.deliveries_written),
            answers: diff(&self.answers, &before.answers),
            closes: diff(&self.closes, &before.closes),
            slow_consumer_closes: self
                .slow_consumer_closes
                .saturating_sub(before.slow_consumer_closes),
            dedupe_hits: self.dedupe_hits.saturating_sub(before.dedupe_hits),
            connections: self.connections,
        }
    }
}

/// A broadcast the server answered short: written to fewer connections than were held, or
/// with an outcome other than `delivered` on some shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShortAnswer {
    /// Broadcast sequence number.
    pub seq: u64,
    /// Connections the server said it wrote to.
    pub written: u64,
    /// Per shard: (outcome, connections written).
    pub shards: Vec<(String, u32)>,
}

/// The server's answers to every broadcast of a phase.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    per_broadcast: Vec<(u64, Option<u64>, Vec<Answer>)>,
}

impl Answers {
    /// Records the answer to broadcast `seq`: connections written (if the server says) and,
    /// for Herald, each shard's answer.
    pub fn record(&mut self, seq: u64, written: Option<u64>, shards: &[Answer]) {
        self.per_broadcast.push((seq, written, shards.to_vec()));
    }

    /// The broadcasts answered with fewer than `conns` connections or a shard not
    /// `delivered`.
    pub fn short(&self, conns: u64) -> Vec<ShortAnswer> {
        self.per_broadcast
            .iter()
            .filter(|(_, w, shards)| {
                w.is_some_and(|w| w < conns)
                    || shards.iter().any(|a| a.outcome != Outcome::Delivered)
            })
            .map(|(seq, w, shards)| ShortAnswer {
                seq: *seq,
                written: w.unwrap_or(0),
                shards: shards
                    .iter()
                    .map(|a| (a.outcome.as_str().to_string(), a.delivered))
                    .collect(),
            })
            .collect()
    }
}

/// Why a fan-out phase lost deliveries, as far as the three accounts tell.
#[derive(Debug, Clone, Serialize)]
pub struct LossDiagnosis {
    /// The clients' account.
    pub clients: MissingReport,
    /// Broadcasts the server answered short.
    pub short_answers: Vec<ShortAnswer>,
    /// The edge's counters over the phase (Herald).
    pub edge: Option<EdgeCounters>,
    /// The accounts in a few sentences.
    pub summary: Vec<String>,
}

impl LossDiagnosis {
    /// Puts the accounts together for a phase that expected `conns` × `messages` deliveries.
    pub fn new(
        clients: MissingReport,
        short_answers: Vec<ShortAnswer>,
        edge: Option<EdgeCounters>,
        conns: u64,
        messages: u64,
    ) -> LossDiagnosis {
        let mut summary = vec![format!("clients: {}", clients.summary())];
        if short_answers.is_empty() {
            summary.push(format!(
                "server answers: every broadcast written to all {conns} connections"
            ));
        } else {
            let list: Vec<String> = short_answers
                .iter()
                .take(10)
                .map(|s| format!("#{} written {}", s.seq, s.written))
                .collect();
            summary.push(format!(
                "server answers: {} broadcasts short ({})",
                short_answers.len(),
                list.join(", ")
            ));
        }
        if let Some(e) = &edge {
            let want = conns * messages;
            let closes: Vec<String> = e.closes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let answers: Vec<String> = e.answers.iter().map(|(k, v)| format!("{k} {v}")).collect();
            summary.push(format!(
                "edge counters over the phase: wrote {} of {want} (answers: {}); closes: {}; slow consumers {}; repeats suppressed {}; {} connections at the end",
                e.deliveries_written,
                if answers.is_empty() { "none".into() } else { answers.join(", ") },
                if closes.is_empty() { "none".into() } else { closes.join(", ") },
                e.slow_consumer_closes,
                e.dedupe_hits,
                e.connections
            ));
        }
        let wrote_all = short_answers.is_empty()
            && edge
                .as_ref()
                .is_none_or(|e| e.deliveries_written >= conns * messages);
        if wrote_all && clients.closed == 0 && clients.ends.is_empty() {
            summary.push(if clients.received_before_reset > 0 {
                "verdict: the server wrote everything to connections that stayed open; the clients counted deliveries before they processed RESET, which then forgot them (harness)".into()
            } else {
                "verdict: the server wrote everything to connections that stayed open; the loss is between the socket and the client's count (client read path or the wire)".into()
            });
        } else if !wrote_all {
            summary.push(
                "verdict: the server did not write every delivery (see its answers and closes)"
                    .into(),
            );
        } else {
            summary.push("verdict: connections that closed or reconnected during the phase missed deliveries".into());
        }
        LossDiagnosis {
            clients,
            short_answers,
            edge,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(written: u64, delivered: u64, not_here: u64, slow: u64) -> serde_json::Value {
        serde_json::json!({"shards": [
            {"websocket": 5, "sse": 0, "probe": {"deliveries_written": written, "deliveries": [delivered, not_here, 0, 0, 0, 0, 0],
              "closes": {"slow_consumer": slow}, "slow_consumer_closes": slow, "dedupe_hits": 0}},
            {"websocket": 4, "sse": 1, "probe": {"deliveries_written": written, "deliveries": [delivered, 0, 0, 0, 0, 0, 0],
              "closes": {}, "slow_consumer_closes": 0, "dedupe_hits": 0}}
        ]})
    }

    #[test]
    fn edge_counters_sum_shards_and_subtract() {
        let a = EdgeCounters::from_stats(&stats(10, 1, 0, 0));
        let b = EdgeCounters::from_stats(&stats(25, 3, 1, 2));
        assert_eq!(a.deliveries_written, 20);
        assert_eq!(b.connections, 10);
        let d = b.since(&a);
        assert_eq!(d.deliveries_written, 30);
        assert_eq!(d.answers.get("delivered"), Some(&4));
        assert_eq!(d.answers.get("not_here"), Some(&1));
        assert_eq!(d.closes.get("slow_consumer"), Some(&2));
        assert_eq!(d.slow_consumer_closes, 2);
    }

    #[test]
    fn short_answers_and_verdicts() {
        let ok = |n| Answer {
            seq: 0,
            outcome: Outcome::Delivered,
            delivered: n,
        };
        let mut a = Answers::default();
        a.record(0, Some(10), &[ok(5), ok(5)]);
        a.record(1, Some(9), &[ok(5), ok(4)]);
        let short = a.short(10);
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].seq, 1);
        let clients = MissingReport {
            lost: 1,
            conns: 1,
            ..MissingReport::default()
        };
        let d = LossDiagnosis::new(clients.clone(), short, None, 10, 2);
        assert!(d.summary.last().unwrap().contains("did not write"));
        let d = LossDiagnosis::new(clients, Vec::new(), None, 10, 2);
        assert!(d.summary.last().unwrap().contains("stayed open"));
    }
}
