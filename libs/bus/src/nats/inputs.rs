//! The answer box on NATS: the key-value bucket `WEIR_INPUTS`, key
//! `<session>.<request>`, value the answer's `data` as JSON, written with
//! `create` (the first answer wins on every edge), kept for the retention.
//! A waiting producer watches its key from the key's last value, so an
//! answer stored before it started watching is delivered too.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures::StreamExt;
use weir_protocol::{RequestId, SessionId};

use super::NatsBus;
use crate::input::{decode, key, AnswerData, InputBox, Put};
use crate::{BusConfig, BusError};

pub const INPUTS_BUCKET: &str = "WEIR_INPUTS";

/// How long a wait that lost its watch (the bus went away) pauses before
/// watching again.
const REWATCH: Duration = Duration::from_millis(500);

/// The answers' bucket, replicated like the streams.
pub(super) async fn inputs_bucket(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<kv::Store, BusError> {
    let want = kv::Config {
        bucket: INPUTS_BUCKET.into(),
        description: "weir: answers to input requests, until their producer takes them".into(),
        history: 1,
        max_age: config.retention,
        storage: jetstream::stream::StorageType::File,
        num_replicas: config.replicas.into(),
        ..Default::default()
    };
    match js.get_key_value(INPUTS_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(want).await {
            Ok(store) => Ok(store),
            // Another node created it first.
            Err(_) => js
                .get_key_value(INPUTS_BUCKET)
                .await
                .map_err(BusError::unavailable),
        },
    }
}

#[async_trait]
impl InputBox for NatsBus {
    async fn put(
        &self,
        session: &SessionId,
        request: &RequestId,
        data: &AnswerData,
    ) -> Result<Put, BusError> {
        let value = serde_json::to_vec(data).expect("JSON objects serialise");
        match self
            .inputs
            .create(key(session, request), value.into())
            .await
        {
            Ok(_) => Ok(Put::Stored),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Put::AlreadyAnswered),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn get(
        &self,
        session: &SessionId,
        request: &RequestId,
    ) -> Result<Option<AnswerData>, BusError> {
        let key = key(session, request);
        match self.inputs.get(&key).await {
            Ok(Some(value)) => decode(&key, &value).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn wait(&self, session: &SessionId, request: &RequestId) -> Result<AnswerData, BusError> {
        let key = key(session, request);
        loop {
            let mut reconnected = self.reconnects.subscribe();
            reconnected.borrow_and_update();
            match self.inputs.watch_with_history(&key).await {
                Ok(mut watch) => loop {
                    tokio::select! {
                        entry = watch.next() => match entry {
                            Some(Ok(e)) if e.operation == kv::Operation::Put => {
                                return decode(&key, &e.value)
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::debug!(key, error = %e, "answer watch failed; watching again");
                                break;
                            }
                            None => break,
                        },
                        // A restarted server forgot the watch's consumer.
                        _ = reconnected.changed() => break,
                    }
                },
                Err(e) => tracing::debug!(key, error = %e, "cannot watch for the answer yet"),
            }
            tokio::time::sleep(REWATCH).await;
        }
    }
}
