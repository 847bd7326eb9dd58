//! Self-signed certificates for development and tests (`herald dev --tls`): rcgen, ECDSA
//! P-256, valid for the names given (IP addresses become IP SANs). Never for production.

use std::path::Path;

use super::certs::CertFiles;

/// A generated certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct DevCert {
    /// The certificate (self-signed: it is its own trust anchor).
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

impl DevCert {
    /// A self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[&str]) -> Result<DevCert, String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("generating a certificate: {e}"))?;
        Ok(DevCert {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        })
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir` (the key readable by the owner only).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<CertFiles, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, &self.cert_pem)
            .map_err(|e| format!("{}: {e}", files.cert.display()))?;
        write_private(&files.key, self.key_pem.as_bytes())
            .map_err(|e| format!("{}: {e}", files.key.display()))?;
        Ok(files)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
