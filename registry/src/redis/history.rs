//! The history operations on Redis: [`scripts::HISTORY_APPEND`] and
//! [`scripts::HISTORY_READ`] through the pipelined script calls of the parent module.

use std::collections::HashMap;

use fred::types::Value;
use herald_protocol::history::{
    epoch_key, history_key, EntryId, HistoryEntry, NotRecovered, Position,
};
use herald_protocol::registry_record::user_key;

use super::{live_locations, RedisRegistry, ScriptCall};
use crate::history::{Append, Appended, HistorySettings, Recovery, MAX_HISTORY_SIZE};
use crate::RegistryError;

fn protocol(what: &str) -> RegistryError {
    RegistryError::Protocol(format!("history script returned {what}"))
}

/// The bytes of a bulk string.
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// Decodes one `XRANGE` element: `[id, [field, value, …]]`.
fn entry(v: &Value) -> Option<HistoryEntry> {
    let pair = array(v)?;
    let id: EntryId = text(pair.first()?)?.parse().ok()?;
    let fields = array(pair.get(1)?)?;
    let mut e = HistoryEntry {
        id,
        message_id: String::new(),
        device: None,
        expires_at_ms: herald_protocol::delivery::NEVER_EXPIRES,
        payload: Vec::new(),
    };
    for kv in fields.chunks(2) {
        let [k, v] = kv else { return None };
        match text(k)? {
            "i" => e.message_id = text(v)?.to_string(),
            "x" => e.expires_at_ms = text(v)?.parse().ok()?,
            "d" => e.device = Some(text(v)?.to_string()),
            "p" => e.payload = bytes(v)?.to_vec(),
            _ => {}
        }
    }
    Some(e)
}

impl RedisRegistry {
    /// Appends each push to its user's history and reads the user's registry record in the
    /// same script call; one pipeline for the batch. Calls for one user run in the order
    /// given (one slot, one connection).
    pub(crate) async fn append_history(
        &self,
        appends: &[Append<'_>],
        settings: &HistorySettings,
        now_ms: u64,
    ) -> Vec<Result<Appended, RegistryError>> {
        let size = settings.size.min(MAX_HISTORY_SIZE).to_string();
        let ttl = settings.ttl_ms().to_string();
        let calls: Vec<ScriptCall<'_>> = appends
            .iter()
            .map(|a| ScriptCall {
                script: &self.inner.scripts.history_append,
                keys: vec![history_key(a.user), epoch_key(a.user), user_key(a.user)],
                args: vec![
                    size.as_str().into(),
                    ttl.as_str().into(),
                    Position::epoch_hex(fastrand::u64(..)).into(),
                    a.message_id.into(),
                    a.expires_at_ms.to_string().into(),
                    a.device.unwrap_or("").into(),
                    Value::Bytes(a.payload.to_vec().into()),
                ],
            })
            .collect();
        self.scripts(&calls)
            .await
            .into_iter()
            .zip(appends)
            .map(|(r, a)| {
                let v = r?;
                let parts = array(&v).ok_or_else(|| protocol("a non-array"))?;
                let [epoch, id, fields] = parts else {
                    return Err(protocol("the wrong number of parts"));
                };
                let epoch = text(epoch)
                    .and_then(|e| u64::from_str_radix(e, 16).ok())
                    .ok_or_else(|| protocol("a bad epoch"))?;
                let id: EntryId = text(id)
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| protocol("a bad entry id"))?;
                let mut hash = HashMap::new();
                for kv in array(fields)
                    .ok_or_else(|| protocol("bad fields"))?
                    .chunks(2)
                {
                    if let [k, v] = kv {
                        if let (Some(k), Some(v)) = (text(k), text(v)) {
                            hash.insert(k.to_string(), v.to_string());
                        }
                    }
                }
                Ok(Appended {
                    position: Position { epoch, id },
                    locations: live_locations(a.user, hash, now_ms),
                })
            })
            .collect()
    }

    /// What came after `from` in `user`'s history.
    pub(crate) async fn read_history(
        &self,
        user: &str,
        from: &Position,
    ) -> Result<Recovery, RegistryError> {
        let call = ScriptCall {
            script: &self.inner.scripts.history_read,
            keys: vec![history_key(user), epoch_key(user)],
            args: vec![
                Position::epoch_hex(from.epoch).into(),
                from.id.to_string().into(),
                (i64::from(MAX_HISTORY_SIZE) + 1).into(),
            ],
        };
        let v = self
            .scripts(std::slice::from_ref(&call))
            .await
            .pop()
            .ok_or_else(|| protocol("nothing"))??;
        let parts = array(&v).ok_or_else(|| protocol("a non-array"))?;
        match parts.first().and_then(text) {
            Some("epoch") => Ok(Recovery::NotRecovered(NotRecovered::EpochChanged)),
            Some("gone") => Ok(Recovery::NotRecovered(NotRecovered::TooOld)),
            Some("ok") => {
                let raw = parts
                    .get(1)
                    .and_then(array)
                    .ok_or_else(|| protocol("no entries"))?;
                let mut entries = raw
                    .iter()
                    .map(|e| entry(e).ok_or_else(|| protocol("an undecodable entry")))
                    .collect::<Result<Vec<_>, _>>()?;
                // The first entry is the position's own.
                entries.remove(0);
                let last = entries.last().map_or(from.id, |e| e.id);
                Ok(Recovery::Recovered {
                    epoch: from.epoch,
                    entries,
                    last,
                })
            }
            _ => Err(protocol("an unknown answer")),
        }
    }
}
