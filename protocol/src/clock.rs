//! # The wall clock, read in one place
//!
//! Every format in this crate takes `now` as an argument; the drivers around them read the
//! clock here. Expiries (`expires_at_ms`, registry records) and latency stamps
//! (`herald-created-at`) cross process boundaries, so they use the shared wall clock
//! (`SystemTime`), not a process-local `Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as microseconds since the unix epoch (0 if the clock is before 1970).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Now as milliseconds since the unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_units_read_the_same_clock() {
        let ms = unix_ms();
        let us = unix_us();
        assert!(ms > 1_577_836_800_000, "after 2020");
        assert!(
            us / 1000 >= ms && us / 1000 - ms < 60_000,
            "{us} µs vs {ms} ms"
        );
    }
}
