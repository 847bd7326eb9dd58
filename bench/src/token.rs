//! Client tokens: HS256 JWTs in the shape the edge verifies (`sub` = user, `did` = device,
//! `exp`), signed with the secret the harness gave the edge.

use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    did: Option<&'a str>,
    exp: u64,
}

/// An HS256 token for `user` (and `device`), expiring at `exp` (unix seconds).
pub fn issue(secret: &str, user: &str, device: Option<&str>, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: user,
            did: device,
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding of plain claims cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_with_the_same_secret_only() {
        let t = issue("0123456789abcdef", "u1", Some("d"), 4_000_000_000);
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        let ok = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"0123456789abcdef"),
            &v,
        )
        .unwrap();
        assert_eq!(ok.claims["sub"], "u1");
        assert_eq!(ok.claims["did"], "d");
        assert!(jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"another-secret!!"),
            &v
        )
        .is_err());
    }
}
