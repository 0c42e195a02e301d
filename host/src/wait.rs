//! Blocking until a refused step succeeds: shared by lock waiters and
//! duplicates of an idempotent action.
//!
//! Between attempts the caller sleeps until the first of: a notification on
//! the object's key (its holder released it), the holder's remaining TTL
//! running out (expiry sends no notification), a jittered fallback poll (a
//! lost notification costs latency, never correctness), or its own deadline.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::notify::{HandedGrant, Watch};
use crate::store::Store;

/// What one attempt found.
pub(crate) enum Attempt<T> {
    /// Succeeded; stop waiting.
    Done(T),
    /// Refused for now; `remaining` is the current holder's TTL if known.
    Busy { remaining: Option<Duration> },
}

/// A lock's waiter (see [`crate::notify`]): it lines up behind the waiters
/// of this process that came before it instead of passing them, and a
/// holder in this process may grant it the lock as it releases.
pub(crate) struct Fair<'a, T> {
    /// The waiter's owner token, TTL (ms) and holder text.
    pub owner: &'a str,
    pub ttl_ms: u64,
    pub holder: &'a str,
    /// Turns a grant handed over by a release into the result.
    pub handed: &'a dyn Fn(HandedGrant) -> T,
}

/// How the waiters of one key line up in this process.
pub(crate) enum Queue<'a, T> {
    /// Every waiter wakes at each release: duplicates of an idempotent
    /// action, which all get the one result.
    All,
    /// In arrival order, one waiter woken per release: semaphore permits.
    Fifo,
    /// In arrival order, one waiter woken per release, and a release in
    /// this process may grant it the lock directly: locks.
    HandOver(Fair<'a, T>),
}

/// How long a waiter that will ask again waits for a release that may be
/// granting it the lock, past its own deadline; after that it asks, and its
/// request finds the lock granted to it if the release did hand it over.
const HAND_OVER_GRACE: Duration = Duration::from_secs(5);

/// Runs `attempt` (given the wait still left) until it is done or `deadline`
/// passes; `Ok(None)` when the deadline passed first. `queue` says how
/// this process's waiters for `key` line up.
pub(crate) fn retry_until<T>(
    store: &dyn Store,
    key: &str,
    deadline: Instant,
    poll_interval: Duration,
    queue: Queue<'_, T>,
    mut attempt: impl FnMut(Duration) -> Result<Attempt<T>>,
) -> Result<Option<T>> {
    let in_order = !matches!(queue, Queue::All);
    let fair = match queue {
        Queue::HandOver(fair) => Some(fair),
        Queue::All | Queue::Fifo => None,
    };
    let mut watch: Option<Watch> = None;
    let started = Instant::now();
    let line_up = |store: &dyn Store| {
        let watch = store.watch(key, in_order, deadline);
        if let Some(fair) = &fair {
            watch.offer(fair.owner, fair.ttl_ms, fair.holder);
        }
        watch
    };
    // A grant a release handed this waiter (waiting out a hand-over under
    // way, so that the waiter neither asks again meanwhile nor leaves
    // without a lock granted to it).
    let handed = |watch: &Option<Watch>| -> Option<T> {
        let (fair, watch) = (fair.as_ref()?, watch.as_ref()?);
        let limit = deadline.max(Instant::now()) + HAND_OVER_GRACE;
        watch.handed(limit).map(fair.handed)
    };
    // Before giving up: withdraws the offer, taking a grant handed over
    // meanwhile.
    let leave = |watch: &Option<Watch>| -> Option<T> {
        let (fair, watch) = (fair.as_ref()?, watch.as_ref()?);
        watch.leave().map(fair.handed)
    };
    if in_order && started < deadline && store.board().is_watched(key) {
        let lined_up = line_up(store);
        if lined_up.has_waiters_ahead() {
            lined_up.wait(deadline.min(Instant::now() + jittered(poll_interval)));
        }
        watch = Some(lined_up);
    }
    let mut attempts = 0u32;
    loop {
        if let Some(value) = handed(&watch) {
            return Ok(Some(value));
        }
        attempts += 1;
        let tried = match attempt(deadline.saturating_duration_since(Instant::now())) {
            Ok(tried) => tried,
            Err(error) => {
                return match leave(&watch) {
                    Some(value) => Ok(Some(value)),
                    None => Err(error),
                };
            }
        };
        let remaining = match tried {
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
            if let Some(value) = leave(&watch) {
                return Ok(Some(value));
            }
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
            watch = Some(line_up(store));
            continue; // ask again, now that a release would wake us
        };
        let mut wake_at = now + jittered(poll_interval);
        if let Some(remaining) = remaining {
            wake_at = wake_at.min(now + remaining + Duration::from_millis(1));
        }
        watch.wait(wake_at.min(deadline));
    }
}

/// Whether a grant asked for at `sent` (monotonic clock) with `lease` had
/// run out by the time its reply arrived: the reply was slower than the
/// lease, so another caller may hold the object by now.
pub(crate) fn lease_ran_out(sent: Instant, lease: Duration) -> bool {
    sent + lease <= Instant::now()
}

/// What an attempt comes to whose grant arrived after its lease had run
/// out ([`lease_ran_out`]; the caller has given the grant back): another
/// attempt while the caller's wait lasts, else [`Error::Unavailable`], so
/// that nothing runs on a lease that is gone.
pub(crate) fn after_late_grant<T>(
    name: &str,
    lease: Duration,
    sent: Instant,
    deadline: Instant,
) -> Result<Attempt<T>> {
    let took = sent.elapsed();
    tracing::warn!(
        name,
        ?took,
        ?lease,
        "tollgate: a grant arrived after its lease had run out; given back"
    );
    if Instant::now() < deadline {
        return Ok(Attempt::Busy {
            remaining: Some(Duration::ZERO),
        });
    }
    Err(Error::Unavailable {
        reason: format!(
            "Redis answered in {took:?}, after the {lease:?} lease it granted had run out \
             (the grant was given back)"
        ),
    })
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
