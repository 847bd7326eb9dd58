//! What one TLS connection costs the edge after its handshake, by version and cipher suite:
//! heap bytes still held by the edge's `TlsSession`s (a counting allocator), plus the session's
//! inline size (boxed in the connection's task), and what the handshake allocated at its peak.
//!
//! Each server session is handshaken in memory against a rustls client, the client and every
//! transient buffer dropped; what remains allocated, divided by the number of sessions, is the
//! per-connection TLS cost.
//!
//! ```text
//! cargo run --release -p herald-edge --example tls_session_cost
//! ```
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use herald_edge::tls::dev_cert::DevCert;
use herald_edge::tls::session::TlsSession;
use herald_edge::tls::{TlsFiles, TlsSettings, TlsVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let now = LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed)
            + new as isize
            - l.size() as isize;
        PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const N: usize = 2000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cert = DevCert::self_signed(&["localhost"]).unwrap();
    let files = cert.write(dir.path(), "cost").unwrap();
    let tls = TlsSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        files: TlsFiles {
            default: files,
            sni: vec![],
        },
        min_version: TlsVersion::V1_2,
        reload_check: None,
    }
    .build()
    .unwrap();
    println!(
        "TlsSession inline: {} B (boxed in the connection's task: one pointer)",
        std::mem::size_of::<TlsSession>()
    );
    println!(
        "{:<8} {:<8} {:>16} {:>20}",
        "version", "suite", "heap_B/session", "handshake_peak_B"
    );
    for version in ["1.3", "1.2"] {
        for suite in ["aes128", "aes256", "chacha"] {
            let client = client_config(&cert, version, suite);
            let before = live();
            let mut peak_extra = 0usize;
            let mut sessions = Vec::with_capacity(N);
            let vec_cost = live();
            for _ in 0..N {
                let start = live();
                PEAK.store(start.max(0) as usize, Ordering::Relaxed);
                let mut s = TlsSession::new(tls.config.clone(), 9216).unwrap();
                let mut c = rustls::ClientConnection::new(
                    client.clone(),
                    ServerName::try_from("localhost").unwrap(),
                )
                .unwrap();
                handshake(&mut c, &mut s);
                drop(c);
                peak_extra = peak_extra.max(PEAK.load(Ordering::Relaxed) - start.max(0) as usize);
                sessions.push(s);
            }
            let held = live() - vec_cost;
            let _ = before;
            println!(
                "{version:<8} {suite:<8} {:>16} {:>20}",
                held / N as isize,
                peak_extra
            );
            std::io::stdout().flush().unwrap();
            drop(sessions);
        }
    }
}

fn client_config(cert: &DevCert, version: &str, suite: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| {
        let name = format!("{:?}", s.suite());
        let wanted = match suite {
            "aes128" => name.contains("AES_128_GCM"),
            "aes256" => name.contains("AES_256_GCM"),
            _ => name.contains("CHACHA20"),
        };
        wanted && (name.starts_with("TLS13_") == (version == "1.3"))
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

fn handshake(c: &mut rustls::ClientConnection, s: &mut TlsSession) {
    for _ in 0..8 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        if !wire.is_empty() {
            s.receive(&mut wire, |_| {}).unwrap();
        }
        let out = s.pending().to_vec();
        s.advance(out.len());
        if !out.is_empty() {
            c.read_tls(&mut &out[..]).unwrap();
            c.process_new_packets().unwrap();
        }
        if !c.is_handshaking() && s.is_established() && !c.wants_write() {
            // The session ticket after the handshake, if any, is flushed by the next encrypt
            // in real use; send one byte so the server emits it now.
            s.encrypt(b"x").unwrap();
            let out = s.pending().to_vec();
            s.advance(out.len());
            return;
        }
    }
    panic!("the handshake did not finish");
}
