//! The command line: subcommands, their flags and defaults, and the dispatch to scenarios.
//! Exit codes: 0 done, 1 the run failed, 64 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::ClientArgs;
use crate::scenario::conns::ConnsPlan;
use crate::systems::herald::{EdgeOptions, RegistryMode};
use crate::units;
use crate::wire::handshake::Kind;

/// Herald's benchmark harness: connections per GB, push latency, fan-out and reconnect
/// storms, measured side by side with peers on this machine.
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Memory per idle connection (user space and kernel), connections per GiB, accept rate.
    Conns(ConnsArgs),
    /// End-to-end push latency and throughput through `herald dev` (Kafka → processor → edge).
    Push(PushArgs),
    /// Broadcast to every connection: deliveries per server CPU-second.
    Fanout(FanoutArgs),
    /// Reconnect storm: kill or drain the edge, time until clients are back.
    Herd(HerdArgs),
    /// `conns` and `fanout` against Herald, nginx + nchan, tokio-tungstenite and
    /// uWebSockets.js, with ratios.
    Compare(CompareArgs),
    /// Missed-push recovery: Redis memory per retained push, processor throughput with
    /// history on vs off, and a recovery storm after an edge crash.
    History(HistoryArgs),
    /// (internal) A client process holding connections.
    #[command(hide = true)]
    Client(ClientArgs),
    /// (internal) The kernel-share calibration server.
    #[command(hide = true)]
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

/// Where results go.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Write the machine-readable result here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a Markdown report (report.md) and SVG plots into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// How the harness runs Herald's edge.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// The herald-edge binary (default: next to herald-bench).
    #[arg(long, env = "HERALD_EDGE_BIN", value_name = "PATH")]
    pub edge_bin: Option<PathBuf>,
    /// Edge shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// Registry: auto (redis-server when installed), redis, in-process.
    #[arg(long, default_value = "auto")]
    pub registry: String,
    /// An extra flag for herald-edge (repeatable), e.g. --edge-arg=--ping-interval=60s.
    #[arg(long = "edge-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub edge_args: Vec<String>,
    /// How Herald's clients authenticate: jwt (an HS256 token per connection, as in
    /// production) or none (the edge's loopback-only `insecure_user_param`: `?user=` is
    /// trusted — the like-for-like line next to peers that authenticate nobody).
    #[arg(long, default_value = "jwt", value_parser = ["jwt", "none"])]
    pub herald_auth: String,
}

impl EdgeArgs {
    /// Edge options for a run holding `expected` connections of `kind`.
    pub fn options(
        &self,
        kind: Kind,
        expected: usize,
        admission_off: bool,
    ) -> Result<EdgeOptions, String> {
        Ok(EdgeOptions {
            bin: crate::systems::herald::find_edge_bin(self.edge_bin.as_deref())?,
            shards: self.shards,
            registry: RegistryMode::parse(&self.registry)?,
            admission_off,
            extra: self.edge_args.clone(),
            expected,
            kind,
            tls: None,
            auth_none: self.herald_auth == "none",
        })
    }
}

/// How connections are stepped through sizes.
#[derive(Debug, Clone, Args)]
pub struct StepArgs {
    /// Connection counts to measure at, increasing [default: 1000,5000,10000,19000; --quick: 1000,2000,4000].
    #[arg(long)]
    pub sizes: Option<String>,
    /// Small and fast: fewer connections, shorter waits.
    #[arg(long)]
    pub quick: bool,
    /// Most connections per client process.
    #[arg(long, default_value_t = 9500)]
    pub per_client: usize,
    /// Wait after each step before reading memory [default: 2s; --quick: 1s].
    #[arg(long, value_parser = units::parse_duration)]
    pub settle: Option<Duration>,
    /// Handshakes in flight per client process.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Do not drop reclaimable slab before readings (dropping needs root).
    #[arg(long)]
    pub no_drop_caches: bool,
    /// Estimate the server's kernel share as half of both ends instead of calibrating.
    #[arg(long)]
    pub no_calibrate: bool,
}

impl StepArgs {
    /// The plan these flags describe.
    pub fn plan(&self) -> Result<ConnsPlan, String> {
        let sizes = match &self.sizes {
            Some(s) => units::parse_sizes(s)?,
            None if self.quick => vec![1000, 2000, 4000],
            None => vec![1000, 5000, 10000, 19000],
        };
        let settle = self.settle.unwrap_or(if self.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        });
        Ok(ConnsPlan {
            sizes,
            per_client: self.per_client,
            settle_s: settle.as_secs_f64(),
            drop_caches: !self.no_drop_caches,
            concurrency: self.concurrency,
        })
    }
}

/// `conns` flags.
#[derive(Debug, Clone, Args)]
pub struct ConnsArgs {
    /// herald, nchan, tokio-tungstenite or uws (uWebSockets.js), started by the harness.
    #[arg(long, default_value = "herald")]
    pub system: String,
    /// Measure a server you started instead: ws://HOST:PORT/PATH or http://… for SSE;
    /// `{token}` in the URL is replaced by a JWT signed with --jwt-secret.
    #[arg(long)]
    pub url: Option<String>,
    /// PID of that server (default: the process listening on the URL's port).
    #[arg(long)]
    pub pid: Option<u32>,
    /// HS256 secret for `{token}`.
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// Clients connect over TLS (a self-signed certificate generated for the run; Herald's
    /// TLS listener, nchan `listen … ssl`; systems without TLS are skipped).
    #[arg(long)]
    pub tls: bool,
    /// ws or sse (Herald and nchan).
    #[arg(long, default_value = "ws", value_parser = Kind::parse)]
    pub kind: Kind,
    /// nginx worker processes for nchan.
    #[arg(long, default_value_t = 1)]
    pub nchan_workers: usize,
    #[command(flatten)]
    pub steps: StepArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Fan-out flags shared by `fanout` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct FanoutFlags {
    /// Broadcasts to publish [default: 20; --quick: 10].
    #[arg(long)]
    pub messages: Option<usize>,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
}

impl FanoutFlags {
    /// The plan these flags describe.
    pub fn plan(&self, quick: bool) -> Result<crate::scenario::fanout::FanoutPlan, String> {
        let messages = self.messages.unwrap_or(if quick { 10 } else { 20 });
        if messages == 0 || messages > 100_000 {
            return Err("--messages must be 1..=100000".into());
        }
        if !(self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err("--rate must be in (0, 100000]".into());
        }
        Ok(crate::scenario::fanout::FanoutPlan {
            messages,
            rate: self.rate,
            payload_bytes: self.payload_bytes.clamp(24, 1 << 20),
            drain_timeout_s: 60.0,
        })
    }
}

/// `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// herald, nchan, tokio-tungstenite or uws (uWebSockets.js).
    #[arg(long, default_value = "herald")]
    pub system: String,
    /// Connections [default: 10000; --quick: 2000].
    #[arg(long)]
    pub conns: Option<usize>,
    /// Clients connect over TLS (a self-signed certificate generated for the run; Herald's
    /// TLS listener, nchan `listen … ssl`; systems without TLS are skipped).
    #[arg(long)]
    pub tls: bool,
    /// ws or sse (Herald and nchan).
    #[arg(long, default_value = "ws", value_parser = Kind::parse)]
    pub kind: Kind,
    /// Small and fast.
    #[arg(long)]
    pub quick: bool,
    /// Most connections per client process.
    #[arg(long, default_value_t = 9500)]
    pub per_client: usize,
    /// nginx worker processes for nchan.
    #[arg(long, default_value_t = 1)]
    pub nchan_workers: usize,
    #[command(flatten)]
    pub fanout: FanoutFlags,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `compare` flags.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Systems to compare, in order.
    #[arg(long, default_value = "herald,nchan,tokio-tungstenite,uws")]
    pub systems: String,
    /// Clients connect over TLS (a self-signed certificate generated for the run; Herald's
    /// TLS listener, nchan `listen … ssl`; systems without TLS are skipped).
    #[arg(long)]
    pub tls: bool,
    /// nginx worker processes for nchan.
    #[arg(long, default_value_t = 1)]
    pub nchan_workers: usize,
    #[command(flatten)]
    pub steps: StepArgs,
    #[command(flatten)]
    pub fanout: FanoutFlags,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `push` flags.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The root `herald` binary that has `herald dev` (default: next to herald-bench).
    #[arg(long, env = "HERALD_BIN", value_name = "PATH")]
    pub herald_bin: Option<PathBuf>,
    /// Connected clients (distinct users); pushes go round-robin over them [default: 1000; --quick: 200].
    #[arg(long)]
    pub conns: Option<usize>,
    /// Pushes per second (open loop) [default: 1000; --quick: 200].
    #[arg(long)]
    pub rate: Option<f64>,
    /// A latency curve: one phase per rate (increasing, e.g. 1000,2000,5000,10000,20000)
    /// against one herald dev, one report with a plot of p50/p99 against rate.
    #[arg(long, value_name = "LIST", conflicts_with = "rate")]
    pub rates: Option<String>,
    /// Run every rate at each of these priorities, e.g. high,normal [default: --priority].
    #[arg(long, value_name = "LIST")]
    pub priorities: Option<String>,
    /// How long to publish [default: 30s; --quick: 5s].
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// ws or sse.
    #[arg(long, default_value = "ws", value_parser = Kind::parse)]
    pub kind: Kind,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Priority topic: high (1 ms producer batches), normal (5 ms batches), low.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Registry URL for herald dev (default: its embedded registry).
    #[arg(long)]
    pub redis: Option<String>,
    /// herald dev's `--fetch-wait-max`: how long the processor's fetch waits on the embedded
    /// Kafka. Its mock broker holds an empty fetch for the whole wait even when records
    /// arrive (a real broker answers at once), so the wait is pure added latency; 1ms keeps
    /// that under a millisecond.
    #[arg(long, default_value = "1ms", value_parser = units::parse_duration)]
    pub fetch_wait: Duration,
    /// Small and fast.
    #[arg(long)]
    pub quick: bool,
    /// Most connections per client process.
    #[arg(long, default_value_t = 9500)]
    pub per_client: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `herd` flags.
#[derive(Debug, Clone, Args)]
pub struct HerdArgs {
    /// Connections to hold [default: 10000; --quick: 2000].
    #[arg(long)]
    pub conns: Option<usize>,
    /// kill (SIGKILL and restart), drain (POST /admin/drain, a replacement takes over) or both.
    #[arg(long, default_value = "both")]
    pub mode: String,
    /// With the edge's admission control (on), without (off), or both runs.
    #[arg(long, default_value = "both")]
    pub admission: String,
    /// Admission settings for "on": handshakes per second per shard.
    #[arg(long, default_value_t = 2000)]
    pub handshake_rate: u32,
    /// Admission settings for "on": token-bucket burst per shard.
    #[arg(long, default_value_t = 500)]
    pub handshake_burst: u32,
    /// Drain window given to the edge.
    #[arg(long, value_parser = units::parse_duration, default_value = "10s")]
    pub drain_window: Duration,
    /// Client back-off base (first reconnect waits uniform(0, base)).
    #[arg(long, value_parser = units::parse_duration, default_value = "1s")]
    pub backoff_base: Duration,
    /// Client back-off cap.
    #[arg(long, value_parser = units::parse_duration, default_value = "30s")]
    pub backoff_max: Duration,
    /// Longest wait for 99% to be back.
    #[arg(long, value_parser = units::parse_duration, default_value = "120s")]
    pub timeout: Duration,
    /// ws or sse.
    #[arg(long, default_value = "ws", value_parser = Kind::parse)]
    pub kind: Kind,
    /// Small and fast.
    #[arg(long)]
    pub quick: bool,
    /// Most connections per client process.
    #[arg(long, default_value_t = 9500)]
    pub per_client: usize,
    #[command(flatten)]
    pub edge: EdgeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `history` flags.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Parts to run, comma-separated: memory, throughput, storm.
    #[arg(long, default_value = "memory,throughput,storm")]
    pub parts: String,
    /// Small and fast (a smoke test, not a measurement).
    #[arg(long)]
    pub quick: bool,
    /// Pushes kept per user (the processor's history_size).
    #[arg(long, default_value_t = 100)]
    pub history_size: u32,
    /// How long a history is kept (the processor's history_ttl).
    #[arg(long, value_parser = units::parse_duration, default_value = "5m")]
    pub history_ttl: Duration,
    /// memory: user counts to fill, increasing [default: 250,500,1000; --quick: 20,40].
    #[arg(long)]
    pub users: Option<String>,
    /// memory: payload sizes, bytes.
    #[arg(long, default_value = "64,1024")]
    pub payloads: String,
    /// throughput: the root `herald` binary with `herald dev` (default: next to herald-bench).
    #[arg(long, env = "HERALD_BIN", value_name = "PATH")]
    pub herald_bin: Option<PathBuf>,
    /// throughput: connected clients (distinct users) [default: 1000; --quick: 50].
    #[arg(long)]
    pub conns: Option<usize>,
    /// throughput: pushes per second, open loop [default: 3000; --quick: 100].
    #[arg(long)]
    pub rate: Option<f64>,
    /// throughput: how long to publish, each run [default: 20s; --quick: 3s].
    #[arg(long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// throughput and storm: payload bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// storm: SSE clients, one user each [default: 10000; --quick: 200].
    #[arg(long)]
    pub clients: Option<usize>,
    /// storm: pushes per user delivered before the edge is killed.
    #[arg(long, default_value_t = 2)]
    pub before: u32,
    /// storm: pushes per user sent while the clients are away.
    #[arg(long, default_value_t = 10)]
    pub away: u32,
    /// storm: handshakes in flight at once when every client reconnects.
    #[arg(long, default_value_t = 1000)]
    pub storm_concurrency: usize,
    /// storm: longest wait for every client to recover.
    #[arg(long, value_parser = units::parse_duration)]
    pub storm_timeout: Option<Duration>,
    /// storm: the herald-edge binary (default: next to herald-bench).
    #[arg(long, env = "HERALD_EDGE_BIN", value_name = "PATH")]
    pub edge_bin: Option<PathBuf>,
    /// storm: edge shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// storm: an extra flag for herald-edge (repeatable).
    #[arg(long = "edge-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub edge_args: Vec<String>,
    /// Most connections per client process (throughput).
    #[arg(long, default_value_t = 9500)]
    pub per_client: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Client(args) = cli.command {
        return ExitCode::from(crate::client::run(args));
    }
    if let Command::Sink { listen } = cli.command {
        return ExitCode::from(crate::systems::sink::serve(listen));
    }
    let _guard = crate::children::install();
    let result = match &cli.command {
        Command::Conns(a) => crate::scenario::conns::run(a),
        Command::Fanout(a) => crate::scenario::fanout::run(a),
        Command::Compare(a) => crate::scenario::compare::run(a),
        Command::Herd(a) => crate::scenario::herd::run(a),
        Command::Push(a) => crate::scenario::push::run(a),
        Command::History(a) => crate::scenario::history::run(a),
        Command::Client(_) | Command::Sink { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(crate::scenario::Failure::Usage(e)) => {
            eprintln!("herald-bench: {e}");
            ExitCode::from(64)
        }
        Err(crate::scenario::Failure::Run(e)) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quick_plans_are_small() {
        let cli = Cli::try_parse_from(["herald-bench", "compare", "--quick"]).unwrap();
        let Command::Compare(a) = cli.command else {
            panic!()
        };
        let p = a.steps.plan().unwrap();
        assert_eq!(p.sizes, vec![1000, 2000, 4000]);
        assert_eq!(a.fanout.plan(true).unwrap().messages, 10);
        assert!(!a.tls);
        for sub in ["conns", "fanout", "compare"] {
            let cli = Cli::try_parse_from(["herald-bench", sub, "--tls"]).unwrap();
            let tls = match cli.command {
                Command::Conns(a) => a.tls,
                Command::Fanout(a) => a.tls,
                Command::Compare(a) => a.tls,
                _ => false,
            };
            assert!(tls, "{sub} --tls");
        }
        let cli = Cli::try_parse_from([
            "herald-bench",
            "conns",
            "--sizes",
            "100,200",
            "--settle",
            "200ms",
            "--edge-arg=--ping-interval=60s",
        ])
        .unwrap();
        let Command::Conns(a) = cli.command else {
            panic!()
        };
        let p = a.steps.plan().unwrap();
        assert_eq!(p.sizes, vec![100, 200]);
        assert!((p.settle_s - 0.2).abs() < 1e-9);
        assert_eq!(a.edge.edge_args, vec!["--ping-interval=60s"]);
    }
}
