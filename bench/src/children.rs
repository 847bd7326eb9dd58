//! Every process the harness starts is registered here and killed by PID when the harness
//! ends — normally, by panic, or by Ctrl-C / SIGTERM / SIGHUP.
//!
//! The registry owns each `Child` (its pipes are handed to the caller at spawn), so exit
//! status and reaping stay with std. Killing a registered process kills its descendants first
//! (nginx workers outlive a SIGKILLed master otherwise), each by its own PID; nothing is ever
//! killed by name. Client processes and the calibration sink also exit by themselves when
//! their stdin closes, so they do not outlive a harness killed with SIGKILL (which no handler
//! can catch); the systems under test (edge, nginx, redis-server) would, and must then be
//! stopped by hand.

use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use crate::procfs::Proc;

/// A registered process.
#[derive(Debug)]
struct Entry {
    /// Its PID (also the registry key).
    pid: u32,
    /// What it is, for messages.
    name: String,
    /// The handle std needs to reap it.
    child: Child,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started process and the pipes the caller asked for.
#[derive(Debug)]
pub struct Spawned {
    /// PID, the handle for every other function here.
    pub pid: u32,
    /// Its stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// Its stderr, if piped.
    pub stderr: Option<ChildStderr>,
}

/// Starts `cmd` and registers it under `name`.
pub fn spawn(name: &str, cmd: &mut Command) -> std::io::Result<Spawned> {
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let spawned = Spawned {
        pid,
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    if std::env::var_os("HERALD_BENCH_DEBUG").is_some() {
        eprintln!("herald-bench: started {name} (pid {pid})");
    }
    registry().push(Entry {
        pid,
        name: name.to_string(),
        child,
    });
    Ok(spawned)
}

/// The exit status if the process has exited (it stays registered until [`kill`] or
/// [`forget_exited`]).
pub fn try_wait(pid: u32) -> Option<ExitStatus> {
    let mut reg = registry();
    let e = reg.iter_mut().find(|e| e.pid == pid)?;
    e.child.try_wait().ok().flatten()
}

/// Waits up to `timeout` for the process to exit.
pub fn wait_exit(pid: u32, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(s) = try_wait(pid) {
            return Some(s);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to a registered process (false if it is not registered or already gone).
pub fn signal(pid: u32, signal: Signal) -> bool {
    if !registry().iter().any(|e| e.pid == pid) {
        return false;
    }
    send_signal(Pid::from_raw(pid as i32), signal).is_ok()
}

/// Kills the descendants of `pid`, then `pid` itself, with SIGKILL, reaps it and drops it
/// from the registry. Does nothing for an unregistered PID.
pub fn kill(pid: u32) {
    let entry = {
        let mut reg = registry();
        let Some(i) = reg.iter().position(|e| e.pid == pid) else {
            return;
        };
        reg.remove(i)
    };
    kill_entry(entry);
}

fn kill_entry(mut e: Entry) {
    if e.child.try_wait().ok().flatten().is_none() {
        for d in Proc::default().descendants(e.pid).into_iter().rev() {
            let _ = send_signal(Pid::from_raw(d as i32), Signal::SIGKILL);
        }
        let _ = e.child.kill();
    }
    let _ = e.child.wait();
    log_exit(&e.name, e.pid);
}

fn log_exit(name: &str, pid: u32) {
    if std::env::var_os("HERALD_BENCH_DEBUG").is_some() {
        eprintln!("herald-bench: stopped {name} (pid {pid})");
    }
}

/// Drops exited processes from the registry.
pub fn forget_exited() {
    registry().retain_mut(|e| e.child.try_wait().ok().flatten().is_none());
}

/// Kills every registered process, newest first.
pub fn kill_all() {
    let entries: Vec<Entry> = std::mem::take(&mut *registry());
    for e in entries.into_iter().rev() {
        kill_entry(e);
    }
}

/// PIDs currently registered (tests, diagnostics).
pub fn registered() -> Vec<u32> {
    registry().iter().map(|e| e.pid).collect()
}

/// Kills everything registered when dropped; hold it for the life of `main`.
#[derive(Debug)]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        kill_all();
    }
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler (a thread that kills every registered process
/// and exits with 130) and returns the guard that does the same at normal exit or panic.
pub fn install() -> Guard {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    eprintln!("\nherald-bench: signal {sig}: stopping everything it started");
                    kill_all();
                    std::process::exit(130);
                }
            });
        }
        Err(e) => eprintln!("herald-bench: cannot install signal handlers: {e}"),
    }
    Guard(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn spawned_processes_are_killed_and_reaped() {
        let s = spawn(
            "sleeper",
            Command::new("sleep").arg("30").stdin(Stdio::null()),
        )
        .unwrap();
        assert!(registered().contains(&s.pid));
        assert!(try_wait(s.pid).is_none());
        kill(s.pid);
        assert!(!registered().contains(&s.pid));
        assert!(!Proc::default().rss(s.pid).is_ok_and(|r| r > 0));
    }

    #[test]
    fn exit_status_is_seen() {
        let s = spawn("true", Command::new("true").stdin(Stdio::null())).unwrap();
        let st = wait_exit(s.pid, Duration::from_secs(5)).expect("true exits");
        assert!(st.success());
        forget_exited();
        assert!(!registered().contains(&s.pid));
    }
}
