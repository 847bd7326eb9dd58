//! Real Redis processes for tests: one plain node ([`RedisServer`]) or a 6-node cluster with
//! 3 masters and 3 replicas ([`RedisCluster`]).
//!
//! Each node runs `redis-server` from `PATH` with its own config and working directory inside
//! a temp dir, bound to 127.0.0.1 on a free port, with persistence off (`save ""`,
//! `appendonly no`) and, for clusters, a short `cluster-node-timeout` so failovers complete in
//! a few seconds and immediate diskless replication so replicas attach without Redis's default
//! 5 s sync delay. Readiness is always polled (PING, `CLUSTER INFO`, `INFO replication`) rather
//! than slept for. Nodes are addressed by a stable index `0..6` (the order they were started
//! in); their roles change as tests fail them over, so the role queries ([`RedisCluster::masters`],
//! [`RedisCluster::replica_of`]) ask the nodes each time. Dropping a fixture kills every process
//! it started (SIGKILL works on stopped processes too), including during a panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{redis_cli, require_program, signal, CLI_TIMEOUT};
use crate::ports::free_cluster_port;

/// `cluster-node-timeout` of fixture clusters (ms): low, so a dead master is failed over
/// within a few seconds.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

/// How long a node may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh cluster may take to become healthy.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval between readiness polls.
const POLL: Duration = Duration::from_millis(20);
/// Attempts at starting one node on a fresh port when its port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// What the fixture did to a node; a node that is not [`NodeState::Running`] is never sent a
/// command (a stopped node would never answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running normally.
    Running,
    /// Frozen with SIGSTOP; [`RedisCluster::cont_master`] resumes it.
    Stopped,
    /// Killed with SIGKILL; gone for good.
    Killed,
}

/// One `redis-server` process.
#[derive(Debug)]
struct Node {
    /// The client port (the cluster bus is `port + 10000`).
    port: u16,
    /// The process, kept to kill and reap it.
    child: Child,
    /// What the fixture did to it.
    state: NodeState,
    /// Its working directory (config, `nodes.conf`, log).
    dir: PathBuf,
}

impl Node {
    /// Starts `redis-server` in a fresh subdirectory of `root` with `extra` config lines,
    /// retrying on another port when the chosen one turns out to be taken.
    fn start(root: &Path, name: &str, extra: &str) -> Node {
        let server = require_program("redis-server");
        require_program("redis-cli");
        let mut last_error = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_cluster_port();
            let dir = root.join(format!("{name}-{port}-{attempt}"));
            std::fs::create_dir_all(&dir).expect("create node dir");
            let conf = dir.join("redis.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\n\
                     dir {dir}\nlogfile {log}\n{extra}",
                    dir = dir.display(),
                    log = dir.join("redis.log").display(),
                ),
            )
            .expect("write redis.conf");
            let child = Command::new(&server)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let mut node = Node {
                port,
                child,
                state: NodeState::Running,
                dir,
            };
            match node.wait_ping() {
                Ok(()) => return node,
                Err(e) => {
                    last_error = format!("{e}; log: {}", node.log_tail());
                    node.kill();
                }
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// Kills the process if it runs, then starts `redis-server` again with the same config,
    /// port and directory (persistence is off, so the data set starts empty).
    fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let server = require_program("redis-server");
        self.child = Command::new(&server)
            .arg(self.dir.join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
        self.state = NodeState::Running;
        self.wait_ping()
            .map_err(|e| format!("{e}; log: {}", self.log_tail()))
    }

    /// Polls PING until PONG, failing early if the process exits.
    fn wait_ping(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            if let Ok(out) = redis_cli(self.port, &["PING"], CLI_TIMEOUT) {
                if out.trim() == "PONG" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {} never answered PING",
                    self.port
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last lines of the node's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }

    /// SIGKILLs and reaps the process (idempotent).
    fn kill(&mut self) {
        if self.state != NodeState::Killed {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.state = NodeState::Killed;
        }
    }

    /// Runs a command on this node; refuses when the node is not running.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        if self.state != NodeState::Running {
            return Err(format!("node on port {} is {:?}", self.port, self.state));
        }
        redis_cli(self.port, args, CLI_TIMEOUT)
    }
}

/// A single plain (non-cluster) Redis node on a free loopback port.
#[derive(Debug)]
pub struct RedisServer {
    /// The process.
    node: Node,
    /// Holds the temp dir until the process is gone (dropped after `node`).
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one node and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed (with a message saying how to install it) or the
    /// node cannot be started.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("create temp dir");
        let node = Node::start(dir.path(), "single", "");
        RedisServer { node, _dir: dir }
    }

    /// The node's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.node.port)
    }

    /// Runs `redis-cli` with `args` against the node and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        self.node.cli(args)
    }

    /// SIGKILLs the server (it stays down until [`RedisServer::restart`]).
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts the server again on the same port, with an empty data set (like a master that
    /// restarted without persistence); kills it first if it is running.
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.node
            .restart()
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    /// What the fixture did to the server.
    pub fn state(&self) -> NodeState {
        self.node.state
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.node.kill();
    }
}

/// A Redis Cluster of 6 nodes (3 masters, 3 replicas) on free loopback ports.
#[derive(Debug)]
pub struct RedisCluster {
    /// The processes, by stable index.
    nodes: Vec<Node>,
    /// Holds the temp dir until the processes are gone (dropped after `nodes`).
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts 6 nodes, joins them with `redis-cli --cluster create … --cluster-replicas 1`, and
    /// waits until every node reports `cluster_state:ok` and knows all 6 nodes, and every
    /// replica's link to its master is up.
    ///
    /// # Panics
    /// When `redis-server` is not installed (with a message saying how to install it) or the
    /// cluster does not come up within a minute.
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("create temp dir");
        let extra = format!(
            "cluster-enabled yes\ncluster-config-file nodes.conf\n\
             cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}\ncluster-require-full-coverage no\n\
             repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n"
        );
        let nodes: Vec<Node> = (0..6)
            .map(|i| Node::start(dir.path(), &format!("node{i}"), &extra))
            .collect();
        let mut cluster = RedisCluster { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = redis_cli(cluster.nodes[0].port, &args, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("redis-cli --cluster create failed: {e}"));
        assert!(
            out.contains("All 16384 slots covered"),
            "cluster create did not cover all slots: {out}"
        );
        if let Err(e) = cluster.wait_ready(CLUSTER_READY_TIMEOUT, true) {
            let logs: Vec<String> = cluster.nodes.iter().map(Node::log_tail).collect();
            cluster.kill_all();
            panic!("cluster did not become ready: {e}; logs: {logs:?}");
        }
        cluster
    }

    /// `redis-cluster://127.0.0.1:<p0>?node=127.0.0.1:<p1>&node=…` naming every node.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port));
        }
        url
    }

    /// The port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// How many nodes the fixture started (6).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// What the fixture did to node `i`.
    pub fn state(&self, i: usize) -> NodeState {
        self.nodes[i].state
    }

    /// Indices of the running nodes that currently are masters serving slots.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.role(i).is_some_and(|r| r == Role::Master) && self.slot_count(i) > 0)
            .collect()
    }

    /// Indices of the running nodes that currently are replicas.
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.role(i), Some(Role::Replica(_))))
            .collect()
    }

    /// The running replica currently replicating master `i`, if any.
    pub fn replica_of(&self, i: usize) -> Option<usize> {
        let port = self.nodes[i].port;
        (0..self.nodes.len()).find(|&r| self.role(r) == Some(Role::Replica(port)))
    }

    /// The running master currently serving `key`'s slot (`CLUSTER KEYSLOT`, then each
    /// master's own slot ranges).
    pub fn master_for_key(&self, key: &str) -> Option<usize> {
        let asker = self.any_running()?;
        let slot: u16 = self.nodes[asker]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        self.masters().into_iter().find(|&m| {
            self.slot_ranges(m)
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&slot))
        })
    }

    /// SIGKILLs master `i`. Panics if `i` is not a running master.
    pub fn kill_master(&mut self, i: usize) {
        self.assert_master(i);
        self.nodes[i].kill();
    }

    /// Freezes master `i` with SIGSTOP. Panics if `i` is not a running master.
    pub fn stop_master(&mut self, i: usize) {
        self.assert_master(i);
        assert!(signal(self.nodes[i].child.id(), "STOP"), "SIGSTOP failed");
        self.nodes[i].state = NodeState::Stopped;
    }

    /// Resumes node `i` (stopped by [`RedisCluster::stop_master`]) with SIGCONT; it rejoins
    /// the cluster, usually as a replica of the node that replaced it.
    pub fn cont_master(&mut self, i: usize) {
        assert_eq!(
            self.nodes[i].state,
            NodeState::Stopped,
            "node {i} is not stopped"
        );
        assert!(signal(self.nodes[i].child.id(), "CONT"), "SIGCONT failed");
        self.nodes[i].state = NodeState::Running;
    }

    /// Runs `CLUSTER FAILOVER` on replica `i` and waits (up to 60 s) until it reports itself a
    /// master. A manual failover is aborted by Redis when its master does not answer in time
    /// (a loaded machine), so the command is sent again every 10 s while `i` is still a
    /// replica. Panics if `i` is not a running replica or the failover does not happen.
    pub fn failover_replica(&self, i: usize) {
        assert!(
            matches!(self.role(i), Some(Role::Replica(_))),
            "node {i} is not a running replica"
        );
        let out = self.nodes[i]
            .cli(&["CLUSTER", "FAILOVER"])
            .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on node {i}: {e}"));
        assert_eq!(out.trim(), "OK", "CLUSTER FAILOVER on node {i}");
        let started = Instant::now();
        let mut asked = Instant::now();
        while self.role(i) != Some(Role::Master) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "node {i} did not become master within 60 s"
            );
            if asked.elapsed() >= Duration::from_secs(10)
                && matches!(self.role(i), Some(Role::Replica(_)))
            {
                let _ = self.nodes[i].cli(&["CLUSTER", "FAILOVER"]);
                asked = Instant::now();
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until every running node reports `cluster_state:ok` and sees no running node as
    /// failed, and every running replica's master link is up. Returns how long it took.
    pub fn wait_ok(&self, timeout: Duration) -> Result<Duration, String> {
        self.wait_ready(timeout, false)
    }

    /// Runs `redis-cli` with `args` on node `i` and returns its stdout.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        self.nodes[i].cli(args)
    }

    /// Runs `redis-cli -c` (following redirections) with `args` on any running master.
    pub fn cli_any(&self, args: &[&str]) -> Result<String, String> {
        let node = self
            .masters()
            .into_iter()
            .next()
            .ok_or("no running master")?;
        let mut full = vec!["-c"];
        full.extend_from_slice(args);
        self.nodes[node].cli(&full)
    }

    /// Every key matching `pattern` on the running masters (`--scan --pattern`).
    pub fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        for m in self.masters() {
            let out = self.nodes[m].cli(&["--scan", "--pattern", pattern])?;
            keys.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        Ok(keys)
    }

    /// Kills every process now (also done on drop).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// The readiness poll behind [`RedisCluster::start`] (`fresh`: also require all 6 nodes
    /// known everywhere and 3 masters with a replica each) and [`RedisCluster::wait_ok`].
    fn wait_ready(&self, timeout: Duration, fresh: bool) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let problem = match self.health_problem() {
                None if fresh => self.fresh_problem(),
                other => other,
            };
            match problem {
                None => return Ok(started.elapsed()),
                Some(p) if started.elapsed() > timeout => {
                    return Err(format!("not ok after {timeout:?}: {p}"))
                }
                Some(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Why the cluster is not healthy right now, if it is not.
    fn health_problem(&self) -> Option<String> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].state == NodeState::Running)
            .collect();
        let running_ports: Vec<String> = running
            .iter()
            .map(|&i| format!("127.0.0.1:{}@", self.nodes[i].port))
            .collect();
        for &i in &running {
            let info = match self.nodes[i].cli(&["CLUSTER", "INFO"]) {
                Ok(info) => info,
                Err(e) => return Some(e),
            };
            if !info.contains("cluster_state:ok") {
                return Some(format!("node {i}: cluster_state not ok"));
            }
            let nodes = match self.nodes[i].cli(&["CLUSTER", "NODES"]) {
                Ok(nodes) => nodes,
                Err(e) => return Some(e),
            };
            for line in nodes.lines() {
                let mut parts = line.split_whitespace();
                let (Some(_id), Some(addr), Some(flags)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let is_running = running_ports.iter().any(|p| addr.starts_with(p.as_str()));
                if is_running && flags.split(',').any(|f| f == "fail" || f == "fail?") {
                    return Some(format!("node {i} sees {addr} as {flags}"));
                }
            }
            if let Some(Role::Replica(_)) = self.role(i) {
                let repl = self.nodes[i]
                    .cli(&["INFO", "replication"])
                    .unwrap_or_default();
                if !repl.contains("master_link_status:up") {
                    return Some(format!("replica {i}: master link down"));
                }
            }
        }
        None
    }

    /// Extra conditions for a fresh cluster: 6 known nodes everywhere, 3 masters, each with a
    /// replica.
    fn fresh_problem(&self) -> Option<String> {
        for (i, node) in self.nodes.iter().enumerate() {
            let info = node.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
            if !info.contains("cluster_known_nodes:6") || !info.contains("cluster_slots_ok:16384") {
                return Some(format!("node {i} does not know the whole cluster yet"));
            }
        }
        let masters = self.masters();
        if masters.len() != 3 {
            return Some(format!("{} masters", masters.len()));
        }
        masters
            .iter()
            .find(|&&m| self.replica_of(m).is_none())
            .map(|m| format!("master {m} has no replica yet"))
    }

    /// Panics unless node `i` is a running master.
    fn assert_master(&self, i: usize) {
        assert_eq!(
            self.role(i),
            Some(Role::Master),
            "node {i} is not a running master"
        );
    }

    /// The role node `i` reports (`ROLE`), or `None` when it is not running or not answering.
    fn role(&self, i: usize) -> Option<Role> {
        let out = self.nodes[i].cli(&["ROLE"]).ok()?;
        let mut lines = out.lines();
        match lines.next()? {
            "master" => Some(Role::Master),
            "slave" => {
                let _host = lines.next()?;
                Some(Role::Replica(lines.next()?.trim().parse().ok()?))
            }
            _ => None,
        }
    }

    /// The slot ranges node `i` serves according to its own `CLUSTER NODES` line.
    fn slot_ranges(&self, i: usize) -> Vec<(u16, u16)> {
        let Ok(out) = self.nodes[i].cli(&["CLUSTER", "NODES"]) else {
            return Vec::new();
        };
        let Some(line) = out.lines().find(|l| l.contains("myself")) else {
            return Vec::new();
        };
        line.split_whitespace()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                Some((lo.parse().ok()?, hi.parse().ok()?))
            })
            .collect()
    }

    /// How many slots node `i` serves.
    fn slot_count(&self, i: usize) -> usize {
        self.slot_ranges(i)
            .iter()
            .map(|&(lo, hi)| usize::from(hi - lo) + 1)
            .sum()
    }

    /// Some running node, to ask cluster-wide questions.
    fn any_running(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.nodes[i].state == NodeState::Running)
    }
}

/// A node's replication role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A master.
    Master,
    /// A replica of the master on this port.
    Replica(u16),
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
