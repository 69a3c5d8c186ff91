//! Threads in Redis (protocol.md §9). A thread's keys share its bucket's
//! hash tag ([`keys::thread`], [`keys::thread_run`]), so every script
//! touches one slot and is atomic on every deployment:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `weir:{bNN}:t:<T>` | hash | `agent`, `input` (JSON), `created` |
//! | `weir:{bNN}:t:<T>:runs` | list | `<created ms, 13 digits>:<session>` per run, oldest first |
//! | `weir:{bNN}:t:<T>:alias` | hash | client run id → session |
//! | `weir:{bNN}:t:<T>:r:<S>` | string | the run's record (JSON: messages, tools, message_id) |
//!
//! They expire the retention after the thread's last run started. A Redis
//! that comes back empty has forgotten its threads: they read as unknown
//! (404) until created again with the same id, while their runs' sessions
//! go on streaming from the log (docs/redis-outage.md).

use std::collections::HashMap;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use serde_json::{Map, Value};
use weir_protocol::{SessionId, ThreadId};

use super::keys;
use super::RedisStore;
use crate::thread::{RunEntry, RunRecord, Started, Thread, ThreadRecord, ThreadStore};
use crate::StoreError;

/// The thread scripts (`lua/thread_*.lua`).
pub(super) struct Scripts {
    create: Script,
    start: Script,
    withdraw: Script,
    alias: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            create: Script::new(include_str!("lua/thread_create.lua")),
            start: Script::new(include_str!("lua/thread_start.lua")),
            withdraw: Script::new(include_str!("lua/thread_withdraw.lua")),
            alias: Script::new(include_str!("lua/thread_alias.lua")),
        }
    }
}

/// A run's place in its thread's list: `<created, 13 digits>:<session>`.
fn run_entry(run: &RunRecord) -> String {
    crate::index_entry(run.created, &run.session)
}

fn decode_thread(
    id: &ThreadId,
    map: HashMap<String, String>,
    runs: Vec<String>,
) -> Result<ThreadRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("thread {id}: {what}"));
    let input: Map<String, Value> = match map.get("input") {
        Some(json) => serde_json::from_str(json).map_err(|_| corrupt("input is not an object"))?,
        None => Map::new(),
    };
    let runs = runs
        .iter()
        .map(|entry| {
            let (created, session) = entry
                .split_once(':')
                .ok_or_else(|| corrupt("a run entry without its time"))?;
            Ok(RunEntry {
                session: SessionId::parse(session).map_err(|_| corrupt("a run's id"))?,
                created: created.parse().map_err(|_| corrupt("a run's time"))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ThreadRecord {
        thread: Thread {
            id: id.clone(),
            agent: map.get("agent").cloned().unwrap_or_default(),
            input,
            created: map.get("created").and_then(|c| c.parse().ok()).unwrap_or(0),
        },
        runs,
    })
}

#[async_trait]
impl ThreadStore for RedisStore {
    async fn create_thread(&self, thread: &Thread) -> Result<bool, StoreError> {
        let [key, _, _] = keys::thread(&thread.id);
        let input = Value::Object(thread.input.clone()).to_string();
        let created: redis::RedisResult<i64> = self
            .thread_scripts
            .create
            .key(key)
            .arg(self.ttl_ms())
            .arg("agent")
            .arg(&thread.agent)
            .arg("input")
            .arg(input)
            .arg("created")
            .arg(thread.created)
            .invoke_async(&mut self.conn()?)
            .await;
        Ok(self.outcome(created)? == 1)
    }

    async fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StoreError> {
        let [key, runs, _] = keys::thread(id);
        let read: redis::RedisResult<(HashMap<String, String>, Vec<String>)> = redis::pipe()
            .hgetall(key)
            .lrange(runs, 0, -1)
            .query_async(&mut self.conn()?)
            .await;
        let (map, runs) = self.outcome(read)?;
        if map.is_empty() {
            return Ok(None);
        }
        decode_thread(id, map, runs).map(Some)
    }

    async fn start_run(
        &self,
        thread: &ThreadId,
        after: Option<&SessionId>,
        run: &RunRecord,
        alias: Option<&str>,
    ) -> Result<Started, StoreError> {
        let record = serde_json::to_string(run).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done: redis::RedisResult<(i64, String)> = self
            .thread_scripts
            .start
            .key(keys::thread(thread).to_vec())
            .key(keys::thread_run(thread, &run.session))
            .arg(self.ttl_ms())
            .arg(after.map(SessionId::as_str).unwrap_or(""))
            .arg(run_entry(run))
            .arg(record)
            .arg(alias.unwrap_or(""))
            .arg(run.session.as_str())
            .invoke_async(&mut self.conn()?)
            .await;
        Ok(match self.outcome(done)? {
            (1, _) => Started::Started,
            (0, _) => Started::NoThread,
            (_, latest) => Started::Moved(SessionId::parse(&latest).ok()),
        })
    }

    async fn withdraw_run(&self, thread: &ThreadId, run: &SessionId) -> Result<bool, StoreError> {
        let done: redis::RedisResult<i64> = self
            .thread_scripts
            .withdraw
            .key(keys::thread(thread).to_vec())
            .key(keys::thread_run(thread, run))
            .arg(run.as_str())
            .invoke_async(&mut self.conn()?)
            .await;
        Ok(self.outcome(done)? == 1)
    }

    async fn get_run(
        &self,
        thread: &ThreadId,
        run: &SessionId,
    ) -> Result<Option<RunRecord>, StoreError> {
        let json: redis::RedisResult<Option<String>> =
            self.conn()?.get(keys::thread_run(thread, run)).await;
        match self.outcome(json)? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("run {run} of thread {thread}: {e}"))),
        }
    }

    async fn add_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
        run: &SessionId,
    ) -> Result<bool, StoreError> {
        let [key, _, aliases] = keys::thread(thread);
        let done: redis::RedisResult<i64> = self
            .thread_scripts
            .alias
            .key(key)
            .key(aliases)
            .key(keys::thread_run(thread, run))
            .arg(alias)
            .arg(run.as_str())
            .invoke_async(&mut self.conn()?)
            .await;
        Ok(self.outcome(done)? == 1)
    }

    async fn find_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
    ) -> Result<Option<SessionId>, StoreError> {
        let [_, _, aliases] = keys::thread(thread);
        let named: redis::RedisResult<Option<String>> = self.conn()?.hget(aliases, alias).await;
        Ok(self.outcome(named)?.and_then(|s| SessionId::parse(&s).ok()))
    }
}
