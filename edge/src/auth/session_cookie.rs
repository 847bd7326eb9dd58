//! HMAC-signed session cookies, the second built-in authentication method.
//!
//! Value: `v1.<b64url(user)>.<b64url(device)>.<exp secs>.<b64url(HMAC-SHA256(secret, everything before the last dot))>`
//! (empty device = let the edge generate one). Issued by the application's login service with
//! [`sign`]; verified in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{valid_id, AuthError, Identity};

type HmacSha256 = Hmac<Sha256>;

/// Signs a session cookie value.
pub fn sign(secret: &[u8], user: &str, device: Option<&str>, exp_secs: u64) -> String {
    let body = format!(
        "v1.{}.{}.{exp_secs}",
        URL_SAFE_NO_PAD.encode(user),
        URL_SAFE_NO_PAD.encode(device.unwrap_or(""))
    );
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    format!(
        "{body}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Verifies session cookies.
#[derive(Debug, Clone)]
pub struct SessionCookieVerifier {
    secret: Vec<u8>,
    name: String,
}

impl SessionCookieVerifier {
    /// A verifier for cookie `name` signed with `secret`.
    pub fn new(secret: &[u8], name: &str) -> Self {
        SessionCookieVerifier {
            secret: secret.to_vec(),
            name: name.to_string(),
        }
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies a cookie value at `now_secs`.
    pub fn verify(&self, value: &str, now_secs: u64) -> Result<Identity, AuthError> {
        let (body, sig) = value.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| AuthError::BadSignature)?;
        let mut parts = body.split('.');
        if parts.next() != Some("v1") {
            return Err(AuthError::Malformed);
        }
        let mut field = || -> Result<String, AuthError> {
            let raw = parts.next().ok_or(AuthError::Malformed)?;
            let bytes = URL_SAFE_NO_PAD
                .decode(raw)
                .map_err(|_| AuthError::Malformed)?;
            String::from_utf8(bytes).map_err(|_| AuthError::Malformed)
        };
        let user = field()?;
        let device = field()?;
        let exp: u64 = parts
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or(AuthError::Malformed)?;
        if exp <= now_secs {
            return Err(AuthError::Expired);
        }
        let device = (!device.is_empty()).then_some(device);
        if !valid_id(&user) || device.as_deref().is_some_and(|d| !valid_id(d)) {
            return Err(AuthError::BadIdentity);
        }
        Ok(Identity { user, device })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let v = SessionCookieVerifier::new(b"cookie-secret-0123456", "s");
        let c = sign(b"cookie-secret-0123456", "bob", Some("tab1"), 2000);
        assert_eq!(
            v.verify(&c, 1000).unwrap(),
            Identity {
                user: "bob".into(),
                device: Some("tab1".into())
            }
        );
        assert_eq!(v.verify(&c, 2000), Err(AuthError::Expired));
        let other = sign(b"another-secret-000000", "bob", None, 2000);
        assert_eq!(v.verify(&other, 1000), Err(AuthError::BadSignature));
        let mut tampered = c.clone();
        tampered.replace_range(3..4, "X");
        assert!(v.verify(&tampered, 1000).is_err());
        assert_eq!(v.verify("nodots", 1000), Err(AuthError::Malformed));
        let anon = sign(b"cookie-secret-0123456", "bob", None, 2000);
        assert_eq!(v.verify(&anon, 1).unwrap().device, None);
    }
}
