//! Threads in one process, with the Redis store's semantics: a thread and
//! all it holds expire together, the retention after its last run started.

use std::collections::HashMap;

use async_trait::async_trait;
use weir_protocol::{SessionId, ThreadId};

use super::MemoryStore;
use crate::thread::{RunEntry, RunRecord, Started, Thread, ThreadRecord, ThreadStore};
use crate::StoreError;

/// A thread as kept: the thread, its runs in order, its aliases.
pub(super) struct Kept {
    thread: Thread,
    runs: Vec<RunRecord>,
    aliases: HashMap<String, SessionId>,
}

#[async_trait]
impl ThreadStore for MemoryStore {
    async fn create_thread(&self, thread: &Thread) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            if inner.threads.contains_key(&thread.id) {
                return false;
            }
            let kept = Kept {
                thread: thread.clone(),
                runs: Vec::new(),
                aliases: HashMap::new(),
            };
            inner
                .threads
                .insert(thread.id.clone(), (kept, now + self.retention));
            true
        }))
    }

    async fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StoreError> {
        Ok(self.with(|inner, _| {
            inner.threads.get(id).map(|(kept, _)| ThreadRecord {
                thread: kept.thread.clone(),
                runs: kept
                    .runs
                    .iter()
                    .map(|r| RunEntry {
                        session: r.session.clone(),
                        created: r.created,
                    })
                    .collect(),
            })
        }))
    }

    async fn start_run(
        &self,
        thread: &ThreadId,
        after: Option<&SessionId>,
        run: &RunRecord,
        alias: Option<&str>,
    ) -> Result<Started, StoreError> {
        Ok(self.with(|inner, now| {
            let Some((kept, until)) = inner.threads.get_mut(thread) else {
                return Started::NoThread;
            };
            let latest = kept.runs.last().map(|r| &r.session);
            if latest != after {
                return Started::Moved(latest.cloned());
            }
            kept.runs.push(run.clone());
            if let Some(alias) = alias {
                kept.aliases.insert(alias.to_owned(), run.session.clone());
            }
            *until = now + self.retention;
            Started::Started
        }))
    }

    async fn withdraw_run(&self, thread: &ThreadId, run: &SessionId) -> Result<bool, StoreError> {
        Ok(self.with(|inner, _| {
            let Some((kept, _)) = inner.threads.get_mut(thread) else {
                return false;
            };
            if kept.runs.last().map(|r| &r.session) != Some(run) {
                return false;
            }
            kept.runs.pop();
            kept.aliases.retain(|_, s| s != run);
            true
        }))
    }

    async fn get_run(
        &self,
        thread: &ThreadId,
        run: &SessionId,
    ) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.with(|inner, _| {
            let (kept, _) = inner.threads.get(thread)?;
            kept.runs.iter().find(|r| &r.session == run).cloned()
        }))
    }

    async fn add_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
        run: &SessionId,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|inner, _| {
            let Some((kept, _)) = inner.threads.get_mut(thread) else {
                return false;
            };
            if !kept.runs.iter().any(|r| &r.session == run) {
                return false;
            }
            match kept.aliases.get(alias) {
                Some(named) => named == run,
                None => {
                    kept.aliases.insert(alias.to_owned(), run.clone());
                    true
                }
            }
        }))
    }

    async fn find_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
    ) -> Result<Option<SessionId>, StoreError> {
        Ok(self.with(|inner, _| {
            let (kept, _) = inner.threads.get(thread)?;
            kept.aliases.get(alias).cloned()
        }))
    }
}
