//! What one TLS connection costs the edge after its handshake, by version and cipher suite:
//! malloc'd bytes still held per `TlsSession` (glibc's `mallinfo2`, so aws-lc's C allocations
//! count too), its inline size (boxed in the connection's task), and the time to seal one
//! 64-byte push record with the AEAD context built per record (what the edge does) versus a
//! context kept per connection (what would cost ~1.2 KB more per connection).
//!
//! Each server session is handshaken in memory against a rustls client, the client and every
//! transient buffer dropped; what remains allocated, divided by the number of sessions, is the
//! per-connection TLS cost.
//!
//! ```text
//! cargo run --release -p herald-edge --example tls_session_cost
//! ```
#![allow(unsafe_code)] // mallinfo2

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use herald_edge::tls::dev_cert::DevCert;
use herald_edge::tls::session::TlsSession;
use herald_edge::tls::{TlsFiles, TlsSettings, TlsVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Bytes malloc has handed out and not taken back — Rust's allocations and aws-lc's (C)
/// alike (the edge's allocator is the system one).
fn live() -> isize {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    unsafe { libc::mallinfo2().uordblks as isize }
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
        "{:<8} {:<8} {:>16} {:>20} {:>22}",
        "version", "suite", "malloc_B/session", "seal_64B_ns(per-record)", "seal_64B_ns(kept key)"
    );
    for version in ["1.3", "1.2"] {
        for suite in ["aes128", "aes256", "chacha"] {
            let client = client_config(&cert, version, suite);
            let mut sessions = Vec::with_capacity(N);
            let base = live();
            for _ in 0..N {
                let mut s = TlsSession::new(tls.config.clone(), 9216).unwrap();
                let mut c = rustls::ClientConnection::new(
                    client.clone(),
                    ServerName::try_from("localhost").unwrap(),
                )
                .unwrap();
                handshake(&mut c, &mut s);
                drop(c);
                sessions.push(s);
            }
            let held = (live() - base) / N as isize;
            // One 64-byte push record, sealed 100k times.
            let s = &mut sessions[0];
            let reps = 100_000;
            let t = Instant::now();
            for _ in 0..reps {
                s.encrypt(&[b'x'; 64]).unwrap();
                let n = s.pending().len();
                s.advance(n);
            }
            let per_record = t.elapsed().as_nanos() as f64 / reps as f64;
            let kept = kept_key_seal_ns(suite, reps);
            println!("{version:<8} {suite:<8} {held:>16} {per_record:>20.0} {kept:>22.0}");
            std::io::stdout().flush().unwrap();
            drop(sessions);
        }
    }
}

/// Sealing the same record with an aws-lc context built once.
fn kept_key_seal_ns(suite: &str, reps: usize) -> f64 {
    use aws_lc_rs::aead::{
        Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
    };
    let alg = match suite {
        "aes128" => &AES_128_GCM,
        "aes256" => &AES_256_GCM,
        _ => &CHACHA20_POLY1305,
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, &[7u8; 32][..alg.key_len()]).unwrap());
    let mut buf = Vec::with_capacity(128);
    let t = Instant::now();
    for i in 0..reps as u64 {
        buf.clear();
        buf.extend_from_slice(&[b'x'; 65]);
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&i.to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(n),
                Aad::from(&[0u8; 5]),
                &mut buf,
            )
            .unwrap();
        buf.extend_from_slice(tag.as_ref());
    }
    t.elapsed().as_nanos() as f64 / reps as f64
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
