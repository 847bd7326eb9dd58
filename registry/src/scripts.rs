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

/// Apply a batch of register and unregister operations, in order.
///
/// `KEYS[1]` = the first operation's user key (it routes the call and lets a moved slot answer
/// `MOVED`); `ARGV[1]` = `now_ms`, then one group per operation: `r`, user key, device,
/// encoded record, nonce (16 hex digits), `expires_at_ms` — or `u`, user key, device, nonce.
/// Returns one integer per operation (the codes below). The other operations' keys are not
/// declared: a batch holds the operations of one cluster node, whatever their slots, so an
/// edge writes a whole batch to a node with one call (one write and one script run instead of
/// one per connection). Redis lets a script without flags touch undeclared keys of its own
/// node; a key the node does not serve (a stale slot map, a slot being migrated) stops the
/// script with an error, and the caller re-sends each operation of that batch as a batch of
/// its own (every key declared). The script reads every key before it writes anything (the
/// first read each key's first operation needs anyway), so such a batch fails with nothing
/// applied and the re-sent operations report the right outcomes. (Should a batch still fail half-way for another reason, applying its
/// first operations again is harmless: replaying a device's operations in order after any
/// prefix of them gives the same record — newer nonce wins, compare-and-delete.)
///
/// **Register** (`r`): delete expired fields (prune) — every field while the hash has at most
/// 64, else a random sample of 32 (`HRANDFIELD`), so a register costs O(1) however many
/// devices the user has (a full scan made registering n devices of one user O(n²)); if the
/// record itself has expired, write nothing (`2`); if the device holds a live record of a
/// newer connection (larger nonce), write nothing (`0`); otherwise `HSET` the record (`1`).
/// Finally extend the key TTL to the written record's expiry, never shortening it: `PEXPIRE
/// … GT` when the key has a TTL, a plain `PEXPIRE` when it has none (`GT` treats "no TTL" as
/// infinite and would refuse). Every write extends the TTL to at least its own expiry, so
/// the TTL is always at least the longest live field's. A new user (empty hash) costs three
/// commands: `HLEN`, `HSET`, `PEXPIRE`.
///
/// **Unregister** (`u`): compare-and-delete on the nonce. `1` when the record belonged to that
/// connection and was deleted, `0` when the device has no record, `-1` when the record belongs
/// to another connection (left alone). Deleting the last field deletes the key.
pub(crate) const REGISTRY_OPS: &str = r#"
local pattern = '^1|[^|]+|%d+|(%x+)|(%d+)$'

local function register(key, now, device, record, nonce, expires, count)
  if count == nil then
    count = redis.call('HLEN', key)
  end
  local current = nil
  if count > 0 then
    local fields
    if count <= 64 then
      fields = redis.call('HGETALL', key)
    else
      fields = redis.call('HRANDFIELD', key, 32, 'WITHVALUES')
    end
    for i = 1, #fields, 2 do
      local n, e = string.match(fields[i + 1], pattern)
      if e and tonumber(e) <= now then
        redis.call('HDEL', key, fields[i])
      elseif count <= 64 and fields[i] == device then
        current = fields[i + 1]
      end
    end
    if count > 64 then
      current = redis.call('HGET', key, device)
    end
  end
  local current_nonce = nil
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
  redis.call('HSET', key, device, record)
  local ttl = expires - now
  if count == 0 or redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('PEXPIRE', key, ttl, 'GT')
  end
  return 1
end

local function unregister(key, device, nonce, value)
  if value == nil then
    value = redis.call('HGET', key, device)
  end
  if not value then
    return 0
  end
  local n = string.match(value, pattern)
  if n == nonce then
    redis.call('HDEL', key, device)
    return 1
  end
  return -1
end

-- First pass, before any write: each key's first operation reads what it needs (a
-- register the hash's length, an unregister its device's field). A key this node does not
-- serve stops the script here, with nothing applied; a later operation on a key already
-- read reads again itself.
local first = {}
local seen = {}
local i = 2
local j = 0
while i <= #ARGV do
  j = j + 1
  local key = ARGV[i + 1]
  local op = ARGV[i]
  if op == 'r' then
    if not seen[key] then
      first[j] = redis.call('HLEN', key)
    end
    i = i + 6
  elseif op == 'u' then
    if not seen[key] then
      first[j] = redis.call('HGET', key, ARGV[i + 2])
    end
    i = i + 4
  else
    return redis.error_reply('herald registry: unknown operation ' .. tostring(op))
  end
  seen[key] = true
end

local now = tonumber(ARGV[1])
local out = {}
i = 2
j = 0
while i <= #ARGV do
  j = j + 1
  if ARGV[i] == 'r' then
    out[j] = register(ARGV[i + 1], now, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]), first[j])
    i = i + 6
  else
    out[j] = unregister(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], first[j])
    i = i + 4
  end
end
return out
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
