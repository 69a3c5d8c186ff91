//! The edge's HTTP API as the load tool uses it: create sessions, control
//! them, and read a session's whole log through `history` pages.

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A session the run created, with what its clients need.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub token: String,
    /// The mock agent's seed (texts are recomputed from it).
    pub seed: u64,
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .expect("a reqwest client")
}

/// `POST /v1/sessions` with `body`.
pub async fn create(http: &reqwest::Client, edge: &str, body: &Value) -> anyhow::Result<Session> {
    let r = http
        .post(format!("{edge}/v1/sessions"))
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {edge}/v1/sessions"))?;
    let status = r.status();
    if status != 201 {
        bail!(
            "create session: {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let v: Value = r.json().await?;
    Ok(Session {
        id: v["id"].as_str().context("no id")?.to_owned(),
        token: v["token"].as_str().context("no token")?.to_owned(),
        seed: body["input"]["seed"].as_u64().unwrap_or(0),
    })
}

/// `POST /v1/sessions/{id}/{op}` (pause, resume, cancel).
pub async fn control(
    http: &reqwest::Client,
    edge: &str,
    s: &Session,
    op: &str,
) -> anyhow::Result<()> {
    let r = http
        .post(format!(
            "{edge}/v1/sessions/{}/{op}?token={}",
            s.id, s.token
        ))
        .send()
        .await?;
    if r.status() != 202 {
        bail!("{op} {}: {}", s.id, r.status());
    }
    Ok(())
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    next_after: u64,
}

#[derive(Deserialize)]
struct Head {
    seq: u64,
    kind: String,
}

/// A session's log as stored: what every client is checked against.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub events: u64,
    pub last_seq: u64,
    pub ended: bool,
    /// [`fold`] of every event's bytes, in order.
    pub digest: u64,
    /// Seqs were 1..=last with no gap or repeat.
    pub contiguous: bool,
}

/// Order-sensitive digest of a sequence of events (FNV-1a over the bytes,
/// with a separator so that boundaries count).
pub fn fold(digest: u64, event: &[u8]) -> u64 {
    let mut h = digest;
    for b in event.iter().chain(b"\x1e") {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Reads the whole log of `s` from `edge`, 1000 events a page.
pub async fn history(http: &reqwest::Client, edge: &str, s: &Session) -> anyhow::Result<Log> {
    let mut log = Log {
        digest: DIGEST_SEED,
        contiguous: true,
        ..Log::default()
    };
    loop {
        let url = format!(
            "{edge}/v1/sessions/{}/history?after={}&limit=1000&token={}",
            s.id, log.last_seq, s.token
        );
        let r = http.get(&url).send().await?;
        if r.status() != 200 {
            bail!("history {}: {}", s.id, r.status());
        }
        let body = r.bytes().await?;
        let page: Page<'_> = serde_json::from_slice(&body)?;
        if page.events.is_empty() {
            return Ok(log);
        }
        for ev in &page.events {
            let head: Head = serde_json::from_str(ev.get())?;
            log.contiguous &= head.seq == log.last_seq + 1;
            log.last_seq = head.seq;
            log.ended |= head.kind == "end";
            log.events += 1;
            log.digest = fold(log.digest, ev.get().as_bytes());
        }
        if page.next_after != log.last_seq {
            bail!(
                "history {}: next_after {} != last seq",
                s.id,
                page.next_after
            );
        }
    }
}

/// Reads a log from the first of `edges` that answers.
pub async fn history_any(
    http: &reqwest::Client,
    edges: &[String],
    s: &Session,
) -> anyhow::Result<Log> {
    let mut last_err = None;
    for edge in edges {
        match history(http, edge, s).await {
            Ok(log) => return Ok(log),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no edge")))
}
