//! Draining a shard: the schedule ([`DrainPlan`], how many connections should have been asked
//! to reconnect by a given moment) and the shard's drain in progress ([`ShardDrain`]).
//!
//! A drain asks `total` connections over `window`, at `total / window` per second but never
//! faster than the rate cap; what is left when the window ends is force-closed. Shortening the
//! window (a second SIGTERM) re-plans the rest over the shorter time, ignoring the cap.

use std::time::Duration;

use super::probe::DrainProgress;
use super::state::ShardState;
use super::Now;
use crate::conn::{CloseReason, Closing, ConnId};

/// A drain in progress on one shard.
#[derive(Debug)]
pub struct ShardDrain {
    /// When it started (shard clock).
    started: Duration,
    /// The schedule.
    plan: DrainPlan,
    /// Connections not yet asked.
    queue: Vec<ConnId>,
    /// Connections asked (or found gone) so far.
    asked: usize,
    /// Whether the rest was force-closed at the end of the window.
    forced: bool,
}

impl ShardDrain {
    /// Progress for `/stats` and metrics.
    pub fn progress(&self, now: Duration) -> DrainProgress {
        let elapsed = now.saturating_sub(self.started);
        DrainProgress {
            total: self.plan.total,
            asked: self.asked,
            elapsed_ms: elapsed.as_millis() as u64,
            remaining_ms: self.plan.deadline.saturating_sub(elapsed).as_millis() as u64,
            rate: self.plan.rate(),
        }
    }
}

impl ShardState {
    /// Starts a drain: every authenticated connection will be asked to reconnect over
    /// `window`, at most `max_rate` per second; the caller stops accepting.
    pub fn start_drain(&mut self, window: Duration, max_rate: f64, now: Now) {
        self.at(now);
        self.draining = true;
        if self.drain.is_some() {
            return;
        }
        let mut queue = self.table.all_indexed();
        self.rng.shuffle(&mut queue);
        let plan = DrainPlan::new(queue.len(), window, max_rate);
        log::info!(
            "shard {}: draining {} connections over {window:?} at {:.0}/s",
            self.index,
            queue.len(),
            plan.rate()
        );
        self.drain = Some(ShardDrain {
            started: now.mono,
            plan,
            queue,
            asked: 0,
            forced: false,
        });
    }

    /// Shortens the drain in progress (a second SIGTERM).
    pub fn shorten_drain(&mut self, now: Now) {
        self.at(now);
        let floor = self.cfg.timer_tick.max(Duration::from_secs(1));
        if let Some(d) = self.drain.as_mut() {
            let elapsed = now.mono.saturating_sub(d.started);
            d.plan.shorten(elapsed, d.asked, floor);
            log::info!(
                "shard {}: drain shortened, {:?} left",
                self.index,
                d.plan.deadline.saturating_sub(elapsed)
            );
        }
    }

    /// Asks the connections due by now; at the end of the window force-closes the rest.
    pub(crate) fn drain_step(&mut self) {
        let Some(mut d) = self.drain.take() else {
            return;
        };
        let elapsed = self.now.mono.saturating_sub(d.started);
        let due = d.plan.due(elapsed);
        while d.asked < due {
            let Some(id) = d.queue.pop() else { break };
            d.asked += 1;
            if self.table.peek(id).is_some_and(|c| c.is_open()) {
                self.ask_to_move(id, CloseReason::Drain);
                self.probe.drain_asked += 1;
            }
        }
        if d.plan.expired(elapsed) && !d.forced {
            d.forced = true;
            for id in std::mem::take(&mut d.queue) {
                if self.table.peek(id).is_some() {
                    self.close(id, Closing::Now, CloseReason::DrainForced);
                }
            }
        }
        self.drain = Some(d);
    }
}

/// A drain in progress on one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainPlan {
    /// Connections to ask in all.
    pub total: usize,
    /// Asked when the current rate was set.
    base_asked: usize,
    /// When the current rate was set (since the drain started).
    base_at: Duration,
    /// Asks per second.
    rate: f64,
    /// When what is left gets force-closed (since the drain started).
    pub deadline: Duration,
}

impl DrainPlan {
    /// Plans `total` asks over `window`, at most `max_rate` per second.
    pub fn new(total: usize, window: Duration, max_rate: f64) -> Self {
        let secs = window.as_secs_f64().max(0.001);
        let rate = (total as f64 / secs).min(max_rate.max(0.001));
        DrainPlan {
            total,
            base_asked: 0,
            base_at: Duration::ZERO,
            rate,
            deadline: window,
        }
    }

    /// The current ask rate (per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How many should have been asked by `elapsed`.
    pub fn due(&self, elapsed: Duration) -> usize {
        let since = elapsed.saturating_sub(self.base_at).as_secs_f64();
        (self.base_asked + (self.rate * since).floor() as usize).min(self.total)
    }

    /// Whether the window is over (force-close what is left).
    pub fn expired(&self, elapsed: Duration) -> bool {
        elapsed >= self.deadline
    }

    /// Shortens the rest of the window to a quarter (at least `floor`) at `elapsed`, having
    /// asked `asked` so far; the remaining asks are spread over the new window.
    pub fn shorten(&mut self, elapsed: Duration, asked: usize, floor: Duration) {
        let left = self.deadline.saturating_sub(elapsed);
        let new_left = (left / 4).max(floor).min(left);
        self.base_asked = asked;
        self.base_at = elapsed;
        self.deadline = elapsed + new_left;
        let remaining = self.total.saturating_sub(asked) as f64;
        self.rate = self.rate.max(remaining / new_left.as_secs_f64().max(0.001));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }

    #[test]
    fn spreads_over_the_window() {
        let p = DrainPlan::new(1000, s(10.0), 1e9);
        assert_eq!(p.due(s(0.0)), 0);
        assert_eq!(p.due(s(1.0)), 100);
        assert_eq!(p.due(s(5.0)), 500);
        assert_eq!(p.due(s(10.0)), 1000);
        assert_eq!(p.due(s(20.0)), 1000);
        assert!(!p.expired(s(9.9)) && p.expired(s(10.0)));
    }

    #[test]
    fn rate_cap_binds_and_leaves_the_rest_for_the_deadline() {
        let p = DrainPlan::new(1000, s(10.0), 50.0);
        assert_eq!(p.rate(), 50.0);
        assert_eq!(
            p.due(s(10.0)),
            500,
            "the rest is force-closed at the deadline"
        );
    }

    #[test]
    fn shortening_replans_the_rest() {
        let mut p = DrainPlan::new(1000, s(100.0), 1e9);
        assert_eq!(p.due(s(20.0)), 200);
        p.shorten(s(20.0), 200, s(1.0));
        assert_eq!(p.deadline, s(40.0));
        assert_eq!(p.due(s(30.0)), 600);
        assert_eq!(p.due(s(40.0)), 1000);
    }
}
