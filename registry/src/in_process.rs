//! The in-process registry: single-node mode (`herald dev`), where one process runs both an
//! edge and a processor and no Redis is configured.
//!
//! It keeps the same data model as Redis — one map of devices per user, plus a key expiry —
//! and the same rules as the Lua scripts in `scripts.rs`: register prunes expired fields,
//! never overwrites a live record of a newer connection and only ever extends the key's
//! expiry; unregister is a compare-and-delete on the nonce; look-ups skip expired records;
//! a user whose key expiry passes disappears as a whole. The shared integration tests run
//! the same scenarios against both back ends. State sits behind one `Mutex` (never held
//! across an `.await`), shared by clones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use herald_protocol::registry_record::RegistryRecord;

use herald_protocol::history::{NotRecovered, Position};

use crate::edge_record::EDGE_PRUNE_AFTER_MS;
use crate::history::{Append, Appended, HistorySettings, Recovery, UserHistory};
use crate::model::OpRef;
use crate::{DeviceLocation, EdgeInfo, OpOutcome, Registration, Unregistration};

/// The registry held in this process's memory; clones share it.
#[derive(Debug, Clone, Default)]
pub struct InProcessRegistry {
    /// Everything, behind one lock.
    state: Arc<Mutex<State>>,
}

/// The registry contents.
#[derive(Debug, Default)]
struct State {
    /// Per user: the `herald:c:{user}` hash and its expiry.
    users: HashMap<String, UserKey>,
    /// Key expiries, earliest first; entries whose user key has since been extended or
    /// removed are skipped when popped (lazy deletion).
    expiries: BinaryHeap<Reverse<(u64, String)>>,
    /// `herald:edges`.
    edges: HashMap<String, EdgeInfo>,
    /// Per user: the history stream and epoch (`herald:h:{user}`, `herald:he:{user}`).
    histories: HashMap<String, UserHistory>,
    /// Latest `now_ms` seen, so calls without a `now` (unregister) still see expired keys
    /// as gone, like Redis would.
    last_now_ms: u64,
}

/// One user's key.
#[derive(Debug, Default)]
struct UserKey {
    /// Device → record (the hash fields).
    devices: HashMap<String, RegistryRecord>,
    /// When the whole key expires (the Redis key TTL), if set.
    expires_at_ms: Option<u64>,
}

impl InProcessRegistry {
    /// An empty registry.
    pub fn new() -> InProcessRegistry {
        InProcessRegistry::default()
    }

    /// Locks the state (a panic while holding the lock cannot leave it inconsistent in a way
    /// that matters more than stopping, so poisoning is ignored).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies operations in order; see [`crate::Registry::apply`].
    pub(crate) fn apply(&self, ops: &[OpRef<'_>], now_ms: u64) -> Vec<OpOutcome> {
        let mut state = self.lock();
        state.advance(now_ms);
        ops.iter()
            .map(|op| match op {
                OpRef::Register(r) => state.register(r, now_ms),
                OpRef::Unregister(u) => state.unregister(u),
            })
            .collect()
    }

    /// Live devices of each user, in the order of `users`, each list sorted by device.
    pub(crate) fn lookup(&self, users: &[&str], now_ms: u64) -> Vec<Vec<DeviceLocation>> {
        let mut state = self.lock();
        state.advance(now_ms);
        users
            .iter()
            .map(|user| state.locations(user, now_ms))
            .collect()
    }

    /// Appends each push to its user's history and looks the user up under the same lock
    /// (the append script's rules, see `history.rs`).
    pub(crate) fn append_history(
        &self,
        appends: &[Append<'_>],
        settings: &HistorySettings,
        now_ms: u64,
    ) -> Vec<Appended> {
        let mut state = self.lock();
        state.advance(now_ms);
        appends
            .iter()
            .map(|a| {
                let history = match state.histories.get_mut(a.user) {
                    Some(h) if h.expires_at_ms > now_ms => h,
                    _ => {
                        state
                            .histories
                            .insert(a.user.to_string(), UserHistory::new(fastrand::u64(..)));
                        state.histories.get_mut(a.user).expect("just inserted")
                    }
                };
                let position = history.append(a, settings, now_ms);
                Appended {
                    position,
                    locations: state.locations(a.user, now_ms),
                }
            })
            .collect()
    }

    /// What came after `from` in `user`'s history.
    pub(crate) fn read_history(&self, user: &str, from: &Position, now_ms: u64) -> Recovery {
        let mut state = self.lock();
        state.advance(now_ms);
        match state.histories.get(user) {
            Some(h) if h.expires_at_ms > now_ms => h.read(from),
            _ => Recovery::NotRecovered(NotRecovered::EpochChanged),
        }
    }

    /// Writes an edge entry and prunes entries older than [`EDGE_PRUNE_AFTER_MS`].
    pub(crate) fn heartbeat_edge(&self, info: &EdgeInfo) {
        let mut state = self.lock();
        state.edges.insert(info.node_id.clone(), info.clone());
        let cutoff = info.heartbeat_ms.saturating_sub(EDGE_PRUNE_AFTER_MS);
        state.edges.retain(|_, e| e.heartbeat_ms >= cutoff);
    }

    /// Deletes an edge entry.
    pub(crate) fn remove_edge(&self, node_id: &str) {
        self.lock().edges.remove(node_id);
    }

    /// Edge entries whose heartbeat is at most `max_age_ms` old, sorted by node id.
    pub(crate) fn live_edges(&self, now_ms: u64, max_age_ms: u64) -> Vec<EdgeInfo> {
        let state = self.lock();
        let mut live: Vec<EdgeInfo> = state
            .edges
            .values()
            .filter(|e| now_ms.saturating_sub(e.heartbeat_ms) <= max_age_ms)
            .cloned()
            .collect();
        live.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        live
    }

    /// Every stored field of `user`, expired ones included, sorted by device — what
    /// `HGETALL` would show. For tests and diagnostics (`herald dev` stats).
    pub fn raw_fields(&self, user: &str) -> Vec<(String, RegistryRecord)> {
        let state = self.lock();
        let mut fields: Vec<(String, RegistryRecord)> = state
            .users
            .get(user)
            .map(|k| {
                k.devices
                    .iter()
                    .map(|(d, r)| (d.clone(), r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields
    }

    /// When `user`'s key expires (unix ms), or `None` when it has no key — the in-process
    /// counterpart of `PTTL`.
    pub fn key_expires_at_ms(&self, user: &str) -> Option<u64> {
        self.lock().users.get(user).and_then(|k| k.expires_at_ms)
    }

    /// Forgets `user`'s history, as if its keys were lost (a flush, a failover without
    /// them). For tests and diagnostics.
    pub fn drop_history(&self, user: &str) {
        self.lock().histories.remove(user);
    }

    /// Number of users with a key (expired keys are removed as time advances).
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }
}

impl State {
    /// `user`'s live devices at `now_ms`, sorted by device.
    fn locations(&self, user: &str, now_ms: u64) -> Vec<DeviceLocation> {
        let Some(key) = self.users.get(user) else {
            return Vec::new();
        };
        let mut live: Vec<DeviceLocation> = key
            .devices
            .iter()
            .filter(|(_, record)| record.is_live(now_ms))
            .map(|(device, record)| DeviceLocation {
                device: device.clone(),
                record: record.clone(),
            })
            .collect();
        live.sort_by(|a, b| a.device.cmp(&b.device));
        live
    }

    /// Moves the clock forward (never back) and removes keys whose expiry has passed.
    fn advance(&mut self, now_ms: u64) {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let now = self.last_now_ms;
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, user))) = self.expiries.pop() else {
                break;
            };
            if self.users.get(&user).and_then(|k| k.expires_at_ms) == Some(at) {
                self.users.remove(&user);
            }
        }
    }

    /// The register script, in Rust.
    fn register(&mut self, r: &Registration, now_ms: u64) -> OpOutcome {
        let key = self.users.entry(r.user.clone()).or_default();
        key.devices.retain(|_, record| record.is_live(now_ms));
        let outcome = if !r.record.is_live(now_ms) {
            OpOutcome::AlreadyExpired
        } else if key
            .devices
            .get(&r.device)
            .is_some_and(|current| current.conn_nonce > r.record.conn_nonce)
        {
            OpOutcome::Superseded
        } else {
            key.devices.insert(r.device.clone(), r.record.clone());
            OpOutcome::Registered
        };
        if key.devices.is_empty() {
            self.users.remove(&r.user);
            return outcome;
        }
        let max_expires = key.devices.values().map(|rec| rec.expires_at_ms).max();
        if let Some(max_expires) = max_expires {
            if key.expires_at_ms.is_none_or(|at| max_expires > at) {
                key.expires_at_ms = Some(max_expires);
                self.expiries.push(Reverse((max_expires, r.user.clone())));
            }
        }
        outcome
    }

    /// The unregister script, in Rust.
    fn unregister(&mut self, u: &Unregistration) -> OpOutcome {
        let Some(key) = self.users.get_mut(&u.user) else {
            return OpOutcome::Absent;
        };
        let outcome = match key.devices.get(&u.device) {
            None => OpOutcome::Absent,
            Some(record) if record.conn_nonce == u.conn_nonce => {
                key.devices.remove(&u.device);
                OpOutcome::Removed
            }
            Some(_) => OpOutcome::NotOwner,
        };
        if key.devices.is_empty() {
            self.users.remove(&u.user);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(device: &str, nonce: u64, expires: u64) -> Registration {
        Registration {
            user: "u".into(),
            device: device.into(),
            record: RegistryRecord {
                node_id: "edge".into(),
                shard: 1,
                conn_nonce: nonce,
                expires_at_ms: expires,
            },
        }
    }

    fn unreg(device: &str, nonce: u64) -> Unregistration {
        Unregistration {
            user: "u".into(),
            device: device.into(),
            conn_nonce: nonce,
        }
    }

    #[test]
    fn key_expiry_only_grows_and_removes_the_user() {
        let reg_ = InProcessRegistry::new();
        let a = reg("a", 1, 5_000);
        let b = reg("b", 1, 3_000);
        reg_.apply(&[OpRef::Register(&a)], 1_000);
        assert_eq!(reg_.key_expires_at_ms("u"), Some(5_000));
        reg_.apply(&[OpRef::Register(&b)], 1_000);
        assert_eq!(reg_.key_expires_at_ms("u"), Some(5_000), "never shortened");
        let c = reg("c", 1, 9_000);
        reg_.apply(&[OpRef::Register(&c)], 1_000);
        assert_eq!(reg_.key_expires_at_ms("u"), Some(9_000));
        assert_eq!(reg_.lookup(&["u"], 4_000).len(), 1);
        assert_eq!(reg_.lookup(&["u"], 4_000)[0].len(), 2, "b expired at 3000");
        assert_eq!(
            reg_.raw_fields("u").len(),
            3,
            "expired fields stay until pruned"
        );
        reg_.lookup(&[], 9_000);
        assert_eq!(reg_.user_count(), 0, "key expired as a whole");
    }

    #[test]
    fn newer_connections_win_and_unregister_compares_nonces() {
        let r = InProcessRegistry::new();
        let old = reg("d", 10, 5_000);
        let new = reg("d", 20, 5_000);
        let out = r.apply(
            &[
                OpRef::Register(&new),
                OpRef::Register(&old),
                OpRef::Unregister(&unreg("d", 10)),
            ],
            1_000,
        );
        assert_eq!(
            out,
            [
                OpOutcome::Registered,
                OpOutcome::Superseded,
                OpOutcome::NotOwner
            ]
        );
        assert_eq!(r.lookup(&["u"], 1_000)[0][0].record.conn_nonce, 20);
        let out = r.apply(
            &[
                OpRef::Unregister(&unreg("d", 20)),
                OpRef::Unregister(&unreg("d", 20)),
            ],
            1_000,
        );
        assert_eq!(out, [OpOutcome::Removed, OpOutcome::Absent]);
        assert_eq!(r.user_count(), 0, "last field removed deletes the key");
    }

    #[test]
    fn expired_registrations_are_not_written_but_prune() {
        let r = InProcessRegistry::new();
        r.apply(&[OpRef::Register(&reg("a", 1, 2_000))], 1_000);
        let out = r.apply(&[OpRef::Register(&reg("b", 1, 2_500))], 3_000);
        assert_eq!(out, [OpOutcome::AlreadyExpired]);
        assert!(r.raw_fields("u").is_empty());
    }

    #[test]
    fn edges_age_out() {
        let r = InProcessRegistry::new();
        let info = |id: &str, hb: u64| EdgeInfo {
            node_id: id.into(),
            delivery_host: "127.0.0.1".into(),
            delivery_base_port: 7000,
            shards: 2,
            heartbeat_ms: hb,
        };
        r.heartbeat_edge(&info("old", 1_000));
        r.heartbeat_edge(&info("new", 10_000));
        assert_eq!(r.live_edges(10_000, 5_000), vec![info("new", 10_000)]);
        assert_eq!(r.live_edges(10_000, 100_000).len(), 2);
        r.heartbeat_edge(&info("new", 1_000 + EDGE_PRUNE_AFTER_MS + 1));
        assert_eq!(r.live_edges(u64::MAX, u64::MAX).len(), 1, "old pruned");
        r.remove_edge("new");
        assert!(r.live_edges(0, u64::MAX).is_empty());
    }
}
