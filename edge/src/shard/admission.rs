//! Admission control, sans-io: a per-shard connection cap and a token bucket on handshakes.
//!
//! Checked when a request head is complete and before authentication (which costs CPU), so a
//! reconnect storm is refused cheaply with 503 and a jittered `Retry-After` while the shard
//! keeps serving the connections it has. Unauthenticated connections hold no slot: the cap
//! counts authenticated connections, and the handshake deadline bounds the rest.

use std::time::Duration;

/// Why a handshake was refused (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The shard holds `max_connections_per_shard`.
    AtCapacity,
    /// The handshake token bucket is empty.
    RateLimited,
    /// The shard is draining: clients go elsewhere.
    Draining,
}

impl Refusal {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AtCapacity => "at_capacity",
            Refusal::RateLimited => "rate_limited",
            Refusal::Draining => "draining",
        }
    }
}

/// A token bucket refilled continuously at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket (`rate` 0 = unlimited).
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Duration::ZERO,
        }
    }

    /// Takes one token at time `now` (monotonic, since the shard started).
    pub fn try_take(&mut self, now: Duration) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens currently available (for gauges).
    pub fn available(&self) -> f64 {
        self.tokens
    }
}

/// The admission decision for one complete request head.
pub fn admit(
    bucket: &mut TokenBucket,
    now: Duration,
    open_connections: usize,
    cap: usize,
) -> Result<(), Refusal> {
    if cap > 0 && open_connections >= cap {
        return Err(Refusal::AtCapacity);
    }
    if !bucket.try_take(now) {
        return Err(Refusal::RateLimited);
    }
    Ok(())
}

/// A `Retry-After` in whole seconds, uniform in [1, max] from a uniform sample `u` in [0, 1).
pub fn retry_after_secs(max: Duration, u: f64) -> u32 {
    let max = max.as_secs().max(1) as f64;
    (1.0 + (max * u.clamp(0.0, 0.999_999)).floor()).min(max) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10, 5);
        assert_eq!((0..8).filter(|_| b.try_take(ms(0))).count(), 5);
        assert!(!b.try_take(ms(50)));
        assert!(b.try_take(ms(100)), "one token after 100 ms at 10/s");
        assert!(!b.try_take(ms(110)));
        // over a long time, never more than burst accumulates
        assert_eq!((0..20).filter(|_| b.try_take(ms(100_000))).count(), 5);
        let mut unlimited = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| unlimited.try_take(ms(0))));
    }

    #[test]
    fn cap_before_rate() {
        let mut b = TokenBucket::new(10, 1);
        assert_eq!(admit(&mut b, ms(0), 5, 5), Err(Refusal::AtCapacity));
        assert_eq!(admit(&mut b, ms(0), 4, 5), Ok(()));
        assert_eq!(admit(&mut b, ms(0), 4, 5), Err(Refusal::RateLimited));
        assert_eq!(
            admit(&mut b, ms(1000), 1_000_000, 0),
            Ok(()),
            "cap 0 = none"
        );
    }

    #[test]
    fn retry_after_is_spread() {
        let max = Duration::from_secs(10);
        assert_eq!(retry_after_secs(max, 0.0), 1);
        assert_eq!(retry_after_secs(max, 0.999), 10);
        let values: std::collections::BTreeSet<u32> = (0..100)
            .map(|i| retry_after_secs(max, f64::from(i) / 100.0))
            .collect();
        assert_eq!(values.len(), 10);
    }
}
