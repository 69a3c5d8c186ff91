//! Sending an append again while it has no answer. A JetStream publish made
//! while its stream has no reachable leader is dropped: the replicas that
//! hear it do not answer, and the leader elected a moment later never sees
//! it. Waiting out the request timeout (5 s by default) before the retry
//! would add up to that much to every pause an election causes, so an
//! unanswered append goes out again every probe interval, the same message
//! with the same `Nats-Msg-Id` and fence: stored once whichever copy the
//! leader takes first, the others answered as duplicates (or "in process"
//! while the first is being stored). The first answer decides.

use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

/// Runs `attempt`, and again every `every` while none has answered; returns
/// the first answer that `settles`, or, once every attempt made has failed
/// without settling, the last failure. The caller bounds the whole.
pub(super) async fn resending<T, E, F, Fut>(
    every: Duration,
    attempt: F,
    settles: impl Fn(&Result<T, E>) -> bool,
) -> Result<T, E>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pending = FuturesUnordered::new();
    pending.push(attempt());
    let mut again = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            Some(answer) = pending.next() => {
                if settles(&answer) || pending.is_empty() {
                    return answer;
                }
            }
            _ = again.tick() => pending.push(attempt()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const EVERY: Duration = Duration::from_secs(1);

    /// Attempt `n` (from 0) answers after `answers_after[n]`, with `n`; or
    /// never, where `None`.
    fn attempts(
        answers_after: Vec<Option<Duration>>,
    ) -> (
        Arc<AtomicUsize>,
        impl Fn() -> futures::future::BoxFuture<'static, Result<usize, usize>>,
    ) {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let attempt = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let after = answers_after.get(n).copied().flatten();
            let f: futures::future::BoxFuture<'static, Result<usize, usize>> =
                Box::pin(async move {
                    match after {
                        Some(d) => {
                            tokio::time::sleep(d).await;
                            Ok(n)
                        }
                        None => std::future::pending().await,
                    }
                });
            f
        };
        (made, attempt)
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_answered_in_time_is_sent_once() {
        let (made, attempt) = attempts(vec![Some(Duration::from_millis(300))]);
        assert_eq!(resending(EVERY, attempt, |_| true).await, Ok(0));
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    /// The stream elected a leader 3.5 s in: the copy sent after it (the
    /// fourth) is answered, without waiting out the first one's timeout.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_append_is_sent_again_each_interval_until_one_is_answered() {
        let (made, attempt) = attempts(vec![
            None,
            None,
            None,
            None,
            Some(Duration::from_millis(20)),
        ]);
        let started = tokio::time::Instant::now();
        assert_eq!(resending(EVERY, attempt, |_| true).await, Ok(4));
        assert_eq!(made.load(Ordering::SeqCst), 5);
        assert_eq!(started.elapsed(), Duration::from_millis(4020));
    }

    /// A copy refused while the first is being stored ("in process") does
    /// not end the wait: the first one's answer does.
    #[tokio::test(start_paused = true)]
    async fn an_answer_that_does_not_settle_waits_for_the_copies_still_out() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let attempt = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok::<&str, &str>("stored")
                } else {
                    Err("in process")
                }
            }
        };
        let got = resending(EVERY, attempt, |r| r.is_ok()).await;
        assert_eq!(got, Ok("stored"));
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    /// A failure with nothing else out (no responders: no leader yet) is
    /// the answer, for the caller to retry after its backoff.
    #[tokio::test(start_paused = true)]
    async fn a_failure_with_no_copy_out_is_returned_at_once() {
        let attempt = || async { Err::<(), &str>("no responders") };
        let started = tokio::time::Instant::now();
        assert_eq!(
            resending(EVERY, attempt, |r| r.is_ok()).await,
            Err("no responders")
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
