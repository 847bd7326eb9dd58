//! JWT verification with one pinned algorithm (HS256, RS256 or ES256).
//!
//! The token may come from `Authorization: Bearer`, `?access_token=` or the configured cookie
//! (the cookie only where the request's `Origin` allows cookie credentials).
//! `exp` is required; `nbf`, `iss`, `aud` are checked when present/configured; leeway ≤ 30 s.
//! `aud` is a string or an array of strings (RFC 7519 §4.1.3): with an audience configured,
//! one element equal to it is enough.
//! Because the accepted algorithm list has exactly one entry, `alg: none` and algorithm
//! confusion (an HS256 token "signed" with an RSA public key) fail as `WrongAlgorithm`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{valid_id, AuthError, AuthRequest, Identity};
use crate::config::JwtConfig;

/// The algorithms an edge can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 SHA-256 with a public key.
    Rs256,
    /// ECDSA P-256 SHA-256 with a public key.
    Es256,
}

impl JwtAlgorithm {
    /// Parses a config value (case-insensitive).
    pub fn parse(t: &str) -> Result<Self, String> {
        match t.to_ascii_uppercase().as_str() {
            "HS256" => Ok(JwtAlgorithm::Hs256),
            "RS256" => Ok(JwtAlgorithm::Rs256),
            "ES256" => Ok(JwtAlgorithm::Es256),
            _ => Err(format!(
                "`{t}` is not a supported algorithm (HS256, RS256, ES256)"
            )),
        }
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }

    /// The verification key from a secret (HS256) or PEM public key.
    pub fn decoding_key(self, key: &[u8]) -> Result<DecodingKey, String> {
        match self {
            JwtAlgorithm::Hs256 => Ok(DecodingKey::from_secret(key)),
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(key)
                .map_err(|e| format!("not an RSA public key in PEM form: {e}")),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(key)
                .map_err(|e| format!("not an EC P-256 public key in PEM form: {e}")),
        }
    }
}

/// The claims Herald issues (`herald token`, tests); verification reads the same names but
/// accepts every form RFC 7519 allows (`aud` as a string or an array of strings).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Device id (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not-before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The claims as verification reads them. `iss` and `aud` are checked by jsonwebtoken from
/// the raw payload; they are typed here too so that a value of the wrong shape (a number, an
/// array of numbers) is malformed whatever the configuration.
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    #[serde(default)]
    did: Option<String>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)] // shape check only, see above
    iss: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // shape check only, see above
    aud: Option<Audience>,
}

/// A JWT `aud` claim: "either an array of case-sensitive strings … or a single string"
/// (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)] // shape check only, like `TokenClaims::aud`
enum Audience {
    /// `"aud": "herald"`.
    One(String),
    /// `"aud": ["herald", "billing"]`.
    Many(Vec<String>),
}

/// A configured verifier.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    cookie: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds a verifier from validated configuration.
    pub fn new(cfg: &JwtConfig) -> Result<Self, String> {
        let key = cfg.algorithm.decoding_key(&cfg.key)?;
        let mut validation = Validation::new(cfg.algorithm.jsonwebtoken());
        validation.algorithms = vec![cfg.algorithm.jsonwebtoken()];
        validation.set_required_spec_claims(&["exp", "sub"]);
        // jsonwebtoken reads the system clock for exp/nbf; `verify` checks them itself against
        // the `now` it is given (same leeway), so verification stays pure and testable with
        // any clock — and the validation is built once, not cloned per token.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = cfg.leeway_secs.min(30);
        match &cfg.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(JwtVerifier {
            key,
            validation,
            cookie: cfg.cookie.clone(),
        })
    }

    /// The token in the request, by precedence: bearer header, query, cookie. A token cookie
    /// the request may not use is [`AuthError::CookieOrigin`] (see [`AuthRequest::cookie_credential`]).
    pub fn find_token<'a>(&self, req: &AuthRequest<'a>) -> Result<Option<&'a str>, AuthError> {
        match req.bearer().or_else(|| req.query_param("access_token")) {
            Some(token) => Ok(Some(token)),
            None => req.cookie_credential(&self.cookie),
        }
    }

    /// Verifies `token` at time `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.key, &self.validation)
            .map_err(|e| map_error(e.kind()))?;
        let c = data.claims;
        let leeway = self.validation.leeway;
        if c.exp.saturating_add(leeway) <= now_secs {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = c.nbf {
            if nbf > now_secs.saturating_add(leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        if !valid_id(&c.sub) || c.did.as_deref().is_some_and(|d| !valid_id(d)) {
            return Err(AuthError::BadIdentity);
        }
        Ok(Identity {
            user: c.sub,
            device: c.did,
        })
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => AuthError::Expired,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
        _ => AuthError::Malformed,
    }
}

/// Issues an HS256 token (used by `herald token` and tests).
pub fn issue_hs256(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding of plain claims cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef-secret";
    const NOW: u64 = 1_800_000_000;
    // Test-only keys generated with openssl for this test module.
    const RSA_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx0w7EPhDXJtvxS4CcW/m
znAvi+op+LqHVT3+MANZ6YwymUe4OfNYrzDgJNLfX34lKLSPG2cINRAi9qXkH7BL
fH5SRW5Y2eYuutMvWK+uFh4J7tNuygXOaTZJsXsHnGgMfC0Ickjd0aa+MsLgPTF0
sJxhLDQnOqwPK97Q0uc+tA0vTwuBKyIYNo6wwVS2AtUZvh/EEXU0wJNgjSbYiSdV
lI3nBXxP8xozH8FNzuz2v/sT6xyoiD9+R5j7TMt9XNMvzHoDyBDSIWvlO8rwrrFQ
xD54EF8jHfYDQnQBWNlCJpYXvi4TOQMy4Vap+SwwU5O0lVLllp75zsrPMhNL2uMe
DQIDAQAB
-----END PUBLIC KEY-----
";

    const EC_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKk5uYgR1tUAjZ84LQ+M5oHpTnnqg
g86lx7onXWoBhCMTdccmvFc6jt1aneoZy0HqcIUDyJQmTbqjwA82DMmMrQ==
-----END PUBLIC KEY-----
";
    const EC_PRIV: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMnGefyyjzY9IohW8
y2pM3i5Kp6Yf3OVdHqvor+obtByhRANCAAQqTm5iBHW1QCNnzgtD4zmgelOeeqCD
zqXHuiddagGEIxN1xya8VzqO3Vqd6hnLQepwhQPIlCZNuqPADzYMyYyt
-----END PRIVATE KEY-----
";

    fn cfg(alg: JwtAlgorithm, key: &[u8]) -> JwtConfig {
        JwtConfig {
            algorithm: alg,
            key: key.to_vec(),
            issuer: Some("https://issuer".into()),
            audience: Some("herald".into()),
            leeway_secs: 5,
            cookie: "herald_token".into(),
        }
    }

    fn claims() -> Claims {
        Claims {
            sub: "alice".into(),
            did: Some("phone".into()),
            exp: NOW + 3600,
            nbf: None,
            iss: Some("https://issuer".into()),
            aud: Some("herald".into()),
        }
    }

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn jwt_matrix() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        let ok = v.verify(&issue_hs256(SECRET, &claims()), NOW).unwrap();
        assert_eq!(ok.user, "alice");
        assert_eq!(ok.device.as_deref(), Some("phone"));

        let case = |c: Claims| v.verify(&issue_hs256(SECRET, &c), NOW);
        assert_eq!(
            case(Claims {
                exp: NOW - 60,
                ..claims()
            }),
            Err(AuthError::Expired)
        );
        // within leeway still valid
        assert!(case(Claims {
            exp: NOW - 2,
            ..claims()
        })
        .is_ok());
        assert_eq!(
            case(Claims {
                nbf: Some(NOW + 600),
                ..claims()
            }),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            case(Claims {
                iss: Some("https://evil".into()),
                ..claims()
            }),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            case(Claims {
                iss: None,
                ..claims()
            }),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            case(Claims {
                aud: Some("other".into()),
                ..claims()
            }),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            case(Claims {
                sub: "a/b".into(),
                ..claims()
            }),
            Err(AuthError::BadIdentity)
        );
        assert_eq!(
            v.verify(&issue_hs256(b"another-secret-0123456", &claims()), NOW),
            Err(AuthError::BadSignature)
        );
        assert_eq!(v.verify("garbage", NOW), Err(AuthError::Malformed));
        assert_eq!(v.verify("a.b.c", NOW), Err(AuthError::Malformed));

        // exp is required
        let no_exp = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(br#"{"sub":"alice","iss":"https://issuer","aud":"herald"}"#)
        );
        let sig = {
            use hmac::{Hmac, Mac};
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
            m.update(no_exp.as_bytes());
            b64(&m.finalize().into_bytes())
        };
        assert!(v.verify(&format!("{no_exp}.{sig}"), NOW).is_err());

        // alg: none
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(serde_json::to_string(&claims()).unwrap().as_bytes())
        );
        assert!(matches!(
            v.verify(&none, NOW),
            Err(AuthError::WrongAlgorithm | AuthError::Malformed)
        ));
    }

    /// An HS256 token over arbitrary JSON claims.
    fn hs256_json(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn with_aud(aud: Option<serde_json::Value>) -> String {
        let mut c = serde_json::json!({"sub": "alice", "exp": NOW + 3600, "iss": "https://issuer"});
        if let Some(aud) = aud {
            c["aud"] = aud;
        }
        hs256_json(c)
    }

    #[test]
    fn aud_as_a_string() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        let ok = with_aud(Some(serde_json::json!("herald")));
        assert_eq!(v.verify(&ok, NOW).unwrap().user, "alice");
        let other = with_aud(Some(serde_json::json!("other")));
        assert_eq!(v.verify(&other, NOW), Err(AuthError::WrongAudience));
    }

    #[test]
    fn aud_as_an_array_needs_one_matching_element() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        for aud in [
            serde_json::json!(["herald"]),
            serde_json::json!(["billing", "herald"]),
            serde_json::json!(["herald", "billing", "search"]),
        ] {
            assert_eq!(
                v.verify(&with_aud(Some(aud.clone())), NOW).unwrap().user,
                "alice",
                "{aud}"
            );
        }
    }

    #[test]
    fn aud_as_an_array_without_a_match_is_the_wrong_audience() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        for aud in [
            serde_json::json!(["billing", "search"]),
            serde_json::json!(["HERALD"]),
            serde_json::json!([]),
        ] {
            assert_eq!(
                v.verify(&with_aud(Some(aud.clone())), NOW),
                Err(AuthError::WrongAudience),
                "{aud}"
            );
        }
    }

    #[test]
    fn aud_missing_is_refused_only_when_an_audience_is_configured() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        assert_eq!(
            v.verify(&with_aud(None), NOW),
            Err(AuthError::WrongAudience)
        );
        let open = JwtVerifier::new(&JwtConfig {
            audience: None,
            ..cfg(JwtAlgorithm::Hs256, SECRET)
        })
        .unwrap();
        assert!(open.verify(&with_aud(None), NOW).is_ok());
        let array = with_aud(Some(serde_json::json!(["anyone", "else"])));
        assert!(open.verify(&array, NOW).is_ok());
    }

    #[test]
    fn aud_of_another_shape_is_malformed() {
        let open = JwtVerifier::new(&JwtConfig {
            audience: None,
            ..cfg(JwtAlgorithm::Hs256, SECRET)
        })
        .unwrap();
        for aud in [serde_json::json!(7), serde_json::json!([1, 2])] {
            assert_eq!(
                open.verify(&with_aud(Some(aud.clone())), NOW),
                Err(AuthError::Malformed),
                "{aud}"
            );
        }
    }

    #[test]
    fn algorithm_confusion_is_rejected() {
        // The edge pins RS256; an attacker signs HS256 with the RSA public key as secret.
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Rs256, RSA_PUB.as_bytes())).unwrap();
        let forged = issue_hs256(RSA_PUB.as_bytes(), &claims());
        assert_eq!(v.verify(&forged, NOW), Err(AuthError::WrongAlgorithm));
        // And an HS256 edge never accepts an RS256-labelled token.
        let hs = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        let (_, rest) = forged.split_once('.').unwrap();
        let relabelled = format!("{}.{rest}", b64(br#"{"alg":"RS256","typ":"JWT"}"#));
        assert_eq!(hs.verify(&relabelled, NOW), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn es256_with_public_key() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Es256, EC_PUB.as_bytes())).unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims(),
            &jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIV.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&token, NOW).unwrap().user, "alice");
        // HS256 signed with the EC public key bytes: confusion attempt.
        let forged = issue_hs256(EC_PUB.as_bytes(), &claims());
        assert_eq!(v.verify(&forged, NOW), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn token_places() {
        let v = JwtVerifier::new(&cfg(JwtAlgorithm::Hs256, SECRET)).unwrap();
        let req = AuthRequest {
            query: Some("access_token=q"),
            cookie: Some("herald_token=c"),
            ..Default::default()
        };
        assert_eq!(v.find_token(&req), Ok(Some("q")));
        let req = AuthRequest {
            cookie: Some("herald_token=c"),
            ..Default::default()
        };
        assert_eq!(v.find_token(&req), Ok(Some("c")));
        let refused = AuthRequest {
            cookie_access: crate::auth::CookieAccess::Refused,
            ..req
        };
        assert_eq!(v.find_token(&refused), Err(AuthError::CookieOrigin));
        let with_query = AuthRequest {
            query: Some("access_token=q"),
            ..refused
        };
        assert_eq!(v.find_token(&with_query), Ok(Some("q")));
    }
}
