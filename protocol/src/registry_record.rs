//! # Registry record — the value stored per device in the push registry
//!
//! The registry keeps one Redis hash per user, `herald:c:{<user>}` (the braces are a Redis
//! Cluster hash tag, so all of a user's devices live in one slot), with one field per device.
//! A field's value says where that device's connection lives and until when the entry may be
//! trusted: `1|<node_id>|<shard>|<conn_nonce>|<expires_at_ms>`, where `1` is the format
//! version, `<shard>` is decimal, `<conn_nonce>` is exactly 16 lowercase hex digits and
//! `<expires_at_ms>` is decimal unix milliseconds. The text form is deliberately tiny (it is
//! stored millions of times) and easy for the registry's Lua scripts to pick apart with one
//! pattern: the scripts compare nonces as fixed-width hex strings (Lua numbers are doubles
//! and cannot hold a `u64`) and expiry times as numbers (unix ms fit a double exactly).
//!
//! The connection nonce identifies one connection of a device and doubles as its age: the
//! edge builds it with [`conn_nonce`] from the connection's accept time in the high 48 bits
//! and 16 bits of entropy below, so a later connection of the same device carries a larger
//! nonce. The registry relies on that order to refuse a stale edge's late registration (see
//! `docs/registry.md`). The full format is documented byte by byte in `docs/registry.md`.

use std::fmt;

/// Format version written at the start of every record; a reader seeing any other version
/// refuses the value instead of guessing at its layout.
pub const RECORD_VERSION: u8 = 1;

/// The hash holding edge membership: field = node id, value = advertised delivery address,
/// shard count and heartbeat time (codec in `herald-registry`).
pub const EDGES_KEY: &str = "herald:edges";

/// Prefix of every per-user registry key; the user id and a closing `}` follow.
pub const USER_KEY_PREFIX: &str = "herald:c:{";

/// Longest node id accepted, in bytes: node ids are stored in every record of the node, so
/// they must stay short.
pub const MAX_NODE_ID_LEN: usize = 255;

/// Number of low nonce bits that carry entropy rather than time (see [`conn_nonce`]).
pub const NONCE_ENTROPY_BITS: u32 = 16;

/// Where one device's connection lives, and until when the registry may believe it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRecord {
    /// The edge node holding the connection; names the node in `herald:edges`, which gives
    /// its delivery address. Must be non-empty, at most [`MAX_NODE_ID_LEN`] bytes, without `|`.
    pub node_id: String,
    /// The shard (core) of that node owning the connection: delivery goes to
    /// `delivery_base_port + shard`.
    pub shard: u16,
    /// Identifies this connection among all connections the device ever had; unregister is a
    /// compare-and-delete on it, and a larger nonce means a later connection.
    pub conn_nonce: u64,
    /// Unix ms after which readers ignore the record and writers prune it: the connection's
    /// maximum lifetime plus grace plus slack past its accept time, so a crashed edge's
    /// records vanish without anyone cleaning up.
    pub expires_at_ms: u64,
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The value starts with a version this code does not know (the version text is kept).
    UnknownVersion(String),
    /// The value is not `version|node|shard|nonce|expires`; the text says which part is wrong.
    Malformed(&'static str),
    /// The node id is empty, longer than [`MAX_NODE_ID_LEN`] bytes, or contains `|`.
    InvalidNodeId(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownVersion(v) => write!(f, "unknown registry record version {v:?}"),
            RecordError::Malformed(what) => write!(f, "malformed registry record: {what}"),
            RecordError::InvalidNodeId(id) => write!(
                f,
                "invalid node id {id:?}: must be 1..={MAX_NODE_ID_LEN} bytes without '|'"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Checks that `node_id` can be stored in a record (non-empty, at most [`MAX_NODE_ID_LEN`]
/// bytes, no `|`). Edges call this when loading their configuration.
pub fn validate_node_id(node_id: &str) -> Result<(), RecordError> {
    if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN || node_id.contains('|') {
        return Err(RecordError::InvalidNodeId(node_id.to_owned()));
    }
    Ok(())
}

/// The registry key of `user`: `herald:c:{<user>}`.
pub fn user_key(user: &str) -> String {
    let mut key = String::with_capacity(USER_KEY_PREFIX.len() + user.len() + 1);
    key.push_str(USER_KEY_PREFIX);
    key.push_str(user);
    key.push('}');
    key
}

/// Builds a connection nonce from the connection's accept time (unix ms, high 48 bits) and
/// caller-supplied randomness (low [`NONCE_ENTROPY_BITS`] bits), so nonces of one device grow
/// with time. Two connections of the same device accepted in the same millisecond are
/// ordered by their entropy, which is still a total order.
pub fn conn_nonce(accepted_at_ms: u64, entropy: u16) -> u64 {
    (accepted_at_ms << NONCE_ENTROPY_BITS) | u64::from(entropy)
}

/// [`conn_nonce`] from an accept time in microseconds: the low 16 bits hold the microseconds
/// within the millisecond (10 bits, 0..=999) and 6 bits of `random`, so two connections of a
/// device accepted in the same millisecond (on two shards, say) are still ordered by accept
/// time; only two accepts in the same microsecond fall back to the random bits.
pub fn conn_nonce_us(accepted_at_us: u64, random: u8) -> u64 {
    let sub_ms = (accepted_at_us % 1000) as u16;
    conn_nonce(
        accepted_at_us / 1000,
        (sub_ms << 6) | u16::from(random & 0x3f),
    )
}

/// The accept time (unix ms) a nonce built by [`conn_nonce`] carries.
pub fn nonce_accepted_at_ms(nonce: u64) -> u64 {
    nonce >> NONCE_ENTROPY_BITS
}

/// The fixed-width text form of a nonce: 16 lowercase hex digits, so that string order is
/// numeric order (the registry scripts compare nonces as strings).
pub fn nonce_hex(nonce: u64) -> String {
    format!("{nonce:016x}")
}

impl RegistryRecord {
    /// Whether the record may still be believed at `now_ms` (it is live strictly before
    /// `expires_at_ms`).
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    /// The text form, or an error when the node id cannot be stored.
    pub fn try_encode(&self) -> Result<String, RecordError> {
        validate_node_id(&self.node_id)?;
        Ok(format!(
            "{RECORD_VERSION}|{}|{}|{:016x}|{}",
            self.node_id, self.shard, self.conn_nonce, self.expires_at_ms
        ))
    }

    /// The text form `1|<node_id>|<shard>|<nonce hex>|<expires_at_ms>`.
    ///
    /// # Panics
    /// When the node id is invalid (see [`validate_node_id`]): node ids come from the edge's
    /// configuration, which validates them at load time, so this is a programming error.
    /// Use [`RegistryRecord::try_encode`] for untrusted input.
    pub fn encode(&self) -> String {
        match self.try_encode() {
            Ok(text) => text,
            Err(e) => panic!("RegistryRecord::encode: {e}"),
        }
    }

    /// Parses the text form; any deviation (other version, missing or extra part, non-decimal
    /// shard or expiry, nonce not 16 lowercase hex digits, invalid node id) is an error.
    pub fn decode(text: &str) -> Result<RegistryRecord, RecordError> {
        let mut parts = text.split('|');
        let version = parts.next().unwrap_or_default();
        if version != "1" {
            return Err(RecordError::UnknownVersion(version.to_owned()));
        }
        let node_id = parts
            .next()
            .ok_or(RecordError::Malformed("missing node id"))?;
        let shard = parts
            .next()
            .ok_or(RecordError::Malformed("missing shard"))?;
        let nonce = parts
            .next()
            .ok_or(RecordError::Malformed("missing nonce"))?;
        let expires = parts
            .next()
            .ok_or(RecordError::Malformed("missing expiry"))?;
        if parts.next().is_some() {
            return Err(RecordError::Malformed("too many fields"));
        }
        validate_node_id(node_id)?;
        let shard = parse_decimal(shard)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or(RecordError::Malformed("shard is not a decimal u16"))?;
        let conn_nonce = parse_nonce(nonce).ok_or(RecordError::Malformed(
            "nonce is not 16 lowercase hex digits",
        ))?;
        let expires_at_ms =
            parse_decimal(expires).ok_or(RecordError::Malformed("expiry is not a decimal u64"))?;
        Ok(RegistryRecord {
            node_id: node_id.to_owned(),
            shard,
            conn_nonce,
            expires_at_ms,
        })
    }
}

/// Parses ASCII digits only (no sign, no whitespace, no empty string) into a `u64`.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses exactly 16 lowercase hex digits.
fn parse_nonce(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RegistryRecord {
        RegistryRecord {
            node_id: "edge-7".into(),
            shard: 3,
            conn_nonce: 0x0123_4567_89ab_cdef,
            expires_at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn encodes_the_documented_text_form() {
        assert_eq!(
            record().encode(),
            "1|edge-7|3|0123456789abcdef|1700000000123"
        );
        let small = RegistryRecord {
            conn_nonce: 1,
            ..record()
        };
        assert_eq!(small.encode(), "1|edge-7|3|0000000000000001|1700000000123");
    }

    #[test]
    fn round_trips_extremes() {
        for r in [
            record(),
            RegistryRecord {
                node_id: "n".into(),
                shard: 0,
                conn_nonce: 0,
                expires_at_ms: 0,
            },
            RegistryRecord {
                node_id: "x".repeat(MAX_NODE_ID_LEN),
                shard: u16::MAX,
                conn_nonce: u64::MAX,
                expires_at_ms: u64::MAX,
            },
        ] {
            assert_eq!(RegistryRecord::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn rejects_bad_node_ids_at_encode() {
        for bad in ["", "a|b", &"x".repeat(MAX_NODE_ID_LEN + 1)] {
            let r = RegistryRecord {
                node_id: bad.to_owned(),
                ..record()
            };
            assert!(
                matches!(r.try_encode(), Err(RecordError::InvalidNodeId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "invalid node id")]
    fn encode_panics_on_a_bad_node_id() {
        RegistryRecord {
            node_id: "a|b".into(),
            ..record()
        }
        .encode();
    }

    #[test]
    fn rejects_unknown_versions() {
        assert_eq!(
            RegistryRecord::decode("2|edge|1|0000000000000001|5"),
            Err(RecordError::UnknownVersion("2".into()))
        );
        assert_eq!(
            RegistryRecord::decode(""),
            Err(RecordError::UnknownVersion("".into()))
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "1",
            "1|edge",
            "1|edge|1",
            "1|edge|1|0000000000000001",
            "1|edge|1|0000000000000001|5|extra",
            "1||1|0000000000000001|5",
            "1|edge|65536|0000000000000001|5",
            "1|edge|-1|0000000000000001|5",
            "1|edge|+1|0000000000000001|5",
            "1|edge| 1|0000000000000001|5",
            "1|edge|1|000000000000001|5",
            "1|edge|1|00000000000000001|5",
            "1|edge|1|000000000000000A|5",
            "1|edge|1|000000000000000g|5",
            "1|edge|1|0000000000000001|",
            "1|edge|1|0000000000000001|18446744073709551616",
            "1|edge|1|0000000000000001|5x",
        ] {
            assert!(RegistryRecord::decode(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn user_keys_are_hash_tagged() {
        assert_eq!(user_key("alice"), "herald:c:{alice}");
        assert_eq!(user_key(""), "herald:c:{}");
        assert!(user_key("bob").starts_with(USER_KEY_PREFIX));
    }

    #[test]
    fn liveness_is_strictly_before_expiry() {
        let r = record();
        assert!(r.is_live(r.expires_at_ms - 1));
        assert!(!r.is_live(r.expires_at_ms));
        assert!(!r.is_live(r.expires_at_ms + 1));
    }

    #[test]
    fn nonces_order_by_accept_time_then_entropy() {
        let earlier = conn_nonce(1_700_000_000_000, u16::MAX);
        let later = conn_nonce(1_700_000_000_001, 0);
        assert!(earlier < later);
        assert!(
            nonce_hex(earlier) < nonce_hex(later),
            "hex order must be numeric order"
        );
        assert_eq!(nonce_accepted_at_ms(later), 1_700_000_000_001);
        assert!(conn_nonce(5, 1) < conn_nonce(5, 2));
    }

    #[test]
    fn microsecond_nonces_order_by_accept_time_within_a_millisecond() {
        let t = 1_700_000_000_000_000u64; // µs
        for random in [0u8, 1, 63, 255] {
            assert!(conn_nonce_us(t + 1, 0) > conn_nonce_us(t, random));
            assert!(conn_nonce_us(t + 999, 0) > conn_nonce_us(t + 998, random));
            assert!(conn_nonce_us(t + 1000, 0) > conn_nonce_us(t + 999, random));
        }
        assert_eq!(
            nonce_accepted_at_ms(conn_nonce_us(t + 1999, 255)),
            t / 1000 + 1
        );
    }
}
