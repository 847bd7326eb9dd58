//! [`TlsSession`] against a real rustls client, in memory: handshakes at both versions, data
//! both ways, any split of the client's bytes, and everything a client may get wrong.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::dev_cert::DevCert;
use super::session::{TlsError, TlsSession};
use super::{Tls, TlsFiles, TlsSettings, TlsVersion};

struct Fixture {
    tls: Tls,
    cert: DevCert,
    _dir: tempfile::TempDir,
}

fn fixture(min_version: TlsVersion) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cert = DevCert::self_signed(&["localhost", "127.0.0.1"]).unwrap();
    let files = cert.write(dir.path(), "server").unwrap();
    let settings = TlsSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        files: TlsFiles {
            default: files,
            sni: vec![],
        },
        min_version,
        reload_check: None,
    };
    Fixture {
        tls: settings.build().unwrap(),
        cert,
        _dir: dir,
    }
}

fn client_config(
    cert: &DevCert,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut c = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

fn client(cfg: Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Moves the client's bytes to the server in pieces of `piece` bytes, then the server's to
/// the client. Plaintext the server receives is appended to `got`.
fn pump(
    c: &mut ClientConnection,
    s: &mut TlsSession,
    got: &mut Vec<u8>,
    piece: usize,
) -> Result<(), TlsError> {
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    for p in wire.chunks(piece.max(1)) {
        let kept = s.partial_len();
        let mut buf = vec![0u8; kept + p.len()];
        buf[kept..].copy_from_slice(p);
        s.restore_partial(&mut buf[..kept]);
        s.receive(&mut buf, |plain| got.extend_from_slice(plain))?;
    }
    let out = s.pending().to_vec();
    s.advance(out.len());
    let mut rd = &out[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
    }
    c.process_new_packets()
        .map_err(|e| TlsError::Protocol(rustls::Error::General(format!("client: {e}"))))?;
    Ok(())
}

/// A TLS 1.3 client and a server session with the handshake done.
fn established(f: &Fixture, max_client_record: usize) -> (ClientConnection, TlsSession) {
    let mut c = client(client_config(
        &f.cert,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    ));
    let mut s = TlsSession::new(f.tls.config.clone(), max_client_record).unwrap();
    handshake(&mut c, &mut s, usize::MAX);
    (c, s)
}

fn handshake(c: &mut ClientConnection, s: &mut TlsSession, piece: usize) {
    let mut got = Vec::new();
    for _ in 0..8 {
        if !c.is_handshaking() && s.is_established() {
            break;
        }
        pump(c, s, &mut got, piece).unwrap();
    }
    assert!(!c.is_handshaking(), "client finished the handshake");
    assert!(s.is_established(), "server finished the handshake");
}

fn server_to_client(c: &mut ClientConnection, s: &mut TlsSession, plain: &[u8]) -> Vec<u8> {
    for chunk in plain.chunks(super::session::CHUNK) {
        s.encrypt(chunk).unwrap();
    }
    let out = s.pending().to_vec();
    s.advance(out.len());
    let mut rd = &out[..];
    let mut got = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    got
}

#[test]
fn handshakes_and_data_both_ways_at_tls12_and_tls13() {
    let f = fixture(TlsVersion::V1_2);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut c = client(client_config(&f.cert, &[version], &[b"http/1.1"]));
        let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
        handshake(&mut c, &mut s, usize::MAX);
        assert_eq!(c.protocol_version(), Some(version.version));
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));

        c.writer().write_all(b"GET /ws HTTP/1.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        pump(&mut c, &mut s, &mut got, usize::MAX).unwrap();
        assert_eq!(got, b"GET /ws HTTP/1.1\r\n\r\n");

        let big: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        assert_eq!(server_to_client(&mut c, &mut s, &big), big);
        assert_eq!(s.buffered(), 0, "nothing is kept once written");
    }
}

#[test]
fn every_cipher_suite_carries_data_both_ways_after_the_keys_leave_rustls() {
    let f = fixture(TlsVersion::V1_2);
    // TLS 1.2 suites name the certificate's key type: the test certificate is ECDSA.
    let suites = rustls::crypto::aws_lc_rs::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| !format!("{:?}", s.suite()).contains("_RSA_"));
    let mut tried = 0;
    for suite in suites {
        tried += 1;
        let version = suite.version();
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.cipher_suites = vec![suite];
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(f.cert.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut c = client(Arc::new(cfg));
        let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
        handshake(&mut c, &mut s, usize::MAX);
        assert_eq!(c.negotiated_cipher_suite(), Some(suite));
        for round in 0..3 {
            let msg = format!("client says {round} with {:?}", suite.suite());
            c.writer().write_all(msg.as_bytes()).unwrap();
            let mut got = Vec::new();
            pump(&mut c, &mut s, &mut got, usize::MAX).unwrap();
            assert_eq!(got, msg.as_bytes());
            let reply: Vec<u8> = (0..(20_000 + round)).map(|i| (i % 251) as u8).collect();
            assert_eq!(server_to_client(&mut c, &mut s, &reply), reply);
        }
        s.close_notify();
        let out = s.pending().to_vec();
        c.read_tls(&mut &out[..]).unwrap();
        assert!(c.process_new_packets().unwrap().peer_has_closed());
    }
    assert_eq!(tried, 6, "three TLS 1.3 and three ECDSA TLS 1.2 suites");
}

#[test]
fn any_split_of_the_clients_bytes_gives_the_same_result() {
    let f = fixture(TlsVersion::V1_2);
    for piece in [1, 2, 3, 5, 7, 64, 517, 1000] {
        let mut c = client(client_config(
            &f.cert,
            &[&rustls::version::TLS13],
            &[b"http/1.1"],
        ));
        let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
        handshake(&mut c, &mut s, piece);
        c.writer().write_all(b"hello over TLS").unwrap();
        let mut got = Vec::new();
        pump(&mut c, &mut s, &mut got, piece).unwrap();
        assert_eq!(got, b"hello over TLS", "pieces of {piece}");
    }
}

#[test]
fn tls13_only_refuses_a_tls12_client_with_an_alert() {
    let f = fixture(TlsVersion::V1_3);
    let mut c = client(client_config(
        &f.cert,
        &[&rustls::version::TLS12],
        &[b"http/1.1"],
    ));
    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut wire = Vec::new();
    c.write_tls(&mut wire).unwrap();
    let err = s.receive(&mut wire, |_| {}).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert!(!s.pending().is_empty(), "an alert tells the client why");
    assert_eq!(s.pending()[0], 21, "a TLS alert record");
}

#[test]
fn a_client_offering_only_another_alpn_protocol_is_refused() {
    let f = fixture(TlsVersion::V1_2);
    let mut c = client(client_config(&f.cert, &[&rustls::version::TLS13], &[b"h2"]));
    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut wire = Vec::new();
    c.write_tls(&mut wire).unwrap();
    let err = s.receive(&mut wire, |_| {}).unwrap_err();
    assert_eq!(
        err,
        TlsError::Protocol(rustls::Error::NoApplicationProtocol)
    );
    // TLS 1.3: the ServerHello went out before the check, the alert follows it (encrypted).
    assert!(s.pending().len() > 100, "ServerHello and the alert");
}

#[test]
fn a_client_without_alpn_is_served() {
    let f = fixture(TlsVersion::V1_2);
    let mut c = client(client_config(&f.cert, &[&rustls::version::TLS13], &[]));
    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    handshake(&mut c, &mut s, usize::MAX);
}

#[test]
fn plaintext_http_and_garbage_are_refused() {
    let f = fixture(TlsVersion::V1_2);
    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut req = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(s.receive(&mut req, |_| {}), Err(TlsError::PlaintextHttp));

    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut junk = vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
    assert!(matches!(
        s.receive(&mut junk, |_| {}),
        Err(TlsError::Protocol(_))
    ));

    let mut s = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut junk = vec![0xff; 64];
    assert!(matches!(
        s.receive(&mut junk, |_| {}),
        Err(TlsError::Protocol(_))
    ));
}

#[test]
fn a_truncated_record_waits_for_the_rest_and_a_tampered_one_is_refused() {
    let f = fixture(TlsVersion::V1_2);
    let (mut c, mut s) = established(&f, 8192);
    c.writer().write_all(b"ping").unwrap();
    let mut wire = Vec::new();
    c.write_tls(&mut wire).unwrap();
    let mut got = Vec::new();
    let mut first = wire[..wire.len() - 1].to_vec();
    s.receive(&mut first, |p| got.extend_from_slice(p)).unwrap();
    assert!(got.is_empty() && s.partial_len() == wire.len() - 1);

    let mut s2 = TlsSession::new(f.tls.config.clone(), 8192).unwrap();
    let mut c2 = client(client_config(
        &f.cert,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    ));
    handshake(&mut c2, &mut s2, usize::MAX);
    c2.writer().write_all(b"ping").unwrap();
    let mut wire2 = Vec::new();
    c2.write_tls(&mut wire2).unwrap();
    let l = wire2.len() - 1;
    wire2[l] ^= 1;
    let mut delivered = Vec::new();
    let err = s2.receive(&mut wire2, |p| delivered.extend_from_slice(p));
    assert_eq!(
        err,
        Err(TlsError::Record(super::record::RecordError::BadRecordMac))
    );
    assert!(delivered.is_empty(), "nothing from a tampered record");
}

#[test]
fn after_the_handshake_a_record_larger_than_a_client_sends_is_refused() {
    let f = fixture(TlsVersion::V1_2);
    let mut c = client(client_config(
        &f.cert,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    ));
    let mut s = TlsSession::new(f.tls.config.clone(), 2048).unwrap();
    handshake(&mut c, &mut s, usize::MAX);
    c.writer().write_all(&[b'x'; 10_000]).unwrap();
    let mut wire = Vec::new();
    c.write_tls(&mut wire).unwrap();
    // Only the header and a little: the edge refuses before the record is complete.
    let mut start = wire[..100].to_vec();
    assert!(matches!(
        s.receive(&mut start, |_| {}),
        Err(TlsError::RecordTooLarge(_))
    ));
}

#[test]
fn close_notify_from_the_client_ends_the_session() {
    let f = fixture(TlsVersion::V1_2);
    let (mut c, mut s) = established(&f, 8192);
    c.send_close_notify();
    let mut got = Vec::new();
    assert_eq!(
        pump(&mut c, &mut s, &mut got, usize::MAX),
        Err(TlsError::PeerClosed)
    );
}

#[test]
fn the_server_can_close_with_close_notify() {
    let f = fixture(TlsVersion::V1_2);
    let (mut c, mut s) = established(&f, 8192);
    s.close_notify();
    let out = s.pending().to_vec();
    assert!(!out.is_empty());
    c.read_tls(&mut &out[..]).unwrap();
    let state = c.process_new_packets().unwrap();
    assert!(state.peer_has_closed());
}
