//! Measures the edge's memory per idle connection (user space, RSS slope) and the accept rate.
//!
//! This process runs the edge; client processes (this same binary with `--client`) open idle
//! WebSocket or SSE connections from source addresses 127.0.0.2…, so neither file descriptors
//! (20000 per process here) nor ephemeral ports run out. At each size the edge's RSS is read
//! from /proc/self/status; the least-squares slope over the sizes is the user-space cost of one
//! idle connection. Kernel memory (slab) is reported too; on loopback it holds both ends.
//!
//! ```text
//! cargo run --release -p herald-edge --example density -- --kind ws --sizes 1000,5000,10000,19000
//! ```
//!
//! With `--tls`, the edge also listens with TLS (a self-signed certificate) and the clients
//! connect to that port with rustls (`--tls-version 1.2|1.3`, `--tls-suite aes128|aes256|chacha`
//! to pin what the client offers), so the slope is the cost of an idle TLS connection.
//!
//! With `--one-user`, every connection belongs to the same user and lets the edge generate its
//! device id: the cost of a user with many devices.
//!
//! With `--broadcasts N`, at the largest size it then sends N broadcasts (64-byte payload)
//! through every shard's delivery port and reports how late the shards' timer ticks ran
//! meanwhile (`tick_stalls_over_10ms` during the broadcasts, `tick_stall_max_us` since start).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_edge::auth::jwt::{issue_hs256, Claims};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts the heap bytes the process holds (beside RSS: RSS minus heap is allocator slack,
/// stacks and the like).
struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// The counting allocator needs unsafe; it only forwards to the system allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;
use herald_edge::config::EdgeConfig;

const SECRET: &str = "density-measurement-secret";
const PER_CLIENT: usize = 9_500;

/// Tells client processes to connect as one user with many devices (`--one-user`).
const ONE_USER_ENV: &str = "HERALD_DENSITY_ONE_USER";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    if std::env::args().any(|a| a == "--client") {
        return client();
    }
    let kind = arg("--kind").unwrap_or_else(|| "ws".into());
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "1000,5000,10000,19000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    let mut cfg = EdgeConfig::for_tests(SECRET);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.shards = arg("--shards").map_or(cfg.shards, |s| s.parse().unwrap());
    cfg.conn.ping_interval = Duration::from_secs(600);
    cfg.conn.sse_keepalive = Duration::from_secs(600);
    // By default the registry is a separate redis-server, as in production, so the edge's RSS
    // holds only the edge; `--registry in-process` keeps the registry in this process.
    let registry_kind = arg("--registry").unwrap_or_else(|| "redis".into());
    let _redis = (registry_kind == "redis").then(herald_testkit::RedisServer::start);
    cfg.redis = _redis.as_ref().map(|r| r.url());
    let tls = std::env::args().any(|a| a == "--tls");
    // `--one-user`: every connection is the same user with a server-generated device id (a
    // user with many devices) instead of one user per connection.
    let one_user = std::env::args().any(|a| a == "--one-user");
    if one_user {
        cfg.max_devices_per_user = 0; // the default cap (64 per shard) is for untrusted tokens
    }
    let cert_dir = tempfile::tempdir().unwrap();
    if tls {
        let cert =
            herald_edge::tls::dev_cert::DevCert::self_signed(&["localhost", "127.0.0.1"]).unwrap();
        cfg.tls = Some(herald_edge::tls::TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            files: herald_edge::tls::TlsFiles {
                default: cert.write(cert_dir.path(), "density").unwrap(),
                sni: vec![],
            },
            min_version: herald_edge::tls::TlsVersion::V1_2,
            reload_check: None,
        });
    }
    let edge = herald_edge::start(cfg).expect("edge starts");
    let addr = if tls {
        edge.tls_addr.expect("TLS listener")
    } else {
        edge.client_addr
    };
    let tls_args: Vec<String> = if tls {
        vec![
            "--tls-cert".into(),
            cert_dir.path().join("density.crt").display().to_string(),
            "--tls-version".into(),
            arg("--tls-version").unwrap_or_else(|| "1.3".into()),
            "--tls-suite".into(),
            arg("--tls-suite").unwrap_or_else(|| "aes128".into()),
        ]
    } else {
        vec![]
    };
    std::thread::sleep(Duration::from_millis(500));
    let base_rss = rss();
    let base_heap = HEAP.load(Ordering::Relaxed);
    let base_slab = slab();
    println!(
        "# herald-edge density: kind={kind}{} shards={} registry={registry_kind} baseline RSS {} KiB",
        if tls { format!(" tls {}", tls_args[3..].join(" ")) } else { String::new() },
        edge.shards,
        base_rss / 1024
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "conns", "rss_KiB", "user_B/conn", "heap_B/conn", "slab_B/conn(2 ends)", "accept/s"
    );
    let mut children: Vec<Child> = Vec::new();
    let mut open = 0usize;
    let mut points = Vec::new();
    for &size in &sizes {
        let started = Instant::now();
        let mut opened_now = 0;
        while open < size {
            let n = (size - open).min(PER_CLIENT);
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--client",
                    &addr.to_string(),
                    &kind,
                    &n.to_string(),
                    &children.len().to_string(),
                ])
                .args(&tls_args)
                .env(ONE_USER_ENV, if one_user { "1" } else { "" })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn client");
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("READY"), "client failed: {line}");
            children.push(child);
            open += n;
            opened_now += n;
        }
        let rate = opened_now as f64 / started.elapsed().as_secs_f64();
        wait_for_connections(edge.admin_addr, open);
        std::thread::sleep(Duration::from_secs(2));
        let r = rss();
        let s = slab();
        let user = (r as f64 - base_rss as f64) / open as f64;
        let heap = (HEAP.load(Ordering::Relaxed) - base_heap) as f64 / open as f64;
        let kern = (s as f64 - base_slab as f64) / open as f64;
        println!(
            "{open:>8} {:>12} {user:>12.0} {heap:>12.0} {kern:>14.0} {rate:>12.0}",
            r / 1024
        );
        points.push((open as f64, r as f64));
    }
    let (slope, r2) = fit(&points);
    println!("user-space bytes per idle {kind} connection (least-squares slope): {slope:.0} (R² = {r2:.5})");
    if let Some(n) = arg("--broadcasts").map(|n| n.parse::<u64>().expect("broadcasts: a number")) {
        broadcast_stalls(&edge, n, open);
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    edge.shutdown();
}

/// The edge's `/stats` document.
fn stats(admin: SocketAddr) -> serde_json::Value {
    let mut s = TcpStream::connect(admin).expect("admin port");
    let _ = write!(s, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let json = body.split_once("\r\n\r\n").map_or("", |x| x.1);
    serde_json::from_str(json).expect("/stats is JSON")
}

/// Per shard: (ticks late ≥ 10 ms so far, latest tick since start in µs).
fn tick_stalls(admin: SocketAddr) -> Vec<(u64, u64)> {
    stats(admin)["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| {
            (
                s["probe"]["tick_stalls_over_10ms"].as_u64().unwrap_or(0),
                s["probe"]["tick_stall_max_us"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Sends `n` broadcasts to every shard (one delivery-port connection each, answers awaited)
/// and prints how the shards' ticks fared.
fn broadcast_stalls(edge: &herald_edge::EdgeHandle, n: u64, conns: usize) {
    use herald_protocol::delivery::session::{ClientEvent, ClientSession};
    use herald_protocol::delivery::{self, BroadcastMsg};
    let secret = edge_delivery_secret();
    let before = tick_stalls(edge.admin_addr);
    let started = Instant::now();
    let mut written = 0u64;
    for shard in 0..edge.shards {
        let mut s = TcpStream::connect(edge.delivery_addr(shard)).expect("delivery port");
        let mut session = ClientSession::new(
            secret.as_bytes(),
            [3u8; 16],
            delivery::DEFAULT_MAX_FRAME_LEN,
        );
        // Writes what the session queued, then reads until it has an event.
        let next = |s: &mut TcpStream, session: &mut ClientSession| -> ClientEvent {
            let mut buf = [0u8; 4096];
            loop {
                s.write_all(session.transmit()).unwrap();
                session.clear_transmit();
                if let Some(ev) = session.poll_event().expect("valid frames") {
                    return ev;
                }
                if !session.transmit().is_empty() {
                    continue;
                }
                let k = s.read(&mut buf).expect("read");
                assert!(k > 0, "delivery port closed");
                session.handle_input(&buf[..k]);
            }
        };
        assert_eq!(next(&mut s, &mut session), ClientEvent::Authenticated);
        for i in 0..n {
            session
                .send_broadcast(&BroadcastMsg {
                    seq: i,
                    message_id: format!("stall-{shard}-{i}"),
                    expires_at_ms: delivery::NEVER_EXPIRES,
                    payload: vec![b'x'; 64],
                })
                .unwrap();
            match next(&mut s, &mut session) {
                ClientEvent::Answers(a) => written += u64::from(a[0].delivered),
                other => panic!("expected answers, got {other:?}"),
            }
        }
    }
    let after = tick_stalls(edge.admin_addr);
    println!(
        "{n} broadcasts per shard to {conns} connections: {written} deliveries in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        println!(
            "shard {i}: ticks ≥ 10 ms late during the broadcasts: {}; latest tick since start: {} µs",
            a.0 - b.0,
            a.1
        );
    }
}

/// The delivery secret this example's edge uses.
fn edge_delivery_secret() -> String {
    EdgeConfig::for_tests(SECRET)
        .delivery_secret
        .iter()
        .map(|&b| b as char)
        .collect()
}

fn wait_for_connections(admin: SocketAddr, want: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if let Ok(mut s) = TcpStream::connect(admin) {
            let _ = write!(s, "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if let Some(json) = body.split_once("\r\n\r\n").map(|x| x.1) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                    let t = &v["totals"];
                    let n = t["websocket"].as_u64().unwrap_or(0) + t["sse"].as_u64().unwrap_or(0);
                    if n as usize >= want {
                        return;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the edge never reported {want} connections");
}

fn proc_kib(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

fn rss() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:")
}

fn slab() -> u64 {
    proc_kib("/proc/meminfo", "Slab:")
}

fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    (slope, r2)
}

/// Client process: open `count` idle connections, print READY, hold them until killed.
fn client() {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--client").unwrap();
    let addr: SocketAddr = args[i + 1].parse().unwrap();
    let kind = args[i + 2].clone();
    let count: usize = args[i + 3].parse().unwrap();
    let client_no: usize = args[i + 4].parse().unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 7200;
    if let Some(cert) = arg("--tls-cert") {
        return tls_client(addr, &kind, count, client_no, exp, &cert);
    }
    // Connect in batches, then write every request, then read every answer, so the rate
    // measured is the edge's, not one client's round trips.
    let mut held = Vec::with_capacity(count);
    let mut n = 0;
    while n < count {
        let batch = (count - n).min(256);
        let mut socks = Vec::with_capacity(batch);
        for k in n..n + batch {
            let mut s = connect(addr, client_no, k);
            s.write_all(request(&kind, client_no, k, exp).as_bytes())
                .unwrap();
            socks.push(s);
        }
        for mut s in socks {
            let mut head = [0u8; 512];
            let got = s.read(&mut head).unwrap();
            assert!(
                got > 12 && (&head[9..12] == b"101" || &head[9..12] == b"200"),
                "handshake failed"
            );
            held.push(s);
        }
        n += batch;
    }
    println!("READY {count}");
    std::io::stdout().flush().unwrap();
    // Hold until the parent kills us (or closes our stdin).
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

/// Connection `k` of client process `client_no`, from its own source address 127.0.x.y (so
/// ephemeral ports never run out), closed with a reset when dropped.
fn connect(addr: SocketAddr, client_no: usize, k: usize) -> TcpStream {
    let src = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        (client_no % 200) as u8 + 1,
        2 + (k % 250) as u8,
    ));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(src, 0).into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    sock.into()
}

/// The upgrade (WebSocket) or subscription (SSE) request of client `k`.
fn request(kind: &str, client_no: usize, k: usize, exp: u64) -> String {
    let one_user = std::env::var_os(ONE_USER_ENV).is_some_and(|v| v == "1");
    let token = issue_hs256(
        SECRET.as_bytes(),
        &Claims {
            sub: if one_user {
                "one".into()
            } else {
                format!("u{client_no}-{k}")
            },
            did: (!one_user).then(|| "d".into()),
            exp,
            nbf: None,
            iss: None,
            aud: None,
        },
    );
    if kind == "sse" {
        format!("GET /sse?access_token={token} HTTP/1.1\r\nHost: e\r\n\r\n")
    } else {
        format!(
            "GET /ws?access_token={token} HTTP/1.1\r\nHost: e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }
}

/// A TLS client process: like [`client`], each connection a rustls session (handshake, then
/// the request), pinned to one version and cipher suite.
fn tls_client(addr: SocketAddr, kind: &str, count: usize, client_no: usize, exp: u64, cert: &str) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("the edge's certificate"))
        .unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let suite = arg("--tls-suite").unwrap_or_else(|| "aes128".into());
    let version = arg("--tls-version").unwrap_or_else(|| "1.3".into());
    provider.cipher_suites.retain(|s| {
        let name = format!("{:?}", s.suite());
        let v13 = name.starts_with("TLS13_");
        let wanted = match suite.as_str() {
            "aes128" => name.contains("AES_128_GCM"),
            "aes256" => name.contains("AES_256_GCM"),
            "chacha" => name.contains("CHACHA20"),
            other => panic!("--tls-suite {other}: aes128, aes256 or chacha"),
        };
        wanted && (v13 == (version == "1.3"))
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let mut held = Vec::with_capacity(count);
    for k in 0..count {
        let tcp = connect(addr, client_no, k);
        // Without it Nagle holds the client's last handshake flight for a delayed ACK.
        tcp.set_nodelay(true).unwrap();
        let conn = rustls::ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(request(kind, client_no, k, exp).as_bytes())
            .unwrap();
        let mut head = [0u8; 512];
        let got = s.read(&mut head).unwrap();
        assert!(
            got > 12 && (&head[9..12] == b"101" || &head[9..12] == b"200"),
            "handshake failed"
        );
        held.push(s);
    }
    println!("READY {count}");
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}
