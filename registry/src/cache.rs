//! [`LookupCache`]: the processor's short-lived cache in front of registry look-ups.
//!
//! A processor looks up the same users over and over (a burst of pushes to one user, a hot
//! topic), so each user's device list is kept for a short TTL (default 1 s). Only the users
//! missing from the cache go to the registry, in one pipelined batch. An entry never outlives
//! the earliest expiry of the records in it, so the cache never answers with a location the
//! registry itself would already ignore. When an edge answers "not here" the processor calls
//! [`LookupCache::invalidate`]; a look-up that was in flight while any invalidation happened
//! does not cache its result (it may predate the invalidation). Size is bounded: beyond
//! `max_entries` the oldest insertions are evicted first. Time is passed in (`now_ms`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{probe, DeviceLocation, Registry, RegistryError};

/// Default time an entry is trusted.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Cached look-ups in front of a [`Registry`]; clones share the cache.
#[derive(Debug, Clone)]
pub struct LookupCache {
    /// The shared part.
    inner: Arc<Inner>,
}

/// Configuration and state.
#[derive(Debug)]
struct Inner {
    /// Where misses go.
    registry: Registry,
    /// Entry lifetime in ms.
    ttl_ms: u64,
    /// Most entries kept.
    max_entries: usize,
    /// The entries.
    state: Mutex<State>,
}

/// The cache contents.
#[derive(Debug, Default)]
struct State {
    /// User → entry.
    entries: HashMap<String, Entry>,
    /// Insertion order for eviction: (user, generation); stale pairs are skipped.
    order: VecDeque<(String, u64)>,
    /// Generation of the next insertion.
    next_generation: u64,
    /// Bumped by every invalidation; a look-up that saw it change does not insert.
    invalidations: u64,
}

/// One cached user.
#[derive(Debug)]
struct Entry {
    /// The live devices at fetch time.
    locations: Arc<[DeviceLocation]>,
    /// Trusted strictly before this instant (unix ms).
    valid_until_ms: u64,
    /// Matches the `order` item that inserted it.
    generation: u64,
}

impl LookupCache {
    /// A cache of at most `max_entries` users (at least 1), each trusted for `ttl`.
    pub fn new(registry: Registry, ttl: Duration, max_entries: usize) -> LookupCache {
        LookupCache {
            inner: Arc::new(Inner {
                registry,
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                max_entries: max_entries.max(1),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Locks the state (poisoning ignored: entries are independent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live devices of each user, in the order of `users`; cached users are answered
    /// locally, the others fetched in one batch and cached.
    pub async fn lookup(
        &self,
        users: &[&str],
        now_ms: u64,
    ) -> Result<Vec<Arc<[DeviceLocation]>>, RegistryError> {
        let mut answers: Vec<Option<Arc<[DeviceLocation]>>> = Vec::with_capacity(users.len());
        let mut misses: Vec<&str> = Vec::new();
        let mut miss_index: HashMap<&str, usize> = HashMap::new();
        let epoch = {
            let state = self.lock();
            for user in users {
                let hit = state
                    .entries
                    .get(*user)
                    .filter(|e| now_ms < e.valid_until_ms)
                    .map(|e| e.locations.clone());
                if hit.is_none() {
                    miss_index.entry(user).or_insert_with(|| {
                        misses.push(user);
                        misses.len() - 1
                    });
                }
                answers.push(hit);
            }
            state.invalidations
        };
        let hits = answers.iter().filter(|a| a.is_some()).count();
        probe::cache(hits as u64, misses.len() as u64);
        if !misses.is_empty() {
            let fetched = self.inner.registry.lookup(&misses, now_ms).await?;
            let fetched: Vec<Arc<[DeviceLocation]>> = fetched.into_iter().map(Arc::from).collect();
            let mut state = self.lock();
            if state.invalidations == epoch {
                for (user, locations) in misses.iter().zip(&fetched) {
                    self.insert(&mut state, user, locations.clone(), now_ms);
                }
            }
            drop(state);
            for (answer, user) in answers.iter_mut().zip(users) {
                if answer.is_none() {
                    *answer = miss_index.get(user).and_then(|&i| fetched.get(i)).cloned();
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Arc::from(Vec::new())))
            .collect())
    }

    /// Forgets `user` (an edge answered "not here"), so the next look-up asks the registry.
    pub fn invalidate(&self, user: &str) {
        let mut state = self.lock();
        state.entries.remove(user);
        state.invalidations += 1;
        probe::cache_invalidation();
    }

    /// Number of cached users (expired entries included until replaced or evicted).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts an entry, evicting the oldest insertions beyond `max_entries`.
    fn insert(&self, state: &mut State, user: &str, locations: Arc<[DeviceLocation]>, now_ms: u64) {
        let earliest_record = locations.iter().map(|l| l.record.expires_at_ms).min();
        let valid_until_ms = now_ms
            .saturating_add(self.inner.ttl_ms)
            .min(earliest_record.unwrap_or(u64::MAX));
        let generation = state.next_generation;
        state.next_generation += 1;
        state.entries.insert(
            user.to_owned(),
            Entry {
                locations,
                valid_until_ms,
                generation,
            },
        );
        state.order.push_back((user.to_owned(), generation));
        while state.entries.len() > self.inner.max_entries {
            let Some((old, generation)) = state.order.pop_front() else {
                break;
            };
            if state
                .entries
                .get(&old)
                .is_some_and(|e| e.generation == generation)
            {
                state.entries.remove(&old);
            }
        }
        if state.order.len() > 2 * self.inner.max_entries {
            let entries = &state.entries;
            let order: VecDeque<(String, u64)> = state
                .order
                .drain(..)
                .filter(|(u, g)| entries.get(u).is_some_and(|e| e.generation == *g))
                .collect();
            state.order = order;
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_protocol::registry_record::RegistryRecord;

    use super::*;
    use crate::{Registration, Unregistration};

    fn reg(user: &str, device: &str, nonce: u64, expires: u64) -> Registration {
        Registration {
            user: user.into(),
            device: device.into(),
            record: RegistryRecord {
                node_id: "e".into(),
                shard: 0,
                conn_nonce: nonce,
                expires_at_ms: expires,
            },
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn serves_hits_locally_until_ttl_or_record_expiry() {
        rt().block_on(async {
            let registry = Registry::in_process();
            registry
                .register(&[reg("a", "d", 1, 100_000), reg("b", "d", 1, 1_500)], 1_000)
                .await
                .unwrap();
            let cache = LookupCache::new(registry.clone(), Duration::from_secs(1), 10);
            let first = cache.lookup(&["a", "b", "a"], 1_000).await.unwrap();
            assert_eq!(first.iter().map(|l| l.len()).collect::<Vec<_>>(), [1, 1, 1]);
            registry
                .unregister(&[Unregistration {
                    user: "a".into(),
                    device: "d".into(),
                    conn_nonce: 1,
                }])
                .await
                .unwrap();
            assert_eq!(
                cache.lookup(&["a"], 1_900).await.unwrap()[0].len(),
                1,
                "cached"
            );
            assert_eq!(
                cache.lookup(&["a"], 2_000).await.unwrap()[0].len(),
                0,
                "ttl passed"
            );
            assert_eq!(
                cache.lookup(&["b"], 1_500).await.unwrap()[0].len(),
                0,
                "record expired"
            );
        });
    }

    #[test]
    fn invalidation_forces_a_fetch() {
        rt().block_on(async {
            let registry = Registry::in_process();
            let cache = LookupCache::new(registry.clone(), Duration::from_secs(10), 10);
            assert!(cache.lookup(&["a"], 1_000).await.unwrap()[0].is_empty());
            registry
                .register(&[reg("a", "d", 1, 100_000)], 1_000)
                .await
                .unwrap();
            assert!(
                cache.lookup(&["a"], 1_001).await.unwrap()[0].is_empty(),
                "negative hit"
            );
            cache.invalidate("a");
            assert_eq!(cache.lookup(&["a"], 1_002).await.unwrap()[0].len(), 1);
        });
    }

    #[test]
    fn stays_bounded_evicting_oldest_first() {
        rt().block_on(async {
            let cache = LookupCache::new(Registry::in_process(), Duration::from_secs(10), 3);
            for (i, user) in ["a", "b", "c", "d", "e"].iter().enumerate() {
                cache.lookup(&[user], 1_000 + i as u64).await.unwrap();
            }
            assert_eq!(cache.len(), 3);
            let state = cache.lock();
            assert!(state.entries.contains_key("e") && !state.entries.contains_key("a"));
        });
    }
}
