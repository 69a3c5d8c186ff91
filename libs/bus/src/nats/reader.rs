//! Reading a session's log: page by page with batched direct gets
//! (`$JS.API.DIRECT.GET.WEIR_EVENTS` with `batch`, nats-server 2.11+), so a
//! read makes no consumer on the server: one request answered inline by the
//! stream with the session's next messages and an end-of-batch marker. The
//! first page of a reader that starts after seq 0 begins at the stream
//! sequence found by bisection with direct reads. Each page is bounded in
//! bytes as well as messages, because one message can carry a batch of
//! hundreds of events: a slow reader holds at most one page.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::stream;
use async_nats::Client;
use async_trait::async_trait;
use futures::stream::StreamExt;
use serde::Serialize;
use weir_protocol::RawEvent;

use super::{direct_last, last_seq_in, parse_message, EVENTS_STREAM};
use crate::{BusError, LogReader};

/// Most bytes one page asks for. The server sends whole messages and stops
/// once past the bound, so a message larger than this is read alone.
pub(super) const FETCH_BYTES: usize = 64 << 10;

/// Reads a session's log page by page, each page one batched direct get.
pub(super) struct NatsReader {
    /// Longest wait for one page.
    timeout: Duration,
    client: Client,
    events: stream::Stream,
    subject: String,
    cursor: u64,
    /// Where the next page starts in the stream; found on the first page.
    next_stream_seq: Option<u64>,
    leftover: VecDeque<RawEvent>,
}

/// The body of a batched direct get (the server's `JSApiMsgGetRequest`).
#[derive(Serialize)]
struct BatchGet<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: usize,
    max_bytes: usize,
}

impl NatsReader {
    pub(super) fn new(
        client: Client,
        events: stream::Stream,
        subject: String,
        after: u64,
        timeout: Duration,
    ) -> NatsReader {
        NatsReader {
            timeout,
            client,
            events,
            subject,
            cursor: after,
            next_stream_seq: None,
            leftover: VecDeque::new(),
        }
    }

    /// The stream sequence of the first message holding a seq after the
    /// cursor (`None`: the log holds nothing of the session), found by
    /// bisection over the stream (a few direct reads) instead of replaying
    /// the session from its start. Direct reads are answered by any replica,
    /// so a stream electing a leader does not stop them. A replica behind
    /// the others (one that rejoined after a partition) can only make the
    /// start earlier, never later: every replica's log is a prefix of the
    /// leader's, and the events up to the cursor are skipped.
    async fn locate(&self) -> Result<Option<u64>, BusError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        if self.cursor == 0 {
            return Ok(Some(1));
        }
        let Some(last) = direct_last(&self.events, &self.subject).await? else {
            return Ok(None);
        };
        if last_seq_in(&last)? <= self.cursor {
            return Ok(Some(last.sequence + 1));
        }
        let (mut lo, mut hi) = (1, last.sequence);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let next = self
                .events
                .direct_get_next_for_subject(self.subject.as_str(), Some(mid))
                .await;
            match next {
                Ok(m) if last_seq_in(&m)? <= self.cursor => lo = m.sequence + 1,
                Ok(_) => hi = mid,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => hi = mid,
                Err(e) => return Err(BusError::unavailable(e)),
            }
        }
        Ok(Some(lo))
    }

    /// One page: up to `max` of the session's messages and about
    /// [`FETCH_BYTES`], in one request; false when the log had nothing more.
    async fn fetch(&mut self, max: usize) -> Result<bool, BusError> {
        let start = match self.next_stream_seq {
            Some(seq) => seq,
            None => match self.locate().await? {
                Some(seq) => seq,
                None => return Ok(false),
            },
        };
        let body = BatchGet {
            seq: start,
            next_by_subj: &self.subject,
            batch: max,
            max_bytes: FETCH_BYTES,
        };
        let body = serde_json::to_vec(&body).expect("a direct get serialises");
        let inbox = self.client.new_inbox();
        // The reply subscription is in place before the request: both go out
        // on the one connection, in order.
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(BusError::unavailable)?;
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{EVENTS_STREAM}"),
                inbox,
                body.into(),
            )
            .await
            .map_err(BusError::unavailable)?;
        let mut got = false;
        while let Some(msg) = replies.next().await {
            match msg.status.map(|s| s.as_u16()) {
                None => {}
                // End of the batch; or no message of the session from `start`.
                Some(204) | Some(404) => return Ok(got),
                Some(503) => {
                    return Err(BusError::Unavailable(
                        "JetStream has no responder for direct gets".into(),
                    ))
                }
                Some(code) => {
                    let why = msg.description.unwrap_or_default();
                    return Err(BusError::Unavailable(format!(
                        "direct get refused: {code} {why}"
                    )));
                }
            }
            let seq = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Sequence"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    BusError::Unavailable("a direct get reply without Nats-Sequence".into())
                })?;
            self.next_stream_seq = Some(seq + 1);
            got = true;
            for ev in parse_message(&msg.payload)? {
                if ev.seq > self.cursor {
                    self.cursor = ev.seq;
                    self.leftover.push_back(ev);
                }
            }
        }
        Err(BusError::Unavailable(
            "the direct get's replies ended early".into(),
        ))
    }
}

#[async_trait]
impl LogReader for NatsReader {
    async fn next_page(&mut self, max: usize) -> Result<Vec<RawEvent>, BusError> {
        let max = max.max(1);
        while self.leftover.is_empty() {
            // A page cut short (a timeout, a reconnect) keeps what it
            // delivered: the cursor and stream position move with each
            // message. It is asked for again once.
            let timeout = self.timeout;
            let timed_out = || BusError::Unavailable("a log read did not answer in time".into());
            let first = tokio::time::timeout(timeout, self.fetch(max)).await;
            let fetched = match first.unwrap_or_else(|_| Err(timed_out())) {
                Ok(f) => f,
                Err(first) => {
                    tracing::debug!(error = %first, "log read asked again");
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
