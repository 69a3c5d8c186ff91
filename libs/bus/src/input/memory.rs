//! The answer box in one process, with the NATS bucket's semantics: the
//! first answer to a request wins, answers live for the retention, and a
//! waiter gets an answer recorded before or after it started waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use weir_protocol::{RequestId, SessionId};

use super::{key, AnswerData, InputBox, Put};
use crate::BusError;

pub struct MemoryInputs {
    retention: Duration,
    answers: Mutex<HashMap<String, (AnswerData, Instant)>>,
    /// Bumped on every answer recorded: waiters look again.
    recorded: watch::Sender<u64>,
}

impl MemoryInputs {
    pub fn new(retention: Duration) -> MemoryInputs {
        MemoryInputs {
            retention,
            answers: Mutex::default(),
            recorded: watch::Sender::new(0),
        }
    }

    fn lookup(&self, key: &str) -> Option<AnswerData> {
        let answers = self.answers.lock().expect("inputs lock");
        answers
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.retention)
            .map(|(data, _)| data.clone())
    }
}

#[async_trait]
impl InputBox for MemoryInputs {
    async fn put(
        &self,
        session: &SessionId,
        request: &RequestId,
        data: &AnswerData,
    ) -> Result<Put, BusError> {
        let now = Instant::now();
        {
            let mut answers = self.answers.lock().expect("inputs lock");
            answers.retain(|_, (_, at)| now.duration_since(*at) < self.retention);
            let key = key(session, request);
            if answers.contains_key(&key) {
                return Ok(Put::AlreadyAnswered);
            }
            answers.insert(key, (data.clone(), now));
        }
        self.recorded.send_modify(|n| *n += 1);
        Ok(Put::Stored)
    }

    async fn get(
        &self,
        session: &SessionId,
        request: &RequestId,
    ) -> Result<Option<AnswerData>, BusError> {
        Ok(self.lookup(&key(session, request)))
    }

    async fn wait(&self, session: &SessionId, request: &RequestId) -> Result<AnswerData, BusError> {
        let key = key(session, request);
        let mut recorded = self.recorded.subscribe();
        loop {
            // Marked seen before looking, so an answer recorded after the
            // look wakes the wait below.
            recorded.borrow_and_update();
            if let Some(data) = self.lookup(&key) {
                return Ok(data);
            }
            recorded
                .changed()
                .await
                .map_err(|_| BusError::Unavailable("the answer box is gone".into()))?;
        }
    }
}
