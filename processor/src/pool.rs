//! # Connection pool — `connections_per_shard` links per edge shard
//!
//! The pool keeps, per [`Route`], a few [`LinkHandle`]s to the route's delivery port (created
//! on first use; the caller brings the address its look-up resolved). A message picks its link by an affinity hash (the target user), so one
//! user's messages always travel over the same connection and stay in order; broadcasts
//! spread by their id. When a route's address changes (the edge restarted elsewhere) its links
//! are replaced; [`DeliveryPool::prune`] drops links of edges that left.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use herald_protocol::kafka::Priority;
use tokio::sync::oneshot;

use crate::directory::Directory;
use crate::flow::Route;
use crate::link::{Item, LinkHandle, LinkSettings, Reply};

/// The links of one route.
#[derive(Debug)]
struct ShardLinks {
    /// The address they connect to.
    addr: Arc<str>,
    /// `connections_per_shard` links.
    links: Vec<LinkHandle>,
}

/// Links to every edge shard this processor talks to.
#[derive(Debug)]
pub struct DeliveryPool {
    /// Links by route.
    routes: Mutex<HashMap<Route, ShardLinks>>,
    /// Link tuning.
    settings: LinkSettings,
    /// Links per route.
    per_route: usize,
}

/// A stable hash for link affinity.
pub fn affinity(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl DeliveryPool {
    /// An empty pool.
    pub fn new(settings: LinkSettings, per_route: usize) -> DeliveryPool {
        DeliveryPool {
            routes: Mutex::new(HashMap::new()),
            settings,
            per_route: per_route.max(1),
        }
    }

    /// Queues `item` on `route`, whose delivery port is `addr`, at `priority`; `polled_us`
    /// (when the processor took the record, unix µs) samples the `queue` stage when written.
    pub fn submit(
        &self,
        route: &Route,
        addr: &Arc<str>,
        priority: Priority,
        affinity: u64,
        item: Item,
        polled_us: Option<u64>,
    ) -> oneshot::Receiver<Reply> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = routes.entry(route.clone()).or_insert_with(|| ShardLinks {
            addr: addr.clone(),
            links: Vec::new(),
        });
        if entry.addr != *addr
            || entry.links.is_empty()
            || entry.links.iter().any(LinkHandle::is_closed)
        {
            entry.links = (0..self.per_route)
                .map(|_| LinkHandle::spawn(addr.to_string(), self.settings.clone()))
                .collect();
            entry.addr = addr.clone();
        }
        let link = &entry.links[(affinity % entry.links.len() as u64) as usize];
        link.submit(priority, item, polled_us)
    }

    /// Drops the links of routes that no longer have an address.
    pub fn prune(&self, directory: &Directory) {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.retain(|route, links| directory.address(route).as_ref() == Some(&links.addr));
    }

    /// Routes with links.
    pub fn route_count(&self) -> usize {
        self.routes.lock().map(|r| r.len()).unwrap_or(0)
    }
}
