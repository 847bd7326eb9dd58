//! The drain schedule, sans-io: how many connections should have been asked to reconnect by
//! a given moment.
//!
//! A drain asks `total` connections over `window`, at `total / window` per second but never
//! faster than the rate cap; what is left when the window ends is force-closed. Shortening the
//! window (a second SIGTERM) re-plans the rest over the shorter time, ignoring the cap.

use std::time::Duration;

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
