//! The value stored per edge node in `herald:edges`.
//!
//! Field = node id; value = `1|<delivery_host>|<delivery_base_port>|<shards>|<heartbeat_ms>`
//! (version, then decimal numbers; the host must not contain `|`, IPv6 literals are fine).
//! The heartbeat script parses the last part to prune entries of long-dead nodes, so the
//! heartbeat time stays last.

use crate::{EdgeInfo, RegistryError};

/// How long after its last heartbeat an edge entry is deleted by the next heartbeat of any
/// node: 1 hour. Readers already ignore entries older than a few heartbeat intervals; this
/// only keeps the hash from growing with every node that ever existed.
pub const EDGE_PRUNE_AFTER_MS: u64 = 3_600_000;

/// The stored value of an edge entry (the node id is the field, not part of the value).
pub fn encode_edge(info: &EdgeInfo) -> String {
    format!(
        "1|{}|{}|{}|{}",
        info.delivery_host, info.delivery_base_port, info.shards, info.heartbeat_ms
    )
}

/// Parses an edge entry's value back into an [`EdgeInfo`] for `node_id`.
pub fn decode_edge(node_id: &str, value: &str) -> Result<EdgeInfo, RegistryError> {
    let bad =
        |what: &str| RegistryError::Protocol(format!("edge entry {node_id:?}: {what}: {value:?}"));
    let parts: Vec<&str> = value.split('|').collect();
    let [version, host, port, shards, heartbeat] = parts[..] else {
        return Err(bad("expected 5 '|'-separated parts"));
    };
    if version != "1" {
        return Err(bad("unknown version"));
    }
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    Ok(EdgeInfo {
        node_id: node_id.to_owned(),
        delivery_host: host.to_owned(),
        delivery_base_port: number(port)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| bad("port"))?,
        shards: number(shards)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| bad("shards"))?,
        heartbeat_ms: number(heartbeat).ok_or_else(|| bad("heartbeat"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_documents_the_layout() {
        let info = EdgeInfo {
            node_id: "edge-a".into(),
            delivery_host: "::1".into(),
            delivery_base_port: 7100,
            shards: 8,
            heartbeat_ms: 1_700_000_000_000,
        };
        let value = encode_edge(&info);
        assert_eq!(value, "1|::1|7100|8|1700000000000");
        assert_eq!(decode_edge("edge-a", &value), Ok(info));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "2|h|1|1|1",
            "1||1|1|1",
            "1|h|70000|1|1",
            "1|h|1|x|1",
            "1|h|1|1|",
            "1|h|1|1|1|1",
            "1|h|-1|1|1",
        ] {
            assert!(decode_edge("n", bad).is_err(), "accepted {bad:?}");
        }
    }
}
