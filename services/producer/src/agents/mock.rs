//! The deterministic `mock` agent, for tests, demos and load: `input.tokens`
//! token events (default 100) at `input.rate` tokens/s (0 = as fast as
//! possible); token n's text is derived from `input.seed` and n, so any two
//! runs with the same input produce the same text. In a thread's run it
//! answers the conversation's last message instead ([`thread`]).

use std::time::Duration;

use async_trait::async_trait;
use weir_protocol::mock::{token_text, MockInput};

use super::{Agent, AgentError, Emitter, Finish};

mod ask;
pub mod thread;

pub struct MockAgent;

#[async_trait]
impl Agent for MockAgent {
    async fn run(&self, input: serde_json::Value, out: &mut Emitter) -> Result<Finish, AgentError> {
        let input = MockInput::parse(&input).map_err(AgentError::BadInput)?;
        if let Some(messages) = &input.messages {
            return thread::reply(&input, messages, out).await;
        }
        let mut tick = (input.rate > 0.0).then(|| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / input.rate));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        for n in 1..=input.tokens {
            if let Some(t) = tick.as_mut() {
                t.tick().await;
            }
            let text = token_text(input.seed, n);
            out.emit("token", Some("mock"), serde_json::json!({ "text": text }))
                .await?;
        }
        Ok(Finish {
            stop_reason: Some("max_tokens".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::Gate;
    use tokio::sync::{mpsc, watch};

    #[tokio::test]
    async fn emits_the_tokens_and_stops_when_told() {
        let (tx, mut rx) = mpsc::channel(16);
        let (gate_tx, gate) = watch::channel(Gate::Open);
        let mut out = Emitter::new(tx, gate);
        let finish = MockAgent
            .run(serde_json::json!({"tokens": 3, "seed": 9}), &mut out)
            .await
            .unwrap();
        assert_eq!(finish.stop_reason.as_deref(), Some("max_tokens"));
        for n in 1..=3 {
            let o = rx.recv().await.unwrap();
            assert_eq!(o.data["text"], token_text(9, n));
        }
        gate_tx.send(Gate::Stopped).unwrap();
        let stopped = MockAgent
            .run(serde_json::json!({"tokens": 100}), &mut out)
            .await;
        assert_eq!(stopped, Err(AgentError::Stopped));
    }
}
