//! `herald-bench-tokio-ws`: the WebSocket server a Rust user writes first, as the baseline of
//! `herald-bench compare`. Nothing in it is tuned: tokio's multi-threaded runtime,
//! `TcpListener::bind` (tokio's listen backlog is 1024, the same as every other system in the
//! comparison), one task per connection, `tokio_tungstenite::accept_hdr_async` with the
//! default `WebSocketConfig`, and a `tokio::sync::broadcast` channel that relays whatever a
//! publisher connection (path `/pub`) sends to every other connection.
//!
//! Usage: `herald-bench-tokio-ws --listen 127.0.0.1:0`; prints `ready addr=IP:PORT`.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let listener = match TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herald-bench-tokio-ws: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("ready addr={addr}"),
        Err(e) => {
            eprintln!("herald-bench-tokio-ws: {e}");
            std::process::exit(1);
        }
    }
    let (tx, _) = broadcast::channel::<Message>(1024);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let tx = tx.clone();
        // Subscribe before the handshake: once a client has its 101 it is a subscriber, so a
        // message published right after it connected reaches it even if this task has not
        // run again yet (subscribing after the handshake lost deliveries on a busy machine).
        let mut rx = tx.subscribe();
        tokio::spawn(async move {
            let mut path = String::new();
            // The result type is tungstenite's `Callback` signature, not ours to shrink.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| {
                path = req.uri().path().to_string();
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                return;
            };
            let (mut sink, mut incoming) = ws.split();
            if path == "/pub" {
                drop(rx);
                while let Some(Ok(msg)) = incoming.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = tx.send(msg);
                    }
                }
                return;
            }
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Ok(m) => {
                            if sink.send(m).await.is_err() {
                                break;
                            }
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                    msg = incoming.next() => match msg {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
        });
    }
}
