//! Pushes a shard wrote recently, so a push that arrives again is not written twice to the
//! same connection.
//!
//! Delivery is at-least-once: a processor retries a push whose answer did not come back in
//! time (the edge may have written it and answered late), and a processor that takes over a
//! partition after a rebalance or a crash sends again what was not yet committed. Without a
//! fault in the client's own connection none of that should reach the client twice. The shard
//! remembers, per push id (its `herald-id`, hashed), which connections it wrote to, for
//! `window` ticks and at most `capacity` pushes; a repeat is written only to connections that
//! did not get it (a client that reconnected in between gets it on its new connection — its
//! client de-duplicates by id). Broadcasts are remembered per shard as a whole.
//!
//! Memory is per shard, never per connection: about 60 bytes per remembered push. A full table
//! forgets its oldest entries early (counted as `evicted_early`), which only weakens the
//! de-duplication, never delivery. Ids are kept as 64-bit keyed hashes: two different ids
//! colliding within one window is a ~10⁻¹⁰ event and would suppress one write.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use crate::conn::ConnId;

/// Who already has a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A targeted push, written to these connections.
    To(Vec<ConnId>),
    /// A broadcast, written to this many connections of the shard.
    Broadcast(u32),
    /// A broadcast being written right now, in steps: a repeat waits for it to end.
    BroadcastRunning,
}

/// The remembered pushes of one shard.
#[derive(Debug)]
pub struct RecentDeliveries {
    /// Push key → who has it.
    map: HashMap<u64, Written>,
    /// Keys with the tick they were first written, oldest first.
    order: VecDeque<(u64, u32)>,
    /// How long a push is remembered, ticks.
    window: u32,
    /// Most pushes remembered (0 = off).
    capacity: usize,
    /// Keys the hash of ids (per shard, random: ids come from outside).
    hasher: RandomState,
    /// Entries forgotten before their window ended because the table was full.
    pub evicted_early: u64,
}

impl RecentDeliveries {
    /// Remembers pushes for `window` ticks, at most `capacity` of them (0 = off).
    pub fn new(window: u32, capacity: usize) -> Self {
        RecentDeliveries {
            map: HashMap::new(),
            order: VecDeque::new(),
            window,
            capacity,
            hasher: RandomState::new(),
            evicted_early: 0,
        }
    }

    /// The key of a push id (targeted and broadcast ids share one space: they are unique ids).
    pub fn key(&self, message_id: &str) -> u64 {
        self.hasher.hash_one(message_id)
    }

    /// Who already has the push `key`, if it was written within the window.
    pub fn get(&self, key: u64) -> Option<&Written> {
        self.map.get(&key)
    }

    /// Records that the push `key` was written at tick `now` to `conns` (targeted).
    pub fn record_targeted(&mut self, key: u64, now: u32, conns: &[ConnId]) {
        if self.capacity == 0 || conns.is_empty() {
            return;
        }
        match self.map.entry(key) {
            Entry::Occupied(mut e) => {
                if let Written::To(v) = e.get_mut() {
                    v.extend_from_slice(conns);
                }
            }
            Entry::Vacant(e) => {
                e.insert(Written::To(conns.to_vec()));
                self.order.push_back((key, now));
                self.bound();
            }
        }
    }

    /// Records that the broadcast `key` started at tick `now` and is being written.
    pub fn record_broadcast_running(&mut self, key: u64, now: u32) {
        if self.capacity == 0 || self.map.contains_key(&key) {
            return;
        }
        self.map.insert(key, Written::BroadcastRunning);
        self.order.push_back((key, now));
        self.bound();
    }

    /// Records that the broadcast `key` was written at tick `now` to `count` connections
    /// (replacing its running mark).
    pub fn record_broadcast(&mut self, key: u64, now: u32, count: u32) {
        if self.capacity == 0 {
            return;
        }
        match self.map.entry(key) {
            Entry::Occupied(mut e) => {
                if *e.get() == Written::BroadcastRunning {
                    e.insert(Written::Broadcast(count));
                }
            }
            Entry::Vacant(e) => {
                e.insert(Written::Broadcast(count));
                self.order.push_back((key, now));
                self.bound();
            }
        }
    }

    /// Drops the running mark of a broadcast that wrote nothing, so a repeat tries again.
    pub fn forget_running(&mut self, key: u64) {
        if self.map.get(&key) == Some(&Written::BroadcastRunning) {
            self.map.remove(&key);
        }
    }

    fn bound(&mut self) {
        while self.order.len() > self.capacity {
            if let Some((k, _)) = self.order.pop_front() {
                self.map.remove(&k);
                self.evicted_early += 1;
            }
        }
    }

    /// Forgets what was written more than `window` ticks before `now`.
    pub fn expire(&mut self, now: u32) {
        while let Some(&(k, at)) = self.order.front() {
            if now.saturating_sub(at) < self.window {
                break;
            }
            self.order.pop_front();
            self.map.remove(&k);
        }
    }

    /// Pushes remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_who_has_a_push_until_the_window_ends() {
        let mut r = RecentDeliveries::new(100, 10);
        let k = r.key("m1");
        assert_eq!(k, r.key("m1"));
        assert_ne!(k, r.key("m2"));
        assert_eq!(r.get(k), None);
        r.record_targeted(k, 5, &[(1, 0)]);
        r.record_targeted(k, 6, &[(2, 0)]);
        assert_eq!(r.get(k), Some(&Written::To(vec![(1, 0), (2, 0)])));
        r.expire(104);
        assert!(r.get(k).is_some(), "within the window");
        r.expire(105);
        assert_eq!(r.get(k), None);
        assert!(r.is_empty());
    }

    #[test]
    fn broadcasts_are_remembered_as_a_whole() {
        let mut r = RecentDeliveries::new(100, 10);
        let k = r.key("b1");
        r.record_broadcast(k, 0, 7);
        r.record_broadcast(k, 1, 9);
        assert_eq!(
            r.get(k),
            Some(&Written::Broadcast(7)),
            "the first write counts"
        );
    }

    #[test]
    fn a_full_table_forgets_the_oldest_and_counts_it() {
        let mut r = RecentDeliveries::new(1000, 3);
        let keys: Vec<u64> = (0..5).map(|i| r.key(&format!("m{i}"))).collect();
        for (i, &k) in keys.iter().enumerate() {
            r.record_targeted(k, i as u32, &[(i as u32, 0)]);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.evicted_early, 2);
        assert_eq!(r.get(keys[0]), None);
        assert!(r.get(keys[4]).is_some());
    }

    #[test]
    fn capacity_zero_is_off() {
        let mut r = RecentDeliveries::new(1000, 0);
        let k = r.key("m");
        r.record_targeted(k, 0, &[(1, 0)]);
        r.record_broadcast(k, 0, 1);
        assert_eq!(r.get(k), None);
    }
}
