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
use fred::interfaces::{
    ClientLike, ClusterInterface, EventInterface, HashesInterface, LuaInterface,
};
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
    /// [`scripts::REGISTRY_OPS`].
    registry_ops: Script,
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
            registry_ops: Script::from_lua(scripts::REGISTRY_OPS),
            edge_heartbeat: Script::from_lua(scripts::EDGE_HEARTBEAT),
            history_append: Script::from_lua(scripts::HISTORY_APPEND),
            history_read: Script::from_lua(scripts::HISTORY_READ),
        }
    }

    /// All of them, for loading.
    fn all(&self) -> [&Script; 4] {
        [
            &self.registry_ops,
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

    /// Applies already-validated operations: one `REGISTRY_OPS` call per cluster node (the
    /// node's operations in order), all in one pipeline. A call that fails as a whole — most
    /// likely a key its node no longer serves — is re-sent as one call per operation, each
    /// routed by its own key (see [`scripts::REGISTRY_OPS`] for why applying some of them
    /// twice is harmless).
    pub(crate) async fn apply(
        &self,
        ops: &[OpRef<'_>],
        now_ms: u64,
    ) -> Vec<Result<OpOutcome, RegistryError>> {
        let keys: Vec<String> = ops.iter().map(|op| user_key(op.user())).collect();
        let groups = self.group_by_node(&keys);
        self.apply_groups(ops, &keys, &groups, now_ms).await
    }

    /// [`RedisRegistry::apply`] with the operations already grouped (`keys[i]` is the user key
    /// of `ops[i]`; each group's operations are sent as one call routed by its first key).
    async fn apply_groups(
        &self,
        ops: &[OpRef<'_>],
        keys: &[String],
        groups: &[Vec<usize>],
        now_ms: u64,
    ) -> Vec<Result<OpOutcome, RegistryError>> {
        let calls: Vec<ScriptCall<'_>> = groups
            .iter()
            .map(|g| self.ops_call(ops, keys, g, now_ms))
            .collect();
        let mut out: Vec<Option<Result<OpOutcome, RegistryError>>> =
            (0..ops.len()).map(|_| None).collect();
        let mut again = Vec::new();
        for (group, result) in groups.iter().zip(self.scripts(&calls).await) {
            match result {
                Err(e) if group.len() > 1 => {
                    log::debug!(
                        "registry: a batch of {} operations failed ({e}); re-sending them one by one",
                        group.len()
                    );
                    again.extend_from_slice(group);
                }
                result => assign(&mut out, ops, group, result),
            }
        }
        if !again.is_empty() {
            probe::batch_split();
            again.sort_unstable();
            let singles: Vec<Vec<usize>> = again.iter().map(|&i| vec![i]).collect();
            let calls: Vec<ScriptCall<'_>> = singles
                .iter()
                .map(|g| self.ops_call(ops, keys, g, now_ms))
                .collect();
            for (group, result) in singles.iter().zip(self.scripts(&calls).await) {
                assign(&mut out, ops, group, result);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(RegistryError::Protocol("operation without result".into())))
            })
            .collect()
    }

    /// Splits operations (by their user `keys`) into groups that one node serves, each in
    /// the operations' order: one group for a single node; by the client's cached slot map
    /// for a cluster (an operation whose slot has no known node gets a group of its own).
    fn group_by_node(&self, keys: &[String]) -> Vec<Vec<usize>> {
        if keys.len() <= 1 || !self.inner.client.is_clustered() {
            return vec![(0..keys.len()).collect()];
        }
        let Some(routing) = self.inner.client.cached_cluster_state() else {
            return (0..keys.len()).map(|i| vec![i]).collect();
        };
        group_by(keys, |slot| routing.get_server(slot).cloned())
    }

    /// The `REGISTRY_OPS` call for the operations `group` (indices into `ops` and `keys`).
    fn ops_call(
        &self,
        ops: &[OpRef<'_>],
        keys: &[String],
        group: &[usize],
        now_ms: u64,
    ) -> ScriptCall<'_> {
        let mut args: Vec<Value> = Vec::with_capacity(1 + 6 * group.len());
        args.push(now_ms.to_string().into());
        for &i in group {
            let key: Value = keys[i].as_str().into();
            match ops[i] {
                OpRef::Register(r) => args.extend([
                    "r".into(),
                    key,
                    r.device.as_str().into(),
                    r.record.encode().into(),
                    nonce_hex(r.record.conn_nonce).into(),
                    r.record.expires_at_ms.to_string().into(),
                ]),
                OpRef::Unregister(u) => args.extend([
                    "u".into(),
                    key,
                    u.device.as_str().into(),
                    nonce_hex(u.conn_nonce).into(),
                ]),
            }
        }
        ScriptCall {
            script: &self.inner.scripts.registry_ops,
            keys: vec![keys[group[0]].clone()],
            args,
        }
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

/// Groups `keys` by the server that `server_of` names for their slot, keeping their order
/// within each group; a key whose slot has no server gets a group of its own.
fn group_by<S: PartialEq>(
    keys: &[String],
    server_of: impl Fn(u16) -> Option<S>,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Option<S>, Vec<usize>)> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match server_of(redis_keyslot(key.as_bytes())) {
            Some(server) => match groups.iter_mut().find(|(s, _)| s.as_ref() == Some(&server)) {
                Some((_, group)) => group.push(i),
                None => groups.push((Some(server), vec![i])),
            },
            None => groups.push((None, vec![i])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Turns one `REGISTRY_OPS` answer (one code per operation of `group`) into outcomes.
fn assign(
    out: &mut [Option<Result<OpOutcome, RegistryError>>],
    ops: &[OpRef<'_>],
    group: &[usize],
    result: Result<Value, fred::error::Error>,
) {
    let codes = match result {
        Ok(Value::Array(codes)) if codes.len() == group.len() => codes,
        Ok(other) => {
            let e = RegistryError::Protocol(format!(
                "registry script returned {other:?} for {} operations",
                group.len()
            ));
            for &i in group {
                out[i] = Some(Err(e.clone()));
            }
            return;
        }
        Err(e) => {
            let e = RegistryError::from(e);
            for &i in group {
                out[i] = Some(Err(e.clone()));
            }
            return;
        }
    };
    for (&i, code) in group.iter().zip(codes) {
        out[i] = Some(outcome(ops[i], code.as_i64()));
    }
}

/// What a `REGISTRY_OPS` code means for its operation.
fn outcome(op: OpRef<'_>, code: Option<i64>) -> Result<OpOutcome, RegistryError> {
    match (op, code) {
        (OpRef::Register(_), Some(1)) => Ok(OpOutcome::Registered),
        (OpRef::Register(_), Some(0)) => Ok(OpOutcome::Superseded),
        (OpRef::Register(_), Some(2)) => Ok(OpOutcome::AlreadyExpired),
        (OpRef::Unregister(_), Some(1)) => Ok(OpOutcome::Removed),
        (OpRef::Unregister(_), Some(0)) => Ok(OpOutcome::Absent),
        (OpRef::Unregister(_), Some(-1)) => Ok(OpOutcome::NotOwner),
        (_, other) => Err(RegistryError::Protocol(format!(
            "script returned unknown code {other:?}"
        ))),
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
    fn operations_are_grouped_by_node_in_order() {
        let keys: Vec<String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        // Slots: a 15495, b 3300, c 7365, d 11298, e 15363, f 3168; three nodes by range,
        // and no node for 7000..8000.
        let node = |slot: u16| match slot {
            0..=5460 => Some(1),
            7000..=8000 => None,
            5461..=10922 => Some(2),
            _ => Some(3),
        };
        assert_eq!(
            group_by(&keys, node),
            vec![vec![0, 3, 4], vec![1, 5], vec![2]],
            "a, d, e on node 3; b, f on node 1; c has no node and goes alone"
        );
        assert_eq!(group_by(&keys, |_| Some(())), vec![vec![0, 1, 2, 3, 4, 5]]);
        assert_eq!(group_by(&[], |_| Some(())), Vec::<Vec<usize>>::new());
    }

    /// `EVALSHA` calls the cluster's primaries have served so far.
    fn evalsha_calls(cluster: &herald_testkit::RedisCluster) -> u64 {
        (0..cluster.len())
            .map(|i| {
                let out = std::process::Command::new("redis-cli")
                    .args(["-p", &cluster.port(i).to_string(), "INFO", "commandstats"])
                    .output()
                    .expect("redis-cli runs");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.lines()
                    .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
                    .and_then(|rest| rest.split(',').next())
                    .map_or(0, |n| n.parse::<u64>().unwrap())
            })
            .sum()
    }

    /// On a real cluster: a batch of operations over many slots costs one script call per
    /// primary, and a batch that names keys of several nodes in one call (what a stale slot
    /// map would do) fails as a whole and is re-sent operation by operation, with every
    /// outcome right.
    #[test]
    fn batches_are_one_call_per_node_and_split_when_a_node_refuses() {
        let cluster = herald_testkit::RedisCluster::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let registry = RedisRegistry::connect(&cluster.url(), &RedisOptions::default())
                .await
                .unwrap();
            let now = crate::unix_now_ms();
            let regs: Vec<crate::Registration> = (0..60)
                .map(|i| crate::Registration {
                    user: format!("batch-user-{i}"),
                    device: "d".into(),
                    record: RegistryRecord {
                        node_id: "node-a".into(),
                        shard: 1,
                        conn_nonce: 100 + i,
                        expires_at_ms: now + 60_000,
                    },
                })
                .collect();
            let ops: Vec<OpRef<'_>> = regs.iter().map(OpRef::Register).collect();
            let before = evalsha_calls(&cluster);
            let outcomes = registry.apply(&ops, now).await;
            assert!(
                outcomes.iter().all(|o| o == &Ok(OpOutcome::Registered)),
                "{outcomes:?}"
            );
            let primaries = registry
                .inner
                .client
                .cached_cluster_state()
                .unwrap()
                .unique_primary_nodes()
                .len();
            assert_eq!(
                evalsha_calls(&cluster) - before,
                primaries as u64,
                "one call per primary"
            );

            // One call for every operation: the first key's node refuses the others' keys.
            let keys: Vec<String> = ops.iter().map(|op| user_key(op.user())).collect();
            let all = vec![(0..ops.len()).collect::<Vec<usize>>()];
            let again = registry.apply_groups(&ops, &keys, &all, now).await;
            assert!(
                again.iter().all(|o| o == &Ok(OpOutcome::Registered)),
                "{again:?}"
            );
            let unregs: Vec<crate::Unregistration> = regs
                .iter()
                .map(|r| crate::Unregistration {
                    user: r.user.clone(),
                    device: r.device.clone(),
                    conn_nonce: if r.record.conn_nonce % 2 == 0 {
                        r.record.conn_nonce
                    } else {
                        1
                    },
                })
                .collect();
            let ops: Vec<OpRef<'_>> = unregs.iter().map(OpRef::Unregister).collect();
            let gone = registry.apply_groups(&ops, &keys, &all, now).await;
            for (u, o) in unregs.iter().zip(&gone) {
                let expected = if u.conn_nonce == 1 {
                    OpOutcome::NotOwner
                } else {
                    OpOutcome::Removed
                };
                assert_eq!(o, &Ok(expected), "{}", u.user);
            }
            let users: Vec<&str> = regs.iter().map(|r| r.user.as_str()).collect();
            let found = registry.lookup(&users, now).await.unwrap();
            for (r, locations) in regs.iter().zip(&found) {
                assert_eq!(
                    locations.len(),
                    usize::from(r.record.conn_nonce % 2 == 1),
                    "{}",
                    r.user
                );
            }
        });
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
