//! `herald dev --tls`, as a user runs it: the binary prints `HERALD_READY … wss= sse_tls=
//! tls_cert=`, a rustls client trusting that certificate subscribes over `https://…/sse`, and
//! `herald send` publishes through the embedded Kafka to it. Ctrl-C (SIGTERM) stops it and
//! removes the generated certificate.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_edge::auth::jwt::{issue_hs256, Claims};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Longest any wait may take on a loaded machine.
const BOUND: Duration = Duration::from_secs(120);

#[test]
fn herald_dev_tls_serves_https_sse_with_the_certificate_it_prints() {
    let _serial = crate::support::serial();
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "dev",
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--shards",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald dev starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let ready = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "herald dev ended before HERALD_READY"
        );
        if let Some(rest) = line.strip_prefix("HERALD_READY ") {
            break rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>();
        }
    };
    for key in [
        "ws",
        "sse",
        "kafka",
        "admin",
        "jwt_secret",
        "demo",
        "wss",
        "sse_tls",
        "tls_cert",
    ] {
        assert!(
            ready.contains_key(key),
            "HERALD_READY lacks {key}: {ready:?}"
        );
    }
    assert!(ready["wss"].starts_with("wss://") && ready["wss"].ends_with("/ws"));
    let sse_tls = ready["sse_tls"].clone();
    let addr: SocketAddr = sse_tls
        .trim_start_matches("https://")
        .trim_end_matches("/sse")
        .parse()
        .unwrap();
    let cert_path = std::path::PathBuf::from(&ready["tls_cert"]);

    // A client that trusts only the printed certificate, with the address as server name.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert_path).expect("the printed certificate"))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into()))
            .unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(BOUND)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = issue_hs256(
        ready["jwt_secret"].as_bytes(),
        &Claims {
            sub: "alice".into(),
            did: None,
            exp,
            nbf: None,
            iss: None,
            aud: None,
        },
    );
    write!(
        tls,
        "GET /sse?access_token={token} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // Publish with `herald send` until the push arrives (the subscription registers
    // asynchronously; a push before that is settled `offline`).
    let mut got = String::new();
    let deadline = Instant::now() + BOUND;
    let mut buf = [0u8; 4096];
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    while !got.contains("data: hello over tls") {
        assert!(Instant::now() < deadline, "no push within {BOUND:?}: {got}");
        let status = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "send",
                "--kafka",
                &ready["kafka"],
                "--user",
                "alice",
                "hello over tls",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !got.contains("data: hello over tls") {
            match tls.read(&mut buf) {
                Ok(0) => panic!("the edge closed the stream: {got}"),
                Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
    }

    // SIGTERM: a clean stop, and the generated certificate is gone.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = (0..1200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(stopped, "herald dev did not stop within 120 s");
    assert!(!cert_path.exists(), "the dev certificate was left behind");
}
