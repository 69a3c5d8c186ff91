//! Session state in Redis.
//!
//! Key layout (all keys expire with the session's retention):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `weir:s:<id>` | hash | `status`, `agent`, `created`, `updated`, `last_seq`, `end_reason`, `producer`, `acked`, `control` |
//! | `weir:lease:<id>` | string | node id of the producer that owns the run; `PX` = lease time |
//! | `weir:leases` | sorted set | session ids scored by lease deadline (ms, Redis clock): what a reaper scans |
//!
//! Every change that reads before it writes is one Lua script, so it is
//! atomic; lease deadlines use the Redis server's clock, not the nodes'.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use weir_protocol::{ControlOp, EndReason, SessionId, Status};

use crate::{unix_ms, SessionState, SessionStore, StoreError, Update};

const LEASES: &str = "weir:leases";

fn state_key(id: &SessionId) -> String {
    format!("weir:s:{id}")
}

fn lease_key(id: &SessionId) -> String {
    format!("weir:lease:{id}")
}

/// Redis server time in milliseconds, inside a script.
const NOW_MS: &str =
    "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)";

pub struct RedisStore {
    conn: ConnectionManager,
    /// Set by a failed operation; the next success counts a reconnect.
    failing: std::sync::atomic::AtomicBool,
    retention: Duration,
    scripts: Scripts,
}

struct Scripts {
    update: Script,
    ack: Script,
    control: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    expired: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            update: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                local cur = redis.call('HGET', KEYS[1], 'status')
                local ended = cur == 'completed' or cur == 'cancelled' or cur == 'failed'
                if ARGV[3] ~= '' and not ended then redis.call('HSET', KEYS[1], 'status', ARGV[3]) end
                if ARGV[4] ~= '' then
                  local l = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
                  if tonumber(ARGV[4]) > l then redis.call('HSET', KEYS[1], 'last_seq', ARGV[4]) end
                end
                if ARGV[5] ~= '' and not ended then redis.call('HSET', KEYS[1], 'end_reason', ARGV[5]) end
                if ARGV[6] == '-' then redis.call('HDEL', KEYS[1], 'producer')
                elseif ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'producer', ARGV[6]) end
                redis.call('HSET', KEYS[1], 'updated', ARGV[2])
                redis.call('PEXPIRE', KEYS[1], ARGV[1])
                return 1",
            ),
            ack: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                local a = tonumber(redis.call('HGET', KEYS[1], 'acked') or '0')
                if tonumber(ARGV[1]) > a then redis.call('HSET', KEYS[1], 'acked', ARGV[1]) end
                return 1",
            ),
            control: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                redis.call('HSET', KEYS[1], 'control', ARGV[1])
                return 1",
            ),
            acquire: Script::new(&format!(
                r"{NOW_MS}
                if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
                  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
                  return 1
                end
                return 0"
            )),
            renew: Script::new(&format!(
                r"{NOW_MS}
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                  redis.call('PEXPIRE', KEYS[1], ARGV[2])
                  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
                  return 1
                end
                return 0"
            )),
            release: Script::new(
                r"
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                  redis.call('DEL', KEYS[1])
                  redis.call('ZREM', KEYS[2], ARGV[2])
                end
                return 1",
            ),
            expired: Script::new(&format!(
                r"{NOW_MS}
                return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])"
            )),
        }
    }
}

impl RedisStore {
    /// Connects (retrying in the background on failures, as Redis comes and goes).
    pub async fn connect(url: &str, retention: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(RedisStore {
            conn,
            failing: std::sync::atomic::AtomicBool::new(false),
            retention,
            scripts: Scripts::new(),
        })
    }

    /// Runs a lease script (take or extend); true if it succeeded.
    async fn lease_script(
        &self,
        script: &Script,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let got: i64 = script
            .key(lease_key(id))
            .key(LEASES)
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .arg(id.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        self.recovered();
        Ok(got == 1)
    }

    fn note(&self, e: redis::RedisError) -> StoreError {
        self.failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        StoreError::unavailable(e)
    }

    /// Counts a reconnect when an operation succeeds after failures (called
    /// on the paths every node takes regularly: reads, updates, leases, pings).
    fn recovered(&self) {
        if self
            .failing
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            metrics::counter!(weir_telemetry::names::STORE_RECONNECTS).increment(1);
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.retention.as_millis().max(1) as u64
    }
}

fn field<T: std::str::FromStr>(
    map: &std::collections::HashMap<String, String>,
    k: &str,
) -> Option<T> {
    map.get(k).and_then(|v| v.parse().ok())
}

fn decode(
    id: &SessionId,
    map: std::collections::HashMap<String, String>,
) -> Result<SessionState, StoreError> {
    let status = map
        .get("status")
        .and_then(|s| Status::parse(s))
        .ok_or_else(|| StoreError::Corrupt(format!("session {id} has no valid status")))?;
    Ok(SessionState {
        id: id.clone(),
        status,
        agent: map.get("agent").cloned().unwrap_or_default(),
        created: field(&map, "created").unwrap_or(0),
        updated: field(&map, "updated").unwrap_or(0),
        last_seq: field(&map, "last_seq").unwrap_or(0),
        end_reason: map.get("end_reason").and_then(|s| EndReason::parse(s)),
        producer: map.get("producer").cloned(),
        acked: field(&map, "acked").unwrap_or(0),
        control: map.get("control").and_then(|s| ControlOp::parse(s)),
    })
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        let key = state_key(&state.id);
        let mut conn = self.conn.clone();
        let created: bool = conn
            .hset_nx(&key, "status", state.status.as_str())
            .await
            .map_err(|e| self.note(e))?;
        if !created {
            return Ok(false);
        }
        let fields = [
            ("agent", state.agent.clone()),
            ("created", state.created.to_string()),
            ("updated", state.updated.to_string()),
            ("last_seq", state.last_seq.to_string()),
            ("acked", state.acked.to_string()),
        ];
        redis::pipe()
            .hset_multiple(&key, &fields)
            .pexpire(&key, self.ttl_ms() as i64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.note(e))?;
        Ok(true)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        let map: std::collections::HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(state_key(id))
            .await
            .map_err(|e| self.note(e))?;
        self.recovered();
        if map.is_empty() {
            return Ok(None);
        }
        decode(id, map).map(Some)
    }

    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError> {
        let producer = match &update.producer {
            None => String::new(),
            Some(None) => "-".to_owned(),
            Some(Some(p)) => p.clone(),
        };
        let done: i64 = self
            .scripts
            .update
            .key(state_key(id))
            .arg(self.ttl_ms())
            .arg(unix_ms())
            .arg(update.status.map(Status::as_str).unwrap_or(""))
            .arg(update.last_seq.map(|s| s.to_string()).unwrap_or_default())
            .arg(update.end_reason.map(EndReason::as_str).unwrap_or(""))
            .arg(producer)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        self.recovered();
        Ok(done == 1)
    }

    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .ack
            .key(state_key(id))
            .arg(seq)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        Ok(())
    }

    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .control
            .key(state_key(id))
            .arg(op.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_script(&self.scripts.acquire, id, owner, ttl)
            .await
    }

    async fn renew_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.lease_script(&self.scripts.renew, id, owner, ttl).await
    }

    async fn release_lease(&self, id: &SessionId, owner: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .release
            .key(lease_key(id))
            .key(LEASES)
            .arg(owner)
            .arg(id.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        Ok(())
    }

    async fn expired_leases(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        let ids: Vec<String> = self
            .scripts
            .expired
            .key(LEASES)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        self.recovered();
        Ok(ids
            .iter()
            .filter_map(|s| SessionId::parse(s).ok())
            .collect())
    }

    async fn forget_lease(&self, id: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .zrem(LEASES, id.as_str())
            .del(lease_key(id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.note(e))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.note(e))?;
        self.recovered();
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("PING answered {pong}")))
        }
    }
}
