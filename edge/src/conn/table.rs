//! The per-shard connection table: a slab of live connections plus the index
//! `user → devices → slot` — the shard's local half of the push registry.
//!
//! Single-threaded (owned by one shard's state), no locks. A slot is addressed by
//! `(slot, generation)` so wheel entries and drivers never touch a reused slot by mistake.
//! Only authenticated connections are indexed; a new connection for the same `(user, device)`
//! takes over the index and the old one is handed back to be closed as "replaced". The table
//! counts its connections per [`Class`] as they change, so reporting never scans it.

use std::collections::HashMap;
use std::rc::Rc;

use super::{Class, Conn};

#[derive(Debug)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

#[derive(Debug)]
enum Devices {
    One(u32),
    Many(Vec<u32>),
}

impl Devices {
    fn slots(&self) -> &[u32] {
        match self {
            Devices::One(s) => std::slice::from_ref(s),
            Devices::Many(v) => v,
        }
    }
}

/// The slab and the index.
#[derive(Debug, Default)]
pub struct ConnTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    users: HashMap<Rc<str>, Devices>,
    live: usize,
    indexed: usize,
    /// Live connections per [`Class`].
    counts: [usize; Class::COUNT],
}

/// `(slot, generation)` of a connection.
pub type ConnId = (u32, u32);

impl ConnTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a connection; returns its id.
    pub fn insert(&mut self, conn: Conn) -> ConnId {
        self.live += 1;
        self.counts[conn.class.index()] += 1;
        if let Some(slot) = self.free.pop() {
            let s = &mut self.slots[slot as usize];
            s.gen = s.gen.wrapping_add(1);
            s.conn = Some(conn);
            (slot, s.gen)
        } else {
            self.slots.push(Slot {
                gen: 0,
                conn: Some(conn),
            });
            ((self.slots.len() - 1) as u32, 0)
        }
    }

    /// The connection with this id, if still there.
    pub fn get(&mut self, (slot, gen): ConnId) -> Option<&mut Conn> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.gen != gen {
            return None;
        }
        s.conn.as_mut()
    }

    /// The connection with this id, read-only.
    pub fn peek(&self, (slot, gen): ConnId) -> Option<&Conn> {
        let s = self.slots.get(slot as usize)?;
        if s.gen != gen {
            return None;
        }
        s.conn.as_ref()
    }

    /// Moves a connection to another class (keeping the counters true).
    pub fn set_class(&mut self, id: ConnId, class: Class) {
        let Some(conn) = self.get(id) else { return };
        let old = std::mem::replace(&mut conn.class, class);
        self.counts[old.index()] -= 1;
        self.counts[class.index()] += 1;
    }

    /// The generation currently in `slot` (for building ids from index look-ups).
    fn id_of(&self, slot: u32) -> ConnId {
        (slot, self.slots[slot as usize].gen)
    }

    /// Removes a connection (and its index entry if it still owns one).
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let owns_index = self.owns_index(id);
        let s = self.slots.get_mut(id.0 as usize)?;
        if s.gen != id.1 {
            return None;
        }
        let conn = s.conn.take()?;
        self.free.push(id.0);
        self.live -= 1;
        self.counts[conn.class.index()] -= 1;
        if owns_index {
            self.unlink(id.0, conn.user.as_ref().expect("indexed conns have a user"));
        }
        Some(conn)
    }

    fn owns_index(&self, (slot, gen): ConnId) -> bool {
        let Some(Slot {
            gen: g,
            conn: Some(c),
        }) = self.slots.get(slot as usize)
        else {
            return false;
        };
        *g == gen
            && c.user
                .as_ref()
                .and_then(|u| self.users.get(u))
                .is_some_and(|d| d.slots().contains(&slot))
    }

    fn unlink(&mut self, slot: u32, user: &Rc<str>) {
        let empty = match self.users.get_mut(user) {
            Some(Devices::One(s)) if *s == slot => true,
            Some(Devices::Many(v)) => {
                v.retain(|&s| s != slot);
                if v.len() == 1 {
                    let only = v[0];
                    self.users.insert(user.clone(), Devices::One(only));
                }
                false
            }
            _ => return,
        };
        if empty {
            self.users.remove(user);
        }
        self.indexed -= 1;
    }

    /// Indexes an authenticated connection under `(user, device)` in class `class`. If another
    /// connection held that pair, it is unlinked (class [`Class::Leaving`]) and its id
    /// returned so the caller can close it as replaced.
    pub fn index(&mut self, id: ConnId, user: &str, device: &str, class: Class) -> Option<ConnId> {
        let key: Rc<str> = match self.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Rc::from(user),
        };
        let replaced = self.find(user, Some(device)).first().copied();
        if let Some(old) = replaced {
            self.unlink(old.0, &key);
            if self
                .peek(old)
                .is_some_and(|c| matches!(c.class, Class::Open(_)))
            {
                self.set_class(old, Class::Leaving);
            }
        }
        {
            let conn = self.get(id).expect("indexing a live connection");
            conn.user = Some(key.clone());
            conn.device = Box::from(device);
        }
        self.set_class(id, class);
        match self.users.get_mut(&key) {
            None => {
                self.users.insert(key, Devices::One(id.0));
            }
            Some(Devices::One(s)) => {
                let first = *s;
                self.users.insert(key, Devices::Many(vec![first, id.0]));
            }
            Some(Devices::Many(v)) => v.push(id.0),
        }
        self.indexed += 1;
        replaced
    }

    /// Connections of `user` (only `device`'s when given).
    pub fn find(&self, user: &str, device: Option<&str>) -> Vec<ConnId> {
        let Some(devs) = self.users.get(user) else {
            return Vec::new();
        };
        devs.slots()
            .iter()
            .filter(|&&s| {
                device.is_none_or(|d| {
                    self.slots[s as usize]
                        .conn
                        .as_ref()
                        .is_some_and(|c| &*c.device == d)
                })
            })
            .map(|&s| self.id_of(s))
            .collect()
    }

    /// Devices of `user` indexed here.
    pub fn devices_of(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |d| d.slots().len())
    }

    /// Ids of every indexed (authenticated, current) connection.
    pub fn all_indexed(&self) -> Vec<ConnId> {
        self.users
            .values()
            .flat_map(|d| d.slots().iter().map(|&s| self.id_of(s)))
            .collect()
    }

    /// Ids of live connections in slots `from..` (any phase), at most `max` of them, and the
    /// slot to continue from (None when the end was reached): walking a large table in steps.
    pub fn slots_from(&self, from: u32, max: usize) -> (Vec<ConnId>, Option<u32>) {
        let mut out = Vec::new();
        let mut i = from as usize;
        while i < self.slots.len() {
            if out.len() == max {
                return (out, Some(i as u32));
            }
            if self.slots[i].conn.is_some() {
                out.push(self.id_of(i as u32));
            }
            i += 1;
        }
        (out, None)
    }

    /// Ids of every live connection (any phase).
    pub fn all_slots(&self) -> Vec<ConnId> {
        self.slots_from(0, usize::MAX).0
    }

    /// Live connections (any phase).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Indexed (authenticated, current) connections.
    pub fn indexed(&self) -> usize {
        self.indexed
    }

    /// Distinct users indexed.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Live connections in `class`.
    pub fn count(&self, class: Class) -> usize {
        self.counts[class.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Life, Timing, Wire};

    fn conn() -> Conn {
        let t = Timing {
            handshake: 1,
            ping_interval: 1,
            pong_timeout: 1,
            sse_keepalive: 1,
            close_grace: 1,
        };
        Conn::new(Life::handshaking(0, &t), 7, -1)
    }

    const WS: Class = Class::Open(Wire::WsPlain);

    #[test]
    fn index_find_replace_remove() {
        let mut t = ConnTable::new();
        let a = t.insert(conn());
        let b = t.insert(conn());
        let c = t.insert(conn());
        assert_eq!(t.count(Class::Handshaking), 3);
        assert_eq!(t.index(a, "u", "phone", WS), None);
        assert_eq!(t.index(b, "u", "tab", Class::Open(Wire::Sse)), None);
        assert_eq!(t.find("u", None).len(), 2);
        assert_eq!(t.find("u", Some("tab")), vec![b]);
        assert_eq!(t.devices_of("u"), 2);
        // c replaces a
        assert_eq!(t.index(c, "u", "phone", WS), Some(a));
        assert_eq!(t.find("u", Some("phone")), vec![c]);
        assert_eq!(t.indexed(), 2);
        assert_eq!(
            (
                t.count(WS),
                t.count(Class::Leaving),
                t.count(Class::Handshaking)
            ),
            (1, 1, 0)
        );
        // removing the replaced one leaves the index alone
        assert!(t.remove(a).is_some());
        assert_eq!(t.find("u", Some("phone")), vec![c]);
        assert!(t.remove(c).is_some());
        assert!(t.remove(b).is_some());
        assert_eq!((t.live(), t.indexed(), t.users()), (0, 0, 0));
        assert!((0..Class::COUNT).all(|i| t.counts[i] == 0));
        // slot reuse bumps the generation; stale ids miss
        let d = t.insert(conn());
        assert_ne!(d, a);
        assert!(t.get(a).is_none() || d.0 != a.0);
        assert!(t.remove(b).is_none());
    }

    #[test]
    fn walking_in_steps_sees_every_live_slot_once() {
        let mut t = ConnTable::new();
        let ids: Vec<ConnId> = (0..10).map(|_| t.insert(conn())).collect();
        t.remove(ids[3]);
        let mut seen = Vec::new();
        let mut from = Some(0);
        while let Some(f) = from {
            let (chunk, next) = t.slots_from(f, 4);
            assert!(chunk.len() <= 4);
            seen.extend(chunk);
            from = next;
        }
        assert_eq!(seen.len(), 9);
        assert!(!seen.contains(&ids[3]));
    }
}
