//! The Redis back end: a fred client in cluster mode (`redis-cluster://…`) or against one
//! plain node (`redis://…`), running the scripts of `scripts.rs`.
//!
//! Every batch is one pipeline: fred routes each command to the master owning its key's slot,
//! writes them without waiting, and hands back one result per command, so a batch costs
//! about one round trip per master however large it is. Writes are Lua scripts called by SHA;
//! a `NOSCRIPT` answer (a promoted replica or restarted node has an empty script cache)
//! reloads the scripts on every primary and re-sends the affected calls as `EVAL`, which
//! cannot miss. The client is configured for failures rather than for the happy path: every
//! command has a deadline, a connection that stops answering is closed and re-opened (that is
//! how a frozen master is noticed), reconnection retries forever with capped exponential
//! backoff, and fred itself does not re-send commands after a connection drop by default —
//! the [`crate::RegistryWriter`] retries whole operations in order instead.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, HashesInterface, LuaInterface};
use fred::types::config::{Config, ReconnectPolicy, UnresponsiveConfig};
use fred::types::scripts::Script;
use fred::types::{Builder, ClusterHash, ClusterStateChange, CustomCommand, Value};
use fred::util::redis_keyslot;
use herald_protocol::registry_record::{nonce_hex, user_key, RegistryRecord, EDGES_KEY};
use tokio::sync::broadcast;

use crate::edge_record::{decode_edge, encode_edge, EDGE_PRUNE_AFTER_MS};
use crate::model::OpRef;
use crate::{probe, scripts, DeviceLocation, EdgeInfo, OpOutcome, RegistryError};

mod history;

/// How the Redis client behaves under failure. The defaults suit an edge's control thread
/// and a processor: nothing waits longer than a couple of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Deadline of every command or pipeline; a batch that misses it fails as a whole and is
    /// retried by the caller.
    pub command_timeout: Duration,
    /// Deadline of one connection attempt (TCP connect plus handshake commands), and of the
    /// initial connect as a whole (three times this).
    pub connect_timeout: Duration,
    /// A connection with a command unanswered this long is closed and re-opened — how a
    /// frozen (SIGSTOPped, partitioned) master is detected.
    pub unresponsive_timeout: Duration,
    /// First delay between reconnection attempts.
    pub reconnect_min: Duration,
    /// Cap of the exponentially growing delay between reconnection attempts.
    pub reconnect_max: Duration,
    /// How many times fred itself writes a command whose connection dropped under it. `1`
    /// (the default) leaves retries to the caller, which keeps one device's operations in
    /// order; look-up-only clients may raise it.
    pub max_command_attempts: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            unresponsive_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            max_command_attempts: 1,
        }
    }
}

/// The registry in Redis (cluster or single node); clones share one client.
#[derive(Clone)]
pub struct RedisRegistry {
    /// Client and scripts, shared by clones.
    inner: Arc<Inner>,
}

/// What a [`RedisRegistry`] holds.
struct Inner {
    /// The fred client (multiplexed, internally shared).
    client: Client,
    /// The scripts with their SHA1s.
    scripts: Scripts,
    /// The URL, password removed, for diagnostics.
    display_url: String,
}

/// One script call of a pipeline.
#[derive(Clone)]
struct ScriptCall<'s> {
    /// The script.
    script: &'s Script,
    /// Its keys (one slot).
    keys: Vec<String>,
    /// Its arguments.
    args: Vec<Value>,
}

/// The loaded scripts.
#[derive(Clone)]
struct Scripts {
    /// [`scripts::REGISTER`].
    register: Script,
    /// [`scripts::UNREGISTER`].
    unregister: Script,
    /// [`scripts::EDGE_HEARTBEAT`].
    edge_heartbeat: Script,
    /// [`scripts::HISTORY_APPEND`].
    history_append: Script,
    /// [`scripts::HISTORY_READ`].
    history_read: Script,
}

impl Scripts {
    /// Hashes the scripts.
    fn new() -> Scripts {
        Scripts {
            register: Script::from_lua(scripts::REGISTER),
            unregister: Script::from_lua(scripts::UNREGISTER),
            edge_heartbeat: Script::from_lua(scripts::EDGE_HEARTBEAT),
            history_append: Script::from_lua(scripts::HISTORY_APPEND),
            history_read: Script::from_lua(scripts::HISTORY_READ),
        }
    }

    /// All of them, for loading.
    fn all(&self) -> [&Script; 5] {
        [
            &self.register,
            &self.unregister,
            &self.edge_heartbeat,
            &self.history_append,
            &self.history_read,
        ]
    }
}

impl fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("url", &self.inner.display_url)
            .field("state", &self.inner.client.state())
            .finish()
    }
}

/// Client events the writer reacts to: reconnections and topology changes may mean writes
/// were lost, so live registrations are re-asserted.
#[derive(Debug)]
pub struct RegistryEvents {
    /// fred's reconnection notifications.
    reconnect: broadcast::Receiver<fred::types::config::Server>,
    /// fred's cluster topology notifications.
    topology: broadcast::Receiver<Vec<ClusterStateChange>>,
}

/// One client event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryEvent {
    /// The client (re)connected to a server.
    Reconnected,
    /// The cluster's slot map changed (failover, resharding) or events were missed.
    TopologyChanged,
}

impl RegistryEvents {
    /// Waits for the next event; pends forever once the client has shut down.
    pub async fn next(&mut self) -> RegistryEvent {
        loop {
            tokio::select! {
                r = self.reconnect.recv(), if !self.reconnect.is_closed() => match r {
                    Ok(_) => return RegistryEvent::Reconnected,
                    Err(broadcast::error::RecvError::Lagged(_)) => return RegistryEvent::TopologyChanged,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                r = self.topology.recv(), if !self.topology.is_closed() => match r {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return RegistryEvent::TopologyChanged,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                else => std::future::pending::<()>().await,
            }
        }
    }
}

/// Checks the scheme and turns the URL into a fred config.
fn parse_url(url: &str) -> Result<(Config, String), RegistryError> {
    const EXPECTED: &str =
        "expected redis://host:port[/db] or redis-cluster://host:port[?node=host:port&…]";
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| RegistryError::BadUrl(format!("{url:?}: {EXPECTED}")))?;
    let config = match scheme {
        "redis" => {
            if rest.contains('?') {
                return Err(RegistryError::BadUrl(format!(
                    "{url:?}: query parameters (node=…) need the redis-cluster:// scheme"
                )));
            }
            Config::from_url_centralized(url)
        }
        "redis-cluster" => Config::from_url_clustered(url),
        other => {
            return Err(RegistryError::BadUrl(format!(
                "{url:?}: unsupported scheme {other:?}; {EXPECTED}"
            )))
        }
    }
    .map_err(|e| RegistryError::BadUrl(format!("{url:?}: {}", e.details())))?;
    let display = match rest.split_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}"),
        None => url.to_owned(),
    };
    Ok((config, display))
}

/// Milliseconds of a duration as fred's `u32` (saturating).
fn ms_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Whether a command failed because the node lacks the script.
fn is_noscript(e: &fred::error::Error) -> bool {
    e.details().starts_with("NOSCRIPT")
}

impl RedisRegistry {
    /// Connects (failing fast when the servers cannot be reached), starts counting client
    /// events, and loads the scripts on every primary.
    pub async fn connect(url: &str, opts: &RedisOptions) -> Result<RedisRegistry, RegistryError> {
        let (config, display_url) = parse_url(url)?;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = opts.connect_timeout;
                c.internal_command_timeout = opts.connect_timeout;
                c.max_command_attempts = opts.max_command_attempts.max(1);
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(opts.unresponsive_timeout),
                    interval: (opts.unresponsive_timeout / 4).max(Duration::from_millis(10)),
                };
                c.tcp.nodelay = Some(true);
            })
            .with_performance_config(|p| p.default_command_timeout = opts.command_timeout)
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                ms_u32(opts.reconnect_min).max(1),
                ms_u32(opts.reconnect_max).max(1),
                2,
            ));
        let client = builder.build()?;
        match tokio::time::timeout(opts.connect_timeout * 3, client.init()).await {
            Ok(Ok(_connection_task)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
                return Err(RegistryError::Redis(format!(
                    "connecting to {display_url} took longer than {:?}",
                    opts.connect_timeout * 3
                )));
            }
        }
        client.on_reconnect(|server| async move {
            log::info!("registry: connected to {server}");
            probe::reconnect();
            Ok(())
        });
        client.on_cluster_change(|changes| async move {
            log::info!("registry: cluster topology changed: {changes:?}");
            probe::topology_change();
            Ok(())
        });
        let registry = RedisRegistry {
            inner: Arc::new(Inner {
                client,
                scripts: Scripts::new(),
                display_url,
            }),
        };
        registry.load_scripts().await?;
        Ok(registry)
    }

    /// `SCRIPT LOAD`s every script on every primary.
    async fn load_scripts(&self) -> Result<(), RegistryError> {
        for script in self.inner.scripts.all() {
            let lua = script.lua().cloned().unwrap_or_default();
            let _: Value = self.inner.client.script_load_cluster(lua).await?;
        }
        Ok(())
    }

    /// Subscribes to client events (see [`RegistryEvents`]).
    pub fn events(&self) -> RegistryEvents {
        RegistryEvents {
            reconnect: self.inner.client.reconnect_rx(),
            topology: self.inner.client.cluster_change_rx(),
        }
    }

    /// Closes the client's connections.
    pub async fn close(&self) {
        if let Err(e) = self.inner.client.quit().await {
            log::debug!("registry: quit: {e}");
        }
    }

    /// Applies already-validated operations in one pipeline (see [`RedisRegistry::scripts`]).
    pub(crate) async fn apply(
        &self,
        ops: &[OpRef<'_>],
        now_ms: u64,
    ) -> Vec<Result<OpOutcome, RegistryError>> {
        let calls: Vec<ScriptCall<'_>> = ops
            .iter()
            .map(|op| match op {
                OpRef::Register(r) => ScriptCall {
                    script: &self.inner.scripts.register,
                    keys: vec![user_key(&r.user)],
                    args: vec![
                        now_ms.to_string().into(),
                        r.device.as_str().into(),
                        r.record.encode().into(),
                        nonce_hex(r.record.conn_nonce).into(),
                        r.record.expires_at_ms.to_string().into(),
                    ],
                },
                OpRef::Unregister(u) => ScriptCall {
                    script: &self.inner.scripts.unregister,
                    keys: vec![user_key(&u.user)],
                    args: vec![u.device.as_str().into(), nonce_hex(u.conn_nonce).into()],
                },
            })
            .collect();
        self.scripts(&calls)
            .await
            .into_iter()
            .zip(ops)
            .map(|(r, op)| {
                let code = r?.as_i64().ok_or_else(|| {
                    RegistryError::Protocol("script returned a non-integer".into())
                })?;
                match (op, code) {
                    (OpRef::Register(_), 1) => Ok(OpOutcome::Registered),
                    (OpRef::Register(_), 0) => Ok(OpOutcome::Superseded),
                    (OpRef::Register(_), 2) => Ok(OpOutcome::AlreadyExpired),
                    (OpRef::Unregister(_), 1) => Ok(OpOutcome::Removed),
                    (OpRef::Unregister(_), 0) => Ok(OpOutcome::Absent),
                    (OpRef::Unregister(_), -1) => Ok(OpOutcome::NotOwner),
                    (_, other) => Err(RegistryError::Protocol(format!(
                        "script returned unknown code {other}"
                    ))),
                }
            })
            .collect()
    }

    /// Runs script calls in one pipeline and returns one raw result per call; `NOSCRIPT`
    /// answers are retried once as `EVAL` after reloading the scripts.
    async fn scripts(&self, calls: &[ScriptCall<'_>]) -> Vec<Result<Value, fred::error::Error>> {
        let mut raw = self.send_scripts(calls, false).await;
        let missing: Vec<usize> = (0..raw.len())
            .filter(|&i| matches!(&raw[i], Err(e) if is_noscript(e)))
            .collect();
        if !missing.is_empty() {
            log::info!(
                "registry: {} calls hit NOSCRIPT (new or restarted primary); reloading scripts",
                missing.len()
            );
            if let Err(e) = self.load_scripts().await {
                log::warn!("registry: reloading scripts failed: {e}");
            }
            let again: Vec<ScriptCall<'_>> = missing.iter().map(|&i| calls[i].clone()).collect();
            let retried = self.send_scripts(&again, true).await;
            for (i, r) in missing.into_iter().zip(retried) {
                raw[i] = r;
            }
        }
        raw
    }

    /// Sends one pipeline of script calls (`EVALSHA`, or `EVAL` with the source when `eval`)
    /// and returns one raw result per call. fred's pipelines have no typed `evalsha`, so
    /// the calls are custom commands routed explicitly to the slot of their first key (every
    /// script's keys share one slot).
    async fn send_scripts(
        &self,
        calls: &[ScriptCall<'_>],
        eval: bool,
    ) -> Vec<Result<Value, fred::error::Error>> {
        let pipeline = self.inner.client.pipeline();
        for call in calls {
            let slot = redis_keyslot(call.keys[0].as_bytes());
            let (name, body) = if eval {
                (
                    "EVAL",
                    call.script.lua().map(|l| l.to_string()).unwrap_or_default(),
                )
            } else {
                ("EVALSHA", call.script.sha1().to_string())
            };
            let mut args: Vec<Value> = Vec::with_capacity(2 + call.keys.len() + call.args.len());
            args.push(body.into());
            args.push((call.keys.len() as i64).into());
            args.extend(call.keys.iter().map(|k| Value::from(k.as_str())));
            args.extend(call.args.iter().cloned());
            let command = CustomCommand::new_static(name, ClusterHash::Custom(slot), false);
            let queued: Result<(), fred::error::Error> = pipeline.custom(command, args).await;
            if let Err(e) = queued {
                return vec![Err(e); calls.len()];
            }
        }
        spread(pipeline.try_all::<Value>().await, calls.len())
    }

    /// `HGETALL` of every user's key in one pipeline; expired and undecodable fields are
    /// skipped, each list is sorted by device.
    pub(crate) async fn lookup(
        &self,
        users: &[&str],
        now_ms: u64,
    ) -> Result<Vec<Vec<DeviceLocation>>, RegistryError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = self.inner.client.pipeline();
        for user in users {
            let _: () = pipeline.hgetall(user_key(user)).await?;
        }
        let results = spread(
            pipeline.try_all::<HashMap<String, String>>().await,
            users.len(),
        );
        results
            .into_iter()
            .zip(users)
            .map(|(fields, user)| Ok(live_locations(user, fields?, now_ms)))
            .collect()
    }

    /// Writes an edge entry through the heartbeat script (which prunes long-dead entries).
    pub(crate) async fn heartbeat_edge(&self, info: &EdgeInfo) -> Result<(), RegistryError> {
        let args = vec![
            info.node_id.clone(),
            encode_edge(info),
            info.heartbeat_ms
                .saturating_sub(EDGE_PRUNE_AFTER_MS)
                .to_string(),
        ];
        let script = &self.inner.scripts.edge_heartbeat;
        let result: Result<Value, _> = self
            .inner
            .client
            .evalsha(script.sha1().clone(), EDGES_KEY, args.clone())
            .await;
        match result {
            Err(e) if is_noscript(&e) => {
                let _ = self.load_scripts().await;
                let lua = script.lua().cloned().unwrap_or_default();
                let _: Value = self.inner.client.eval(lua, EDGES_KEY, args).await?;
                Ok(())
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Deletes an edge entry.
    pub(crate) async fn remove_edge(&self, node_id: &str) -> Result<(), RegistryError> {
        let _: Value = self.inner.client.hdel(EDGES_KEY, node_id).await?;
        Ok(())
    }

    /// Edge entries whose heartbeat is at most `max_age_ms` old, sorted by node id.
    pub(crate) async fn live_edges(
        &self,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<Vec<EdgeInfo>, RegistryError> {
        let all: HashMap<String, String> = self.inner.client.hgetall(EDGES_KEY).await?;
        let mut live: Vec<EdgeInfo> = all
            .iter()
            .filter_map(|(node, value)| match decode_edge(node, value) {
                Ok(info) => Some(info),
                Err(e) => {
                    probe::bad_record();
                    log::warn!("registry: skipping edge entry: {e}");
                    None
                }
            })
            .filter(|e| now_ms.saturating_sub(e.heartbeat_ms) <= max_age_ms)
            .collect();
        live.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(live)
    }

    /// One `PING` (to any node), to learn whether Redis answers.
    pub(crate) async fn ping(&self) -> Result<Duration, RegistryError> {
        let started = Instant::now();
        let _: Value = self.inner.client.ping(None).await?;
        Ok(started.elapsed())
    }
}

/// fred answers a pipeline that failed as a whole (timeout, client closed) with a single
/// error; spread it over every command so results always line up with the batch.
fn spread<T>(
    results: Vec<Result<T, fred::error::Error>>,
    expected: usize,
) -> Vec<Result<T, fred::error::Error>> {
    if results.len() == expected {
        return results;
    }
    let error = results
        .into_iter()
        .find_map(Result::err)
        .unwrap_or_else(|| {
            fred::error::Error::new(
                fred::error::ErrorKind::Protocol,
                format!("pipeline returned the wrong number of results (expected {expected})"),
            )
        });
    (0..expected).map(|_| Err(error.clone())).collect()
}

/// Decodes a user's hash into its live devices, sorted by device.
fn live_locations(user: &str, fields: HashMap<String, String>, now_ms: u64) -> Vec<DeviceLocation> {
    let mut live: Vec<DeviceLocation> = fields
        .into_iter()
        .filter_map(|(device, value)| match RegistryRecord::decode(&value) {
            Ok(record) => Some(DeviceLocation { device, record }),
            Err(e) => {
                probe::bad_record();
                log::warn!("registry: skipping {user:?}/{device:?}: {e}");
                None
            }
        })
        .filter(|loc| loc.record.is_live(now_ms))
        .collect();
    live.sort_by(|a, b| a.device.cmp(&b.device));
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        assert!(parse_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_url("redis://127.0.0.1:6379/2").is_ok());
        let (config, _) =
            parse_url("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002")
                .unwrap();
        assert_eq!(config.server.hosts().len(), 3);
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "rediss://127.0.0.1:6379",
            "redis://127.0.0.1:6379?node=127.0.0.1:6380",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(matches!(err, RegistryError::BadUrl(_)), "{bad}: {err}");
        }
        let (_, shown) = parse_url("redis://user:secret@127.0.0.1:6379").unwrap();
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn whole_pipeline_errors_are_spread_over_the_batch() {
        let err = fred::error::Error::new(fred::error::ErrorKind::Timeout, "late");
        let spread = spread::<Value>(vec![Err(err)], 3);
        assert_eq!(spread.len(), 3);
        assert!(spread.iter().all(|r| r.is_err()));
    }

    #[test]
    fn lookups_skip_expired_and_undecodable_fields() {
        let rec = |exp| RegistryRecord {
            node_id: "e".into(),
            shard: 0,
            conn_nonce: 7,
            expires_at_ms: exp,
        };
        let fields = HashMap::from([
            ("b".to_string(), rec(2_000).encode()),
            ("a".to_string(), rec(3_000).encode()),
            ("old".to_string(), rec(1_000).encode()),
            ("junk".to_string(), "9|x".to_string()),
        ]);
        let live = live_locations("u", fields, 1_000);
        let devices: Vec<&str> = live.iter().map(|l| l.device.as_str()).collect();
        assert_eq!(devices, ["a", "b"]);
    }
}
