//! Agents: what a producer runs for a session. An agent turns its input into
//! events through an [`Emitter`]; seqs, batching, publishing, pause and
//! cancel are the producer's business, so a new agent is one file here plus
//! a line in [`Registry::standard`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use weir_bus::input::AnswerData;

use crate::config::ProducerConfig;

pub mod mock;
pub mod openai;
mod sse;

/// One item of an agent's output, before the producer gives it a seq.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub kind: String,
    pub source: Option<String>,
    pub data: serde_json::Value,
    /// When the agent produced it (Unix ms).
    pub ts: f64,
    /// An id in `data` made of the event's own seq, which only the
    /// publisher knows (`call_<seq>`, §4); set as the event is written.
    pub seq_id: Option<SeqId>,
}

/// Where an id derived from the event's seq goes: the string
/// `<prefix><seq>` at the JSON pointer `at` of the event's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqId {
    pub at: &'static str,
    pub prefix: &'static str,
}

impl Output {
    /// Writes the seq-derived id, if this output has one, for `seq`.
    pub fn stamp(&mut self, seq: u64) {
        if let Some(SeqId { at, prefix }) = self.seq_id {
            if let Some(slot) = self.data.pointer_mut(at) {
                *slot = serde_json::Value::String(format!("{prefix}{seq}"));
            }
        }
    }
}

/// How an agent ends when it does not fail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finish {
    /// AutoGen-style stop reason, when the agent has one.
    pub stop_reason: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AgentError {
    /// The run was cancelled or the producer stopped it; not a failure of the agent.
    #[error("run stopped")]
    Stopped,
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("{message}")]
    Failed { code: String, message: String },
}

impl AgentError {
    /// `(code, message)` of the `error` event this becomes.
    pub fn code_and_message(&self) -> (String, String) {
        match self {
            AgentError::Stopped => ("stopped".into(), self.to_string()),
            AgentError::BadInput(m) => ("bad_input".into(), m.clone()),
            AgentError::Failed { code, message } => (code.clone(), message.clone()),
        }
    }
}

/// Whether the run may go on: pause holds every emit, cancel fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Paused,
    Stopped,
}

/// A question for a person (protocol.md §9), from [`Emitter::ask`] to the
/// run, which publishes the `input_request`, waits for the answer and
/// publishes the `input`.
#[derive(Debug)]
pub struct Ask {
    pub prompt: String,
    /// The JSON Schema the answer must match, if any.
    pub schema: Option<serde_json::Value>,
    /// Where the run sends the answer.
    pub reply: oneshot::Sender<AnswerData>,
}

/// The agent's side of a run: emits wait while the run is paused and fail
/// once it is stopped, so pausing stops generation, not just delivery.
pub struct Emitter {
    tx: mpsc::Sender<Output>,
    gate: watch::Receiver<Gate>,
    /// Questions for a person, when the run can take them.
    asks: Option<mpsc::Sender<Ask>>,
}

impl Emitter {
    pub fn new(tx: mpsc::Sender<Output>, gate: watch::Receiver<Gate>) -> Emitter {
        Emitter {
            tx,
            gate,
            asks: None,
        }
    }

    /// An emitter whose agent may ask a person ([`Emitter::ask`]).
    pub fn with_asks(mut self, asks: mpsc::Sender<Ask>) -> Emitter {
        self.asks = Some(asks);
        self
    }

    /// Asks a person and waits for the answer, however long it takes (the
    /// run stays live meanwhile): the run publishes `input_request`
    /// `{"id": "ask_<seq>", "prompt", "schema"?}` after everything emitted
    /// so far, then `input` with the answer, which it returns. Pause holds
    /// the answer back until the run resumes; cancel fails the wait.
    pub async fn ask(
        &mut self,
        prompt: &str,
        schema: Option<serde_json::Value>,
    ) -> Result<AnswerData, AgentError> {
        let Some(asks) = self.asks.clone() else {
            return Err(AgentError::Failed {
                code: "no_input".into(),
                message: "this run cannot ask a person".into(),
            });
        };
        wait_open(&mut self.gate).await?;
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            prompt: prompt.to_owned(),
            schema,
            reply,
        };
        asks.send(ask).await.map_err(|_| AgentError::Stopped)?;
        tokio::select! {
            answer = answer => answer.map_err(|_| AgentError::Stopped),
            _ = self.gate.wait_for(|g| *g == Gate::Stopped) => Err(AgentError::Stopped),
        }
    }

    /// Emits one event; waits while paused or while the producer is behind.
    pub async fn emit(
        &mut self,
        kind: &str,
        source: Option<&str>,
        data: serde_json::Value,
    ) -> Result<(), AgentError> {
        self.emit_with_seq_id(kind, source, data, None).await
    }

    /// [`Emitter::emit`], with an id in `data` that the publisher makes of
    /// the event's seq ([`SeqId`]); `data` must hold a value at its place.
    pub async fn emit_with_seq_id(
        &mut self,
        kind: &str,
        source: Option<&str>,
        data: serde_json::Value,
        seq_id: Option<SeqId>,
    ) -> Result<(), AgentError> {
        let permit = self.tx.reserve().await.map_err(|_| AgentError::Stopped)?;
        wait_open(&mut self.gate).await?;
        permit.send(Output {
            kind: kind.to_owned(),
            source: source.map(str::to_owned),
            data,
            ts: weir_protocol::now_ms(),
            seq_id,
        });
        Ok(())
    }

    /// Returns when the run is not paused; fails when it is stopped.
    pub async fn wait_open(&mut self) -> Result<(), AgentError> {
        wait_open(&mut self.gate).await
    }

    /// Resolves when the run is stopped (for agents blocked on something else).
    pub async fn stopped(&mut self) {
        let _ = self.gate.wait_for(|g| *g == Gate::Stopped).await;
    }
}

async fn wait_open(gate: &mut watch::Receiver<Gate>) -> Result<(), AgentError> {
    let gate = gate
        .wait_for(|g| *g != Gate::Paused)
        .await
        .map_err(|_| AgentError::Stopped)?;
    match *gate {
        Gate::Stopped => Err(AgentError::Stopped),
        _ => Ok(()),
    }
}

#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Runs to completion, emitting events. The producer adds the `end` event.
    async fn run(&self, input: serde_json::Value, out: &mut Emitter) -> Result<Finish, AgentError>;
}

/// The agents a producer can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    agents: HashMap<String, Arc<dyn Agent>>,
}

impl Registry {
    /// The agents every worker has: `mock`, and `openai` for the worker's
    /// configured endpoint.
    pub fn standard(config: &ProducerConfig) -> Registry {
        let mut r = Registry::default();
        r.insert("mock", Arc::new(mock::MockAgent));
        match openai::OpenAiAgent::new(config.openai.clone()) {
            Ok(agent) => r.insert("openai", Arc::new(agent)),
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client: the openai agent is unavailable")
            }
        }
        r
    }

    pub fn insert(&mut self, name: &str, agent: Arc<dyn Agent>) {
        self.agents.insert(name.to_owned(), agent);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Agent>> {
        self.agents.get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.agents.keys().cloned().collect();
        names.sort();
        names
    }
}
