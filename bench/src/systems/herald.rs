//! Herald's edge as a system under test: the `herald-edge` binary built in this workspace,
//! started on free loopback ports with generated JWT and delivery secrets, and — as in
//! production — its registry in a separate `redis-server` when one is installed (so the
//! edge's RSS is the edge's; Redis's growth is reported on its own line).
//!
//! In a `--tls` run the edge also gets its TLS listener (`--tls-listen` on a free port, the
//! run's certificate) and the clients connect there: `wss://…/ws` or `https://…/sse`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Running, StartError, SystemId};
use crate::children;
use crate::pool::ClientTarget;
use crate::procfs::ProcTree;
use crate::publish::PublishVia;
use crate::wire::handshake::Kind;

/// Where the edge keeps its registry during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryMode {
    /// A `redis-server` the harness starts (production-like).
    Redis,
    /// In the edge's own memory (single-node development mode).
    InProcess,
}

impl RegistryMode {
    /// `auto` (Redis when `redis-server` is installed), `redis` or `in-process`.
    pub fn parse(s: &str) -> Result<RegistryMode, String> {
        match s {
            "auto" => Ok(if super::on_path("redis-server").is_some() {
                RegistryMode::Redis
            } else {
                RegistryMode::InProcess
            }),
            "redis" => Ok(RegistryMode::Redis),
            "in-process" => Ok(RegistryMode::InProcess),
            other => Err(format!(
                "unknown registry {other:?} (auto, redis, in-process)"
            )),
        }
    }
}

/// How to run the edge.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// The `herald-edge` binary.
    pub bin: PathBuf,
    /// Shards (0 = one per core).
    pub shards: usize,
    /// Registry placement.
    pub registry: RegistryMode,
    /// Turn the edge's admission control off (raw accept rate) or leave it as configured.
    pub admission_off: bool,
    /// More flags for the edge, verbatim.
    pub extra: Vec<String>,
    /// Connections the run will hold (`--expected-connections`).
    pub expected: usize,
    /// Client protocol to measure.
    pub kind: Kind,
    /// Run the TLS listener with these files (clients then connect to it).
    pub tls: Option<crate::tls::ServerFiles>,
    /// Clients send no credential: the edge trusts `?user=` (`insecure_user_param`).
    pub auth_none: bool,
}

/// What the edge printed once ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeReady {
    /// Node id.
    pub node: String,
    /// Client address.
    pub client: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// One delivery port per shard.
    pub delivery: Vec<SocketAddr>,
}

/// A running edge process.
#[derive(Debug, Clone)]
pub struct EdgeProc {
    /// Its PID (registered).
    pub pid: u32,
    /// Its addresses.
    pub ready: EdgeReady,
    /// Its TLS listener, when it has one (the ready line does not say; the harness picks it).
    pub tls: Option<SocketAddr>,
}

/// Secrets shared by the harness and the edges it starts.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// HS256 key for client tokens.
    pub jwt: String,
    /// Delivery-port secret.
    pub delivery: String,
}

impl Secrets {
    /// Fresh random secrets.
    pub fn generate() -> Secrets {
        let hex = |n: u128| format!("{n:032x}");
        Secrets {
            jwt: hex(fastrand::u128(..)),
            delivery: hex(fastrand::u128(..)),
        }
    }
}

/// The `herald-edge` binary: `explicit`, else next to this executable.
pub fn find_edge_bin(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--edge-bin {}: no such file", p.display()))
        };
    }
    let candidates = super::sibling_binary("herald-edge");
    super::first_existing(&candidates).ok_or_else(|| {
        format!(
            "herald-edge not found (looked in {}); build it first: cargo build --release -p herald-edge \
             (or pass --edge-bin PATH)",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Parses the edge's `herald-edge ready: …` line.
pub fn parse_ready(line: &str) -> Option<EdgeReady> {
    let rest = line.strip_prefix("herald-edge ready:")?;
    let field = |k: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
    };
    let client: SocketAddr = field("ws")?
        .strip_prefix("ws://")?
        .strip_suffix("/ws")?
        .parse()
        .ok()?;
    let admin: SocketAddr = field("admin")?.strip_prefix("http://")?.parse().ok()?;
    let (ip, range) = field("delivery")?.rsplit_once(':')?;
    let (base, last) = range.split_once('-')?;
    let (base, last): (u16, u16) = (base.parse().ok()?, last.parse().ok()?);
    let ip: std::net::IpAddr = ip.parse().ok()?;
    if last < base {
        return None;
    }
    Some(EdgeReady {
        node: field("node")?.to_string(),
        client,
        admin,
        delivery: (base..=last).map(|p| SocketAddr::new(ip, p)).collect(),
    })
}

/// Whether the edge binary knows `flag` (admission flags arrived after the first edge).
pub fn supports(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

/// Starts one edge process listening on `listen` (port 0 = any), logging into `work`.
pub fn spawn_edge(
    opts: &EdgeOptions,
    secrets: &Secrets,
    listen: SocketAddr,
    node: &str,
    redis: Option<&str>,
    work: &Path,
) -> Result<EdgeProc, String> {
    let log_path = work.join(format!("{node}.log"));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&opts.bin);
    cmd.args(["--listen", &listen.to_string()])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--delivery-base-port", "0"])
        .args(["--jwt-secret", &secrets.jwt])
        .args(["--delivery-secret", &secrets.delivery])
        .args(["--shards", &opts.shards.to_string()])
        .args(["--node-id", node])
        .args([
            "--expected-connections",
            &opts.expected.max(1000).to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err_log));
    if let Some(url) = redis {
        cmd.args(["--redis", url]);
    }
    if opts.auth_none {
        cmd.args(["--insecure-user-param", "on"]);
    }
    let tls = match &opts.tls {
        None => None,
        Some(files) => {
            let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()?));
            cmd.args(["--tls-listen", &addr.to_string()])
                .arg("--tls-cert-file")
                .arg(&files.cert)
                .arg("--tls-key-file")
                .arg(&files.key);
            Some(addr)
        }
    };
    if opts.admission_off && supports(&opts.bin, "--handshake-rate") {
        cmd.args(["--handshake-rate", "0", "--max-connections-per-shard", "0"]);
    }
    cmd.args(&opts.extra);
    let sp = children::spawn("herald-edge", &mut cmd)
        .map_err(|e| format!("cannot start {}: {e}", opts.bin.display()))?;
    let stdout = sp.stdout.ok_or("edge stdout not piped")?;
    let line = super::read_until_line(
        stdout,
        "herald-edge ready:",
        sp.pid,
        Duration::from_secs(30),
        log,
    )
    .map_err(|e| {
        children::kill(sp.pid);
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(8).collect();
        format!(
            "herald-edge {e}; last log lines:\n  {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        )
    })?;
    let ready = parse_ready(&line).ok_or_else(|| {
        children::kill(sp.pid);
        format!("unreadable ready line from herald-edge: {line}")
    })?;
    Ok(EdgeProc {
        pid: sp.pid,
        ready,
        tls,
    })
}

/// Starts `redis-server` on a free port; returns (pid, url).
pub fn spawn_redis(work: &Path) -> Result<(u32, String), StartError> {
    let Some(bin) = super::on_path("redis-server") else {
        return Err(StartError::Skipped {
            reason: "redis-server is not installed (registry = redis)".into(),
            install: "apt-get install -y redis-server (or --registry in-process)".into(),
        });
    };
    let port = super::free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--loglevel", "warning", "--daemonize", "no"])
        .arg("--dir")
        .arg(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sp = children::spawn("redis-server", &mut cmd)
        .map_err(|e| StartError::Failed(format!("cannot start redis-server: {e}")))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    super::wait_listening(addr, sp.pid, Duration::from_secs(10)).map_err(|e| {
        children::kill(sp.pid);
        StartError::Failed(format!("redis-server {e}"))
    })?;
    Ok((sp.pid, format!("redis://127.0.0.1:{port}")))
}

/// Starts the edge (and its Redis) as a system under test.
pub fn start(opts: &EdgeOptions, secrets: &Secrets) -> Result<Running, StartError> {
    let work = tempfile::Builder::new()
        .prefix("herald-bench-edge-")
        .tempdir()
        .map_err(|e| StartError::Failed(format!("no temp dir: {e}")))?;
    let mut owned = Vec::new();
    let mut aux = Vec::new();
    let mut notes = Vec::new();
    let redis_url = match opts.registry {
        RegistryMode::Redis => {
            let (pid, url) = spawn_redis(work.path())?;
            owned.push(pid);
            aux.push(("registry (redis-server)".to_string(), ProcTree::new(pid)));
            notes.push(format!("registry in a separate redis-server ({url})"));
            Some(url)
        }
        RegistryMode::InProcess => {
            notes.push("registry in the edge process (--registry in-process)".into());
            None
        }
    };
    let edge = match spawn_edge(
        opts,
        secrets,
        "127.0.0.1:0".parse().expect("literal"),
        "bench-edge-0",
        redis_url.as_deref(),
        work.path(),
    ) {
        Ok(e) => e,
        Err(e) => {
            for pid in owned {
                children::kill(pid);
            }
            return Err(StartError::Failed(e));
        }
    };
    owned.push(edge.pid);
    if opts.admission_off {
        notes.push("admission control off (--handshake-rate 0)".into());
    }
    notes.push(format!("{} shard(s)", edge.ready.delivery.len()));
    if opts.bin.components().any(|c| c.as_os_str() == "debug") {
        notes.push("herald-edge is a debug build: numbers are not representative".into());
    }
    let path = match (opts.kind, opts.auth_none) {
        (Kind::Ws, false) => "/ws?access_token={token}",
        (Kind::Sse, false) => "/sse?access_token={token}",
        (Kind::Ws, true) => "/ws?user={user}&device=d",
        (Kind::Sse, true) => "/sse?user={user}&device=d",
    };
    if opts.auth_none {
        notes.push("authentication: none (insecure_user_param: ?user= trusted)".into());
    }
    let (addr, tls) = match (edge.tls, &opts.tls) {
        (Some(addr), Some(files)) => {
            notes.push(format!(
                "clients on the TLS listener {addr} (rustls, the run's self-signed certificate)"
            ));
            (
                addr,
                Some(crate::tls::ClientTls {
                    ca: files.cert.clone(),
                    server_name: crate::tls::SERVER_NAME.into(),
                }),
            )
        }
        _ => (edge.ready.client, None),
    };
    Ok(Running {
        id: SystemId::Herald,
        target: ClientTarget {
            addr,
            kind: opts.kind,
            path: path.into(),
            jwt_secret: (!opts.auth_none).then(|| secrets.jwt.clone()),
            user_prefix: "b".into(),
            tls,
        },
        tree: ProcTree::new(edge.pid),
        publish: Some(PublishVia::Delivery {
            ports: edge.ready.delivery.clone(),
            secret: secrets.delivery.as_bytes().to_vec(),
        }),
        admin: Some(edge.ready.admin),
        aux,
        version: super::version_of(&opts.bin, &["--version"]),
        notes,
        owned,
        work: Some(work),
        lifeline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let r = parse_ready("herald-edge ready: node=n1 ws=ws://127.0.0.1:4000/ws sse=http://127.0.0.1:4000/sse admin=http://127.0.0.1:4001 delivery=127.0.0.1:7100-7101 shards=2").unwrap();
        assert_eq!(r.node, "n1");
        assert_eq!(r.client, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(r.admin, "127.0.0.1:4001".parse().unwrap());
        assert_eq!(
            r.delivery,
            vec![
                "127.0.0.1:7100".parse().unwrap(),
                "127.0.0.1:7101".parse().unwrap()
            ]
        );
        assert!(parse_ready("herald-edge ready: node=n1").is_none());
        assert!(parse_ready("something else").is_none());
    }

    #[test]
    fn missing_binary_says_how_to_build() {
        let e = find_edge_bin(Some(Path::new("/nonexistent/herald-edge"))).unwrap_err();
        assert!(e.contains("no such file"));
    }

    #[test]
    fn secrets_are_long_enough_for_the_delivery_port() {
        let s = Secrets::generate();
        assert!(s.delivery.len() >= herald_protocol::delivery_auth::MIN_SECRET_LEN);
        assert_ne!(s.jwt, s.delivery);
    }
}
