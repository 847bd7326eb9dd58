//! Free loopback ports for tests.
//!
//! A port is "free" when `127.0.0.1:<port>` can be bound right now and this process has not
//! handed it out before. The second condition matters because a test usually binds the port
//! some time after asking for it: without the reservation set, two tests running in parallel
//! threads could both be told the same port. Other processes can still race us for a port;
//! fixtures that start servers therefore retry with a fresh port when binding fails.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// Lowest port handed out by the random pickers: below the usual ephemeral range's busy
/// neighbourhood and above the well-known ports.
const RANGE_LOW: u16 = 20_000;
/// Highest port handed out by the random pickers (exclusive), chosen so that `port + 10000`
/// (the Redis Cluster bus port) stays a valid port.
const RANGE_HIGH: u16 = 55_000;
/// How many candidates a picker tries before giving up.
const ATTEMPTS: usize = 10_000;

/// Ports this process already handed out.
fn reserved() -> &'static Mutex<HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A random number from the standard library's per-process random hasher keys.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6865_7261_6c64);
    h.finish()
}

/// Whether `127.0.0.1:port` can be bound at this moment.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Reserves `ports` if none of them is reserved yet and all are bindable.
fn try_reserve(ports: &[u16]) -> bool {
    let mut set = reserved().lock().unwrap_or_else(|e| e.into_inner());
    if ports.iter().any(|p| set.contains(p)) || !ports.iter().all(|&p| bindable(p)) {
        return false;
    }
    set.extend(ports.iter().copied());
    true
}

/// A random candidate in `[RANGE_LOW, RANGE_HIGH - span)`.
fn candidate(span: u16) -> u16 {
    let width = u64::from(RANGE_HIGH - RANGE_LOW - span);
    RANGE_LOW + (random_u64() % width) as u16
}

/// A free loopback port, chosen by the kernel (bind to port 0) and reserved for the caller.
///
/// # Panics
/// When no port can be found (the machine is out of ports).
pub fn free_port() -> u16 {
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0 failed")
            .port();
        if try_reserve(&[port]) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// The first of `n` consecutive free loopback ports (for per-shard ports such as
/// `delivery_base_port + shard`), all reserved for the caller.
///
/// # Panics
/// When `n` is 0 or larger than 1000, or no such range can be found.
pub fn free_port_range(n: u16) -> u16 {
    assert!(
        (1..=1000).contains(&n),
        "free_port_range: n must be 1..=1000, got {n}"
    );
    for _ in 0..ATTEMPTS {
        let base = candidate(n);
        let ports: Vec<u16> = (base..base + n).collect();
        if try_reserve(&ports) {
            return base;
        }
    }
    panic!("no range of {n} free loopback ports found");
}

/// A free loopback port whose Redis Cluster bus twin (`port + 10000`) is free too; both are
/// reserved.
///
/// # Panics
/// When no such pair can be found.
pub fn free_cluster_port() -> u16 {
    for _ in 0..ATTEMPTS {
        let port = candidate(0);
        if try_reserve(&[port, port + 10_000]) {
            return port;
        }
    }
    panic!("no free loopback port pair (p, p+10000) found");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_and_never_handed_out_twice() {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = free_port();
            assert!(seen.insert(p), "port {p} handed out twice");
            assert!(bindable(p));
        }
        let base = free_port_range(8);
        for p in base..base + 8 {
            assert!(seen.insert(p), "range port {p} overlaps an earlier port");
            assert!(bindable(p));
        }
        let c = free_cluster_port();
        assert!(c < RANGE_HIGH && bindable(c) && bindable(c + 10_000));
        assert!(
            !try_reserve(&[c]),
            "a reserved port must not be reserved again"
        );
    }

    #[test]
    #[should_panic(expected = "n must be 1..=1000")]
    fn empty_ranges_are_refused() {
        free_port_range(0);
    }
}
