//! Wall-clock time in unix milliseconds, the unit of every expiry in the registry.
//!
//! Only the edges of the system read the clock (the writer task, tests, tools); the registry
//! operations themselves take `now_ms` as an argument so their behaviour can be tested at any
//! instant.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch (0 if the clock is before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
