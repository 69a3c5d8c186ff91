//! The load tool as an outside producer (protocol.md §2): it claims the
//! session's lease (`WEIR_LEASES`) and renews it while it publishes to
//! `weir.ev.<session>`, one event or a batch per message, with `Nats-Msg-Id`
//! and `Weir-Seq`, the mock agent's texts and a final `end`, then releases it.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_nats::HeaderMap;
use bytes::Bytes;
use weir_bus::nats::SEQ_HEADER;

use super::api::Session;

/// How an outside producer publishes one session.
#[derive(Debug, Clone, Copy)]
pub struct Publishing {
    pub tokens: u64,
    /// Tokens per second; 0 = as fast as JetStream takes them.
    pub rate: f64,
    /// Most events per message at full speed.
    pub batch: usize,
    /// Publishes awaiting their ack at once, per session.
    pub in_flight: usize,
}

/// `url`: one NATS URL or a cluster's, comma-separated.
pub fn nats_addrs(url: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    let urls: Vec<String> = url.split(',').map(str::to_owned).collect();
    Ok(weir_bus::nats::server_addrs(&urls)?)
}

pub async fn connect(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("weir-bench")
        .connect(nats_addrs(url)?)
        .await
        .with_context(|| format!("connect to {url}"))?;
    Ok(jetstream::new(client))
}

/// Event `seq` of a mock-like session: token `seq` or, after the last, `end`.
pub fn event_json(seed: u64, seq: u64, tokens: u64) -> String {
    let ts = weir_protocol::now_ms();
    if seq > tokens {
        return format!(
            r#"{{"seq":{seq},"kind":"end","ts":{ts},"data":{{"reason":"completed","stop_reason":"max_tokens"}}}}"#
        );
    }
    let text = serde_json::to_string(&weir_protocol::mock::token_text(seed, seq))
        .expect("strings serialise");
    format!(r#"{{"seq":{seq},"kind":"token","ts":{ts},"source":"mock","data":{{"text":{text}}}}}"#)
}

/// The lease time the tool claims its sessions with.
const LEASE_TTL: Duration = Duration::from_secs(5);

/// Claims the session's lease (the edge made it unclaimed) and renews it
/// until the returned task is aborted; `None` on a NATS without the bucket.
async fn hold_lease(
    js: &jetstream::Context,
    id: &str,
) -> anyhow::Result<Option<(jetstream::kv::Store, tokio::task::JoinHandle<u64>)>> {
    let Ok(kv) = js.get_key_value("WEIR_LEASES").await else {
        return Ok(None);
    };
    let value = Bytes::from(serde_json::to_vec(&weir_bus::LeaseEntry::new(
        &format!("weir-bench-{}", std::process::id()),
        LEASE_TTL,
        false,
    ))?);
    let mut revision = match kv.create(id, value.clone()).await {
        Ok(r) => r,
        Err(_) => {
            let entry = kv
                .entry(id)
                .await?
                .context("the session's lease vanished")?;
            kv.update(id, value.clone(), entry.revision)
                .await
                .context("claim the lease")?
        }
    };
    let (renewing, key) = (kv.clone(), id.to_owned());
    let renewer = async move {
        loop {
            tokio::time::sleep(LEASE_TTL / 3).await;
            match renewing.update(&key, value.clone(), revision).await {
                Ok(r) => revision = r,
                Err(_) => return revision,
            }
        }
    };
    Ok(Some((kv, tokio::spawn(renewer))))
}

/// Publishes the whole session: `tokens` tokens, then `end`, holding its lease.
pub async fn publish_session(
    js: &jetstream::Context,
    s: &Session,
    p: Publishing,
) -> anyhow::Result<()> {
    let lease = hold_lease(js, &s.id).await?;
    publish_events(js, s, p).await?;
    if let Some((kv, renewer)) = lease {
        renewer.abort();
        // Deleted whatever its revision: the end is stored, the run is over.
        kv.delete(&s.id).await.context("release the lease")?;
    }
    Ok(())
}

async fn publish_events(js: &jetstream::Context, s: &Session, p: Publishing) -> anyhow::Result<()> {
    let subject = format!("weir.ev.{}", s.id);
    let last = p.tokens + 1;
    let mut acks: VecDeque<PublishAckFuture> = VecDeque::new();
    let mut tick = (p.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / p.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut next = 1;
    while next <= last {
        let n = if let Some(t) = tick.as_mut() {
            t.tick().await;
            1
        } else {
            p.batch.max(1) as u64
        };
        let end = (next + n - 1).min(last);
        let events: Vec<String> = (next..=end)
            .map(|seq| event_json(s.seed, seq, p.tokens))
            .collect();
        let payload = if events.len() == 1 {
            events.into_iter().next().expect("one")
        } else {
            format!("[{}]", events.join(","))
        };
        let mut headers = HeaderMap::new();
        let id = if end == next {
            format!("{}:{next}", s.id)
        } else {
            format!("{}:{next}-{end}", s.id)
        };
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(SEQ_HEADER, end.to_string().as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, Bytes::from(payload))
            .await
            .context("publish")?;
        acks.push_back(ack);
        while acks.len() >= p.in_flight.max(1) {
            acks.pop_front().expect("non-empty").await.context("ack")?;
        }
        next = end + 1;
    }
    for ack in acks {
        ack.await.context("ack")?;
    }
    Ok(())
}
