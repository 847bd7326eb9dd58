//! The per-shard connection table: a slab of live connections plus the index
//! `user → devices → slot` — the shard's local half of the push registry.
//!
//! Single-threaded (owned by one shard behind a `RefCell`), no locks. A slot is addressed by
//! `(slot, generation)` so wheel entries and drivers never touch a reused slot by mistake.
//! Only authenticated connections are indexed; a new connection for the same `(user, device)`
//! takes over the index and the old one is handed back to be closed as "replaced".

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::task::Waker;

use crate::handshake::ConnKind;
use crate::lifecycle::Life;
use herald_protocol::ws::server::WsReader;

/// How a connection is to be closed, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Not closing.
    No,
    /// Write what is queued, then wait for the client to close (until the wheel's grace deadline).
    AwaitClient,
    /// Write what is queued, then close the socket.
    AfterFlush,
    /// Close the socket now, dropping what is queued.
    Now,
    /// The socket is gone but the entry lingers (the client was asked to move and is
    /// reconnecting elsewhere): deliveries are answered `draining` and the registry record is
    /// removed only when the linger ends, after the client's new registration.
    Departed,
}

/// One connection's state (the socket itself is owned by its driver task).
#[derive(Debug)]
pub struct Conn {
    /// WebSocket or SSE (meaningful once the handshake is done).
    pub kind: ConnKind,
    /// Deadlines (handshake, heartbeat, lifetime, grace).
    pub life: Life,
    /// Tick of this connection's live timer-wheel entry.
    pub wheel_at: u32,
    /// The authenticated user (None while handshaking); shared with the index key.
    pub user: Option<Rc<str>>,
    /// The device id (empty while handshaking).
    pub device: Box<str>,
    /// Random id of this connection: the registry's compare-and-delete token.
    pub nonce: u64,
    /// The socket's descriptor (owned by the driver), for writing straight to an idle
    /// connection; only used while `closing == No`, when the driver holds the socket open.
    pub fd: i32,
    /// Request head bytes received so far (handshake only; dropped after it). Boxed: 8 bytes
    /// per open connection instead of 24.
    #[allow(clippy::box_collection)]
    pub head: Option<Box<Vec<u8>>>,
    /// Client frame reader (WebSocket).
    pub ws: WsReader,
    /// Encoded bytes waiting to be written (shared between connections for broadcasts).
    pub out: VecDeque<Rc<[u8]>>,
    /// Bytes of `out.front()` already written.
    pub out_off: u32,
    /// Total unwritten bytes in `out`.
    pub out_bytes: u32,
    /// The driver's waker, to resume it when something is queued or it must close.
    pub waker: Option<Waker>,
    /// Close state.
    pub closing: Closing,
    /// Why it is closing (metric label), once decided.
    pub close_reason: Option<&'static str>,
}

impl Conn {
    /// A fresh, handshaking connection.
    pub fn new(life: Life, wheel_at: u32, nonce: u64, fd: i32) -> Conn {
        Conn {
            fd,
            kind: ConnKind::WebSocket,
            life,
            wheel_at,
            user: None,
            device: Box::from(""),
            nonce,
            head: None,
            ws: WsReader::default(),
            out: VecDeque::new(),
            out_off: 0,
            out_bytes: 0,
            waker: None,
            closing: Closing::No,
            close_reason: None,
        }
    }

    /// Queues bytes unless that would exceed `cap` (an empty queue takes any single item).
    /// Returns false on overflow.
    pub fn enqueue(&mut self, bytes: Rc<[u8]>, cap: usize) -> bool {
        let len = bytes.len() as u64;
        if !self.out.is_empty() && u64::from(self.out_bytes) + len > cap as u64 {
            return false;
        }
        self.out_bytes = self.out_bytes.saturating_add(len as u32);
        self.out.push_back(bytes);
        true
    }

    /// Wakes the driver.
    pub fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    /// Marks the connection for closing (the first reason wins) and wakes the driver.
    pub fn close(&mut self, how: Closing, reason: &'static str) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
        }
        let rank = |c: Closing| match c {
            Closing::No => 0,
            Closing::AwaitClient => 1,
            Closing::AfterFlush => 2,
            Closing::Now => 3,
            Closing::Departed => 4,
        };
        if rank(how) > rank(self.closing) {
            self.closing = how;
        }
        self.wake();
    }
}

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

    /// Indexes an authenticated connection under `(user, device)`. If another connection held
    /// that pair, it is unlinked and its id returned so the caller can close it as replaced.
    pub fn index(&mut self, id: ConnId, user: &str, device: &str) -> Option<ConnId> {
        let key: Rc<str> = match self.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Rc::from(user),
        };
        let replaced = self.find(user, Some(device)).first().copied();
        if let Some(old) = replaced {
            self.unlink(old.0, &key);
        }
        {
            let conn = self.get(id).expect("indexing a live connection");
            conn.user = Some(key.clone());
            conn.device = Box::from(device);
        }
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

    /// Ids of every indexed (authenticated, current) connection.
    pub fn all_indexed(&self) -> Vec<ConnId> {
        self.users
            .values()
            .flat_map(|d| d.slots().iter().map(|&s| self.id_of(s)))
            .collect()
    }

    /// Ids of every live connection (any phase).
    pub fn all_slots(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, s)| (i as u32, s.gen))
            .collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Timing;

    fn conn() -> Conn {
        let t = Timing {
            handshake: 1,
            ping_interval: 1,
            pong_timeout: 1,
            sse_keepalive: 1,
            close_grace: 1,
        };
        Conn::new(Life::handshaking(0, &t), 1, 7, -1)
    }

    #[test]
    fn index_find_replace_remove() {
        let mut t = ConnTable::new();
        let a = t.insert(conn());
        let b = t.insert(conn());
        let c = t.insert(conn());
        assert_eq!(t.index(a, "u", "phone"), None);
        assert_eq!(t.index(b, "u", "tab"), None);
        assert_eq!(t.find("u", None).len(), 2);
        assert_eq!(t.find("u", Some("tab")), vec![b]);
        // c replaces a
        assert_eq!(t.index(c, "u", "phone"), Some(a));
        assert_eq!(t.find("u", Some("phone")), vec![c]);
        assert_eq!(t.indexed(), 2);
        // removing the replaced one leaves the index alone
        assert!(t.remove(a).is_some());
        assert_eq!(t.find("u", Some("phone")), vec![c]);
        assert!(t.remove(c).is_some());
        assert!(t.remove(b).is_some());
        assert_eq!((t.live(), t.indexed(), t.users()), (0, 0, 0));
        // slot reuse bumps the generation; stale ids miss
        let d = t.insert(conn());
        assert_ne!(d, a);
        assert!(t.get(a).is_none() || d.0 != a.0);
        assert!(t.remove(b).is_none());
    }

    #[test]
    fn queue_cap() {
        let mut c = conn();
        assert!(
            c.enqueue(Rc::from(vec![0u8; 100]), 10),
            "empty queue takes one item"
        );
        assert!(!c.enqueue(Rc::from(vec![0u8; 1]), 10));
        assert_eq!(c.out_bytes, 100);
    }
}
