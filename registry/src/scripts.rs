//! The registry's Lua scripts, run atomically inside Redis.
//!
//! Each script touches exactly one key, passed as `KEYS[1]`, so it runs on the master owning
//! that key's slot in a cluster. Scripts are loaded once on every primary at connect
//! (`SCRIPT LOAD` through fred's `script_load_cluster`) and called by SHA; a primary that lost
//! its script cache (a promoted replica, a restarted node) answers `NOSCRIPT`, and the caller
//! then reloads and re-sends those calls as plain `EVAL` (see `redis.rs`).
//!
//! The scripts parse record values with one Lua pattern matching the v1 text form
//! (`1|node|shard|nonce|expires`, see `herald_protocol::registry_record`). Values that do not
//! match (a future version) are neither pruned nor counted for the key TTL, only replaced when
//! their device registers again. Nonces are compared as 16-digit hex strings (Lua numbers are
//! doubles and cannot hold a `u64`); expiry times are unix ms, which doubles hold exactly.
//! `docs/registry.md` explains each rule.

/// Register one device.
///
/// `KEYS[1]` = user key; `ARGV` = `now_ms`, device, encoded record, nonce (16 hex digits),
/// `expires_at_ms`. Steps: delete expired fields (prune) — every field while the hash has at
/// most 64, else a random sample of 32 (`HRANDFIELD`), so a register costs
/// O(1) however many devices the user has (a full scan made registering n devices of one
/// user O(n²)); if the record itself has expired, write nothing (`2`); if the device holds a
/// live record of a newer connection (larger nonce), write nothing (`0`); otherwise `HSET` the
/// record (`1`). Finally extend the key TTL to the written record's expiry, never shortening
/// it: `PEXPIRE … GT` when the key has a TTL, a plain `PEXPIRE` when it has none (`GT` treats
/// "no TTL" as infinite and would refuse). Every write extends the TTL to at least its own
/// expiry, so the TTL is always at least the longest live field's.
pub(crate) const REGISTER: &str = r#"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local device = ARGV[2]
local nonce = ARGV[4]
local expires = tonumber(ARGV[5])
local pattern = '^1|[^|]+|%d+|(%x+)|(%d+)$'
local fields
if redis.call('HLEN', key) <= 64 then
  fields = redis.call('HGETALL', key)
else
  fields = redis.call('HRANDFIELD', key, 32, 'WITHVALUES')
end
for i = 1, #fields, 2 do
  local _, e = string.match(fields[i + 1], pattern)
  if e and tonumber(e) <= now then
    redis.call('HDEL', key, fields[i])
  end
end
local current_nonce = nil
local current = redis.call('HGET', key, device)
if current then
  local n, e = string.match(current, pattern)
  if e and tonumber(e) > now then
    current_nonce = n
  end
end
if expires <= now then
  return 2
end
if current_nonce ~= nil and current_nonce > nonce then
  return 0
end
redis.call('HSET', key, device, ARGV[3])
local ttl = expires - now
if redis.call('PTTL', key) == -1 then
  redis.call('PEXPIRE', key, ttl)
else
  redis.call('PEXPIRE', key, ttl, 'GT')
end
return 1
"#;

/// Unregister one connection of a device: compare-and-delete on its nonce.
///
/// `KEYS[1]` = user key; `ARGV` = device, nonce (16 hex digits). Returns `1` when the record
/// belonged to that connection and was deleted, `0` when the device has no record, `-1` when
/// the record belongs to another connection (left alone). Deleting the last field deletes the
/// key.
pub(crate) const UNREGISTER: &str = r#"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  return 0
end
local n = string.match(value, '^1|[^|]+|%d+|(%x+)|%d+$')
if n == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return -1
"#;

/// Heartbeat of one edge node.
///
/// `KEYS[1]` = `herald:edges`; `ARGV` = node id, encoded entry, prune cutoff (unix ms).
/// Writes the entry, then deletes entries whose heartbeat is older than the cutoff.
/// Returns the number of entries pruned.
pub(crate) const EDGE_HEARTBEAT: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local cutoff = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local pruned = 0
for i = 1, #all, 2 do
  local hb = string.match(all[i + 1], '^1|[^|]+|%d+|%d+|(%d+)$')
  if hb and tonumber(hb) < cutoff then
    redis.call('HDEL', KEYS[1], all[i])
    pruned = pruned + 1
  end
end
return pruned
"#;

/// Append one push to its user's history and look the user up, atomically.
///
/// `KEYS` = history stream, epoch key, user (registry) key — all in the user's slot. `ARGV` =
/// history size, ttl ms, candidate epoch (16 hex digits), herald-id, expires-at ms (text,
/// not parsed), device (`''` for all devices), payload. A missing stream or epoch key starts
/// a new history under the candidate epoch. The entry is `XADD`ed with an exact `MAXLEN`,
/// entries older than the ttl (by their id's ms, the server's clock) are trimmed with
/// `XTRIM MINID`, and both keys expire ttl from now. Returns `{epoch, entry id, HGETALL of
/// the user key}`: the look-up is part of the same atomic step, so an edge that registered a
/// connection before reading the history can never miss this push (see `history.rs`).
pub(crate) const HISTORY_APPEND: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], epoch)
end
local id
if ARGV[6] == '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], '*', 'i', ARGV[4], 'x', ARGV[5], 'p', ARGV[7])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], '*', 'i', ARGV[4], 'x', ARGV[5], 'p', ARGV[7], 'd', ARGV[6])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min_ms = now - tonumber(ARGV[2])
if min_ms > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', min_ms)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {epoch, id, redis.call('HGETALL', KEYS[3])}
"#;

/// Read a user's history after a position.
///
/// `KEYS` = history stream, epoch key; `ARGV` = the position's epoch (16 hex digits), its
/// entry id, most entries to return. Returns `{'epoch'}` when the history has another epoch
/// or none, `{'gone'}` when the position's own entry is no longer in the stream (trimmed,
/// expired, lost), else `{'ok', entries}` where `entries` starts with the position's own
/// entry (`XRANGE` from it, inclusive).
pub(crate) const HISTORY_READ: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or epoch ~= ARGV[1] then
  return {'epoch'}
end
local r = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', ARGV[3])
if #r == 0 or r[1][1] ~= ARGV[2] then
  return {'gone'}
end
return {'ok', r}
"#;
