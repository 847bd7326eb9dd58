//! The TLS listener's certificates: loaded from PEM files, chosen by SNI, reloaded in place.
//!
//! [`CertResolver`] is rustls' certificate resolver for every shard (one `Arc`, shared across
//! threads): a handshake takes the current [`CertStore`] under a read lock and picks the
//! certificate for its SNI name, else the default one. [`CertResolver::reload`] reads every
//! file again and swaps the store only if all of them load — a failed reload keeps the old
//! certificates, so a half-written file never takes the listener down. Open connections are
//! never touched: they keep the keys their handshake derived.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni};
use rustls::sign::CertifiedKey;

/// A certificate chain and its private key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1 RSA).
    pub key: PathBuf,
}

/// Every certificate of the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Served to clients without SNI or with a name no other certificate is for.
    pub default: CertFiles,
    /// Extra certificates by SNI name (lower case).
    pub sni: Vec<(String, CertFiles)>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(&self.default)
            .chain(self.sni.iter().map(|(_, f)| f))
            .flat_map(|f| [f.cert.as_path(), f.key.as_path()])
    }
}

/// One loaded set of certificates.
#[derive(Debug)]
pub struct CertStore {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads every file; the error names the setting, the file and what is wrong with it.
    pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertStore, CertError> {
        let default = Arc::new(load_pair(&files.default, provider)?);
        let mut by_name = HashMap::new();
        let mut check = ResolvesServerCertUsingSni::new();
        for (name, pair) in &files.sni {
            let ck = load_pair(pair, provider).map_err(|e| CertError::Sni(e.to_string()))?;
            check.add(name, ck.clone()).map_err(|e| {
                CertError::Sni(format!(
                    "{} is not a certificate for `{name}`: {e}",
                    pair.cert.display()
                ))
            })?;
            by_name.insert(name.to_ascii_lowercase(), Arc::new(ck));
        }
        Ok(CertStore { default, by_name })
    }

    /// The certificate for an SNI name (or none).
    pub fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        sni.and_then(|n| self.by_name.get(&n.to_ascii_lowercase()))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Why the certificates did not load, by the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// The default certificate chain file.
    Cert(String),
    /// The default key file (unreadable, not a key, or not the certificate's key).
    Key(String),
    /// An extra certificate chosen by SNI (any of its files, or not valid for its name).
    Sni(String),
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertError::Cert(e) | CertError::Key(e) | CertError::Sni(e) => f.write_str(e),
        }
    }
}

/// Loads one certificate chain and its key.
fn load_pair(files: &CertFiles, provider: &CryptoProvider) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| CertError::Cert(format!("cannot read {}: {e}", files.cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CertError::Cert(format!(
                "{}: not a PEM certificate chain: {e}",
                files.cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(CertError::Cert(format!(
            "{}: no certificate in it",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        CertError::Key(format!(
            "{}: no usable PEM private key: {e}",
            files.key.display()
        ))
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        CertError::Key(format!(
            "{} is not the key of {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })
}

/// rustls' certificate resolver, with reload.
#[derive(Debug)]
pub struct CertResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertStore>>,
    /// Modification times seen at the last (attempted) load, to notice changed files.
    stamps: Mutex<Vec<Option<SystemTime>>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl CertResolver {
    /// Loads the certificates (the error names the file).
    pub fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<CertResolver, String> {
        let stamps = stamps(&files);
        let store = CertStore::load(&files, &provider).map_err(|e| e.to_string())?;
        Ok(CertResolver {
            files,
            provider,
            current: RwLock::new(Arc::new(store)),
            stamps: Mutex::new(stamps),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Reads every file again; on success new handshakes use the new certificates, on failure
    /// the old ones stay (the error says why). Open connections are unaffected either way.
    pub fn reload(&self) -> Result<(), String> {
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&self.files);
        match CertStore::load(&self.files, &self.provider) {
            Ok(store) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    /// Reloads if a file's modification time changed since the last load (or attempt).
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = stamps(&self.files);
        let changed = *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now;
        changed.then(|| self.reload())
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Failed reloads since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The files this resolver serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    files
        .paths()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(store.pick(hello.server_name()))
    }
}
