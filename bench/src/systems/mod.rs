//! The systems under test, started and stopped by the harness: Herald's edge, nginx + nchan,
//! the plain tokio-tungstenite server, uWebSockets.js (Node.js), the calibration sink, or an
//! external server the user started. Each start returns a [`Running`]: how clients connect, which processes to
//! measure, how to publish a broadcast.

pub mod herald;
pub mod nchan;
pub mod sink;
pub mod tokio_ws;
pub mod uws;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::children;
use crate::pool::ClientTarget;
use crate::procfs::ProcTree;
use crate::publish::PublishVia;

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SystemId {
    /// Herald's edge.
    #[serde(rename = "herald")]
    Herald,
    /// nginx + nchan from Debian.
    #[serde(rename = "nchan")]
    Nchan,
    /// tokio + tokio-tungstenite with default settings.
    #[serde(rename = "tokio-tungstenite")]
    TokioWs,
    /// uWebSockets.js (npm `uwebsockets`) on Node.js.
    #[serde(rename = "uWebSockets.js")]
    Uws,
    /// The kernel-share calibration server.
    #[serde(rename = "sink")]
    Sink,
    /// A server the user started (`--url`).
    #[serde(rename = "external")]
    External,
}

impl SystemId {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SystemId::Herald => "herald",
            SystemId::Nchan => "nchan",
            SystemId::TokioWs => "tokio-tungstenite",
            SystemId::Uws => "uWebSockets.js",
            SystemId::Sink => "sink",
            SystemId::External => "external",
        }
    }

    /// Parses a name as given on the command line.
    pub fn parse(s: &str) -> Result<SystemId, String> {
        match s {
            "herald" => Ok(SystemId::Herald),
            "nchan" | "nginx" => Ok(SystemId::Nchan),
            "tokio-tungstenite" | "tokio-ws" | "tokio" => Ok(SystemId::TokioWs),
            s if ["uws", "uwebsockets", "uwebsockets.js"]
                .contains(&s.to_ascii_lowercase().as_str()) =>
            {
                Ok(SystemId::Uws)
            }
            other => Err(format!(
                "unknown system {other:?} (herald, nchan, tokio-tungstenite, uws)"
            )),
        }
    }
}

/// Why a system did not start.
#[derive(Debug, Clone)]
pub enum StartError {
    /// Not installed here: reported as skipped, with the command that installs it.
    Skipped {
        /// What is missing.
        reason: String,
        /// How to install it.
        install: String,
    },
    /// Installed but failed.
    Failed(String),
    /// Cannot serve TLS (a `--tls` run): reported as skipped, never measured in plaintext.
    NoTls(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Skipped { reason, install } => {
                write!(f, "{reason}; install with: {install}")
            }
            StartError::Failed(e) | StartError::NoTls(e) => f.write_str(e),
        }
    }
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        StartError::Failed(e)
    }
}

/// A started (or attached) system.
#[derive(Debug)]
pub struct Running {
    /// Which system.
    pub id: SystemId,
    /// How clients reach it.
    pub target: ClientTarget,
    /// The processes whose memory and CPU are the system's.
    pub tree: ProcTree,
    /// How to broadcast to its connections, when it can.
    pub publish: Option<PublishVia>,
    /// Herald's admin address (server-side connection counts).
    pub admin: Option<SocketAddr>,
    /// Helper processes measured separately (Herald's Redis registry).
    pub aux: Vec<(String, ProcTree)>,
    /// Version string for the report.
    pub version: String,
    /// Facts about this run worth printing (registry kind, worker count, …).
    pub notes: Vec<String>,
    /// Processes to stop (registered with [`children`]), newest last.
    pub owned: Vec<u32>,
    /// Config files and logs; removed when dropped.
    pub work: Option<tempfile::TempDir>,
    /// Stdin of a helper of ours (the sink), held open: it exits when this closes, so it
    /// cannot outlive a harness killed with SIGKILL.
    pub lifeline: Option<std::process::ChildStdin>,
}

impl Running {
    /// A server of one process `sp` listening on `addr` for plain WebSocket clients at `/`
    /// with no credentials (the peers, the sink): no broadcast path, no notes — callers add
    /// what differs. Its stdin, if piped, is held as the lifeline.
    pub fn plain_ws(
        id: SystemId,
        sp: crate::children::Spawned,
        addr: SocketAddr,
        version: String,
    ) -> Running {
        Running {
            id,
            target: ClientTarget {
                addr,
                kind: crate::wire::handshake::Kind::Ws,
                path: "/".into(),
                jwt_secret: None,
                user_prefix: "b".into(),
                tls: None,
            },
            tree: ProcTree::new(sp.pid),
            publish: None,
            admin: None,
            aux: Vec::new(),
            version,
            notes: Vec::new(),
            owned: vec![sp.pid],
            work: None,
            lifeline: sp.stdin,
        }
    }

    /// Connections the server itself reports (Herald's `/stats`), if it can tell.
    pub fn server_connections(&self) -> Option<u64> {
        let admin = self.admin?;
        let v = crate::http_client::get_json(admin, "/stats").ok()?;
        let t = &v["totals"];
        Some(t["websocket"].as_u64().unwrap_or(0) + t["sse"].as_u64().unwrap_or(0))
    }

    /// Waits (bounded) until the server reports at least `want` connections; returns the
    /// last count seen, or `None` when the server cannot tell.
    pub fn wait_server_connections(&self, want: u64, timeout: Duration) -> Option<u64> {
        let end = Instant::now() + timeout;
        let mut last = self.server_connections()?;
        while last < want && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            last = self.server_connections().unwrap_or(last);
        }
        Some(last)
    }

    /// Stops every process the harness started for this system.
    pub fn stop(mut self) {
        for pid in self.owned.drain(..).rev() {
            children::kill(pid);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for pid in self.owned.drain(..).rev() {
            children::kill(pid);
        }
    }
}

/// Where a binary built alongside this one lives: next to the running executable, or one
/// directory up (integration tests run from `target/<profile>/deps`).
pub fn sibling_binary(name: &str) -> Vec<PathBuf> {
    let Ok(exe) = std::env::current_exe() else {
        return Vec::new();
    };
    let Some(dir) = exe.parent() else {
        return Vec::new();
    };
    let mut v = vec![dir.join(name)];
    if let Some(up) = dir.parent() {
        v.push(up.join(name));
    }
    v
}

/// The first existing file among `candidates`.
pub fn first_existing(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

/// `name` on `PATH` (or in the sbin directories, where Debian puts nginx).
pub fn on_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A free loopback TCP port (bound and released; a small race, fine for a benchmark).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until `addr` accepts TCP connections, or `pid` exits, or `timeout`.
pub fn wait_listening(addr: SocketAddr, pid: u32, timeout: Duration) -> Result<(), String> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = children::try_wait(pid) {
            return Err(format!("exited with {status} before listening on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("not listening on {addr} after {timeout:?}"))
}

/// First line of `cmd --version`-like output (stdout or stderr), or "unknown".
pub fn version_of(bin: &Path, args: &[&str]) -> String {
    match std::process::Command::new(bin).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("unknown")
                .trim()
                .to_string()
        }
        Err(_) => "unknown".into(),
    }
}

/// Reads lines from `r` until one starts with `prefix` (bounded by `timeout` and by the
/// process `pid` exiting); every line read is appended to `log`.
/// Spawns a helper server (`name` in messages), waits up to 15 s for its
/// `ready addr=HOST:PORT` line and returns the child (stdout consumed) and that address,
/// killing it on failure.
pub fn spawn_until_ready(
    name: &str,
    cmd: &mut std::process::Command,
) -> Result<(crate::children::Spawned, std::net::SocketAddr), StartError> {
    let mut sp = crate::children::spawn(name, cmd)
        .map_err(|e| StartError::Failed(format!("cannot start {name}: {e}")))?;
    let stdout = sp.stdout.take().ok_or("stdout not piped".to_string())?;
    let null = std::fs::File::create("/dev/null").map_err(|e| e.to_string())?;
    let line = read_until_line(stdout, "ready addr=", sp.pid, Duration::from_secs(15), null)
        .map_err(|e| {
            crate::children::kill(sp.pid);
            StartError::Failed(format!("{name} {e}"))
        })?;
    let addr = line["ready addr=".len()..]
        .trim()
        .parse()
        .map_err(|_| StartError::Failed(format!("bad ready line: {line}")))?;
    Ok((sp, addr))
}

pub fn read_until_line(
    r: impl std::io::Read + Send + 'static,
    prefix: &'static str,
    pid: u32,
    timeout: Duration,
    mut log: std::fs::File,
) -> Result<String, String> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if !sent && line.starts_with(prefix) {
                sent = tx.send(line).is_ok();
            }
        }
    });
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => return Ok(line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = children::try_wait(pid) {
                    return Err(format!("exited with {status} before printing {prefix:?}"));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = children::wait_exit(pid, Duration::from_secs(2));
                return Err(format!(
                    "closed its output before printing {prefix:?} (exit: {status:?})"
                ));
            }
        }
    }
    Err(format!("did not print {prefix:?} within {timeout:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names_parse() {
        for s in ["uws", "uwebsockets", "uWebSockets.js", "UWS"] {
            assert_eq!(SystemId::parse(s), Ok(SystemId::Uws), "{s}");
        }
        assert_eq!(SystemId::Uws.name(), "uWebSockets.js");
        assert_eq!(
            serde_json::to_value(SystemId::Uws).unwrap(),
            "uWebSockets.js"
        );
        assert_eq!(SystemId::parse("tokio"), Ok(SystemId::TokioWs));
        assert_eq!(SystemId::parse("nginx"), Ok(SystemId::Nchan));
        let e = SystemId::parse("socket.io").unwrap_err();
        assert!(e.contains("uws"), "{e}");
    }
}
