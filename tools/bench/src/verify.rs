//! The check at the end of every streaming scenario: each client against its
//! session's log, read through `history` (or, with `--verify seq`, against
//! its own seqs): events lost, repeated or different, and clients exact.

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::api::{self, Log, Session};
use super::client::ClientResult;
use super::report::Verify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyMode {
    /// Read every session's log through `history` and compare each client's
    /// events with it, byte for byte, in order.
    History,
    /// Only check that each client's seqs were contiguous and ended with `end`.
    Seq,
}

/// Checks every client against its session's log (or its own seqs).
pub async fn check(
    mode: VerifyMode,
    edges: &[String],
    http: &reqwest::Client,
    results: &[(Arc<Session>, Vec<ClientResult>)],
) -> Verify {
    let mut v = Verify {
        against: match mode {
            VerifyMode::History => "history".into(),
            VerifyMode::Seq => "seq".into(),
        },
        ..Verify::default()
    };
    let logs: Vec<Option<anyhow::Result<Log>>> = stream::iter(results)
        .map(|(s, _)| async {
            match mode {
                VerifyMode::History => Some(api::history_any(http, edges, s).await),
                VerifyMode::Seq => None,
            }
        })
        .buffered(8)
        .collect()
        .await;
    for ((s, clients), log) in results.iter().zip(logs) {
        let log = match log {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => {
                v.errors.push(format!("{}: history: {e:#}", s.id));
                None
            }
            None => None,
        };
        for c in clients {
            let j = judge(c, log.as_ref());
            v.clients += 1;
            v.duplicates += c.duplicates;
            v.text_mismatches += c.text_mismatches;
            v.lost += j.lost;
            v.mismatched += u64::from(j.mismatched);
            v.unfinished += u64::from(!c.ended);
            v.clients_ok += u64::from(j.exact);
            if let Some(e) = &c.error {
                if v.errors.len() < 20 {
                    v.errors.push(format!("{}: {e}", s.id));
                }
            }
        }
    }
    v
}

/// One client against its session's log.
#[derive(Debug, PartialEq)]
struct Judged {
    /// Seqs the client never received: gaps, and what it stopped short of.
    lost: u64,
    /// Its events differ from the log's (or the log itself is broken).
    mismatched: bool,
    /// Every event of the log once, in order, byte for byte, ending with `end`.
    exact: bool,
}

/// Judges a client; without a log (`--verify seq`) only its own seqs count.
fn judge(c: &ClientResult, log: Option<&Log>) -> Judged {
    let mut lost = c.gaps;
    let mut exact = c.ended && c.duplicates == 0 && c.gaps == 0 && c.text_mismatches == 0;
    let mut mismatched = false;
    if let Some(log) = log {
        lost += log.last_seq.saturating_sub(c.last_seq);
        mismatched = !(c.digest == log.digest && log.contiguous && log.ended);
        exact &= !mismatched;
    }
    Judged {
        lost,
        mismatched,
        exact,
    }
}

#[cfg(test)]
mod tests {
    use super::api::{fold, DIGEST_SEED};
    use super::*;

    /// A log of `n` events and a client that received exactly them.
    fn exact(n: u64) -> (ClientResult, Log) {
        let digest = (1..=n).fold(DIGEST_SEED, |d, s| {
            fold(d, format!("{{\"seq\":{s}}}").as_bytes())
        });
        let log = Log {
            events: n,
            last_seq: n,
            ended: true,
            digest,
            contiguous: true,
        };
        let client = ClientResult {
            events: n,
            last_seq: n,
            ended: true,
            digest,
            ..ClientResult::default()
        };
        (client, log)
    }

    #[test]
    fn an_exact_client_passes_with_and_without_the_log() {
        let (c, log) = exact(5);
        let ok = Judged {
            lost: 0,
            mismatched: false,
            exact: true,
        };
        assert_eq!(judge(&c, Some(&log)), ok);
        assert_eq!(judge(&c, None), ok);
    }

    #[test]
    fn a_gap_counts_as_lost_and_fails_even_without_the_log() {
        let (c, log) = exact(5);
        let gap = ClientResult { gaps: 1, ..c };
        assert_eq!(judge(&gap, Some(&log)).lost, 1);
        assert!(!judge(&gap, None).exact);
    }

    #[test]
    fn a_repeated_event_fails() {
        let (c, log) = exact(5);
        let dup = ClientResult { duplicates: 1, ..c };
        assert!(!judge(&dup, Some(&log)).exact);
    }

    #[test]
    fn other_bytes_or_order_under_the_same_seqs_are_a_mismatch() {
        // Same seqs, other bytes or order: only the digest tells.
        let (c, log) = exact(5);
        let other = ClientResult {
            digest: c.digest ^ 1,
            ..c
        };
        let j = judge(&other, Some(&log));
        assert!(j.mismatched && !j.exact);
    }

    #[test]
    fn a_client_that_stopped_short_lost_the_rest() {
        let (c, log) = exact(5);
        let short = ClientResult {
            last_seq: 3,
            ended: false,
            ..c
        };
        let j = judge(&short, Some(&log));
        assert_eq!((j.lost, j.exact), (2, false));
    }

    #[test]
    fn a_wrong_token_text_fails() {
        let (c, log) = exact(5);
        let bad_text = ClientResult {
            text_mismatches: 1,
            ..c
        };
        assert!(!judge(&bad_text, Some(&log)).exact);
    }

    #[test]
    fn a_log_with_a_hole_is_a_mismatch() {
        let (c, log) = exact(5);
        let broken_log = Log {
            contiguous: false,
            ..log
        };
        assert!(judge(&c, Some(&broken_log)).mismatched);
    }
}
