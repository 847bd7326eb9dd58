//! Running `redis-cli` (and `kill`) with a watchdog.
//!
//! A Redis node that a test has SIGSTOPped accepts TCP connections but never answers, and
//! `redis-cli` has no reply timeout, so every invocation here runs on a helper thread and is
//! killed when its deadline passes. Errors are returned as text for the fixture to report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The message every fixture panics with when Redis is not installed.
pub(crate) const INSTALL_HINT: &str =
    "install it with `apt-get install -y redis-server` (the README test command does this)";

/// Default deadline of one `redis-cli` call.
pub(crate) const CLI_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds `program` in `PATH`.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Finds `program` or panics with the install hint.
pub(crate) fn require_program(program: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| panic!("{program} not found: {INSTALL_HINT}"))
}

/// Runs `program args…`, returning its output, or an error if it cannot start or has not
/// finished within `timeout` (it is then killed).
pub(crate) fn run(program: &Path, args: &[&str], timeout: Duration) -> Result<Output, String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("waiting for {}: {e}", program.display())),
        Err(_) => {
            signal(pid, "KILL");
            Err(format!(
                "{} {args:?} did not finish within {timeout:?}",
                program.display()
            ))
        }
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> args…` and returns its stdout when it exits 0 and
/// does not print an `ERR`-style error reply.
pub(crate) fn redis_cli(port: u16, args: &[&str], timeout: Duration) -> Result<String, String> {
    let cli = require_program("redis-cli");
    let port_text = port.to_string();
    let mut full = vec!["-h", "127.0.0.1", "-p", &port_text];
    full.extend_from_slice(args);
    let out = run(&cli, &full, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "redis-cli -p {port} {args:?} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let first = stdout.lines().next().unwrap_or_default();
    if first.starts_with("ERR") || first.starts_with("(error)") {
        return Err(format!("redis-cli -p {port} {args:?}: {first}"));
    }
    Ok(stdout)
}

/// Sends `SIG<name>` to `pid` with `kill(1)` (the fixture stays free of `unsafe`).
pub(crate) fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
