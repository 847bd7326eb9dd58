//! The calibration sink (`herald-bench sink`, hidden): a server whose sockets cost the kernel
//! what the harness's own client sockets cost — a tokio socket in epoll, answering the
//! WebSocket handshake and then only reading.
//!
//! On loopback the kernel memory of both ends of every connection lands in the same
//! `Slab`. Holding the same connections against the sink measures "client end + sink end",
//! and the two ends are alike, so half of it is the clients' share, which is subtracted from
//! every system's total to leave the server's share.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{Running, StartError, SystemId};

const UPGRADE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// Runs the sink on `listen` until killed or its stdin closes; prints `ready addr=…`.
pub fn serve(listen: SocketAddr) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sink: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match TcpSocket::new_v4()
            .and_then(|s| {
                s.set_reuseaddr(true)?;
                s.bind(listen)?;
                Ok(s)
            })
            .and_then(|s| s.listen(1024))
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sink: cannot listen on {listen}: {e}");
                return 1;
            }
        };
        match listener.local_addr() {
            Ok(a) => println!("ready addr={a}"),
            Err(e) => {
                eprintln!("sink: {e}");
                return 1;
            }
        }
        let scratch = Rc::new(RefCell::new(vec![0u8; 16 * 1024]));
        // The harness holds our stdin: when it closes (the harness is gone), stop.
        let mut lifeline = tokio::io::stdin();
        let mut byte = [0u8; 64];
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => {
                        tokio::task::spawn_local(hold(s, scratch.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                n = lifeline.read(&mut byte) => {
                    if !matches!(n, Ok(k) if k > 0) {
                        return 0;
                    }
                }
            }
        }
    })
}

async fn hold(mut s: TcpStream, scratch: Rc<RefCell<Vec<u8>>>) {
    let mut head: Vec<u8> = Vec::new();
    let mut upgraded = false;
    loop {
        if s.readable().await.is_err() {
            return;
        }
        let got = {
            let mut buf = scratch.borrow_mut();
            match s.try_read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if !upgraded {
                        head.extend_from_slice(&buf[..n]);
                    }
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(_) => return,
            }
        };
        if got && !upgraded && head.windows(4).any(|w| w == b"\r\n\r\n") {
            upgraded = true;
            head = Vec::new();
            if s.write_all(UPGRADE).await.is_err() {
                return;
            }
        }
    }
}

/// Starts a sink process (this executable, hidden `sink` subcommand).
pub fn start() -> Result<Running, StartError> {
    let exe = std::env::current_exe().map_err(|e| StartError::Failed(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["sink", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (sp, addr) = super::spawn_until_ready("sink", &mut cmd)?;
    Ok(Running::plain_ws(
        SystemId::Sink,
        sp,
        addr,
        "herald-bench sink".into(),
    ))
}
