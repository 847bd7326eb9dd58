//! # Per-connection push rate limit
//!
//! A runaway sender must not flood one phone: with `push_rate_per_conn` set, each connection
//! takes at most `count` targeted pushes per `period`, with bursts of up to `burst`; pushes
//! over it are answered `rate_limited` (a final outcome: the processor does not retry them)
//! and counted. Broadcasts are not limited — they are the operator's, and rare.
//!
//! The bucket is the generic cell rate algorithm (GCRA), which is a token bucket kept as one
//! number per connection: the theoretical arrival time `tat` of the next push. A push at time
//! `t` conforms when `tat − t ≤ (burst − 1) × interval`; it then moves `tat` to
//! `max(tat, t) + interval`. A fresh connection has `tat = 0`, i.e. a full bucket. Time is the
//! shard's monotonic clock in microseconds; no I/O here.

use std::time::Duration;

/// A push rate: `burst` pushes at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushRate {
    /// Time one push "costs", µs.
    interval_us: u64,
    /// How far ahead of now `tat` may run and still admit a push, µs.
    tolerance_us: u64,
}

impl PushRate {
    /// `count` pushes per `period`, bursts of up to `burst` (0 = `count`). `None` when the
    /// rate is not positive.
    pub fn new(count: u32, period: Duration, burst: u32) -> Option<PushRate> {
        if count == 0 || period.is_zero() {
            return None;
        }
        let burst = if burst == 0 { count } else { burst };
        let interval_us = (period.as_micros() / u128::from(count)).max(1) as u64;
        Some(PushRate {
            interval_us,
            tolerance_us: interval_us * u64::from(burst - 1),
        })
    }

    /// Parses `"<count>/<period>"`, e.g. `3/2s`, with `burst` as in [`PushRate::new`];
    /// `"off"` or `""` is `Ok(None)`.
    pub fn parse(text: &str, burst: u32) -> Result<Option<PushRate>, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not `<pushes>/<period>` (e.g. 3/2s) or off"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a number of pushes"))?;
        let period = herald_settings::parse_duration(period.trim())?;
        PushRate::new(count, period, burst)
            .map(Some)
            .ok_or_else(|| format!("{text:?}: pushes and period must both be above 0"))
    }
}

/// One connection's bucket (8 bytes): the theoretical arrival time of its next push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushBucket {
    tat_us: u64,
}

impl PushBucket {
    /// Takes one push at `now` (µs, monotonic) if the rate admits it.
    pub fn take(&mut self, rate: &PushRate, now_us: u64) -> bool {
        if self.tat_us.saturating_sub(now_us) > rate.tolerance_us {
            return false;
        }
        self.tat_us = self.tat_us.max(now_us) + rate.interval_us;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn admitted(rate: &PushRate, bucket: &mut PushBucket, at_us: u64, n: usize) -> usize {
        (0..n).filter(|_| bucket.take(rate, at_us)).count()
    }

    #[test]
    fn zuul_like_three_per_two_seconds() {
        let rate = PushRate::parse("3/2s", 0).unwrap().unwrap();
        let mut b = PushBucket::default();
        let t0 = 10 * S;
        assert_eq!(admitted(&rate, &mut b, t0, 10), 3, "a full bucket holds 3");
        assert!(!b.take(&rate, t0 + S / 2), "nothing back after 0.5 s");
        assert!(b.take(&rate, t0 + 2 * S / 3), "one back after 2/3 s");
        assert!(!b.take(&rate, t0 + 2 * S / 3));
        // a long quiet spell refills to the burst, never beyond it
        assert_eq!(admitted(&rate, &mut b, t0 + 100 * S, 10), 3);
    }

    #[test]
    fn a_steady_sender_gets_exactly_the_rate() {
        let rate = PushRate::new(10, Duration::from_secs(1), 1).unwrap();
        let mut b = PushBucket::default();
        // 100 pushes per second offered for 10 s: 10 per second pass (+1 at the start)
        let passed = (0..1000u64)
            .filter(|i| b.take(&rate, S + i * S / 100))
            .count();
        assert!((100..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn burst_above_the_count() {
        let rate = PushRate::parse("1/1s", 5).unwrap().unwrap();
        let mut b = PushBucket::default();
        assert_eq!(admitted(&rate, &mut b, S, 9), 5);
        assert_eq!(admitted(&rate, &mut b, 2 * S, 9), 1);
    }

    #[test]
    fn parsing() {
        assert_eq!(PushRate::parse("off", 0), Ok(None));
        assert_eq!(PushRate::parse("", 0), Ok(None));
        assert!(PushRate::parse("3", 0).is_err());
        assert!(PushRate::parse("x/2s", 0).is_err());
        assert!(PushRate::parse("3/fortnight", 0).is_err());
        assert!(PushRate::parse("0/1s", 0).is_err());
        assert!(PushRate::parse("3/0s", 0).is_err());
        assert_eq!(
            PushRate::parse(" 3 / 2s ", 0),
            Ok(PushRate::new(3, Duration::from_secs(2), 3))
        );
    }
}
