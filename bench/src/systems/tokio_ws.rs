//! The tokio-tungstenite baseline as a system: the `herald-bench-tokio-ws` binary built with
//! this crate, started on a free loopback port.

use std::process::{Command, Stdio};

use super::{Running, StartError, SystemId};
use crate::publish::PublishVia;

/// Version of the baseline (the tokio-tungstenite it is built with).
pub const VERSION: &str = "tokio 1 + tokio-tungstenite 0.30, default settings";

/// Starts the baseline server.
pub fn start() -> Result<Running, StartError> {
    let candidates = super::sibling_binary("herald-bench-tokio-ws");
    let bin = super::first_existing(&candidates).ok_or_else(|| {
        StartError::Failed(
            "herald-bench-tokio-ws not found next to herald-bench; build it: cargo build --release -p herald-bench"
                .into(),
        )
    })?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let (sp, addr) = super::spawn_until_ready("herald-bench-tokio-ws", &mut cmd)?;
    let mut running = Running::plain_ws(SystemId::TokioWs, sp, addr, VERSION.into());
    running.publish = Some(PublishVia::WsText {
        addr,
        path: "/pub".into(),
    });
    running.notes = vec!["multi-threaded runtime, backlog 1024 (tokio's default)".into()];
    Ok(running)
}
