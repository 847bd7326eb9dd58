//! `herald send`: publish one push through Kafka with the `Sender` API.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use herald_edge::config::parse_duration;
use herald_protocol::kafka::{Priority, Target};
use herald_sender::{Sender, SenderConfig};

/// Arguments of `herald send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Kafka bootstrap servers (`HOST:PORT[,…]`; `herald dev` prints it).
    #[arg(long, env = "HERALD_KAFKA")]
    pub kafka: String,
    /// Target user.
    #[arg(long, required_unless_present = "broadcast")]
    pub user: Option<String>,
    /// Target device of the user (omitted = every device of the user).
    #[arg(long, requires = "user")]
    pub device: Option<String>,
    /// Send to every connection on every edge.
    #[arg(long, conflicts_with_all = ["user", "device"])]
    pub broadcast: bool,
    /// Priority topic: high, normal or low.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Time to live (ms, s, m, h); `0` = never expires.
    #[arg(long, default_value = "30s")]
    pub ttl: String,
    /// The payload, delivered verbatim; `-` reads it from standard input.
    pub payload: String,
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("herald send: {msg}");
    ExitCode::from(code)
}

/// Sends the push and prints its `herald-id`. Exit 64 on bad arguments, 69 when Kafka did
/// not acknowledge the record.
pub(crate) fn run(a: &SendArgs) -> ExitCode {
    let priority = match Priority::parse(&a.priority) {
        Ok(p) => p,
        Err(e) => return fail(64, &format!("--priority: {e}")),
    };
    let ttl = match parse_duration(&a.ttl) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => return fail(64, &format!("--ttl: {e}")),
    };
    let target = match (&a.user, &a.device, a.broadcast) {
        (_, _, true) => Target::Broadcast,
        (Some(u), Some(d), false) => Target::Device {
            user: u.clone(),
            device: d.clone(),
        },
        (Some(u), None, false) => Target::User(u.clone()),
        (None, _, false) => return fail(64, "--user or --broadcast is required"),
    };
    if let Err(e) = target.validate() {
        return fail(64, &format!("bad target: {e}"));
    }
    let payload = if a.payload == "-" {
        let mut buf = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            return fail(64, &format!("reading the payload from stdin: {e}"));
        }
        buf
    } else {
        a.payload.clone().into_bytes()
    };
    let mut config = SenderConfig::new(a.kafka.clone());
    config.delivery_timeout = Duration::from_secs(15);
    let sender = match Sender::new(&config) {
        Ok(s) => s,
        Err(e) => return fail(64, &format!("kafka client: {e}")),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match rt.block_on(sender.send(&target, &payload, priority, ttl)) {
        Ok(id) => {
            println!("{}", id.as_str());
            ExitCode::SUCCESS
        }
        Err(e) => fail(69, &format!("not sent: {e}")),
    }
}
