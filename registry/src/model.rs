//! What goes in and out of the registry: registrations, unregistrations, device locations,
//! edge membership, and per-operation outcomes, plus the input checks both back ends share.
//!
//! The checks run before anything is sent so that a bad operation is refused with a clear
//! [`RegistryError::InvalidInput`] instead of corrupting a record or failing half a pipeline.

use herald_protocol::registry_record::{validate_node_id, RegistryRecord};

use crate::RegistryError;

/// Longest user or device id accepted, in bytes (they become Redis keys and hash fields).
pub const MAX_ID_LEN: usize = 1024;

/// Furthest in the future a record may expire, relative to the writer's clock: 30 days.
/// Catches unit mistakes (seconds, microseconds) and keeps every TTL an exact integer in the
/// Lua scripts' double arithmetic.
pub const MAX_RECORD_LIFETIME_MS: u64 = 30 * 24 * 3600 * 1000;

/// "Device `device` of `user` is connected here": one connection's record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The user id (selects the hash `herald:c:{user}`).
    pub user: String,
    /// The device id (the field in that hash).
    pub device: String,
    /// Where the connection lives and until when.
    pub record: RegistryRecord,
}

/// "The connection with nonce `conn_nonce` of `user`'s `device` is gone": removes the
/// device's record only if it still belongs to that connection (compare-and-delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregistration {
    /// The user id.
    pub user: String,
    /// The device id.
    pub device: String,
    /// The nonce of the connection that closed; a record carrying another nonce belongs to a
    /// newer connection and is left alone.
    pub conn_nonce: u64,
}

/// One live device of a user, as returned by look-ups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLocation {
    /// The device id.
    pub device: String,
    /// Where its connection lives.
    pub record: RegistryRecord,
}

/// An edge node's entry in `herald:edges`: how to reach its shards, and when it last said
/// it was alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeInfo {
    /// The node id records refer to.
    pub node_id: String,
    /// Host (name or IP) processors connect to for delivery.
    pub delivery_host: String,
    /// Shard `i` listens on `delivery_base_port + i`.
    pub delivery_base_port: u16,
    /// Number of shards (so broadcasts reach every shard).
    pub shards: u16,
    /// Unix ms of the heartbeat that wrote this entry; entries older than a few heartbeat
    /// intervals are treated as gone.
    pub heartbeat_ms: u64,
}

/// One queued registry write, in the order the edge produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryOp {
    /// Store a connection's record.
    Register(Registration),
    /// Compare-and-delete a connection's record.
    Unregister(Unregistration),
}

impl RegistryOp {
    /// The user the operation touches.
    pub fn user(&self) -> &str {
        self.as_ref().user()
    }

    /// The device the operation touches.
    pub fn device(&self) -> &str {
        match self {
            RegistryOp::Register(r) => &r.device,
            RegistryOp::Unregister(u) => &u.device,
        }
    }

    /// The connection nonce the operation is about.
    pub fn conn_nonce(&self) -> u64 {
        match self {
            RegistryOp::Register(r) => r.record.conn_nonce,
            RegistryOp::Unregister(u) => u.conn_nonce,
        }
    }

    /// `"register"` or `"unregister"` (metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryOp::Register(_) => "register",
            RegistryOp::Unregister(_) => "unregister",
        }
    }

    /// A borrowed view, as the back ends take it.
    pub(crate) fn as_ref(&self) -> OpRef<'_> {
        match self {
            RegistryOp::Register(r) => OpRef::Register(r),
            RegistryOp::Unregister(u) => OpRef::Unregister(u),
        }
    }
}

/// A borrowed [`RegistryOp`], so batches can be applied without cloning them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OpRef<'a> {
    /// See [`RegistryOp::Register`].
    Register(&'a Registration),
    /// See [`RegistryOp::Unregister`].
    Unregister(&'a Unregistration),
}

impl<'a> OpRef<'a> {
    /// The user the operation touches.
    pub(crate) fn user(self) -> &'a str {
        match self {
            OpRef::Register(r) => &r.user,
            OpRef::Unregister(u) => &u.user,
        }
    }
}

/// What one applied operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpOutcome {
    /// The record was stored (new, replaced an older connection's, or refreshed the same one).
    Registered,
    /// Not stored: a live record of a *newer* connection (larger nonce) holds the device.
    Superseded,
    /// Not stored: the record had already expired at `now` (expired fields were still pruned).
    AlreadyExpired,
    /// The device's record belonged to the closing connection and was removed.
    Removed,
    /// The device's record belongs to another connection and was left alone.
    NotOwner,
    /// The device had no record.
    Absent,
}

impl OpOutcome {
    /// Metric label of the outcome.
    pub fn label(self) -> &'static str {
        match self {
            OpOutcome::Registered => "ok",
            OpOutcome::Superseded => "superseded",
            OpOutcome::AlreadyExpired => "expired",
            OpOutcome::Removed => "ok",
            OpOutcome::NotOwner => "not_owner",
            OpOutcome::Absent => "absent",
        }
    }
}

/// Tally of an unregister batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Records removed (they belonged to the closing connection).
    pub removed: usize,
    /// Records left alone because a newer connection owns them.
    pub not_owner: usize,
    /// Devices that had no record (already gone or expired).
    pub absent: usize,
}

impl BatchOutcome {
    /// Everything skipped: `not_owner + absent`.
    pub fn skipped(&self) -> usize {
        self.not_owner + self.absent
    }
}

/// Checks a user or device id.
fn check_id(what: &str, id: &str) -> Result<(), RegistryError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(RegistryError::InvalidInput(format!(
            "{what} id must be 1..={MAX_ID_LEN} bytes, got {} bytes",
            id.len()
        )));
    }
    Ok(())
}

/// Checks an operation before it is sent: ids present and short enough, the node id
/// storable, the expiry no further than [`MAX_RECORD_LIFETIME_MS`] after `now_ms`.
pub(crate) fn validate(op: OpRef<'_>, now_ms: u64) -> Result<(), RegistryError> {
    match op {
        OpRef::Register(r) => {
            check_id("user", &r.user)?;
            check_id("device", &r.device)?;
            validate_node_id(&r.record.node_id)
                .map_err(|e| RegistryError::InvalidInput(e.to_string()))?;
            if r.record.expires_at_ms > now_ms.saturating_add(MAX_RECORD_LIFETIME_MS) {
                return Err(RegistryError::InvalidInput(format!(
                    "expires_at_ms {} is more than {MAX_RECORD_LIFETIME_MS} ms after now ({now_ms})",
                    r.record.expires_at_ms
                )));
            }
            Ok(())
        }
        OpRef::Unregister(u) => {
            check_id("user", &u.user)?;
            check_id("device", &u.device)
        }
    }
}

/// Checks an edge entry: node id storable, host non-empty without `|`, at least one shard.
pub(crate) fn validate_edge(info: &EdgeInfo) -> Result<(), RegistryError> {
    validate_node_id(&info.node_id).map_err(|e| RegistryError::InvalidInput(e.to_string()))?;
    if info.delivery_host.is_empty() || info.delivery_host.contains('|') {
        return Err(RegistryError::InvalidInput(format!(
            "delivery host {:?} must be non-empty without '|'",
            info.delivery_host
        )));
    }
    if info.shards == 0 {
        return Err(RegistryError::InvalidInput(
            "an edge needs at least one shard".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(user: &str, device: &str, node: &str, expires: u64) -> Registration {
        Registration {
            user: user.into(),
            device: device.into(),
            record: RegistryRecord {
                node_id: node.into(),
                shard: 0,
                conn_nonce: 1,
                expires_at_ms: expires,
            },
        }
    }

    #[test]
    fn validation_refuses_bad_input_with_reasons() {
        let now = 1_000;
        assert!(validate(OpRef::Register(&reg("u", "d", "n", 2_000)), now).is_ok());
        for bad in [
            reg("", "d", "n", 2_000),
            reg("u", "", "n", 2_000),
            reg(&"u".repeat(MAX_ID_LEN + 1), "d", "n", 2_000),
            reg("u", "d", "a|b", 2_000),
            reg("u", "d", "n", now + MAX_RECORD_LIFETIME_MS + 1),
        ] {
            let err = validate(OpRef::Register(&bad), now).unwrap_err();
            assert!(err.is_permanent(), "{err}");
        }
        let unreg = Unregistration {
            user: "u".into(),
            device: String::new(),
            conn_nonce: 1,
        };
        assert!(validate(OpRef::Unregister(&unreg), now).is_err());
    }

    #[test]
    fn edge_validation() {
        let good = EdgeInfo {
            node_id: "edge-1".into(),
            delivery_host: "127.0.0.1".into(),
            delivery_base_port: 7000,
            shards: 2,
            heartbeat_ms: 5,
        };
        assert!(validate_edge(&good).is_ok());
        for bad in [
            EdgeInfo {
                node_id: "a|b".into(),
                ..good.clone()
            },
            EdgeInfo {
                delivery_host: String::new(),
                ..good.clone()
            },
            EdgeInfo {
                delivery_host: "h|x".into(),
                ..good.clone()
            },
            EdgeInfo {
                shards: 0,
                ..good.clone()
            },
        ] {
            assert!(validate_edge(&bad).is_err(), "{bad:?}");
        }
    }
}
