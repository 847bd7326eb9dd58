//! Property tests of the built-in credentials (proptest, a fixed case budget): signed session
//! cookies round-trip and refuse every single-byte edit; the JWT path never panics on
//! arbitrary input, verifies every valid token it is given and refuses every single-character
//! edit of one.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::jwt::{self, JwtAlgorithm, JwtVerifier};
use super::session_cookie::{self, SessionCookieVerifier};
use super::{AuthError, Identity, MAX_ID_LEN};
use crate::config::JwtConfig;

const COOKIE_SECRET: &[u8] = b"cookie-secret-0123456";
const JWT_SECRET: &[u8] = b"jwt-secret-0123456789";
const NOW: u64 = 1_800_000_000;

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Ids [`super::valid_id`] accepts: no control characters, no `/`, 1..=64 chars.
fn id() -> impl Strategy<Value = String> {
    vec(
        any::<char>().prop_filter("valid id char", |c| !c.is_control() && *c != '/'),
        1..64,
    )
    .prop_map(|c| c.into_iter().collect::<String>())
    .prop_filter("fits MAX_ID_LEN", |s| s.len() <= MAX_ID_LEN)
}

fn verifier(audience: Option<&str>) -> JwtVerifier {
    JwtVerifier::new(&JwtConfig {
        algorithm: JwtAlgorithm::Hs256,
        key: JWT_SECRET.to_vec(),
        issuer: Some("https://issuer".into()),
        audience: audience.map(String::from),
        leeway_secs: 5,
        cookie: "herald_token".into(),
    })
    .unwrap()
}

/// A valid token's `aud`: the configured one alone, or inside an array of others.
fn audience() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!("herald")),
        (vec(id(), 0..3), any::<prop::sample::Index>()).prop_map(|(mut others, at)| {
            let at = at.index(others.len() + 1);
            others.insert(at, "herald".into());
            serde_json::json!(others)
        }),
    ]
}

fn hs256(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap()
}

/// Characters a token is made of, to edit one with another.
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn session_cookies_round_trip(
        user in id(),
        device in proptest::option::of(id()),
        ttl in 1..=u32::MAX as u64,
    ) {
        let v = SessionCookieVerifier::new(COOKIE_SECRET, "herald_session");
        let value = session_cookie::sign(COOKIE_SECRET, &user, device.as_deref(), NOW + ttl);
        prop_assert_eq!(v.verify(&value, NOW), Ok(Identity { user, device }));
        prop_assert_eq!(v.verify(&value, NOW + ttl), Err(AuthError::Expired));
    }

    #[test]
    fn any_single_byte_edit_of_a_session_cookie_is_refused(
        user in id(),
        device in proptest::option::of(id()),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        edit in 0..3u8,
    ) {
        let v = SessionCookieVerifier::new(COOKIE_SECRET, "herald_session");
        let value = session_cookie::sign(COOKIE_SECRET, &user, device.as_deref(), NOW + 3600);
        let mut bytes = value.clone().into_bytes();
        match edit {
            0 => {
                let i = at.index(bytes.len());
                prop_assume!(bytes[i] != byte);
                bytes[i] = byte;
            }
            1 => bytes.insert(at.index(bytes.len() + 1), byte),
            _ => {
                bytes.remove(at.index(bytes.len()));
            }
        }
        // A cookie header that is not UTF-8 never reaches the verifier.
        if let Ok(edited) = String::from_utf8(bytes) {
            prop_assert!(v.verify(&edited, NOW).is_err(), "accepted {:?} (from {:?})", edited, value);
        }
    }

    #[test]
    fn arbitrary_cookie_values_never_panic(value in ".{0,200}", dots in vec("[A-Za-z0-9_-]{0,12}", 0..7)) {
        let v = SessionCookieVerifier::new(COOKIE_SECRET, "herald_session");
        let _ = v.verify(&value, NOW);
        let _ = v.verify(&format!("v1.{}", dots.join(".")), NOW);
    }

    #[test]
    fn arbitrary_tokens_never_panic(
        token in ".{0,300}",
        parts in vec("[A-Za-z0-9_=-]{0,40}", 0..5),
        header in ".{0,40}",
        payload in ".{0,80}",
    ) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let v = verifier(Some("herald"));
        prop_assert!(v.verify(&token, NOW).is_err());
        prop_assert!(v.verify(&parts.join("."), NOW).is_err());
        // Well-formed base64 around arbitrary JSON-ish text, signature or not.
        let _ = v.verify(&format!("{}.{}.{}", b64(&header), b64(&payload), parts.join("")), NOW);
        let _ = v.verify(&format!("{}.{}.", b64(r#"{"alg":"HS256"}"#), b64(&payload)), NOW);
    }

    #[test]
    fn valid_tokens_verify(
        sub in id(),
        did in proptest::option::of(id()),
        ttl in 1..=u32::MAX as u64,
        aud in audience(),
        nbf_ago in proptest::option::of(0..1_000_000u64),
    ) {
        let mut claims = serde_json::json!({"sub": sub, "exp": NOW + ttl, "iss": "https://issuer", "aud": aud});
        if let Some(d) = &did {
            claims["did"] = serde_json::json!(d);
        }
        if let Some(ago) = nbf_ago {
            claims["nbf"] = serde_json::json!(NOW - ago);
        }
        let token = hs256(&claims);
        let want = Identity { user: sub, device: did };
        prop_assert_eq!(verifier(Some("herald")).verify(&token, NOW), Ok(want.clone()));
        prop_assert_eq!(verifier(None).verify(&token, NOW), Ok(want));
        prop_assert_eq!(verifier(Some("elsewhere")).verify(&token, NOW), Err(AuthError::WrongAudience));
    }

    #[test]
    fn any_single_character_edit_of_a_token_is_refused(
        sub in id(),
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(TOKEN_CHARS.to_vec()),
    ) {
        let token = jwt::issue_hs256(
            JWT_SECRET,
            &jwt::Claims {
                sub,
                did: None,
                exp: NOW + 3600,
                nbf: None,
                iss: Some("https://issuer".into()),
                aud: Some("herald".into()),
            },
        );
        let v = verifier(Some("herald"));
        prop_assert!(v.verify(&token, NOW).is_ok());
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != with);
        bytes[i] = with;
        let edited = String::from_utf8(bytes).unwrap();
        prop_assert!(v.verify(&edited, NOW).is_err(), "accepted {} (from {})", edited, token);
    }
}
