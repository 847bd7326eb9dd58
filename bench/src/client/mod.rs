//! The client process (`herald-bench client`, hidden): the harness re-executes itself to
//! hold connections in several processes (20000 open files per process here), each from its
//! own block of source addresses (127.0.C.2…251), so neither file descriptors nor ephemeral
//! ports run out.
//!
//! Protocol with the harness, one line each way: the client prints `READY {json}` once every
//! connection concluded its first handshake, then answers `STATS` with `STATS {json}`
//! ([`stats::StatsReport`]), `MISSING n` with `MISSING {json}` ([`stats::MissingReport`]:
//! which of broadcasts `0..n` each connection lacks), `RESET` by zeroing its counters, and
//! exits on `QUIT` or when its
//! stdin closes (the harness died) or its deadline passes. Sockets have `SO_LINGER 0`, so an
//! exit resets every connection at once and leaves no TIME_WAIT behind.
//!
//! With `--tls-ca` every connection speaks TLS ([`transport`], configuration from
//! [`crate::tls`]) and `READY` says what the first handshake negotiated.

pub mod conn;
pub mod stats;
pub mod transport;

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;
use tokio::io::AsyncBufReadExt;

use crate::wire::handshake::{self, Kind};
use conn::{Ctx, Initial};
use stats::ClientStats;

/// Most connections one client process may hold (the process has 20000 file descriptors).
pub const MAX_PER_PROCESS: usize = 19_000;

/// Arguments of the hidden `client` subcommand (the harness builds them).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long)]
    pub addr: SocketAddr,
    /// ws or sse.
    #[arg(long, value_parser = Kind::parse)]
    pub kind: Kind,
    /// Request path; `{token}` and `{user}` are replaced per connection.
    #[arg(long)]
    pub path: String,
    /// Connections to hold.
    #[arg(long)]
    pub count: usize,
    /// This client's number (source address block).
    #[arg(long, default_value_t = 0)]
    pub client_no: usize,
    /// Global index of this client's first connection (user names are prefix + index).
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
    /// User name prefix.
    #[arg(long, default_value = "b")]
    pub user_prefix: String,
    /// HS256 secret to sign each connection's JWT (`{token}`).
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Reconnect after closes and failures.
    #[arg(long)]
    pub reconnect: bool,
    /// Back-off base, ms (first reconnect waits uniform(0, base)).
    #[arg(long, default_value_t = 500)]
    pub backoff_base_ms: u64,
    /// Back-off cap, ms.
    #[arg(long, default_value_t = 30_000)]
    pub backoff_max_ms: u64,
    /// Exit after this many seconds whatever happens.
    #[arg(long, default_value_t = 7200)]
    pub deadline_s: u64,
    /// Speak TLS, trusting only the PEM certificate(s) in this file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// TLS server name (SNI, and the name the certificate must be valid for).
    #[arg(long, default_value = crate::tls::SERVER_NAME)]
    pub tls_server_name: String,
}

/// The answer to `RESET`, sent once the counters are zero.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct ResetReport {
    /// Benchmark payloads counted before the reset (and forgotten by it).
    pub forgot: u64,
}

/// The `READY` line.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReadyReport {
    /// Connections that completed their first handshake.
    pub ok: usize,
    /// Connections that gave up.
    pub failed: usize,
    /// First connect started, unix µs.
    pub started_us: u64,
    /// Last first-handshake concluded, unix µs.
    pub done_us: u64,
    /// What the first TLS handshake negotiated (absent without TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

pub(crate) fn print_ready(init: &Initial) {
    let r = ReadyReport {
        ok: init.ok,
        failed: init.failed,
        started_us: init.started_us,
        done_us: init.done_us,
        tls: init.tls.clone(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "READY {}",
        serde_json::to_string(&r).unwrap_or_default()
    );
    let _ = out.flush();
}

/// The request of connection `idx` (signing its token).
fn build_request(args: &ClientArgs, idx: usize, exp: u64) -> Box<str> {
    let user = format!("{}{}", args.user_prefix, args.first_index + idx);
    let mut path = args.path.replace("{user}", &user);
    if path.contains("{token}") {
        let token = args
            .jwt_secret
            .as_deref()
            .map(|s| crate::token::issue(s, &user, Some("d"), exp))
            .unwrap_or_default();
        path = path.replace("{token}", &token);
    }
    handshake::request(args.kind, &args.addr.to_string(), &path).into_boxed_str()
}

/// Runs a client process; returns the exit code.
pub fn run(args: ClientArgs) -> u8 {
    if args.count == 0 || args.count > MAX_PER_PROCESS {
        eprintln!(
            "client: --count must be 1..={MAX_PER_PROCESS} (got {})",
            args.count
        );
        return 64;
    }
    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => match crate::tls::client_config(ca)
            .and_then(|c| Ok((c, crate::tls::server_name(&args.tls_server_name)?)))
        {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("client: {e}");
                return 64;
            }
        },
    };
    let exp = crate::clock::unix_us() / 1_000_000 + args.deadline_s + 3600;
    let requests: Vec<Box<str>> = (0..args.count)
        .map(|i| build_request(&args, i, exp))
        .collect();
    let ctx = Rc::new(Ctx {
        addr: args.addr,
        kind: args.kind,
        requests,
        client_no: args.client_no,
        reconnect: args.reconnect,
        backoff_base: Duration::from_millis(args.backoff_base_ms.max(1)),
        backoff_max: Duration::from_millis(args.backoff_max_ms.max(1)),
        window: tokio::sync::Semaphore::new(args.concurrency.max(1)),
        stats: RefCell::new(ClientStats::new(args.count)),
        scratch: RefCell::new(vec![0u8; 64 * 1024]),
        initial: RefCell::new(Initial::default()),
        tls,
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("client: no runtime: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        for idx in 0..args.count {
            tokio::task::spawn_local(conn::run(ctx.clone(), idx));
        }
        let commands = commands(ctx.clone(), args.first_index);
        let deadline = tokio::time::sleep(Duration::from_secs(args.deadline_s));
        tokio::select! {
            code = commands => code,
            _ = deadline => {
                eprintln!("client {}: deadline of {} s reached", args.client_no, args.deadline_s);
                0
            }
        }
    })
}

/// Serves the harness's commands until QUIT or EOF.
async fn commands(ctx: Rc<Ctx>, first_index: usize) -> u8 {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) | Err(_) => return 0,
        };
        match answer(&ctx.stats, first_index, &line) {
            Answer::Line(reply) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{reply}");
                let _ = out.flush();
            }
            Answer::Quit => return 0,
            Answer::Unknown => eprintln!("client: unknown command {:?}", line.trim()),
        }
    }
}

/// What a command line asks of the client process.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Print this line.
    Line(String),
    /// Exit.
    Quit,
    /// Not a command.
    Unknown,
}

/// Carries out one command against the counters and says what to answer. Every command that
/// changes or reads the counters is answered, so the harness knows when it took effect: in
/// particular `RESET` is answered only after the counters are zeroed — a harness that
/// publishes before then has its first deliveries counted and then forgotten.
fn answer(stats: &RefCell<ClientStats>, first_index: usize, line: &str) -> Answer {
    fn json(v: &impl serde::Serialize) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    match line.trim() {
        "STATS" => Answer::Line(format!("STATS {}", json(&stats.borrow().report()))),
        "RESET" => {
            let forgot = stats.borrow_mut().reset();
            Answer::Line(format!("RESET {}", json(&ResetReport { forgot })))
        }
        other if other.starts_with("MISSING ") => {
            let n = other["MISSING ".len()..].trim().parse().unwrap_or(0);
            Answer::Line(format!(
                "MISSING {}",
                json(&stats.borrow().missing(n, first_index))
            ))
        }
        "QUIT" => Answer::Quit,
        _ => Answer::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload;

    #[test]
    fn reset_is_answered_once_the_counters_are_zero() {
        let stats = RefCell::new(ClientStats::new(2));
        stats.borrow_mut().connected(0, true, 0);
        stats.borrow_mut().message(0, &payload::make(0, 1, 8), 2);
        let Answer::Line(reply) = answer(&stats, 0, "RESET") else {
            panic!("RESET must be answered: the harness waits for it before publishing")
        };
        let r: ResetReport = serde_json::from_str(reply.strip_prefix("RESET ").unwrap()).unwrap();
        assert_eq!(r.forgot, 1);
        assert_eq!(stats.borrow().report().unique, 0);
        assert_eq!(
            stats.borrow().report().open,
            1,
            "open connections stay counted"
        );
        let Answer::Line(reply) = answer(&stats, 7, "MISSING 1") else {
            panic!("MISSING is answered")
        };
        let m: stats::MissingReport =
            serde_json::from_str(reply.strip_prefix("MISSING ").unwrap()).unwrap();
        assert_eq!(m.listed[0].index, 7);
        assert!(
            matches!(answer(&stats, 0, " STATS "), Answer::Line(l) if l.starts_with("STATS {"))
        );
        assert_eq!(answer(&stats, 0, "QUIT"), Answer::Quit);
        assert_eq!(answer(&stats, 0, "NOPE"), Answer::Unknown);
    }
}
