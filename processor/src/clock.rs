//! The wall clock, read only by the I/O side (the sans-io modules take `now` as an argument).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as unix microseconds.
pub(crate) fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
