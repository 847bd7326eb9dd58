//! TLS on the client port: rustls with the aws-lc-rs provider, at plaintext density.
//!
//! [`TlsSettings`] is what configuration asks for; [`TlsSettings::build`] loads the
//! certificates ([`certs`]) and makes the one rustls `ServerConfig` every shard shares
//! ([`Tls`]). Each connection on the TLS listener is a [`session::TlsSession`] driven by the
//! connection's I/O driver (`crate::conn::driver`): the shard's state machine only ever sees
//! plaintext, exactly as on the plaintext listener. Choices (docs/decisions/0009): the
//! aws-lc-rs provider (already built for JWT; fastest handshakes), TLS 1.2 and 1.3, ALPN
//! `http/1.1` only, no 0-RTT, stateless session tickets so a reconnect storm resumes instead
//! of signing again.

pub mod certs;
pub mod dev_cert;
pub mod record;
pub mod session;

#[cfg(test)]
mod session_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;

pub use certs::{CertFiles, CertResolver, TlsFiles};
pub use session::{TlsError, TlsSession};

/// Oldest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!("`{other}` is not a TLS version (1.2 or 1.3)")),
        }
    }
}

/// The TLS listener's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Address every shard binds (SO_REUSEPORT), beside the plaintext `listen`.
    pub listen: SocketAddr,
    /// Certificates.
    pub files: TlsFiles,
    /// Oldest version accepted.
    pub min_version: TlsVersion,
    /// How often the files are checked for changes (None = only on SIGHUP).
    pub reload_check: Option<Duration>,
}

/// The shared TLS server state: rustls' config and the certificate resolver behind it.
#[derive(Debug, Clone)]
pub struct Tls {
    /// What every handshake is made with.
    pub config: Arc<ServerConfig>,
    /// The certificates, for reloads and stats.
    pub certs: Arc<CertResolver>,
}

/// The crypto provider of the edge (also what `jsonwebtoken` uses).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TlsSettings {
    /// Loads the certificates and builds the server configuration; the error names the
    /// file or setting at fault.
    pub fn build(&self) -> Result<Tls, String> {
        let provider = provider();
        let certs = Arc::new(CertResolver::load(self.files.clone(), provider.clone())?);
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.max_early_data_size = 0;
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| format!("TLS session tickets: {e}"))?;
        config.send_tls13_tickets = 1;
        // After the handshake each session trades rustls' connection for its traffic keys
        // (`record::Traffic`).
        config.enable_secret_extraction = true;
        Ok(Tls {
            config: Arc::new(config),
            certs,
        })
    }
}
