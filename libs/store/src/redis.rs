//! Session state in Redis.
//!
//! Key layout (all keys expire with the session's retention):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `weir:s:<id>` | hash | `status`, `agent`, `created`, `updated`, `last_seq`, `end_reason`, `producer`, `acked`, `control`, `pace`, `ix` (its index entry); `unknown` (comma-separated field names) in a state rebuilt from the log |
//! | `weir:idx` | sorted set | every session's index entry `<created ms, 13 digits>:<id>`, all at score 0 (ordered as strings: by creation): `GET /v1/sessions` |
//! | `weir:idx:<status>` | sorted set | the same, per status; the update script moves an entry when the status changes |
//!
//! Every change that reads before it writes is one Lua script, so it is
//! atomic. (Leases are not here: they are on the bus, `weir_bus::lease`.)
//!
//! While Redis cannot be reached, operations fail at once (see
//! [`crate::health`]) and a probe pings it every [`PROBE_EVERY`] until it
//! answers; the connection manager reconnects by itself when Redis is back
//! on the same address.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use weir_protocol::{ControlOp, EndReason, SessionId, Status};

use crate::health::{self, Health};
use crate::{unix_ms, Page, SessionState, SessionStore, StoreError, Update};

/// How often an unreachable Redis is tried again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The session index: sorted sets of index entries (`<created>:<id>`, all at
/// score 0, so ordered as strings), one of every session and one per status.
const INDEX: &str = "weir:idx";

fn state_key(id: &SessionId) -> String {
    format!("weir:s:{id}")
}

pub struct RedisStore {
    shared: Arc<Shared>,
    retention: Duration,
    scripts: Scripts,
}

/// What the store and its probe share.
struct Shared {
    conn: ConnectionManager,
    health: Health,
}

struct Scripts {
    create: Script,
    update: Script,
    ack: Script,
    control: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            // ARGV: ttl, then field/value pairs.
            // ARGV: ttl, index entry, entries older than this are dropped
            // from the index, status, then field/value pairs.
            create: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
                redis.call('HSET', KEYS[1], 'ix', ARGV[2], unpack(ARGV, 5))
                redis.call('PEXPIRE', KEYS[1], ARGV[1])
                redis.call('ZADD', 'weir:idx', 0, ARGV[2])
                redis.call('ZADD', 'weir:idx:' .. ARGV[4], 0, ARGV[2])
                for _, k in ipairs({'', ':queued', ':streaming', ':paused', ':completed', ':cancelled', ':failed'}) do
                  redis.call('ZREMRANGEBYLEX', 'weir:idx' .. k, '-', '(' .. ARGV[3])
                end
                return 1",
            ),
            update: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
                local cur = redis.call('HGET', KEYS[1], 'status')
                local ended = cur == 'completed' or cur == 'cancelled' or cur == 'failed'
                if ARGV[3] ~= '' and not ended and ARGV[3] ~= cur then
                  redis.call('HSET', KEYS[1], 'status', ARGV[3])
                  local ix = redis.call('HGET', KEYS[1], 'ix')
                  if ix then
                    redis.call('ZREM', 'weir:idx:' .. (cur or ''), ix)
                    redis.call('ZADD', 'weir:idx:' .. ARGV[3], 0, ix)
                  end
                end
                if ARGV[4] ~= '' then
                  local l = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
                  if tonumber(ARGV[4]) > l then redis.call('HSET', KEYS[1], 'last_seq', ARGV[4]) end
                end
                if ARGV[5] ~= '' and not ended then redis.call('HSET', KEYS[1], 'end_reason', ARGV[5]) end
                if ARGV[6] == '-' then redis.call('HDEL', KEYS[1], 'producer')
                elseif ARGV[6] ~= '' and not ended then redis.call('HSET', KEYS[1], 'producer', ARGV[6]) end
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
        }
    }
}

impl RedisStore {
    /// Connects (retrying in the background on failures, as Redis comes and goes).
    pub async fn connect(url: &str, retention: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::unavailable)?;
        let conn = ConnectionManager::new_with_config(client, connection_config())
            .await
            .map_err(StoreError::unavailable)?;
        let shared = Arc::new(Shared {
            conn,
            health: Health::new(Instant::now()),
        });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(RedisStore {
            shared,
            retention,
            scripts: Scripts::new(),
        })
    }

    /// A connection to use, or a failure at once while Redis is down.
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.shared.admit()
    }

    /// An operation's result, noting an outage.
    fn outcome<T>(&self, r: redis::RedisResult<T>) -> Result<T, StoreError> {
        self.shared.outcome(r)
    }

    fn ttl_ms(&self) -> u64 {
        self.retention.as_millis().max(1) as u64
    }
}

/// How the store's connection manager connects, retries and times out.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1))
}

impl Shared {
    fn admit(&self) -> Result<ConnectionManager, StoreError> {
        match self.health.down_since() {
            None => Ok(self.conn.clone()),
            Some(since) => Err(StoreError::unavailable(format!(
                "Redis unreachable for {:.1} s (not tried: waiting for the probe)",
                since.elapsed().as_secs_f64()
            ))),
        }
    }

    fn outcome<T>(&self, r: redis::RedisResult<T>) -> Result<T, StoreError> {
        r.map_err(|e| {
            if is_outage(&e) {
                health::report(self.health.failed(Instant::now()), &e);
            }
            StoreError::unavailable(e)
        })
    }
}

/// Errors that say Redis cannot be reached or cannot serve now (as opposed
/// to an error in a script or a reply).
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    e.is_io_error()
        || e.is_unrecoverable_error()
        || matches!(
            e.retry_method(),
            RetryMethod::WaitAndRetry | RetryMethod::RetryImmediately
        )
}

/// Pings Redis every [`PROBE_EVERY`] while it is down, until the store is dropped.
async fn probe(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.health.is_up() {
            continue;
        }
        let pong = redis::cmd("PING")
            .query_async::<String>(&mut shared.conn.clone())
            .await;
        match pong {
            Ok(_) => health::report(shared.health.probed_ok(Instant::now()), &"-"),
            Err(e) => tracing::debug!(error = %e, "Redis still unreachable"),
        }
    }
}

fn field<T: std::str::FromStr>(
    map: &std::collections::HashMap<String, String>,
    k: &str,
) -> Option<T> {
    map.get(k).and_then(|v| v.parse().ok())
}

/// The hash fields of a new session's state.
fn encode(state: &SessionState) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("status", state.status.as_str().to_owned()),
        ("agent", state.agent.clone()),
        ("created", state.created.to_string()),
        ("updated", state.updated.to_string()),
        ("last_seq", state.last_seq.to_string()),
        ("acked", state.acked.to_string()),
    ];
    if let Some(r) = state.end_reason {
        fields.push(("end_reason", r.as_str().to_owned()));
    }
    if let Some(p) = &state.producer {
        fields.push(("producer", p.clone()));
    }
    if let Some(c) = state.control {
        fields.push(("control", c.as_str().to_owned()));
    }
    if state.is_partial() {
        fields.push(("unknown", state.unknown.join(",")));
    }
    if let Some(pace) = state.pace {
        fields.push(("pace", pace.to_string()));
    }
    fields
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
        unknown: map
            .get("unknown")
            .map(|u| {
                u.split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        pace: field(&map, "pace"),
    })
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        let mut call = self.scripts.create.key(state_key(&state.id));
        let oldest = unix_ms().saturating_sub(self.ttl_ms());
        call.arg(self.ttl_ms())
            .arg(state.index_entry())
            .arg(format!("{oldest:013}"))
            .arg(state.status.as_str());
        for (k, v) in encode(state) {
            call.arg(k).arg(v);
        }
        let created: redis::RedisResult<i64> = call.invoke_async(&mut self.conn()?).await;
        Ok(self.outcome(created)? == 1)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        let map: redis::RedisResult<std::collections::HashMap<String, String>> =
            self.conn()?.hgetall(state_key(id)).await;
        let map = self.outcome(map)?;
        if map.is_empty() {
            return Ok(None);
        }
        decode(id, map).map(Some)
    }

    async fn list(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let key = match status {
            Some(s) => format!("{INDEX}:{}", s.as_str()),
            None => INDEX.to_owned(),
        };
        let max = cursor.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let mut conn = self.conn()?;
        let entries: redis::RedisResult<Vec<String>> = redis::cmd("ZREVRANGEBYLEX")
            .arg(&key)
            .arg(&max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await;
        let entries = self.outcome(entries)?;
        let listed: Vec<(&String, SessionId)> = entries
            .iter()
            .filter_map(|e| {
                let id = e
                    .split_once(':')
                    .and_then(|(_, id)| SessionId::parse(id).ok());
                id.map(|id| (e, id))
            })
            .collect();
        let mut pipe = redis::pipe();
        for (_, id) in &listed {
            pipe.hgetall(state_key(id));
        }
        let mut page = Page::default();
        if entries.len() == limit {
            page.next_cursor = entries.last().cloned();
        }
        // An empty pipeline is an error to the client, not an empty answer.
        if listed.is_empty() {
            return Ok(page);
        }
        let maps: redis::RedisResult<Vec<std::collections::HashMap<String, String>>> =
            pipe.query_async(&mut conn).await;
        let mut gone = redis::pipe();
        for ((entry, id), map) in listed.iter().zip(self.outcome(maps)?) {
            if map.is_empty() {
                // Expired: its entries go as they are met.
                gone.zrem(INDEX, *entry).ignore();
                gone.zrem(&key, *entry).ignore();
                continue;
            }
            page.sessions.push(decode(id, map)?);
        }
        let _: redis::RedisResult<()> = gone.query_async(&mut conn).await;
        Ok(page)
    }

    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError> {
        let producer = match &update.producer {
            None => String::new(),
            Some(None) => "-".to_owned(),
            Some(Some(p)) => p.clone(),
        };
        let done: redis::RedisResult<i64> = self
            .scripts
            .update
            .key(state_key(id))
            .arg(self.ttl_ms())
            .arg(unix_ms())
            .arg(update.status.map(Status::as_str).unwrap_or(""))
            .arg(update.last_seq.map(|s| s.to_string()).unwrap_or_default())
            .arg(update.end_reason.map(EndReason::as_str).unwrap_or(""))
            .arg(producer)
            .invoke_async(&mut self.conn()?)
            .await;
        Ok(self.outcome(done)? == 1)
    }

    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError> {
        let done: redis::RedisResult<i64> = self
            .scripts
            .ack
            .key(state_key(id))
            .arg(seq)
            .invoke_async(&mut self.conn()?)
            .await;
        self.outcome(done).map(drop)
    }

    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        let done: redis::RedisResult<i64> = self
            .scripts
            .control
            .key(state_key(id))
            .arg(op.as_str())
            .invoke_async(&mut self.conn()?)
            .await;
        self.outcome(done).map(drop)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.outcome(redis::cmd("PING").query_async(&mut self.conn()?).await)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("PING answered {pong}")))
        }
    }

    fn up_since(&self) -> Option<Instant> {
        self.shared.health.up_since()
    }
}
