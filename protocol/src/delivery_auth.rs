//! # Delivery port authentication — mutual HMAC challenge–response
//!
//! Only processors may inject pushes, so every delivery connection opens with a handshake
//! over a shared secret. The edge (server) sends [`Frame::Challenge`] with a fresh nonce; the
//! processor (client) answers [`Frame::Auth`] with its own nonce and
//! `HMAC-SHA256(secret, "herald-delivery-v1/client" ‖ server_nonce ‖ client_nonce)`; the edge
//! checks it and proves itself with [`Frame::AuthOk`] carrying the same MAC under the
//! `…/server` label. Fresh server nonces make a recorded `Auth` useless on another connection,
//! distinct labels stop one side's MAC from being reflected as the other's, and tags are
//! compared in constant time. Once both nonces are known, each side derives the connection's
//! frame keys from the secret and both nonces (`session_keys`; the tags themselves are
//! `delivery::frame_mac`'s). Sans-io: randomness and the secret come from the caller.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::delivery::frame_mac::SessionKeys;
use crate::delivery::{Frame, FrameType, NONCE_LEN, PROTOCOL_VERSION};

/// Domain-separation label of the processor's MAC.
pub const CLIENT_LABEL: &[u8] = b"herald-delivery-v1/client";

/// Domain-separation label of the edge's MAC.
pub const SERVER_LABEL: &[u8] = b"herald-delivery-v1/server";

/// Shortest secret configuration should accept: HMAC-SHA256 keys below 16 bytes are
/// guessable offline from one recorded handshake. Check with [`check_secret`].
pub const MIN_SECRET_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The peer sent a frame other than the one the handshake expects next.
    UnexpectedFrame {
        /// The frame the handshake was waiting for.
        expected: FrameType,
        /// The frame that arrived instead.
        got: FrameType,
    },
    /// The processor's MAC is wrong: it does not know the secret (or replayed an old `Auth`).
    BadClientMac,
    /// The edge's MAC is wrong: it does not know the secret.
    BadServerMac,
    /// The edge speaks another protocol version.
    VersionMismatch {
        /// Our [`PROTOCOL_VERSION`].
        ours: u8,
        /// The version in the edge's challenge.
        theirs: u8,
    },
    /// `confirm` was called before `respond` saw a challenge.
    NoChallenge,
    /// A configured secret is shorter than [`MIN_SECRET_LEN`].
    WeakSecret {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::UnexpectedFrame { expected, got } => {
                write!(f, "expected a {expected} frame, got {got}")
            }
            AuthError::BadClientMac => {
                f.write_str("processor's Auth MAC does not match the shared secret")
            }
            AuthError::BadServerMac => {
                f.write_str("edge's AuthOk MAC does not match the shared secret")
            }
            AuthError::VersionMismatch { ours, theirs } => write!(
                f,
                "edge speaks delivery protocol version {theirs}, we speak {ours}"
            ),
            AuthError::NoChallenge => f.write_str("AuthOk checked before any Challenge"),
            AuthError::WeakSecret { len } => write!(
                f,
                "delivery secret is {len} bytes, at least {MIN_SECRET_LEN} are required"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// Rejects secrets too short to resist offline guessing; for configuration loaders.
pub fn check_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(AuthError::WeakSecret { len: secret.len() });
    }
    Ok(())
}

/// A MAC keyed with `key`, fed `label ‖ server_nonce ‖ client_nonce`.
fn keyed(
    key: &HmacSha256,
    label: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(label);
    mac.update(server_nonce);
    mac.update(client_nonce);
    mac
}

fn new_key(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// The edge's side of one connection's handshake.
pub struct ServerAuth {
    /// HMAC state keyed with the shared secret (cloned per MAC).
    key: HmacSha256,
    /// The nonce of this connection's challenge.
    nonce: [u8; NONCE_LEN],
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("ServerAuth")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ServerAuth {
    /// Starts a handshake with the shared `secret` and a fresh random `nonce` for this
    /// connection (never reuse one: a reused nonce lets a recorded `Auth` replay).
    pub fn new(secret: &[u8], nonce: [u8; NONCE_LEN]) -> ServerAuth {
        ServerAuth {
            key: new_key(secret),
            nonce,
        }
    }

    /// The first frame the edge sends.
    pub fn challenge(&self) -> Frame {
        Frame::Challenge {
            version: PROTOCOL_VERSION,
            nonce: self.nonce,
        }
    }

    /// Checks the processor's `Auth` frame; on success returns the `AuthOk` to send back.
    pub fn verify(&self, frame: &Frame) -> Result<Frame, AuthError> {
        self.accept(frame).map(|(ok, _)| ok)
    }

    /// [`verify`](Self::verify), also returning the frame keys of the connection.
    pub(crate) fn verify_keyed(&self, frame: &Frame) -> Result<(Frame, SessionKeys), AuthError> {
        let (ok, client_nonce) = self.accept(frame)?;
        Ok((
            ok,
            SessionKeys::derive(&self.key, &self.nonce, &client_nonce),
        ))
    }

    /// Checks an `Auth` frame: the `AuthOk` to answer and the client's nonce.
    fn accept(&self, frame: &Frame) -> Result<(Frame, [u8; NONCE_LEN]), AuthError> {
        let Frame::Auth { client_nonce, mac } = frame else {
            return Err(AuthError::UnexpectedFrame {
                expected: FrameType::Auth,
                got: frame.frame_type(),
            });
        };
        keyed(&self.key, CLIENT_LABEL, &self.nonce, client_nonce)
            .verify_slice(mac)
            .map_err(|_| AuthError::BadClientMac)?;
        let server_mac = keyed(&self.key, SERVER_LABEL, &self.nonce, client_nonce);
        let ok = Frame::AuthOk {
            mac: server_mac.finalize().into_bytes().into(),
        };
        Ok((ok, *client_nonce))
    }
}

/// The processor's side of one connection's handshake.
pub struct ClientAuth {
    /// HMAC state keyed with the shared secret (cloned per MAC).
    key: HmacSha256,
    /// This connection's client nonce.
    client_nonce: [u8; NONCE_LEN],
    /// The edge's nonce, once its challenge has been answered.
    server_nonce: Option<[u8; NONCE_LEN]>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_nonce", &self.client_nonce)
            .field("server_nonce", &self.server_nonce)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Starts a handshake with the shared `secret` and a fresh random `client_nonce`.
    pub fn new(secret: &[u8], client_nonce: [u8; NONCE_LEN]) -> ClientAuth {
        ClientAuth {
            key: new_key(secret),
            client_nonce,
            server_nonce: None,
        }
    }

    /// Answers the edge's `Challenge` with the `Auth` frame to send.
    pub fn respond(&mut self, frame: &Frame) -> Result<Frame, AuthError> {
        let Frame::Challenge { version, nonce } = frame else {
            return Err(AuthError::UnexpectedFrame {
                expected: FrameType::Challenge,
                got: frame.frame_type(),
            });
        };
        if *version != PROTOCOL_VERSION {
            return Err(AuthError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: *version,
            });
        }
        self.server_nonce = Some(*nonce);
        let mac = keyed(&self.key, CLIENT_LABEL, nonce, &self.client_nonce);
        Ok(Frame::Auth {
            client_nonce: self.client_nonce,
            mac: mac.finalize().into_bytes().into(),
        })
    }

    /// Checks the edge's `AuthOk`; `Ok` means both sides proved they know the secret.
    pub fn confirm(&self, frame: &Frame) -> Result<(), AuthError> {
        let Frame::AuthOk { mac } = frame else {
            return Err(AuthError::UnexpectedFrame {
                expected: FrameType::AuthOk,
                got: frame.frame_type(),
            });
        };
        let server_nonce = self.server_nonce.as_ref().ok_or(AuthError::NoChallenge)?;
        keyed(&self.key, SERVER_LABEL, server_nonce, &self.client_nonce)
            .verify_slice(mac)
            .map_err(|_| AuthError::BadServerMac)
    }

    /// [`confirm`](Self::confirm), also returning the frame keys of the connection.
    pub(crate) fn confirm_keyed(&self, frame: &Frame) -> Result<SessionKeys, AuthError> {
        self.confirm(frame)?;
        let server_nonce = self.server_nonce.as_ref().ok_or(AuthError::NoChallenge)?;
        Ok(SessionKeys::derive(
            &self.key,
            server_nonce,
            &self.client_nonce,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-shared";

    #[test]
    fn right_secret_authenticates_both_ways() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        let mut client = ClientAuth::new(SECRET, [2; 16]);
        let auth = client.respond(&server.challenge()).expect("challenge");
        let ok = server.verify(&auth).expect("client proved itself");
        client.confirm(&ok).expect("server proved itself");
    }

    #[test]
    fn mac_matches_the_pinned_construction() {
        let mut client = ClientAuth::new(SECRET, [2; 16]);
        let Frame::Auth { mac, .. } = client
            .respond(&ServerAuth::new(SECRET, [1; 16]).challenge())
            .unwrap()
        else {
            panic!("not an Auth frame")
        };
        let mut expected = HmacSha256::new_from_slice(SECRET).unwrap();
        expected.update(b"herald-delivery-v1/client");
        expected.update(&[1; 16]);
        expected.update(&[2; 16]);
        assert_eq!(mac, <[u8; 32]>::from(expected.finalize().into_bytes()));
    }

    #[test]
    fn wrong_frames_are_rejected_distinctly() {
        let server = ServerAuth::new(SECRET, [1; 16]);
        assert_eq!(
            server.verify(&Frame::AuthOk { mac: [0; 32] }),
            Err(AuthError::UnexpectedFrame {
                expected: FrameType::Auth,
                got: FrameType::AuthOk
            })
        );
        assert_eq!(
            server.verify(&Frame::Auth {
                client_nonce: [2; 16],
                mac: [0; 32]
            }),
            Err(AuthError::BadClientMac)
        );
        let mut client = ClientAuth::new(SECRET, [2; 16]);
        assert_eq!(
            client.confirm(&Frame::AuthOk { mac: [0; 32] }),
            Err(AuthError::NoChallenge)
        );
        assert!(matches!(
            client.respond(&Frame::Answers(vec![])),
            Err(AuthError::UnexpectedFrame { .. })
        ));
        // An older edge (version 1: frames without tags) is refused at its challenge.
        assert_eq!(
            client.respond(&Frame::Challenge {
                version: 1,
                nonce: [1; 16]
            }),
            Err(AuthError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 1
            })
        );
    }

    #[test]
    fn secrets_shorter_than_16_bytes_are_weak() {
        assert_eq!(
            check_secret(b"short"),
            Err(AuthError::WeakSecret { len: 5 })
        );
        assert_eq!(check_secret(SECRET), Ok(()));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let text = format!("{:?}", ServerAuth::new(SECRET, [1; 16]));
        assert!(!text.contains("0123"), "{text}");
    }
}
