//! Blocking until a refused step succeeds: shared by lock waiters and
//! duplicates of an idempotent action.
//!
//! Between attempts the caller sleeps until the first of: a notification on
//! the object's key (its holder released it), the holder's remaining TTL
//! running out (expiry sends no notification), a jittered fallback poll (a
//! lost notification costs latency, never correctness), or its own deadline.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::Result;
use crate::notify::Watch;
use crate::store::Store;

/// What one attempt found.
pub(crate) enum Attempt<T> {
    /// Succeeded; stop waiting.
    Done(T),
    /// Refused for now; `remaining` is the current holder's TTL if known.
    Busy { remaining: Option<Duration> },
}

/// Runs `attempt` (given the wait still left) until it is done or `deadline` passes; `Ok(None)` when the
/// deadline passed first. `fair`: the key is a lock's (see
/// [`crate::notify`]): a caller that will wait lines up behind the waiters
/// of this process that came before it instead of passing them.
pub(crate) fn retry_until<T>(
    store: &dyn Store,
    key: &str,
    deadline: Instant,
    poll_interval: Duration,
    fair: bool,
    mut attempt: impl FnMut(Duration) -> Result<Attempt<T>>,
) -> Result<Option<T>> {
    let mut watch: Option<Watch> = None;
    let started = Instant::now();
    if fair && started < deadline && store.board().is_watched(key) {
        let lined_up = store.watch(key, fair, deadline);
        if lined_up.has_waiters_ahead() {
            lined_up.wait(deadline.min(Instant::now() + jittered(poll_interval)));
        }
        watch = Some(lined_up);
    }
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = match attempt(deadline.saturating_duration_since(Instant::now()))? {
            Attempt::Done(value) => {
                if attempts > 1 {
                    let waited_ms = started.elapsed().as_millis() as u64;
                    tracing::debug!(key, attempts, waited_ms, "tollgate: got it after waiting");
                }
                return Ok(Some(value));
            }
            Attempt::Busy { remaining } => remaining,
        };
        let now = Instant::now();
        if now >= deadline {
            let waited_ms = started.elapsed().as_millis() as u64;
            tracing::debug!(
                key,
                attempts,
                waited_ms,
                "tollgate: still held at the deadline"
            );
            return Ok(None);
        }
        let Some(watch) = &watch else {
            watch = Some(store.watch(key, fair, deadline));
            continue; // ask again, now that a release would wake us
        };
        let mut wake_at = now + jittered(poll_interval);
        if let Some(remaining) = remaining {
            wake_at = wake_at.min(now + remaining + Duration::from_millis(1));
        }
        watch.wait(wake_at.min(deadline));
    }
}

/// A fraction in [0.5, 1.0) of `interval`, so waiters do not poll in step.
fn jittered(interval: Duration) -> Duration {
    let random = (Uuid::new_v4().as_u128() & 0xffff) as u32;
    interval / 2 + interval * random / (2 * 0x1_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole_interval() {
        let interval = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = jittered(interval);
            assert!(d >= interval / 2 && d < interval, "{d:?}");
        }
    }
}
