//! The TLS listener over real sockets: rustls and `openssl s_client` clients receive pushes
//! over `wss://` and `https://…/sse`, SNI picks the certificate, both TLS versions, refused
//! ALPN, plaintext on the TLS port and TLS on the plaintext port, garbage, a stalled
//! handshake, and a certificate reload under 1,000 open connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_edge::config::EdgeConfig;
use herald_edge::tls::dev_cert::DevCert;
use herald_edge::tls::{CertFiles, TlsFiles, TlsSettings, TlsVersion};
use herald_edge::EdgeHandle;
use herald_protocol::delivery::Outcome;
use herald_protocol::sse::SseParser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::Message;

use crate::support::*;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// An edge with a TLS listener for `localhost`/127.0.0.1, and extra SNI certificates.
fn tls_config(dir: &Path, sni: &[(&str, &DevCert)]) -> (EdgeConfig, DevCert) {
    let cert = DevCert::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let default = cert.write(dir, "default").unwrap();
    let sni = sni
        .iter()
        .map(|(name, c)| (name.to_string(), c.write(dir, name).unwrap()))
        .collect();
    let mut cfg = config();
    cfg.tls = Some(TlsSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        files: TlsFiles { default, sni },
        min_version: TlsVersion::V1_2,
        reload_check: None,
    });
    (cfg, cert)
}

fn client_config(
    roots: &[&DevCert],
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for c in roots {
        store
            .add(CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap())
            .unwrap();
    }
    let mut c = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

/// A certificate's DER bytes (to compare with what a server presented).
fn cert_der(c: &DevCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(c.cert_pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// A TLS 1.3 ClientHello for `localhost`, as bytes for a raw socket.
fn client_hello(cert: &DevCert) -> Vec<u8> {
    let mut hello = Vec::new();
    let mut c = ClientConnection::new(
        client_config(&[cert], &[&rustls::version::TLS13], &[b"http/1.1"]),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    c.write_tls(&mut hello).unwrap();
    hello
}

fn tls_addr(edge: &EdgeHandle) -> SocketAddr {
    edge.tls_addr.expect("a TLS listener")
}

/// A TLS connection with the handshake done.
fn tls_connect(addr: SocketAddr, name: &str, cfg: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let conn = ClientConnection::new(cfg, ServerName::try_from(name.to_string()).unwrap())
        .map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// An SSE subscription over TLS: the stream after the response head.
fn tls_sse(addr: SocketAddr, cfg: Arc<ClientConfig>, user: &str) -> (Tls, String) {
    let mut s = tls_connect(addr, "localhost", cfg).expect("TLS handshake");
    write!(
        s,
        "GET /sse HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer {}\r\n\r\n",
        token(user, None)
    )
    .unwrap();
    s.flush().unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// The bytes a child process writes to stdout, read on a thread so a test can wait for them
/// with a bound instead of blocking forever if they never come.
struct ChildOutput {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl ChildOutput {
    fn new(mut out: impl Read + Send + 'static) -> ChildOutput {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        ChildOutput {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `bound`) until the output so far contains `needle`.
    fn wait_for(&mut self, needle: &[u8], bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while !self.seen.windows(needle.len()).any(|w| w == needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(_) => return false,
            }
        }
        true
    }
}

/// Whether the peer ends the connection (EOF, reset, or an alert) within `limit`.
fn ends_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn wss_and_https_sse_clients_receive_pushes_at_tls12_and_tls13() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, cert) = tls_config(dir.path(), &[]);
    let edge = start(cfg);
    let addr = tls_addr(&edge);
    let mut clients = delivery_clients(&edge);
    for (i, version) in [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .enumerate()
    {
        let cfg = client_config(&[&cert], &[version], &[b"http/1.1"]);
        let user = format!("tls-ws-{i}");
        let stream = tls_connect(addr, "localhost", cfg.clone()).unwrap();
        assert_eq!(stream.conn.protocol_version(), Some(version.version));
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let url = format!(
            "wss://localhost:{}/ws?access_token={}",
            addr.port(),
            token(&user, None)
        );
        let (mut ws, resp) = tungstenite::client(url, stream).expect("WebSocket over TLS");
        assert_eq!(resp.status(), 101);

        let sse_user = format!("tls-sse-{i}");
        let (mut sse, head) = tls_sse(addr, cfg, &sse_user);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");

        let base = 100 * i as u64;
        let a = deliver_anywhere(&mut clients, msg(base + 1, &user, None, b"hello over wss"));
        assert_eq!(a.outcome, Outcome::Delivered);
        assert_eq!(ws.read().unwrap(), Message::Text("hello over wss".into()));
        // A push larger than one TLS record arrives whole.
        let big = "x".repeat(50_000);
        let a = deliver_anywhere(&mut clients, msg(base + 2, &user, None, big.as_bytes()));
        assert_eq!(a.outcome, Outcome::Delivered);
        assert_eq!(ws.read().unwrap(), Message::Text(big.into()));

        let a = deliver_anywhere(
            &mut clients,
            msg(base + 3, &sse_user, None, b"hello over https"),
        );
        assert_eq!(a.outcome, Outcome::Delivered);
        let mut parser = SseParser::new();
        assert_eq!(
            next_sse_event(&mut sse, &mut parser).data,
            "hello over https"
        );

        // The client's close handshake works over TLS too.
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    // The plaintext listener still serves plaintext beside it.
    let mut plain = ws_connect(&edge, "plain", None);
    let a = deliver_anywhere(&mut clients, msg(900, "plain", None, b"plain"));
    assert_eq!(a.outcome, Outcome::Delivered);
    assert_eq!(plain.read().unwrap(), Message::Text("plain".into()));
}

#[test]
fn sni_picks_the_certificate_for_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let other = DevCert::self_signed(&["push.example.com"]).unwrap();
    let (cfg, cert) = tls_config(dir.path(), &[("push.example.com", &other)]);
    let edge = start(cfg);
    let both = client_config(&[&cert, &other], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let leaf = |s: &Tls| s.conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    let s = tls_connect(tls_addr(&edge), "push.example.com", both.clone()).unwrap();
    assert_eq!(leaf(&s), cert_der(&other));
    let s = tls_connect(tls_addr(&edge), "localhost", both.clone()).unwrap();
    assert_eq!(leaf(&s), cert_der(&cert));
    // A client that trusts only the default certificate cannot be fooled into the other name.
    let only_default = client_config(&[&cert], &[&rustls::version::TLS13], &[b"http/1.1"]);
    assert!(tls_connect(tls_addr(&edge), "push.example.com", only_default).is_err());
}

#[test]
fn refused_alpn_plaintext_on_the_tls_port_tls_on_the_plaintext_port_and_garbage_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, cert) = tls_config(dir.path(), &[]);
    let edge = start(cfg);
    let addr = tls_addr(&edge);

    // A client that only speaks h2: the handshake fails with an alert.
    let h2 = client_config(&[&cert], &[&rustls::version::TLS13], &[b"h2"]);
    let err = tls_connect(addr, "localhost", h2).expect_err("refused");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

    // Plaintext HTTP on the TLS port: a plain 400 that says why, then the end.
    let status = raw_status(addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 400);

    // A TLS ClientHello on the plaintext port: an HTTP error, then the end.
    let hello = client_hello(&cert);
    let mut s = TcpStream::connect(edge.client_addr).unwrap();
    s.write_all(&hello).unwrap();
    assert!(ends_within(&mut s, Duration::from_secs(30)));

    // Garbage, and a record header that lies about its length.
    for junk in [
        &[0xffu8; 64][..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..],
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(junk).unwrap();
        assert!(ends_within(&mut s, Duration::from_secs(30)), "{junk:?}");
    }
    assert!(closes(&edge, "tls_error") >= 3);
    // The listener still serves.
    let ok = client_config(&[&cert], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let (_s, head) = tls_sse(addr, ok, "after-garbage");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[test]
fn a_client_that_stalls_mid_handshake_is_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, cert) = tls_config(dir.path(), &[]);
    cfg.handshake_timeout = Duration::from_secs(1);
    let edge = start(cfg);
    // Half a ClientHello, then nothing.
    let hello = client_hello(&cert);
    let mut s = TcpStream::connect(tls_addr(&edge)).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    // A full handshake but no HTTP request: the same deadline.
    let ok = client_config(&[&cert], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut quiet = tls_connect(tls_addr(&edge), "localhost", ok).unwrap();
    let bound = Duration::from_secs(60);
    assert!(
        ends_within(&mut s, bound),
        "the stalled handshake was not closed within {bound:?}"
    );
    let mut buf = [0u8; 64];
    quiet
        .sock
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert!(matches!(quiet.read(&mut buf), Ok(0) | Err(_)));
    assert!(deadline_closes(&edge, "handshake_timeout") >= 2);
}

#[test]
fn openssl_s_client_receives_pushes_over_https_sse_at_every_version_and_cipher() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        panic!("openssl is needed (scripts/test.sh installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _cert) = tls_config(dir.path(), &[]);
    let edge = start(cfg);
    let addr = tls_addr(&edge);
    let mut clients = delivery_clients(&edge);
    // OpenSSL is an independent implementation of the record layer the edge runs after the
    // handshake: each version and AEAD once.
    let variants: [&[&str]; 5] = [
        &["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
        &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
    ];
    for (i, variant) in variants.iter().enumerate() {
        let user = format!("openssl-{i}");
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "localhost",
                "-CAfile",
                dir.path().join("default.crt").to_str().unwrap(),
                "-verify_return_error",
                "-alpn",
                "http/1.1",
                "-quiet",
            ])
            .args(*variant)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let mut stdin = child.stdin.take().unwrap();
        write!(
            stdin,
            "GET /sse HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer {}\r\n\r\n",
            token(&user, None)
        )
        .unwrap();
        stdin.flush().unwrap();
        let mut out = ChildOutput::new(child.stdout.take().unwrap());
        assert!(
            out.wait_for(b"HTTP/1.1 200", Duration::from_secs(60)),
            "{variant:?}: {}",
            String::from_utf8_lossy(&out.seen)
        );
        // Deliver once the subscription is registered, then read the event's data lines.
        for k in 0..3u64 {
            let payload = format!("push {k} to {user}");
            let delivered = eventually(Duration::from_secs(60), || {
                deliver_anywhere(
                    &mut clients,
                    msg(100 * i as u64 + k, &user, None, payload.as_bytes()),
                )
                .outcome
                    == Outcome::Delivered
            });
            assert!(delivered, "{variant:?}");
            let want = format!("data: {payload}\n");
            assert!(
                out.wait_for(want.as_bytes(), Duration::from_secs(60)),
                "{variant:?}: openssl s_client did not print {want}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn openssl_s_client_receives_a_push_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _cert) = tls_config(dir.path(), &[]);
    let edge = start(cfg);
    let addr = tls_addr(&edge);
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-CAfile",
            dir.path().join("default.crt").to_str().unwrap(),
            "-verify_return_error",
            "-quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_client (scripts/test.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    write!(
        stdin,
        "GET /ws?access_token={} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token("openssl-ws", None)
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut out = ChildOutput::new(child.stdout.take().unwrap());
    // The 101 head, then one unmasked text frame: 0x81, length, payload.
    assert!(out.wait_for(b"\r\n\r\n", Duration::from_secs(60)));
    assert!(
        out.seen.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&out.seen)
    );
    let mut clients = delivery_clients(&edge);
    let delivered = eventually(Duration::from_secs(60), || {
        deliver_anywhere(&mut clients, msg(1, "openssl-ws", None, b"hello wss")).outcome
            == Outcome::Delivered
    });
    assert!(delivered);
    assert!(
        out.wait_for(b"\x81\x09hello wss", Duration::from_secs(60)),
        "openssl s_client did not print the frame"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_certificate_reload_keeps_1000_connections_and_new_handshakes_see_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, old) = tls_config(dir.path(), &[]);
    cfg.tls.as_mut().unwrap().reload_check = Some(Duration::from_millis(200));
    let edge = start(cfg);
    let addr = tls_addr(&edge);
    let new = DevCert::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let trusts_both = client_config(&[&old, &new], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let served = || {
        let s = tls_connect(addr, "localhost", trusts_both.clone()).unwrap();
        s.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    let mut open: Vec<(Tls, SseParser)> = (0..1000)
        .map(|i| {
            let (s, head) = tls_sse(addr, trusts_both.clone(), &format!("reload-{i}"));
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            (s, SseParser::new())
        })
        .collect();
    assert_eq!(served(), cert_der(&old));

    // A broken file: the reload fails and the old certificate stays.
    std::fs::write(dir.path().join("default.crt"), "not a certificate").unwrap();
    edge.controller().reload_tls();
    let failed = eventually(Duration::from_secs(60), || {
        http_get(edge.admin_addr, "/metrics")
            .1
            .contains("herald_edge_tls_cert_reloads_total{result=\"failed\"}")
    });
    assert!(failed, "the failed reload was not counted");
    assert_eq!(
        served(),
        cert_der(&old),
        "a failed reload keeps the old certificate"
    );

    // The new files, noticed by the change check (no signal).
    let files: CertFiles = new.write(dir.path(), "default").unwrap();
    assert!(files.cert.exists());
    let switched = eventually(Duration::from_secs(60), || served() == cert_der(&new));
    assert!(switched, "new handshakes never saw the new certificate");

    // Every connection opened before the reload is still there and receives a broadcast.
    let mut clients = delivery_clients(&edge);
    let total: u32 = clients
        .iter_mut()
        .map(|c| c.broadcast(77, b"after reload").delivered)
        .sum();
    assert_eq!(total, 1000);
    for (s, parser) in &mut open {
        assert_eq!(next_sse_event(s, parser).data, "after reload");
    }
    let m = http_get(edge.admin_addr, "/metrics").1;
    assert!(
        m.contains("herald_edge_tls_cert_reloads_total{result=\"ok\"}"),
        "{m}"
    );
}

#[test]
fn a_proxy_header_comes_before_the_tls_handshake_on_the_tls_listener() {
    use herald_edge::conn::proxy_header::{ProxyMode, ProxyPolicy};
    let dir = tempfile::tempdir().unwrap();
    let (mut cfg, cert) = tls_config(dir.path(), &[]);
    cfg.proxy_protocol = ProxyPolicy {
        mode: ProxyMode::V1,
        trusted: ProxyPolicy::parse_cidrs("127.0.0.2/32").unwrap(),
    };
    let edge = start(cfg);
    let addr = tls_addr(&edge);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(tcp, "PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\n").unwrap();
    let conn = ClientConnection::new(
        client_config(&[&cert], &[&rustls::version::TLS13], &[b"http/1.1"]),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET /sse HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        token("proxied-tls", None)
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let accepted: u64 = stats(&edge)["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sh| {
            sh["probe"]["proxy_headers"]["accepted"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(accepted, 1);
    // Without the header, the same trusted source is refused before any TLS.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let tcp: TcpStream = sock.into();
    let conn = ClientConnection::new(
        client_config(&[&cert], &[&rustls::version::TLS13], &[b"http/1.1"]),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    s.sock
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(s.conn.complete_io(&mut s.sock).is_err() || s.conn.is_handshaking());
}

#[test]
fn the_binary_reloads_its_certificate_on_sighup_and_refuses_a_bad_file_naming_the_key() {
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_herald-edge");
    let dir = tempfile::tempdir().unwrap();
    let old = DevCert::self_signed(&["localhost"]).unwrap();
    let files = old.write(dir.path(), "edge").unwrap();
    std::fs::write(dir.path().join("broken.pem"), "not PEM").unwrap();
    let out = Command::new(bin)
        .args([
            "--jwt-secret",
            JWT_SECRET,
            "--check-config",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--tls-cert-file",
            dir.path().join("broken.pem").to_str().unwrap(),
        ])
        .args(["--tls-key-file", files.key.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`tls_cert_file`"), "{err}");

    let mut child = Command::new(bin)
        .args(["--jwt-secret", JWT_SECRET, "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--delivery-base-port", "0"])
        .args(["--delivery-secret", DELIVERY_SECRET, "--shards", "1"])
        .args(["--io-memory", "128KiB", "--ring-depth", "64"])
        .args([
            "--expected-connections",
            "100",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .args(["--tls-cert-file", files.cert.to_str().unwrap()])
        .args(["--tls-key-file", files.key.to_str().unwrap()])
        .args(["--tls-reload-check", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald-edge");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let wss = loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "herald-edge ended early"
        );
        if let Some(at) = line.find(" wss=wss://") {
            let rest = &line[at + " wss=wss://".len()..];
            break rest[..rest.find("/ws").unwrap()].to_string();
        }
    };
    let addr: SocketAddr = wss.parse().unwrap();
    let new = DevCert::self_signed(&["localhost"]).unwrap();
    let both = client_config(&[&old, &new], &[&rustls::version::TLS13], &[b"http/1.1"]);
    let served = || {
        let s = tls_connect(addr, "localhost", both.clone()).unwrap();
        s.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    };
    assert_eq!(served(), cert_der(&old));
    // New files; with tls_reload_check = 0 only SIGHUP loads them.
    new.write(dir.path(), "edge").unwrap();
    assert_eq!(served(), cert_der(&old), "no reload without SIGHUP");
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let switched = eventually(Duration::from_secs(60), || served() == cert_der(&new));
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(switched, "SIGHUP did not load the new certificate");
}
