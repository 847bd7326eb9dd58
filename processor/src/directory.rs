//! # Where a push goes — registry look-ups and edge membership turned into routes
//!
//! The [`Directory`] answers two questions for the forwarding code:
//!
//! - *which `(node, shard)` routes reach a target*: a user target goes to every shard holding
//!   one of the user's devices (one message per shard, which the edge hands to all of the
//!   user's connections there), a device target to the shard holding that device, a broadcast
//!   to every shard of every live edge. User look-ups go through the registry's
//!   [`LookupCache`]; an edge answering `not_here` makes the caller [`Directory::invalidate`].
//! - *where a route listens*: `delivery_host : delivery_base_port + shard` of the node's
//!   membership entry, refreshed every `edges_refresh` (and early, at most every 100 ms, when a
//!   look-up names a node the snapshot does not know yet — a freshly started edge).
//!
//! Both questions are answered together: a look-up yields [`Resolved`] routes, each with its
//! address or none when its node is not a live edge — its registry record is stale (the edge
//! died and the record has not expired yet), which the flow treats like `not_here`. The
//! forwarding code never asks for an address again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_registry::{DeviceLocation, EdgeInfo, LookupCache, Registry, RegistryError};
use tokio::time::Instant;

use crate::clock::now_unix_us;
use crate::flow::{Route, RouteStatus};

/// A route with its address, as resolved by one look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The `(node, shard)`.
    pub route: Route,
    /// `host:port` of its delivery port; `None` when the node is not a live edge (or has no
    /// such shard).
    pub addr: Option<Arc<str>>,
}

impl Resolved {
    /// What the flow needs to know: whether the route can be sent to.
    pub fn status(&self) -> RouteStatus {
        if self.addr.is_some() {
            RouteStatus::Live
        } else {
            RouteStatus::DeadNode
        }
    }
}

/// The live edges at one refresh.
#[derive(Debug, Default)]
struct EdgeSnapshot {
    /// Membership entry by node id.
    by_node: HashMap<Arc<str>, EdgeInfo>,
    /// Every shard of every live edge with its address (broadcast fan-out), sorted.
    all_routes: Vec<Resolved>,
}

impl EdgeSnapshot {
    /// `host:port` of a route's delivery port; `None` when the node is not a live edge or
    /// has no such shard.
    fn address(&self, route: &Route) -> Option<Arc<str>> {
        let e = self.by_node.get(&route.node)?;
        address_of(e, route.shard)
    }
}

/// `delivery_host : delivery_base_port + shard`, bracketing an IPv6 host.
fn address_of(e: &EdgeInfo, shard: u16) -> Option<Arc<str>> {
    if shard >= e.shards {
        return None;
    }
    let port = u32::from(e.delivery_base_port) + u32::from(shard);
    let port = u16::try_from(port).ok()?;
    Some(
        if e.delivery_host.contains(':') && !e.delivery_host.starts_with('[') {
            format!("[{}]:{port}", e.delivery_host)
        } else {
            format!("{}:{port}", e.delivery_host)
        }
        .into(),
    )
}

/// Registry look-ups and edge membership, shared by all of a processor's tasks.
pub struct Directory {
    /// The registry (membership reads).
    registry: Registry,
    /// Cached user look-ups.
    cache: LookupCache,
    /// Latest membership snapshot.
    edges: RwLock<Arc<EdgeSnapshot>>,
    /// When membership was last read; serialises refreshes.
    refreshed_at: tokio::sync::Mutex<Option<Instant>>,
    /// Edges whose heartbeat is older than this are not live.
    edge_max_age: Duration,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field(
                "edges",
                &self.edges.read().map(|e| e.by_node.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    now_unix_us() / 1000
}

impl Directory {
    /// A directory over `registry` with a look-up cache of `cache_ttl` / `cache_max` users.
    pub fn new(
        registry: Registry,
        cache_ttl: Duration,
        cache_max: usize,
        edge_max_age: Duration,
    ) -> Directory {
        Directory {
            cache: LookupCache::new(registry.clone(), cache_ttl, cache_max),
            registry,
            edges: RwLock::new(Arc::new(EdgeSnapshot::default())),
            refreshed_at: tokio::sync::Mutex::new(None),
            edge_max_age,
        }
    }

    fn snapshot(&self) -> Arc<EdgeSnapshot> {
        self.edges
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Re-reads edge membership.
    pub async fn refresh_edges(&self) -> Result<(), RegistryError> {
        let mut at = self.refreshed_at.lock().await;
        self.refresh_locked(&mut at).await
    }

    /// Re-reads edge membership unless it was read less than `min_age` ago.
    pub async fn refresh_edges_if_older(&self, min_age: Duration) -> Result<(), RegistryError> {
        let mut at = self.refreshed_at.lock().await;
        if at.is_some_and(|t| t.elapsed() < min_age) {
            return Ok(());
        }
        self.refresh_locked(&mut at).await
    }

    async fn refresh_locked(&self, at: &mut Option<Instant>) -> Result<(), RegistryError> {
        let edges = self
            .registry
            .live_edges(now_ms(), self.edge_max_age.as_millis() as u64)
            .await?;
        *at = Some(Instant::now());
        let mut snap = EdgeSnapshot::default();
        for e in edges {
            let node: Arc<str> = e.node_id.as_str().into();
            for shard in 0..e.shards {
                snap.all_routes.push(Resolved {
                    route: Route {
                        node: node.clone(),
                        shard,
                    },
                    addr: address_of(&e, shard),
                });
            }
            snap.by_node.insert(node, e);
        }
        snap.all_routes.sort_by(|a, b| a.route.cmp(&b.route));
        let snap = Arc::new(snap);
        match self.edges.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
        Ok(())
    }

    /// `host:port` of a route's delivery port; `None` when the node is not a live edge or has
    /// no such shard.
    pub fn address(&self, route: &Route) -> Option<Arc<str>> {
        self.snapshot().address(route)
    }

    /// Every shard of every live edge, with its address.
    pub fn broadcast_routes(&self) -> Vec<Resolved> {
        self.snapshot().all_routes.clone()
    }

    /// Routes reaching `user` (all devices) or one `device` of it, from the cache or the
    /// registry, each resolved against the membership snapshot. Records past their expiry
    /// are ignored.
    pub async fn user_routes(
        &self,
        user: &str,
        device: Option<&str>,
    ) -> Result<Vec<Resolved>, RegistryError> {
        let now = now_ms();
        let locations = self
            .cache
            .lookup(&[user], now)
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        Ok(self.routes_to(&locations, device, now).await)
    }

    /// Routes reaching the given live devices of a user (all of them, or one `device`),
    /// resolved against the membership snapshot — the second half of [`Directory::user_routes`],
    /// for look-ups that came with a history append.
    pub async fn routes_to(
        &self,
        locations: &[DeviceLocation],
        device: Option<&str>,
        now: u64,
    ) -> Vec<Resolved> {
        let mut routes: Vec<Route> = Vec::new();
        let snap = self.snapshot();
        let mut unknown_node = false;
        for loc in locations.iter() {
            if device.is_some_and(|d| d != loc.device) || loc.record.expires_at_ms <= now {
                continue;
            }
            let node: Arc<str> = match snap.by_node.get_key_value(loc.record.node_id.as_str()) {
                Some((k, _)) => k.clone(),
                None => {
                    unknown_node = true;
                    loc.record.node_id.as_str().into()
                }
            };
            let route = Route {
                node,
                shard: loc.record.shard,
            };
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        if unknown_node {
            // A node we have not seen: maybe an edge that started since the last refresh.
            if let Err(e) = self
                .refresh_edges_if_older(Duration::from_millis(100))
                .await
            {
                log::warn!("edge membership refresh failed: {e}");
            }
        }
        // Addresses from the snapshot as it is now (after that refresh, if any).
        let snap = self.snapshot();
        routes
            .into_iter()
            .map(|route| Resolved {
                addr: snap.address(&route),
                route,
            })
            .collect()
    }

    /// The registry (history appends).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Forgets the cached look-up of `user` (an edge said the user is not there).
    pub fn invalidate(&self, user: &str) {
        self.cache.invalidate(user);
    }

    /// Number of live edges in the snapshot.
    pub fn live_edge_count(&self) -> usize {
        self.snapshot().by_node.len()
    }
}
