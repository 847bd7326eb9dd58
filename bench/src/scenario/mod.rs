//! The scenarios behind the subcommands, and what they share: starting a system by name and
//! the error type that decides the exit code.

pub mod compare;
pub mod conns;
pub mod fanout;
pub mod herd;
pub mod history;
pub mod loss;
pub mod push;

use std::net::SocketAddr;

use crate::cli::EdgeArgs;
use crate::pool::ClientTarget;
use crate::procfs::{Proc, ProcTree};
use crate::systems::herald::Secrets;
use crate::systems::{herald, nchan, tokio_ws, uws, Running, StartError, SystemId};
use crate::wire::handshake::Kind;

/// Why a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags (exit 64).
    Usage(String),
    /// The run itself failed (exit 1).
    Run(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Run(e)
    }
}

impl From<StartError> for Failure {
    fn from(e: StartError) -> Self {
        Failure::Run(e.to_string())
    }
}

/// Starts system `id` for connections of `kind`, sized for `expected` connections. Herald
/// runs with admission control off: these scenarios measure raw capacity. With `tls` the
/// clients connect over TLS to a listener using that certificate; a system that cannot
/// serve TLS is refused with [`StartError::NoTls`], never measured in plaintext instead.
pub fn start(
    id: SystemId,
    kind: Kind,
    edge: &EdgeArgs,
    nchan_workers: usize,
    expected: usize,
    tls: Option<&crate::tls::RunCert>,
) -> Result<Running, StartError> {
    match id {
        SystemId::Herald => {
            let mut opts = edge
                .options(kind, expected, true)
                .map_err(StartError::Failed)?;
            opts.tls = tls.map(|t| t.files());
            herald::start(&opts, &Secrets::generate())
        }
        SystemId::Nchan => nchan::start(kind, nchan_workers, tls.map(|t| t.files()).as_ref()),
        SystemId::TokioWs if tls.is_some() => Err(StartError::NoTls(
            "no TLS: the tokio-tungstenite baseline serves plaintext WebSocket only, and a \
             --tls run does not measure it in plaintext"
                .into(),
        )),
        SystemId::TokioWs if kind == Kind::Sse => Err(StartError::Failed(
            "the tokio-tungstenite baseline speaks WebSocket only".into(),
        )),
        SystemId::TokioWs => tokio_ws::start(),
        SystemId::Uws => uws::start(kind, tls.is_some()),
        SystemId::Sink | SystemId::External => Err(StartError::Failed(format!(
            "{} is not started by name",
            id.name()
        ))),
    }
}

/// Attaches to a server the user started: `ws://IP:PORT/PATH` (WebSocket) or `http://…`
/// (SSE), loopback only; the process is `pid` or the one listening on the port.
pub fn external(
    url: &str,
    pid: Option<u32>,
    jwt_secret: Option<String>,
) -> Result<Running, String> {
    let (kind, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (Kind::Ws, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Kind::Sse, r)
    } else {
        return Err(format!(
            "--url {url:?}: expected ws://IP:PORT/… or http://IP:PORT/…"
        ));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("--url {url:?}: the host must be an IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("--url {url:?}: loopback addresses only"));
    }
    if path.contains("{token}") && jwt_secret.is_none() {
        return Err("--url has {token} but no --jwt-secret was given".into());
    }
    let pid = match pid {
        Some(p) => p,
        None => Proc::default()
            .listener_pid(addr.port())
            .ok_or_else(|| format!("no process listens on port {}; pass --pid", addr.port()))?,
    };
    Ok(Running {
        id: SystemId::External,
        target: ClientTarget {
            addr,
            kind,
            path: path.to_string(),
            jwt_secret,
            user_prefix: "b".into(),
            tls: None,
        },
        tree: ProcTree::new(pid),
        publish: None,
        admin: None,
        aux: Vec::new(),
        version: format!("external (pid {pid})"),
        notes: vec![format!("external server {url}")],
        owned: Vec::new(),
        work: None,
        lifeline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls() {
        let me = std::process::id();
        let r = external(
            "ws://127.0.0.1:9/ws?access_token={token}",
            Some(me),
            Some("s".into()),
        )
        .unwrap();
        assert_eq!(r.target.kind, Kind::Ws);
        assert_eq!(r.target.path, "/ws?access_token={token}");
        assert_eq!(r.tree.root, me);
        let r = external("http://127.0.0.1:9", Some(me), None).unwrap();
        assert_eq!((r.target.kind, r.target.path.as_str()), (Kind::Sse, "/"));
        assert!(external("ws://10.0.0.1:9/", Some(me), None).is_err());
        assert!(external("wss://127.0.0.1:9/", Some(me), None).is_err());
        assert!(external("ws://localhost:9/", Some(me), None).is_err());
        assert!(external("ws://127.0.0.1:9/?t={token}", Some(me), None).is_err());
    }
}
