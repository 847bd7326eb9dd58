//! The `herald-id` of a push: the caller's own, or 128 random bits.
//!
//! The random bits come from the standard library's randomly keyed SipHash (its keys are
//! drawn from the OS random source, fresh per `RandomState`) over a process-wide counter and
//! the time, so ids are unique and unguessable without an extra randomness dependency.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The unique id of a published push (the `herald-id` header).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(pub String);

/// Ids made by this process so far; no two hash the same input.
static MINTED: AtomicU64 = AtomicU64::new(0);

impl MessageId {
    /// A fresh random id: 128 bits as 32 lowercase hex digits.
    pub fn random() -> MessageId {
        let n = MINTED.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let half = |lane: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_u64(lane);
            h.write_u128(nanos);
            h.finish()
        };
        MessageId(format!("{:016x}{:016x}", half(0), half(1)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_128_bit_hex_and_distinct() {
        let a = MessageId::random();
        let b = MessageId::random();
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn many_ids_never_collide() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| MessageId::random()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
