//! Session state in Redis: one server, Sentinel or Cluster (protocol.md §3),
//! chosen by the URL ([`url`]); connections and outages in [`conn`].
//!
//! Key layout ([`keys`]). Sessions are spread over [`keys::BUCKETS`]
//! buckets by a hash of their id; `{bNN}` is the bucket's hash tag, so each
//! bucket is one Redis Cluster slot, and all keys expire with the session's
//! retention:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `weir:{bNN}:s:<id>` | hash | `status`, `agent`, `created`, `updated`, `last_seq`, `end_reason`, `producer`, `acked`, `control`, `pace`, `nonce` (the creation's, `RunRequest::nonce`), `ix` (its index entry); `unknown` (comma-separated field names) in a state rebuilt from the log |
//! | `weir:{bNN}:idx` | sorted set | the index entry `<created ms, 13 digits>:<id>` of every session of the bucket, all at score 0 (ordered as strings: by creation) |
//! | `weir:{bNN}:idx:<status>` | sorted set | the same, per status; the update script moves an entry when the status changes |
//!
//! (The state hash also holds `thread` for a run of a thread; the threads'
//! own keys are in [`threads`].)
//!
//! Every change that reads before it writes is one Lua script (`lua/`),
//! and every script touches one bucket, so one slot: it is atomic on every
//! deployment, and a session's entry in the index can never disagree with
//! its state. What spans sessions is read bucket by bucket and merged:
//! `GET /v1/sessions` reads the newest `limit` entries before the cursor
//! from each bucket's index and keeps the newest `limit` of them (an entry
//! orders the same in every bucket, so the cursor pages exactly). That
//! costs [`keys::BUCKETS`] small
//! reads per listing — an operator's request — and nothing per event,
//! where an index of its own slot would need a second, non-atomic write
//! per status change and a repair for when it is lost. (Leases are on the
//! bus: `weir_bus::lease`.)
//!
//! While Redis cannot be reached, operations fail at once (see
//! [`crate::health`]) and a probe tries it every [`PROBE_EVERY`] until it
//! answers; after a Sentinel failover it finds the new master.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use weir_protocol::{ControlOp, EndReason, SessionId, Status};

use crate::{unix_ms, Page, SessionState, SessionStore, StoreError, Update};

mod conn;
pub mod keys;
mod threads;
pub mod url;

pub use conn::{connection_config, PROBE_EVERY};
pub use url::{RedisUrl, UrlError, ACCEPTED_FORMS};

use conn::{Conn, Shared};
use keys::Bucket;

pub struct RedisStore {
    shared: Arc<Shared>,
    retention: Duration,
    scripts: Scripts,
    thread_scripts: threads::Scripts,
}

/// The Lua scripts, each hashed once; Redis keeps them after the first
/// call (`EVALSHA`, loading on `NOSCRIPT`, as after a failover).
struct Scripts {
    create: Script,
    update: Script,
    ack: Script,
    control: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            create: Script::new(include_str!("lua/create.lua")),
            update: Script::new(include_str!("lua/update.lua")),
            ack: Script::new(include_str!("lua/ack.lua")),
            control: Script::new(include_str!("lua/control.lua")),
        }
    }
}

impl RedisStore {
    /// Connects to the deployment `url` names (any form of protocol.md §3);
    /// later outages are retried in the background.
    pub async fn connect(url: &str, retention: Duration) -> Result<RedisStore, StoreError> {
        let url = RedisUrl::parse(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let shared = Shared::connect(&url).await?;
        Ok(RedisStore {
            shared,
            retention,
            scripts: Scripts::new(),
            thread_scripts: threads::Scripts::new(),
        })
    }

    /// A connection to use, or a failure at once while Redis is down.
    fn conn(&self) -> Result<Conn, StoreError> {
        self.shared.admit()
    }

    /// An operation's result, noting an outage.
    fn outcome<T>(&self, r: redis::RedisResult<T>) -> Result<T, StoreError> {
        self.shared.outcome(r)
    }

    fn ttl_ms(&self) -> u64 {
        self.retention.as_millis().max(1) as u64
    }

    /// The newest `limit` entries before `max` in one bucket's index, with
    /// the states they name (`None`: expired, and its entries removed).
    async fn list_bucket(
        &self,
        bucket: Bucket,
        status: Option<Status>,
        limit: usize,
        max: &str,
        mut conn: Conn,
    ) -> redis::RedisResult<Vec<(String, Option<HashMap<String, String>>)>> {
        let key = bucket.index(status);
        let entries: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
            .arg(&key)
            .arg(max)
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        let ids: Vec<Option<SessionId>> = entries.iter().map(|e| entry_id(e)).collect();
        let mut pipe = redis::pipe();
        for id in ids.iter().flatten() {
            pipe.hgetall(keys::state(id));
        }
        // An empty pipeline is an error to the client, not an empty answer.
        let mut maps: Vec<HashMap<String, String>> = if pipe.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        maps.reverse();
        let mut gone = redis::pipe();
        let mut listed = Vec::with_capacity(entries.len());
        for (entry, id) in entries.into_iter().zip(ids) {
            let map = id.and(maps.pop()).filter(|m| !m.is_empty());
            if map.is_none() {
                // Expired (or not an entry): it goes as it is met.
                gone.zrem(bucket.index(None), &entry).ignore();
                gone.zrem(&key, &entry).ignore();
            }
            listed.push((entry, map));
        }
        if !gone.is_empty() {
            let _: redis::RedisResult<()> = gone.query_async(&mut conn).await;
        }
        Ok(listed)
    }
}

/// The session an index entry names.
fn entry_id(entry: &str) -> Option<SessionId> {
    entry
        .split_once(':')
        .and_then(|(_, id)| SessionId::parse(id).ok())
}

fn field<T: std::str::FromStr>(map: &HashMap<String, String>, k: &str) -> Option<T> {
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
    if let Some(thread) = &state.thread {
        fields.push(("thread", thread.to_string()));
    }
    if let Some(nonce) = &state.nonce {
        fields.push(("nonce", nonce.clone()));
    }
    fields
}

fn decode(id: &SessionId, map: HashMap<String, String>) -> Result<SessionState, StoreError> {
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
        thread: map
            .get("thread")
            .and_then(|t| weir_protocol::ThreadId::parse(t).ok()),
        nonce: map.get("nonce").cloned(),
    })
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        let mut call = self.scripts.create.key(keys::state(&state.id));
        call.key(Bucket::of(&state.id).index_keys());
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
        let map: redis::RedisResult<HashMap<String, String>> =
            self.conn()?.hgetall(keys::state(id)).await;
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
        let max = cursor.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let conn = self.conn()?;
        let reads = Bucket::all().map(|b| self.list_bucket(b, status, limit, &max, conn.clone()));
        let mut merged = Vec::new();
        let mut more = false;
        for read in futures::future::join_all(reads).await {
            let listed = self.outcome(read)?;
            // A bucket that filled the page may hold older entries.
            more |= listed.len() == limit;
            merged.extend(listed);
        }
        merged.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        if merged.len() > limit {
            merged.truncate(limit);
            more = true;
        }
        let mut page = Page {
            next_cursor: more
                .then(|| merged.last().map(|(e, _)| e.clone()))
                .flatten(),
            ..Page::default()
        };
        for (entry, map) in merged {
            if let (Some(id), Some(map)) = (entry_id(&entry), map) {
                page.sessions.push(decode(&id, map)?);
            }
        }
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
            .key(keys::state(id))
            .key(Bucket::of(id).index_keys())
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
            .key(keys::state(id))
            .arg(seq)
            .invoke_async(&mut self.conn()?)
            .await;
        self.outcome(done).map(drop)
    }

    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        let done: redis::RedisResult<i64> = self
            .scripts
            .control
            .key(keys::state(id))
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
        self.shared.health().up_since()
    }
}
