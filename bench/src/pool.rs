//! The harness's side of the client processes: spawn them (this same executable with the
//! hidden `client` subcommand), wait for their `READY`, ask for and merge their `STATS`,
//! and stop them.
//!
//! Each connection step is spread over at least two processes (or more, at most
//! `per_process` connections each), every process on its own block of source addresses.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::children;
use crate::client::stats::{MissingReport, StatsReport};
use crate::client::{ReadyReport, ResetReport, MAX_PER_PROCESS};
use crate::wire::handshake::Kind;

/// How client connections reach a system.
#[derive(Debug, Clone, Serialize)]
pub struct ClientTarget {
    /// Server address.
    pub addr: SocketAddr,
    /// WebSocket or SSE.
    pub kind: Kind,
    /// Request path (with query); `{token}` and `{user}` are filled in per connection.
    pub path: String,
    /// HS256 secret for `{token}`.
    #[serde(skip)]
    pub jwt_secret: Option<String>,
    /// User names are this prefix + a global connection index.
    pub user_prefix: String,
    /// Speak TLS (`--tls` runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ClientTls>,
}

/// How client processes behave.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Where they connect.
    pub target: ClientTarget,
    /// Reconnect after closes (herd).
    pub reconnect: bool,
    /// Handshakes in flight per process.
    pub concurrency: usize,
    /// Back-off base and cap, ms.
    pub backoff_ms: (u64, u64),
    /// Each process exits after this long whatever happens.
    pub deadline: Duration,
}

impl ClientSpec {
    /// Plain idle/receiving clients for `target`.
    pub fn new(target: ClientTarget) -> ClientSpec {
        ClientSpec {
            target,
            reconnect: false,
            concurrency: 256,
            backoff_ms: (500, 30_000),
            deadline: Duration::from_secs(7200),
        }
    }
}

/// How one batch of connections went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Opened {
    /// Connections that completed their handshake.
    pub ok: usize,
    /// Connections that failed.
    pub failed: usize,
    /// From the first connect to the last handshake, across processes, seconds.
    pub seconds: f64,
    /// `ok / seconds`: handshakes per second.
    pub rate: f64,
}

#[derive(Debug)]
struct ClientProc {
    pid: u32,
    count: usize,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

/// The running client processes.
#[derive(Debug)]
pub struct ClientPool {
    exe: PathBuf,
    procs: Vec<ClientProc>,
    next_client_no: usize,
    next_index: usize,
    tls_session: Option<String>,
}

impl ClientPool {
    /// A pool that spawns the current executable.
    pub fn new() -> Result<ClientPool, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        Ok(ClientPool {
            exe,
            procs: Vec::new(),
            next_client_no: 0,
            next_index: 0,
            tls_session: None,
        })
    }

    /// Connections held by all processes (as spawned, not as open right now).
    pub fn total(&self) -> usize {
        self.procs.iter().map(|p| p.count).sum()
    }

    /// What the clients' TLS handshakes negotiated (the first one reported), e.g.
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519 alpn=http/1.1`.
    pub fn tls_session(&self) -> Option<&str> {
        self.tls_session.as_deref()
    }

    /// PIDs of the client processes.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// Opens `count` more connections over new processes (at least two when `count` ≥ 2,
    /// at most `per_process` each) and waits until every one concluded its handshake.
    pub fn add(
        &mut self,
        spec: &ClientSpec,
        count: usize,
        per_process: usize,
    ) -> Result<Opened, String> {
        if count == 0 {
            return Ok(Opened::default());
        }
        let per = per_process.clamp(1, MAX_PER_PROCESS);
        let procs = count.div_ceil(per).max(2.min(count));
        let mut new = Vec::new();
        let mut left = count;
        for i in 0..procs {
            let n = left / (procs - i);
            left -= n;
            new.push(self.spawn(spec, n)?);
        }
        // Handshakes are concurrent across processes; allow ~200/s at worst plus start-up.
        let timeout = Duration::from_secs(30 + (count / 200) as u64);
        let end = Instant::now() + timeout;
        let mut readies: Vec<ReadyReport> = Vec::new();
        for p in &new {
            let line = wait_line(&p.lines, "READY ", end)
                .map_err(|e| format!("client process {} ({} connections): {e}", p.pid, p.count))?;
            let r: ReadyReport =
                serde_json::from_str(&line).map_err(|e| format!("bad READY line: {e}"))?;
            readies.push(r);
        }
        self.procs.extend(new);
        if self.tls_session.is_none() {
            self.tls_session = readies.iter().find_map(|r| r.tls.clone());
        }
        let ok = readies.iter().map(|r| r.ok).sum();
        let failed = readies.iter().map(|r| r.failed).sum();
        let start = readies
            .iter()
            .map(|r| r.started_us)
            .filter(|&s| s > 0)
            .min();
        let done = readies.iter().map(|r| r.done_us).max();
        let seconds = match (start, done) {
            (Some(s), Some(d)) if d > s => (d - s) as f64 / 1e6,
            _ => 0.0,
        };
        Ok(Opened {
            ok,
            failed,
            seconds,
            rate: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
        })
    }

    fn spawn(&mut self, spec: &ClientSpec, count: usize) -> Result<ClientProc, String> {
        let t = &spec.target;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("client")
            .args(["--addr", &t.addr.to_string()])
            .args(["--kind", t.kind.as_str()])
            .args(["--path", &t.path])
            .args(["--count", &count.to_string()])
            .args(["--client-no", &self.next_client_no.to_string()])
            .args(["--first-index", &self.next_index.to_string()])
            .args(["--user-prefix", &t.user_prefix])
            .args(["--concurrency", &spec.concurrency.to_string()])
            .args(["--backoff-base-ms", &spec.backoff_ms.0.to_string()])
            .args(["--backoff-max-ms", &spec.backoff_ms.1.to_string()])
            .args(["--deadline-s", &spec.deadline.as_secs().max(1).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(s) = &t.jwt_secret {
            cmd.args(["--jwt-secret", s]);
        }
        if spec.reconnect {
            cmd.arg("--reconnect");
        }
        if let Some(tls) = &t.tls {
            cmd.arg("--tls-ca")
                .arg(&tls.ca)
                .args(["--tls-server-name", &tls.server_name]);
        }
        let sp = children::spawn("client", &mut cmd)
            .map_err(|e| format!("cannot start a client process: {e}"))?;
        let stdout = sp.stdout.ok_or("client stdout not piped")?;
        let stdin = sp.stdin.ok_or("client stdin not piped")?;
        let rx = line_reader(stdout);
        self.next_client_no += 1;
        self.next_index += count;
        Ok(ClientProc {
            pid: sp.pid,
            count,
            stdin,
            lines: rx,
        })
    }

    fn send_all(&mut self, command: &str) -> Result<(), String> {
        for p in &mut self.procs {
            writeln!(p.stdin, "{command}")
                .and_then(|_| p.stdin.flush())
                .map_err(|e| format!("client process {} is gone: {e}", p.pid))?;
        }
        Ok(())
    }

    /// Zeroes every process's counters (start of a measured phase) and returns once every
    /// process says it did: whatever is published after this returns is counted. (Returning
    /// as soon as `RESET` was written let a busy client count the first deliveries of a phase
    /// and then forget them — "lost" deliveries the server had written.) Returns the payloads
    /// the processes forgot.
    pub fn reset(&mut self) -> Result<u64, String> {
        self.send_all("RESET")?;
        let end = Instant::now() + Duration::from_secs(30);
        let mut forgot = 0;
        for p in &self.procs {
            let line = wait_line(&p.lines, "RESET ", end)
                .map_err(|e| format!("client process {}: {e}", p.pid))?;
            let r: ResetReport =
                serde_json::from_str(&line).map_err(|e| format!("bad RESET line: {e}"))?;
            forgot += r.forgot;
        }
        Ok(forgot)
    }

    /// Asks every process for its counters and merges them.
    pub fn stats(&mut self) -> Result<StatsReport, String> {
        self.send_all("STATS")?;
        let end = Instant::now() + Duration::from_secs(30);
        let mut merged = StatsReport::default();
        for p in &self.procs {
            let line = wait_line(&p.lines, "STATS ", end)
                .map_err(|e| format!("client process {}: {e}", p.pid))?;
            let r: StatsReport =
                serde_json::from_str(&line).map_err(|e| format!("bad STATS line: {e}"))?;
            merged.merge(&r);
        }
        Ok(merged)
    }

    /// Asks every process which of broadcasts `0..messages` its connections lack.
    pub fn missing(&mut self, messages: u64) -> Result<MissingReport, String> {
        self.send_all(&format!("MISSING {messages}"))?;
        let end = Instant::now() + Duration::from_secs(30);
        let mut merged = MissingReport::default();
        for p in &self.procs {
            let line = wait_line(&p.lines, "MISSING ", end)
                .map_err(|e| format!("client process {}: {e}", p.pid))?;
            let r: MissingReport =
                serde_json::from_str(&line).map_err(|e| format!("bad MISSING line: {e}"))?;
            merged.merge(&r);
        }
        Ok(merged)
    }

    /// Stops every process: `QUIT`, a moment to exit, then SIGKILL.
    pub fn quit(&mut self) {
        let _ = self.send_all("QUIT");
        for p in self.procs.drain(..) {
            if children::wait_exit(p.pid, Duration::from_secs(5)).is_none() {
                eprintln!("herald-bench: client {} did not quit; killing it", p.pid);
            }
            children::kill(p.pid);
        }
    }
}

impl Drop for ClientPool {
    fn drop(&mut self) {
        self.quit();
    }
}

/// The lines of a child's stdout, read on a thread of their own.
fn line_reader(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line starting with `prefix` (other lines are skipped), without the prefix.
fn wait_line(rx: &Receiver<String>, prefix: &str, end: Instant) -> Result<String, String> {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no {}line in time", prefix));
        }
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Ok(rest.to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no {}line in time", prefix))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the process exited".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in client process that takes its time to reset and notes when it did.
    #[test]
    fn reset_returns_only_once_every_process_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("reset");
        let script = format!(
            "read cmd; sleep 0.3; touch {}; echo 'RESET {{\"forgot\":3}}'; read cmd",
            mark.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pool = ClientPool::new().unwrap();
        pool.procs.push(ClientProc {
            pid: child.id(),
            count: 1,
            stdin: child.stdin.take().unwrap(),
            lines: line_reader(child.stdout.take().unwrap()),
        });
        let forgot = pool.reset().unwrap();
        assert!(
            mark.exists(),
            "reset() returned before the client process had reset: deliveries published now \
             could be counted and then forgotten"
        );
        assert_eq!(forgot, 3);
        drop(pool.procs.pop()); // its stdin closes: the stand-in exits
        let _ = child.wait();
    }
}
