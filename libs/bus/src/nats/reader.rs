//! Reading a session's log: page by page through an ephemeral pull
//! consumer that starts at the first message after the cursor (found by
//! bisection with direct reads), so a slow reader holds at most one page:
//! each pull is bounded in bytes as well as messages, because one message
//! can carry a batch of hundreds of events.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use async_trait::async_trait;
use futures::stream::StreamExt;
use weir_protocol::RawEvent;

use super::{last_seq_in, parse_message};
use crate::{BusError, LogReader};

/// Most bytes one pull asks for. A message larger than this alone is still
/// read, by itself (see [`NatsReader::fetch`]).
pub(super) const FETCH_BYTES: usize = 64 << 10;

/// Reads a session's log page by page through an ephemeral pull consumer,
/// re-created from where it stopped if the server forgot it.
pub(super) struct NatsReader {
    /// Longest wait for one pull: a consumer whose server went away (a
    /// node restarting) never answers, and then a new one is made.
    timeout: Duration,
    events: stream::Stream,
    subject: String,
    cursor: u64,
    next_stream_seq: Option<u64>,
    consumer: Option<consumer::PullConsumer>,
    leftover: VecDeque<RawEvent>,
}

impl NatsReader {
    pub(super) fn new(
        events: stream::Stream,
        subject: String,
        after: u64,
        timeout: Duration,
    ) -> NatsReader {
        NatsReader {
            timeout,
            events,
            subject,
            cursor: after,
            next_stream_seq: None,
            consumer: None,
            leftover: VecDeque::new(),
        }
    }

    async fn consumer(&mut self) -> Result<consumer::PullConsumer, BusError> {
        if let Some(c) = &self.consumer {
            return Ok(c.clone());
        }
        if self.next_stream_seq.is_none() && self.cursor > 0 {
            self.next_stream_seq = self.locate().await?;
        }
        let deliver_policy = match self.next_stream_seq {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::All,
        };
        let c = self
            .events
            .create_consumer(consumer::pull::Config {
                filter_subject: self.subject.clone(),
                deliver_policy,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(BusError::unavailable)?;
        self.consumer = Some(c.clone());
        Ok(c)
    }

    /// The stream sequence of the first message holding a seq after the
    /// cursor, found by bisection over the stream (a few direct reads)
    /// instead of replaying the session from its start.
    async fn locate(&self) -> Result<Option<u64>, BusError> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let last = match self
            .events
            .get_last_raw_message_by_subject(&self.subject)
            .await
        {
            Ok(m) => m,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None)
            }
            Err(e) => return Err(BusError::unavailable(e)),
        };
        if last_seq_in(&last)? <= self.cursor {
            return Ok(Some(last.sequence + 1));
        }
        let (mut lo, mut hi) = (1, last.sequence);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next = self
                .events
                .raw_message_builder()
                .sequence(mid)
                .next_by_subject(self.subject.clone())
                .send()
                .await;
            match next {
                Ok(m) if last_seq_in(&m)? <= self.cursor => lo = m.sequence + 1,
                Ok(_) => hi = mid,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => hi = mid,
                Err(e) => return Err(BusError::unavailable(e)),
            }
        }
        Ok(Some(lo))
    }

    /// One fetch of up to `max` messages and about [`FETCH_BYTES`]; false
    /// when the log had nothing more. The server refuses a pull whose first
    /// message alone is over the byte bound: that message is then fetched by
    /// itself, with no byte bound.
    async fn fetch(&mut self, max: usize) -> Result<bool, BusError> {
        match self.fetch_bounded(max, FETCH_BYTES).await? {
            Fetched::Some => Ok(true),
            Fetched::Nothing => Ok(false),
            Fetched::TooLarge => Ok(self.fetch_bounded(1, 0).await? == Fetched::Some),
        }
    }

    /// `max_bytes` 0: no byte bound.
    async fn fetch_bounded(&mut self, max: usize, max_bytes: usize) -> Result<Fetched, BusError> {
        let consumer = self.consumer().await?;
        let mut messages = consumer
            .fetch()
            .max_messages(max)
            .max_bytes(max_bytes)
            .messages()
            .await
            .map_err(BusError::unavailable)?;
        let mut got = false;
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                // The next message would pass the byte bound: the pull ends.
                Err(e) if max_bytes > 0 && over_max_bytes(&e) => {
                    return Ok(if got {
                        Fetched::Some
                    } else {
                        Fetched::TooLarge
                    });
                }
                Err(e) => return Err(BusError::unavailable(e)),
            };
            if let Ok(info) = msg.info() {
                self.next_stream_seq = Some(info.stream_sequence + 1);
            }
            got = true;
            for ev in parse_message(&msg.payload)? {
                if ev.seq > self.cursor {
                    self.cursor = ev.seq;
                    self.leftover.push_back(ev);
                }
            }
        }
        Ok(if got { Fetched::Some } else { Fetched::Nothing })
    }
}

#[derive(Debug, PartialEq)]
enum Fetched {
    Some,
    Nothing,
    /// The first message alone is over the byte bound.
    TooLarge,
}

/// The server's 409 "Message Size Exceeds MaxBytes", as async-nats reports it.
fn over_max_bytes(e: &async_nats::Error) -> bool {
    e.to_string().contains("Exceeds MaxBytes")
}

#[async_trait]
impl LogReader for NatsReader {
    async fn next_page(&mut self, max: usize) -> Result<Vec<RawEvent>, BusError> {
        let max = max.max(1);
        while self.leftover.is_empty() {
            // A pull cut short by the timeout keeps what it delivered: the
            // cursor and stream position move with each message.
            let timeout = self.timeout;
            let timed_out = || BusError::Unavailable("a log read did not answer in time".into());
            let first = tokio::time::timeout(timeout, self.fetch(max)).await;
            let fetched = match first.unwrap_or_else(|_| Err(timed_out())) {
                Ok(f) => f,
                Err(first) => {
                    // The server may have dropped an idle consumer, or the
                    // node holding it restarted: start a new one where this
                    // one stopped, once.
                    tracing::debug!(error = %first, "log reader re-created");
                    self.consumer = None;
                    tokio::time::timeout(timeout, self.fetch(max))
                        .await
                        .unwrap_or_else(|_| Err(timed_out()))?
                }
            };
            if !fetched {
                break;
            }
        }
        let n = self.leftover.len().min(max);
        Ok(self.leftover.drain(..n).collect())
    }
}

impl Drop for NatsReader {
    fn drop(&mut self) {
        if let Some(c) = self.consumer.take() {
            let name = c.cached_info().name.clone();
            let events = self.events.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = events.delete_consumer(&name).await;
                });
            }
        }
    }
}
