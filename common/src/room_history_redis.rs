//! The Redis room history, on one Redis or a Redis Cluster: **one stream per room**,
//! `{prefix}history:{room}`, and every step is one Lua script on that one key, so it runs atomically and
//! never spans two hash slots.
//!
//! | what | where |
//! |---|---|
//! | a message at offset `o` of epoch `e` | the stream entry with ID `e-o`, fields `o` (op), `b` (body), and for a message from the queue `s` (scope) and `p` (position) |
//! | the room's epoch and last offset | the stream's last generated ID (kept when entries are trimmed, even to none) |
//! | the oldest offset kept | the stream's first entry ID (`XINFO STREAM` `recorded-first-entry-id`) |
//! | size bound | `XADD … MAXLEN size` (exact) |
//! | TTL | `PEXPIRE ttl` after every append (and when a read starts a new epoch) |
//!
//! A new epoch is Redis's clock in microseconds (`TIME`), and always above the epoch it replaces on a
//! reset. When the key expires or Redis loses it, the next read or append starts such a new epoch, so a
//! client's old position is answered "epoch changed" rather than matched against unrelated offsets. An
//! empty epoch (started by a read) is a stream whose only entry was trimmed away: its last ID `e-0` stays.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use crate::redis_conn::RedisConn;
use crate::room_history::{Entry, HistoryError, NewEntry, Read, RoomHistory};

/// Helpers every script starts with: `position()` -> epoch, last offset, first offset (nil if no key);
/// `new_epoch(prev)`; `create_empty(epoch)`.
const PRELUDE: &str = r"
local key = KEYS[1]
local function fmt(n) return string.format('%.0f', n) end
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function position()
  if redis.call('EXISTS', key) == 0 then return nil end
  local info = redis.call('XINFO', 'STREAM', key)
  local last, first_id, len
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1]
    elseif info[i] == 'recorded-first-entry-id' then first_id = info[i + 1]
    elseif info[i] == 'length' then len = info[i + 1] end
  end
  local epoch, top = split(last)
  local first = top + 1
  if len > 0 then
    if not first_id then first_id = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1][1] end
    local _, f = split(first_id)
    first = f
  end
  return epoch, top, first
end
local function new_epoch(prev)
  local t = redis.call('TIME')
  local e = (tonumber(t[1]) * 1000000 + tonumber(t[2])) % 9007199254740992
  if prev and e <= prev then e = prev + 1 end
  return e
end
local function create_empty(epoch)
  redis.call('XADD', key, fmt(epoch) .. '-0', 'o', '0')
  redis.call('XTRIM', key, 'MAXLEN', 0)
end
";

/// ARGV: size, ttl ms, reset (0/1), then per message op, body, scope ('' = none), position.
/// Returns {epoch, offset...}.
const APPEND: &str = r"
local size, ttl, reset = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local epoch, top = position()
if epoch and reset then
  redis.call('DEL', key)
  epoch, top = new_epoch(epoch), 0
  create_empty(epoch)
elseif not epoch then
  epoch, top = new_epoch(nil), 0
  create_empty(epoch)
end
local fetched, last_scope, last_pos = false, nil, nil
local function source_of(fields)
  local s, p
  for i = 1, #fields, 2 do
    if fields[i] == 's' then s = fields[i + 1] elseif fields[i] == 'p' then p = tonumber(fields[i + 1]) end
  end
  return s, p
end
local out = {epoch}
for i = 4, #ARGV, 4 do
  local op, body, scope, pos = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local found = nil
  if scope ~= '' then
    if not fetched then
      fetched = true
      local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
      if last then last_scope, last_pos = source_of(last[2]) end
    end
    if last_scope == scope and last_pos >= pos then
      for _, e in ipairs(redis.call('XREVRANGE', key, '+', '-', 'COUNT', size)) do
        local s, p = source_of(e[2])
        if s == scope and p == pos then local _, o = split(e[1]); found = o; break end
      end
    end
  end
  if found then
    table.insert(out, found)
  else
    top = top + 1
    local id = fmt(epoch) .. '-' .. fmt(top)
    if scope ~= '' then
      redis.call('XADD', key, 'MAXLEN', size, id, 'o', op, 'b', body, 's', scope, 'p', fmt(pos))
      fetched, last_scope, last_pos = true, scope, pos
    else
      redis.call('XADD', key, 'MAXLEN', size, id, 'o', op, 'b', body)
      fetched, last_scope, last_pos = true, nil, nil
    end
    table.insert(out, top)
  end
end
redis.call('PEXPIRE', key, ttl)
return out
";

/// ARGV: ttl ms, epoch, offset, max bytes. Returns {{epoch, top, first, truncated}, {offset...}, {op...},
/// {body...}}.
const READ: &str = r"
local ttl, want, off, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local epoch, top, first = position()
if not epoch then
  epoch, top, first = new_epoch(nil), 0, 1
  create_empty(epoch)
  redis.call('PEXPIRE', key, ttl)
end
local head, offsets, ops, bodies = {epoch, top, first, 0}, {}, {}, {}
if want ~= epoch or off >= top or off + 1 < first then return {head, offsets, ops, bodies} end
local bytes = 0
for _, e in ipairs(redis.call('XRANGE', key, fmt(epoch) .. '-' .. fmt(off + 1), '+')) do
  local op, body
  for i = 1, #e[2], 2 do
    if e[2][i] == 'o' then op = tonumber(e[2][i + 1]) elseif e[2][i] == 'b' then body = e[2][i + 1] end
  end
  bytes = bytes + #body
  if bytes > max and #offsets > 0 then head[4] = 1; break end
  local _, o = split(e[1])
  table.insert(offsets, o); table.insert(ops, op); table.insert(bodies, body)
end
return {head, offsets, ops, bodies}
";

pub struct RedisHistory {
    conn: RedisConn,
    prefix: String,
    size: usize,
    ttl: Duration,
    append: Script,
    read: Script,
}

fn unavailable(e: redis::RedisError) -> HistoryError {
    crate::engine_errors::count("redis");
    HistoryError::Unavailable(e.to_string())
}

impl RedisHistory {
    /// The history on `conn`, under `prefix`, keeping `size` messages per room for `ttl` after the last.
    pub fn new(conn: RedisConn, prefix: &str, size: usize, ttl: Duration) -> RedisHistory {
        RedisHistory {
            conn,
            prefix: prefix.to_string(),
            size: size.max(1),
            ttl,
            append: Script::new(&format!("{PRELUDE}{APPEND}")),
            read: Script::new(&format!("{PRELUDE}{READ}")),
        }
    }

    fn key(&self, room: &str) -> String {
        format!("{}history:{room}", self.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis().max(1) as u64
    }
}

#[async_trait]
impl RoomHistory for RedisHistory {
    async fn append(
        &self,
        room: &str,
        entries: &[NewEntry],
        reset: bool,
    ) -> Result<(u64, Vec<u64>), HistoryError> {
        let mut inv = self.append.key(self.key(room));
        inv.arg(self.size).arg(self.ttl_ms()).arg(u8::from(reset));
        for e in entries {
            inv.arg(e.op).arg(&e.body[..]);
            match &e.source {
                Some(s) => inv.arg(&s.scope).arg(s.position),
                None => inv.arg("").arg(0),
            };
        }
        let mut conn = self.conn.clone();
        let out: Vec<u64> = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        let Some((&epoch, offsets)) = out.split_first() else {
            return Err(HistoryError::Unavailable("empty reply to an append".into()));
        };
        Ok((epoch, offsets.to_vec()))
    }

    async fn read(
        &self,
        room: &str,
        epoch: u64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Read, HistoryError> {
        let mut conn = self.conn.clone();
        type Reply = (Vec<u64>, Vec<u64>, Vec<i32>, Vec<Vec<u8>>);
        let (head, offsets, ops, bodies): Reply = self
            .read
            .key(self.key(room))
            .arg(self.ttl_ms())
            .arg(epoch)
            .arg(offset)
            .arg(max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let &[epoch, top, first, truncated] = &head[..] else {
            return Err(HistoryError::Unavailable(format!(
                "unexpected reply to a read: {head:?}"
            )));
        };
        Ok(Read {
            epoch,
            top,
            first,
            entries: offsets
                .into_iter()
                .zip(ops)
                .zip(bodies)
                .map(|((offset, op), body)| Entry { offset, op, body })
                .collect(),
            truncated: truncated == 1,
        })
    }

    async fn health(&self) -> Result<(), HistoryError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::*;
    use crate::room_history_conformance::{SIZE, run};

    fn single_url() -> String {
        std::env::var("IMCLOUD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    }

    fn cluster_urls() -> Vec<String> {
        std::env::var("IMCLOUD_TEST_REDIS_CLUSTER_URLS")
            .unwrap_or_else(|_| {
                "redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/".into()
            })
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Deletes the test's keys on every node it may have written to.
    async fn clean(urls: &[String], prefix: &str) {
        for url in urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
            for key in keys {
                let _: () = conn.del(key).await.unwrap();
            }
        }
    }

    fn prefix() -> String {
        format!("{}:", crate::test_name::unique_test_name("imcloud-test"))
    }

    #[tokio::test]
    async fn conformance_on_a_single_redis() {
        let conn = RedisConn::single(&single_url())
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is needed for this test: {e}", single_url()));
        let (prefix, ttl) = (prefix(), Duration::from_secs(1));
        run(&RedisHistory::new(conn, &prefix, SIZE, ttl), ttl).await;
        clean(&[single_url()], &prefix).await;
    }

    #[tokio::test]
    async fn conformance_on_a_redis_cluster() {
        let conn = RedisConn::cluster(&cluster_urls())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a Redis Cluster at {:?} is needed for this test: {e}",
                    cluster_urls()
                )
            });
        let (prefix, ttl) = (prefix(), Duration::from_secs(1));
        run(&RedisHistory::new(conn, &prefix, SIZE, ttl), ttl).await;
        clean(&cluster_urls(), &prefix).await;
    }

    #[tokio::test]
    async fn a_lost_key_starts_a_new_epoch() {
        let conn = RedisConn::single(&single_url()).await.unwrap();
        let prefix = prefix();
        let h = RedisHistory::new(conn.clone(), &prefix, 4, Duration::from_secs(60));
        let (e1, _) = h
            .append(
                "live://1",
                &[NewEntry {
                    op: 1000,
                    body: b"x".to_vec(),
                    source: None,
                }],
                false,
            )
            .await
            .unwrap();
        // As if Redis restarted without persistence, or the key was evicted.
        let mut c = conn.clone();
        let _: () = c.del(h.key("live://1")).await.unwrap();
        let r = h.read("live://1", e1, 1, 1 << 20).await.unwrap();
        assert_ne!(r.epoch, e1);
        assert_eq!(r.top, 0);
        clean(&[single_url()], &prefix).await;
    }
}
