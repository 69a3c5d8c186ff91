//! The run's side of asking a person (protocol.md §9): an agent's
//! [`Ask`] becomes the `input_request` event `{"id": "ask_<seq>", "prompt",
//! "schema"?}` (its own seq names it), the run waits for the answer in the
//! bus's answer box ([`weir_bus::InputBox`]) while it goes on obeying
//! control and renewing its lease, and publishes the answer once as the
//! `input` event `{"request", "data"}` before handing it to the agent.

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;
use weir_bus::input::AnswerData;
use weir_bus::BusError;
use weir_protocol::input::{INPUT, INPUT_REQUEST};
use weir_protocol::{Answer, InputRequest, RequestId, SessionId};

use crate::agents::{Ask, Output};
use crate::Ctx;

/// A question the run has published and waits on.
struct Open {
    request: RequestId,
    answer: BoxFuture<'static, Result<AnswerData, BusError>>,
    reply: oneshot::Sender<AnswerData>,
}

/// The run's open question, if any: one at a time (an agent waits for its
/// answer before it asks again).
#[derive(Default)]
pub(crate) struct Asking(Option<Open>);

impl Asking {
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// The `input_request` for `ask`, published at `seq`, and the wait for
    /// its answer from now on (an answer recorded before is kept and found).
    pub(crate) fn open(&mut self, ctx: &Ctx, session: &SessionId, seq: u64, ask: Ask) -> Output {
        let request = RequestId::parse(&format!("ask_{seq}")).expect("ask_<seq> is a valid id");
        let data = InputRequest {
            id: request.clone(),
            prompt: ask.prompt,
            schema: ask.schema,
        };
        let (inputs, session, key) = (ctx.bus.inputs.clone(), session.clone(), request.clone());
        let answer = async move { inputs.wait(&session, &key).await }.boxed();
        self.0 = Some(Open {
            request,
            answer,
            reply: ask.reply,
        });
        output(INPUT_REQUEST, &data)
    }

    /// Resolves with the `input` event once the open question is answered;
    /// the caller publishes it, then calls [`Asking::deliver`]. Pending
    /// while no question is open.
    pub(crate) async fn answered(&mut self) -> Result<(Output, AnswerData), BusError> {
        let Some(open) = self.0.as_mut() else {
            return futures::future::pending().await;
        };
        let data = (&mut open.answer).await?;
        let answer = Answer {
            request: open.request.clone(),
            data: data.clone(),
        };
        Ok((output(INPUT, &answer), data))
    }

    /// Hands the published answer to the agent and closes the question.
    pub(crate) fn deliver(&mut self, data: AnswerData) {
        if let Some(open) = self.0.take() {
            // An agent that stopped waiting has ended: nothing to tell.
            let _ = open.reply.send(data);
        }
    }
}

fn output(kind: &str, data: &impl serde::Serialize) -> Output {
    Output {
        kind: kind.into(),
        source: None,
        data: serde_json::to_value(data).expect("input data serialise"),
        ts: weir_protocol::now_ms(),
        seq_id: None,
    }
}
