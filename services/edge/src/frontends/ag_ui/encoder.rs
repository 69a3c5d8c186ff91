//! The AG-UI encoder: [`Reader`]'s ops as AG-UI events, for one call.
//!
//! It streams live, or first builds one `MESSAGES_SNAPSHOT` from the events
//! stored when the call came in (a reconnect, a rejoin, a resume) and then
//! goes live. On a thread's endpoint it also keeps the run's messages (the
//! transcript, at most `--max-snapshot` bytes), since a run that waits for
//! a person ends the call with the whole conversation in a snapshot and
//! `RUN_FINISHED` with the `interrupt` outcome.

use serde_json::{json, Map, Value};
use weir_protocol::{EndReason, RawEvent};

use super::events::{to_json, AgUiEvent, TokenUsage};
use crate::frontends::stream::Encoder;
use crate::frontends::{InputRequest, Op, Reader};
use crate::subscription::DeliveryError;

/// The run's messages so far, as AG-UI messages with the ids that live
/// events give them.
#[derive(Debug, Default)]
struct Transcript {
    messages: Vec<Value>,
    /// The open text message: (id, its text so far).
    open: Option<(String, String)>,
    bytes: usize,
}

/// Who the call is for and how it starts.
pub struct Call {
    /// `threadId` and `runId` of `RUN_STARTED` / `RUN_FINISHED`.
    pub thread_id: String,
    pub run_id: String,
    /// The messages before the run's own in a snapshot.
    pub prefix: Vec<Value>,
    /// Snapshot first, up to this seq (the last stored when the call came
    /// in); `None`: live from the first event.
    pub snapshot_at: Option<u64>,
    /// A thread's run: keep the transcript and end at an open input request.
    pub interrupts: bool,
    /// The input request this call resolved itself (a `resume`): it is
    /// not open, whether or not its answer is in the log yet.
    pub resolved: Option<String>,
}

pub struct AgUi {
    session: String,
    call: Call,
    reader: Reader,
    transcript: Transcript,
    /// The transcript outgrew the limit (it is no longer kept).
    overflow: bool,
    max_snapshot: usize,
    /// The input request asked and not answered.
    open_request: Option<InputRequest>,
    usage: Option<Map<String, Value>>,
    error: Option<(String, String)>,
    done: bool,
}

impl AgUi {
    pub fn new(session: &str, call: Call, max_snapshot: usize) -> AgUi {
        AgUi {
            session: session.to_owned(),
            call,
            reader: Reader::new(session),
            transcript: Transcript::default(),
            overflow: false,
            max_snapshot,
            open_request: None,
            usage: None,
            error: None,
            done: false,
        }
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-m{seq}", self.session)
    }

    fn pending(&self) -> bool {
        self.call.snapshot_at.is_some()
    }

    pub fn start(&mut self, out: &mut Vec<AgUiEvent>) {
        out.push(AgUiEvent::RunStarted {
            thread_id: self.call.thread_id.clone(),
            run_id: self.call.run_id.clone(),
        });
        if self.call.snapshot_at == Some(0) {
            self.flush(out);
        }
    }

    /// The AG-UI events of one weir event's ops.
    pub fn event(&mut self, ops: Vec<Op>, out: &mut Vec<AgUiEvent>) {
        for op in ops {
            if self.done {
                return;
            }
            match &op {
                Op::InputRequest { request, .. } => {
                    let resolved = self.call.resolved.as_ref() == Some(&request.id);
                    self.open_request = (!resolved).then(|| request.clone());
                }
                Op::Input { request }
                    if self.open_request.as_ref().is_some_and(|r| r.id == *request) =>
                {
                    self.open_request = None
                }
                Op::End { .. } => self.open_request = None,
                _ => {}
            }
            if self.pending() || self.call.interrupts {
                self.record(&op, out);
            }
            match (self.pending(), &op) {
                (true, Op::End { .. }) => {
                    self.flush(out);
                    self.live(op, out);
                }
                (true, _) => self.live_only(op, out),
                (false, _) => self.live(op, out),
            }
        }
    }

    /// After a batch ending at `seq`: once the events stored when the call
    /// came in are all read, the snapshot goes out — or, when the run waits
    /// for an answer nobody gave, the whole conversation and `RUN_FINISHED`
    /// with the `interrupt` outcome (later events are live: the run waits).
    pub fn settle(&mut self, seq: u64, out: &mut Vec<AgUiEvent>) {
        if self.done || self.call.snapshot_at.is_some_and(|cut| seq < cut) {
            return;
        }
        match self.open_request.take().filter(|_| self.call.interrupts) {
            Some(request) => self.interrupt(request, out),
            None => self.flush(out),
        }
    }

    fn interrupt(&mut self, request: InputRequest, out: &mut Vec<AgUiEvent>) {
        self.done = true;
        if self.overflow {
            out.push(self.too_large());
            return;
        }
        let mut messages = std::mem::take(&mut self.call.prefix);
        messages.extend(self.transcript.messages.iter().cloned());
        out.push(AgUiEvent::MessagesSnapshot { messages });
        let mut interrupt =
            json!({"id": request.id, "reason": "input_required", "message": request.prompt});
        if let Some(schema) = request.schema {
            interrupt["responseSchema"] = schema;
        }
        let outcome = json!({"type": "interrupt", "interrupts": [interrupt]});
        out.push(self.finished(Some(outcome)));
    }

    /// Adds an op's message to the transcript.
    fn record(&mut self, op: &Op, out: &mut Vec<AgUiEvent>) {
        if self.overflow {
            return;
        }
        let session = self.session.clone();
        let t = &mut self.transcript;
        match op {
            Op::TextStart { seq } => t.open = Some((format!("{session}-m{seq}"), String::new())),
            Op::TextDelta { delta, .. } => {
                t.bytes += delta.len();
                if let Some((_, text)) = &mut t.open {
                    text.push_str(delta);
                }
            }
            Op::TextEnd { .. } => {
                if let Some((id, text)) = t.open.take() {
                    t.messages
                        .push(json!({"id": id, "role": "assistant", "content": text}));
                }
            }
            Op::ToolCall { seq, call } => {
                t.bytes += call.arguments.len() + call.name.len() + call.id.len();
                let id = format!("{session}-m{seq}");
                let tc = json!({"id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}});
                match t.messages.last_mut() {
                    Some(m) if m["id"] == id.as_str() => {
                        m["toolCalls"].as_array_mut().expect("set below").push(tc)
                    }
                    _ => t
                        .messages
                        .push(json!({"id": id, "role": "assistant", "toolCalls": [tc]})),
                }
            }
            Op::ToolResult { seq, index, result } => {
                t.bytes += result.content.len();
                t.messages.push(json!({
                    "id": format!("{session}-r{seq}-{index}"),
                    "role": "tool", "toolCallId": result.call_id, "content": result.content,
                }));
            }
            _ => {}
        }
        if self.transcript.bytes > self.max_snapshot {
            self.overflow = true;
            self.transcript = Transcript::default();
            if self.pending() {
                self.done = true;
                out.push(self.too_large());
            }
        }
    }

    fn too_large(&self) -> AgUiEvent {
        AgUiEvent::RunError {
            message: format!(
                "the session's messages exceed the snapshot limit of {} bytes",
                self.max_snapshot
            ),
            code: "snapshot_too_large".into(),
        }
    }

    /// Sends the snapshot, then continues the open text message.
    fn flush(&mut self, out: &mut Vec<AgUiEvent>) {
        if self.call.snapshot_at.take().is_none() || self.done {
            return;
        }
        let mut messages = self.call.prefix.clone();
        messages.extend(self.transcript.messages.iter().cloned());
        let open = self.transcript.open.clone();
        if !self.call.interrupts {
            self.transcript = Transcript::default();
        }
        out.push(AgUiEvent::MessagesSnapshot { messages });
        if let Some((id, text)) = open {
            out.push(AgUiEvent::TextMessageStart {
                message_id: id.clone(),
                role: "assistant",
            });
            if !text.is_empty() {
                out.push(AgUiEvent::TextMessageContent {
                    message_id: id,
                    delta: text,
                });
            }
        }
    }

    /// While the snapshot is built, only what is not a message goes out
    /// (usage and errors are remembered for the end).
    fn live_only(&mut self, op: Op, out: &mut Vec<AgUiEvent>) {
        if matches!(op, Op::Usage(_) | Op::Error { .. }) {
            self.live(op, out);
        }
    }

    fn live(&mut self, op: Op, out: &mut Vec<AgUiEvent>) {
        match op {
            Op::TextStart { seq } => out.push(AgUiEvent::TextMessageStart {
                message_id: self.id(seq),
                role: "assistant",
            }),
            Op::TextDelta { seq, delta } => out.push(AgUiEvent::TextMessageContent {
                message_id: self.id(seq),
                delta,
            }),
            Op::TextEnd { seq } => out.push(AgUiEvent::TextMessageEnd {
                message_id: self.id(seq),
            }),
            Op::ToolCall { seq, call } => {
                out.push(AgUiEvent::ToolCallStart {
                    tool_call_id: call.id.clone(),
                    tool_call_name: call.name,
                    parent_message_id: self.id(seq),
                });
                if !call.arguments.is_empty() {
                    out.push(AgUiEvent::ToolCallArgs {
                        tool_call_id: call.id.clone(),
                        delta: call.arguments,
                    });
                }
                out.push(AgUiEvent::ToolCallEnd {
                    tool_call_id: call.id,
                });
            }
            Op::ToolResult { seq, index, result } => out.push(AgUiEvent::ToolCallResult {
                message_id: format!("{}-r{seq}-{index}", self.session),
                tool_call_id: result.call_id,
                content: result.content,
                role: "tool",
            }),
            Op::InputRequest { .. } | Op::Input { .. } => {}
            Op::Usage(u) => self.usage = Some(u),
            Op::Error { code, message } => self.error = Some((code, message)),
            Op::End { reason } => {
                self.done = true;
                out.push(self.end(reason));
            }
        }
    }

    /// `RUN_FINISHED` with the usage so far and `outcome`.
    fn finished(&mut self, outcome: Option<Value>) -> AgUiEvent {
        AgUiEvent::RunFinished {
            thread_id: self.call.thread_id.clone(),
            run_id: self.call.run_id.clone(),
            usage: self.usage.as_ref().map(|u| [TokenUsage::from_sums(u)]),
            result: self.usage.take().map(|u| json!({ "usage": u })),
            outcome,
        }
    }

    fn end(&mut self, reason: EndReason) -> AgUiEvent {
        match reason {
            EndReason::Completed => self.finished(None),
            EndReason::Cancelled => self.finished(Some(json!({"type": "cancelled"}))),
            EndReason::Failed => {
                let (code, message) = self.error.take().unwrap_or_default();
                AgUiEvent::RunError {
                    message: if message.is_empty() {
                        "the session failed".into()
                    } else {
                        message
                    },
                    code: if code.is_empty() {
                        "failed".into()
                    } else {
                        code
                    },
                }
            }
        }
    }
}

impl Encoder for AgUi {
    fn open(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.start(&mut out);
        to_json(out)
    }

    fn events(&mut self, events: &[RawEvent]) -> Vec<String> {
        let mut out = Vec::new();
        for e in events {
            let mut ops = Vec::new();
            self.reader.read(&e.json, &mut ops);
            self.event(ops, &mut out);
        }
        if let Some(last) = events.last() {
            self.settle(last.seq, &mut out);
        }
        to_json(out)
    }

    fn expired(&mut self, e: &DeliveryError) -> Vec<String> {
        self.done = true;
        to_json(vec![AgUiEvent::RunError {
            message: e.to_string(),
            code: "history_expired".into(),
        }])
    }

    fn done(&self) -> bool {
        self.done
    }
}
