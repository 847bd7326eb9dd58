//! TLS for `--tls` runs: the one self-signed certificate a run generates (rcgen, ECDSA P-256,
//! for `localhost` and `127.0.0.1`) and the rustls client configuration every client process
//! builds from it.
//!
//! The clients trust only that certificate, send SNI `localhost` and offer ALPN `http/1.1`.
//! Every handshake is a full one: resumption is off (a benchmark of handshakes that resumed
//! would measure the ticket cache, not the server), and the key exchange is X25519 alone, so a
//! server without post-quantum groups (nginx on OpenSSL 3.0) never costs an extra round trip
//! for a HelloRetryRequest. Versions: rustls' defaults (TLS 1.3, then 1.2); the servers pick.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The name the certificate is for and clients send as SNI.
pub const SERVER_NAME: &str = "localhost";

/// Names the generated certificate is valid for (the IP becomes an IP SAN).
pub const CERT_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// The certificate of one `--tls` run, written into the run's directory (removed when this
/// is dropped).
#[derive(Debug)]
pub struct RunCert {
    /// The run directory holding the files.
    pub dir: tempfile::TempDir,
    /// PEM certificate (self-signed: also the clients' only trust anchor).
    pub cert: PathBuf,
    /// PEM PKCS#8 private key (mode 0600).
    pub key: PathBuf,
}

impl RunCert {
    /// Generates the certificate and its key in a new run directory.
    pub fn generate() -> Result<RunCert, String> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-tls-")
            .tempdir()
            .map_err(|e| format!("no run directory: {e}"))?;
        let names: Vec<String> = CERT_NAMES.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("generating a certificate: {e}"))?;
        let cert = dir.path().join("bench.crt");
        let key = dir.path().join("bench.key");
        std::fs::write(&cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
        write_private(&key, ck.signing_key.serialize_pem().as_bytes())
            .map_err(|e| format!("{}: {e}", key.display()))?;
        Ok(RunCert { dir, cert, key })
    }

    /// The files a server is configured with.
    pub fn files(&self) -> ServerFiles {
        ServerFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// What clients need to reach a server using this certificate.
    pub fn client(&self) -> ClientTls {
        ClientTls {
            ca: self.cert.clone(),
            server_name: SERVER_NAME.into(),
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// A server's certificate and key files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How client processes speak TLS to a target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientTls {
    /// The PEM certificate they trust (and nothing else).
    pub ca: PathBuf,
    /// SNI and the name the certificate is checked against.
    pub server_name: String,
}

/// The rustls client configuration trusting only the certificates in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("{}: {e}", ca.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    for c in certs {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// `server_name` as rustls wants it.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|e| format!("server name {name:?}: {e}"))
}

/// What a finished handshake negotiated, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519
/// alpn=http/1.1`.
pub fn describe(conn: &rustls::ClientConnection) -> String {
    let version = conn
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
    let kx = conn
        .negotiated_key_exchange_group()
        .map_or("?".to_string(), |g| format!("{:?}", g.name()));
    let alpn = conn.alpn_protocol().map_or("none".to_string(), |a| {
        String::from_utf8_lossy(a).into_owned()
    });
    format!("{version} {suite} {kx} alpn={alpn}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_trusted_by_the_client_config() {
        let rc = RunCert::generate().unwrap();
        let pem = std::fs::read_to_string(&rc.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let key = std::fs::read_to_string(&rc.key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&rc.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is for the owner only");
        let config = client_config(&rc.cert).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(
            client_config(&rc.key).is_err(),
            "a key file holds no certificate"
        );
        let c = rc.client();
        assert_eq!(c.server_name, "localhost");
        server_name(&c.server_name).unwrap();
    }
}
