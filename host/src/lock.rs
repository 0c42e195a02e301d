//! Distributed locks: one holder at a time per name, with fencing tokens.
//!
//! # Guarantees
//! - **Mutual exclusion** while the TTL runs: a grant is one atomic step
//!   (one script reads the lock's record and writes the new grant), and
//!   every later step (extend, release, TTL query) checks the guard's
//!   random owner token and the grant's end in the same script, so a guard
//!   whose lock expired can never change the next holder's lock. (A
//!   release sent before the guard's local deadline is not checked against
//!   the server's clock: where the two disagree, a grant that ran out on
//!   the server but that nobody took since is reported released.)
//! - **Fencing tokens** grow with every grant of a name, across all clients.
//!   Pass the token to the resource you protect and have it refuse tokens
//!   lower than the highest it has seen: that stops a holder whose lock
//!   expired while it was paused. Tokens are `max(previous + 1, Redis server
//!   time in µs)`. The per-name counter (kept in the lock's key) lives as
//!   long as the grant plus the client's fence retention (default one hour);
//!   after that the key is deleted (no key leaks), and the next token is
//!   still larger than every earlier one unless the Redis server's clock was
//!   set back by more than the retention.
//! - **Waiting** is woken by the release itself (sharded pub/sub on the
//!   lock's channel, one listening connection per client and node), by the
//!   holder's TTL running out (the refusal carries the
//!   holder's remaining TTL), or at the latest by a jittered fallback poll, so
//!   a lost notification costs latency, never correctness. The waiters of
//!   one client are served in arrival order: a release wakes the one that
//!   waited longest, and a new caller lines up behind them; waiters in
//!   different processes compete for each release.
//! - **Same thread, same lock**: asking again for a lock that the calling
//!   thread holds through the same client (its guard is still alive) fails at
//!   once with [`Error::WouldDeadlock`] instead of waiting for itself. Locks
//!   are not reentrant. The check keys on the thread that acquired the guard:
//!   a guard moved to another thread still counts for the acquiring one.
//!
//! # Clocks
//! TTLs are counted by the Redis server's clock (milliseconds). The
//! watchdog and waits use this process's monotonic clock: a guard's local
//! deadline is the start of its last successful grant or renewal plus the
//! TTL, which is normally never later than the server's expiry (it can be
//! when the server's clock steps forward, or this host is suspended).

use std::fmt;
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::client::{Client, Settings};
use crate::error::{Error, Result};
use crate::keys::LockKeys;
use crate::limits::{check_name, check_ttl, check_wait, millis};
use crate::notify::HandedGrant;
use crate::store::{Acquired, HeldGrant, LockRequest};
use crate::store::{NextOwner, Released, Waiting};
use crate::wait::{Attempt, Fair, Queue, after_late_grant, lease_ran_out, retry_until};
use crate::watchdog::{Lease, LeaseTarget, LostCallback, Renewal};

/// The TTL of a lock when none is given: 30 seconds.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);

/// The shortest TTL the watchdog accepts (it renews at a third of the TTL).
pub const MIN_WATCHDOG_TTL: Duration = Duration::from_millis(100);

/// How a lock is taken: its TTL, how long to wait for it, and renewal.
///
/// ```
/// use std::time::Duration;
/// use tollgate::LockOptions;
///
/// let options = LockOptions::new()
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(3))
///     .watchdog();
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct LockOptions {
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
    on_lost: Option<LostCallback>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: DEFAULT_LOCK_TTL,
            wait: Duration::ZERO,
            watchdog: false,
            on_lost: None,
        }
    }
}

impl fmt::Debug for LockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockOptions")
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .field("watchdog", &self.watchdog)
            .field("on_lost", &self.on_lost.is_some())
            .finish()
    }
}

impl LockOptions {
    /// TTL 30 s, no waiting, no watchdog.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long the lock lives unless extended or renewed (server clock).
    /// At least 1 ms and at most the client's `max_ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `acquire` may block for a held lock (this process's monotonic
    /// clock). Zero, the default, tries once.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Renews the lock at a third of its TTL for as long as the guard lives.
    /// Needs a TTL of at least [`MIN_WATCHDOG_TTL`].
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }

    /// Turns the watchdog on and calls `on_lost(name)` once, on one of the
    /// watchdog's threads, if it finds the lock lost (the guard's
    /// [`is_lost`](LockGuard::is_lost) turns `true` just before). The
    /// callback must return quickly (it holds up the watchdog's other
    /// renewals on that thread); a panic in it is caught and logged.
    pub fn on_lost(mut self, on_lost: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.watchdog = true;
        self.on_lost = Some(Arc::new(on_lost));
        self
    }
}

/// A lock request being put together; finish it with
/// [`acquire`](LockBuilder::acquire) or [`try_acquire`](LockBuilder::try_acquire).
#[must_use = "a lock builder does nothing until acquire() or try_acquire()"]
#[derive(Debug)]
pub struct LockBuilder<'c> {
    client: &'c Client,
    name: String,
    options: LockOptions,
}

impl<'c> LockBuilder<'c> {
    pub(crate) fn new(client: &'c Client, name: String) -> Self {
        LockBuilder {
            client,
            name,
            options: LockOptions::default(),
        }
    }

    /// See [`LockOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options = self.options.ttl(ttl);
        self
    }

    /// See [`LockOptions::wait`].
    pub fn wait(mut self, wait: Duration) -> Self {
        self.options = self.options.wait(wait);
        self
    }

    /// See [`LockOptions::watchdog`].
    pub fn watchdog(mut self) -> Self {
        self.options = self.options.watchdog();
        self
    }

    /// See [`LockOptions::on_lost`].
    pub fn on_lost(mut self, on_lost: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.options = self.options.on_lost(on_lost);
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: LockOptions) -> Self {
        self.options = options;
        self
    }

    /// Takes the lock, blocking up to the wait. A lock still held by another
    /// owner when the wait ends gives [`Error::Timeout`].
    pub fn acquire(self) -> Result<LockGuard> {
        let wait = self.options.wait;
        let name = self.name.clone();
        self.try_acquire()?
            .ok_or(Error::Timeout { name, waited: wait })
    }

    /// Takes the lock, blocking up to the wait; `Ok(None)` when another owner
    /// still holds it when the wait ends.
    ///
    /// If this fails with [`Error::OutcomeUnknown`] after a timeout, the lock
    /// may have been granted without the reply arriving; it then stays taken
    /// until its TTL runs out.
    pub fn try_acquire(self) -> Result<Option<LockGuard>> {
        acquire(self.client, self.name, self.options)
    }
}

/// Proof of holding a lock. Dropping it releases the lock (best effort,
/// failures are logged); [`release`](LockGuard::release) does the same and
/// reports the outcome.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    client: Client,
    name: String,
    keys: LockKeys,
    owner: String,
    fence: u64,
    lease: Arc<Lease>,
    renewal: Option<u64>,
    thread: ThreadId,
    finished: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("fencing_token", &self.fence)
            .field("watchdog", &self.renewal.is_some())
            .field("lost", &self.lease.known_lost())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This grant's fencing token: larger than every token issued before for
    /// this name, by any client.
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// Writes `value` to the fenced record `record` with this grant's
    /// fencing token: refused with [`Error::StaleToken`] once a later
    /// holder of this lock has written it, and with [`Error::NotHeld`]
    /// when this guard already knows its lock is lost. See
    /// [`record`](crate::record).
    pub fn put(&self, record: &str, value: &[u8]) -> Result<()> {
        if self.lease.known_lost() {
            return Err(Error::NotHeld {
                name: self.name.clone(),
            });
        }
        self.client.record(record).put(value, self.fence)
    }

    /// `true` once the lock may be gone: found lost (by the watchdog or a
    /// call on this guard), past its local deadline (the start of the last
    /// grant, extend or renewal plus the TTL, on this process's monotonic
    /// clock) without a renewal, or granted by a Redis server that this
    /// client has since seen restart or be replaced (a new `run_id` on a new
    /// connection). Asks nothing of Redis.
    ///
    /// The remaining window: a restart is seen at the client's next new
    /// connection (its next call, renewal or health check after the old
    /// connections broke). With a watchdog, that sighting renews every
    /// watched lock at once, so a lost one is reported within one round
    /// trip; without one, `is_lost` turns `true` then and
    /// [`is_held`](Self::is_held) tells for certain.
    pub fn is_lost(&self) -> bool {
        self.lease
            .may_be_lost(self.client.inner().store.server_generation())
    }

    /// Whether this guard still holds the lock, asking Redis unless the lock
    /// is already known to be lost for good.
    pub fn is_held(&self) -> Result<bool> {
        Ok(self.remaining_ttl()?.is_some())
    }

    /// The lock's remaining TTL on the Redis server, or `None` when this guard
    /// no longer holds it.
    pub fn remaining_ttl(&self) -> Result<Option<Duration>> {
        if self.lease.known_lost() {
            return Ok(None);
        }
        let store = &self.client.inner().store;
        let generation = store.server_generation();
        let ttl = resend_if_dropped(|| store.owned_ttl(&self.keys, &self.owner))?;
        match ttl {
            Some(_) => self.lease.confirmed(generation),
            None => self.lease.mark_lost(),
        }
        Ok(ttl)
    }

    /// Sets the lock's remaining TTL to `ttl` (not added to what is left).
    /// With a watchdog, later renewals use this TTL too.
    /// [`Error::NotHeld`] when the lock was lost; nothing is changed then.
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        let inner = self.client.inner();
        let ttl_ms = check_ttl("ttl", ttl, inner.settings.max_ttl)?;
        if self.lease.known_lost() {
            return Err(self.not_held());
        }
        let retention = millis(inner.settings.fence_retention);
        let sent = Instant::now();
        let generation = inner.store.server_generation();
        let extended = resend_if_dropped(|| {
            inner
                .store
                .extend_lock(&self.keys, &self.owner, ttl_ms, retention)
        })?;
        if extended {
            let ttl = Duration::from_millis(ttl_ms);
            self.lease.renewed(sent, ttl, generation);
            if let Some(id) = self.renewal {
                inner.watchdog.retime(id, ttl, sent);
            }
            Ok(())
        } else {
            self.lease.mark_lost();
            Err(self.not_held())
        }
    }

    /// Releases the lock. [`Error::NotHeld`] when it had already been lost
    /// (force-unlocked, taken by another holder after its TTL ran out, or
    /// past its TTL by the server's clock once the guard's own deadline has
    /// passed too); another holder's lock is never changed. (The release
    /// writes the released value and reads the old one in one command, and
    /// puts back what it found, TTL included, in the same atomic step when
    /// the grant is not this guard's; keyspace notifications, if enabled,
    /// show that as writes.) A server that refuses writes (a replica, out of
    /// memory, too few replicas) gives [`Error::Refused`] to the holder and
    /// [`Error::NotHeld`] to a guard that lost its lock.
    ///
    /// A release whose connection broke before the reply is sent once more
    /// (it is owner-checked, so safe to repeat). If that second try finds
    /// the lock gone and the guard's lease was still valid when the first
    /// was sent, the first one released it: the call succeeds. A release
    /// that timed out gives [`Error::OutcomeUnknown`]; the lock then frees at
    /// its TTL at the latest.
    pub fn release(mut self) -> Result<()> {
        match self.finish()? {
            true => Ok(()),
            false => Err(self.not_held()),
        }
    }

    fn not_held(&self) -> Error {
        Error::NotHeld {
            name: self.name.clone(),
        }
    }

    /// Stops renewal, forgets the hold and deletes the lock if still ours.
    fn finish(&mut self) -> Result<bool> {
        self.finished = true;
        let inner = self.client.inner();
        if let Some(id) = self.renewal.take() {
            inner.watchdog.unwatch(id);
        }
        inner.held.remove(&self.name, self.thread);
        let store = inner.store.as_ref();
        let valid_when_sent = !self.lease.may_be_lost(store.server_generation());
        let held = HeldGrant {
            owner: &self.owner,
            fence: Some(self.fence),
            live: valid_when_sent,
        };
        let board = store.board();
        let released = match board.claim_offer(&self.keys.lock) {
            // A waiter of this client may be granted the lock in the same step.
            Some(claim) => {
                let sent = Instant::now();
                let generation = store.server_generation();
                let offer = claim.offer();
                let next = NextOwner {
                    owner: &offer.owner,
                    ttl_ms: offer.ttl_ms,
                    holder: &offer.holder,
                    fence_retention_ms: millis(inner.settings.fence_retention),
                    after: Waiting {
                        more_here: board.waiters(&self.keys.lock) > 1,
                    },
                    keep_past_others: board.may_keep(&self.keys.lock),
                };
                let outcome = self.release_step(valid_when_sent, |resend| {
                    store.release_lock_to(&self.keys, &held, &next, resend)
                });
                let handed = match outcome {
                    Ok(Released::HandedOver { fence, past_others }) => {
                        board.kept(&self.keys.lock, past_others);
                        Some(HandedGrant {
                            fence,
                            sent,
                            generation,
                        })
                    }
                    _ => None,
                };
                if matches!(outcome, Ok(Released::FreedForAnother)) {
                    // The waiter waits for its process's turn.
                    board.kept(&self.keys.lock, false);
                    claim.pass();
                } else {
                    // On an error the waiter asks itself, and its own request
                    // finds the lock granted to it if the release did hand it
                    // over.
                    claim.settle(handed);
                }
                outcome? != Released::NotHeld
            }
            None => {
                let outcome = self.release_step(valid_when_sent, |_resend| {
                    store
                        .release_lock(&self.keys, &held)
                        .map(Released::freed_if)
                });
                outcome? != Released::NotHeld
            }
        };
        if !released {
            if !self.lease.known_lost() {
                crate::metrics::lease_lost("lock");
            }
            self.lease.mark_lost();
        }
        tracing::debug!(lock = %self.name, released, "tollgate: lock released");
        Ok(released)
    }
}

impl LockGuard {
    /// Sends a release, and once more when the connection broke before its
    /// answer. If the lock is gone on the resend and the guard's lease was
    /// still valid when the first was sent, the first one released it;
    /// unless the resend met a new server (a restart or failover), which
    /// may never have had our lock.
    fn release_step(
        &self,
        valid_when_sent: bool,
        step: impl Fn(bool) -> Result<Released>,
    ) -> Result<Released> {
        match step(false) {
            Err(Error::OutcomeUnknown {
                timed_out: false, ..
            }) => {
                let store = self.client.inner().store.as_ref();
                Ok(match step(true)? {
                    Released::NotHeld
                        if valid_when_sent
                            && !self.lease.may_be_lost(store.server_generation()) =>
                    {
                        Released::Freed
                    }
                    other => other,
                })
            }
            other => other,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match self.finish() {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(lock = %self.name, "tollgate: dropped guard had already lost its lock");
            }
            Err(error) => {
                tracing::warn!(lock = %self.name, %error, "tollgate: releasing a dropped guard failed; the lock frees at its TTL");
            }
        }
    }
}

/// Runs a step that is safe to repeat once more when the connection broke
/// (not when it timed out: a stopped server would only make us wait twice).
pub(crate) fn resend_if_dropped<T>(step: impl Fn() -> Result<T>) -> Result<T> {
    match step() {
        Err(Error::OutcomeUnknown {
            timed_out: false, ..
        }) => step(),
        other => other,
    }
}

/// Checks a lock request against the client's limits before anything is
/// sent: the name, the TTL (returned in milliseconds), the wait, and a TTL
/// long enough for the watchdog when it is asked for.
pub(crate) fn check_request(
    settings: &Settings,
    name: (&'static str, &str),
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
) -> Result<u64> {
    check_name(name.0, name.1)?;
    let ttl_ms = check_ttl("ttl", ttl, settings.max_ttl)?;
    check_wait(wait, settings.max_wait)?;
    if watchdog && ttl < MIN_WATCHDOG_TTL {
        return Err(Error::invalid(
            "ttl",
            format!("{ttl:?} is too short for the watchdog (at least {MIN_WATCHDOG_TTL:?})"),
        ));
    }
    Ok(ttl_ms)
}

fn acquire(client: &Client, name: String, options: LockOptions) -> Result<Option<LockGuard>> {
    let span = crate::trace::span!("lock", name);
    crate::trace::in_span(
        span,
        || acquire_traced(client, name, options),
        granted_or_not,
    )
}

/// How an acquisition ended, for its span.
pub(crate) fn granted_or_not<T>(granted: &Option<T>) -> &'static str {
    if granted.is_some() {
        "granted"
    } else {
        "not granted"
    }
}

fn acquire_traced(
    client: &Client,
    name: String,
    options: LockOptions,
) -> Result<Option<LockGuard>> {
    let inner = client.inner();
    let settings = &inner.settings;
    let ttl_ms = check_request(
        settings,
        ("lock name", &name),
        options.ttl,
        options.wait,
        options.watchdog,
    )?;
    let thread = thread::current().id();
    if inner.held.contains(&name, thread) {
        return Err(Error::WouldDeadlock { name });
    }

    let keys = inner.keyspace.lock(&name);
    let owner = Uuid::new_v4().simple().to_string();
    let holder = inner.holder_description();
    let fence_retention_ms = millis(settings.fence_retention);
    let asked = Instant::now();
    let deadline = asked + options.wait;
    let ttl = Duration::from_millis(ttl_ms); // what the server gets
    let store = inner.store.as_ref();
    let handed = |grant: HandedGrant| Grant {
        fence: grant.fence,
        sent: grant.sent,
        generation: grant.generation,
    };
    let fair = Fair {
        owner: &owner,
        ttl_ms,
        holder: &holder,
        handed: &handed,
    };
    let granted = retry_until(
        store,
        &keys.lock,
        deadline,
        settings.poll_interval,
        Queue::HandOver(fair),
        |_left| {
            let sent = Instant::now();
            let generation = store.server_generation();
            // While waiters of this client are lined up, the client takes
            // its turn among the processes waiting for the lock.
            let lined_up = store.board().waiters(&keys.lock);
            let request = LockRequest {
                keys: &keys,
                owner: &owner,
                holder: &holder,
                ttl_ms,
                fence_retention_ms,
                waiting: (lined_up > 0).then_some(Waiting {
                    more_here: lined_up > 1,
                }),
            };
            // Resending is safe: a grant to this owner token is answered again.
            Ok(match resend_if_dropped(|| store.acquire_lock(&request))? {
                Acquired::Granted { fence } if lease_ran_out(sent, ttl) => {
                    let held = HeldGrant {
                        owner: &owner,
                        fence: Some(fence),
                        live: false,
                    };
                    let _ = store.release_lock(&keys, &held);
                    return after_late_grant(&name, ttl, sent, deadline);
                }
                Acquired::Granted { fence } => Attempt::Done(Grant {
                    fence,
                    sent,
                    generation,
                }),
                Acquired::Held { remaining } => Attempt::Busy { remaining },
            })
        },
    );
    if !matches!(granted, Ok(Some(_)))
        && !options.wait.is_zero()
        && store.board().waiters(&keys.lock) == 0
    {
        // The last waiter here gave up or failed: this client's turn would
        // be wasted (and the others kept waiting for it) if it stayed.
        let _ = store.leave_turns(&keys);
        if store.board().waiters(&keys.lock) > 0 {
            // A waiter lined up meanwhile, and its place in the queue may
            // have gone with this client's: it asks again, lining up anew.
            store.board().wake_next(&keys.lock);
        }
    }
    let Some(grant) = granted? else {
        tracing::debug!(lock = %name, "tollgate: lock not granted");
        crate::metrics::lock_not_granted();
        return Ok(None);
    };
    tracing::debug!(lock = %name, fence = grant.fence, ttl_ms, "tollgate: lock granted");
    crate::metrics::lock_granted(grant.sent.saturating_duration_since(asked));
    LockGuard::start(client, name, keys, owner, grant, &options, ttl).map(Some)
}

/// A grant as the acquiring call saw it.
struct Grant {
    fence: u64,
    /// When the granting request was sent (monotonic clock).
    sent: Instant,
    /// The store's server generation when it was sent.
    generation: u64,
}

impl LockGuard {
    fn start(
        client: &Client,
        name: String,
        keys: LockKeys,
        owner: String,
        grant: Grant,
        options: &LockOptions,
        ttl: Duration,
    ) -> Result<LockGuard> {
        let inner = client.inner();
        let thread = thread::current().id();
        inner.held.insert(&name, thread);
        let mut guard = LockGuard {
            client: client.clone(),
            name,
            keys,
            owner,
            fence: grant.fence,
            lease: Arc::new(Lease::new(grant.sent + ttl, grant.generation)),
            renewal: None,
            thread,
            finished: false,
        };
        if options.watchdog {
            let renewal = Renewal {
                name: guard.name.clone(),
                target: LeaseTarget::Lock {
                    keys: guard.keys.clone(),
                    fence_retention_ms: millis(inner.settings.fence_retention),
                },
                owner: guard.owner.clone(),
                lease: Arc::clone(&guard.lease),
                on_lost: options.on_lost.clone(),
            };
            // On failure the guard drops here and releases the lock.
            guard.renewal = Some(inner.watchdog.watch(renewal, ttl, grant.sent)?);
        }
        Ok(guard)
    }
}

/// What an operator may see of a held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: String,
    /// The fencing token of the current grant.
    pub fencing_token: u64,
    /// Who holds it: the client name, process id and thread.
    pub holder: String,
    /// Time left on the Redis server; `None` if the key has no TTL.
    pub remaining_ttl: Option<Duration>,
}

impl Client {
    /// Starts a lock request for `name` (1 to 512 bytes, any text).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn main() -> tollgate::Result<()> {
    /// let client = tollgate::Client::open("redis://127.0.0.1/")?;
    /// let guard = client
    ///     .lock("orders:42")
    ///     .ttl(Duration::from_secs(10))
    ///     .wait(Duration::from_secs(3))
    ///     .acquire()?;
    /// println!("fencing token {}", guard.fencing_token());
    /// guard.release()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lock(&self, name: impl Into<String>) -> LockBuilder<'_> {
        LockBuilder::new(self, name.into())
    }

    /// Runs `work` while holding the lock, then releases it. A panic in
    /// `work` releases the lock too.
    ///
    /// Returns [`Error::NotHeld`] when the lock was lost before `work`
    /// finished: `work` ran, but not alone for all of its run, and its value
    /// is dropped. Use a watchdog (`LockOptions::watchdog`) for work of
    /// unknown length, and the guard's fencing token for the resource.
    ///
    /// ```no_run
    /// # fn main() -> tollgate::Result<()> {
    /// use tollgate::LockOptions;
    /// let client = tollgate::Client::open("redis://127.0.0.1/")?;
    /// let total = client.with_lock("report", LockOptions::new().watchdog(), |guard| {
    ///     // write with guard.fencing_token() so stale holders are refused
    ///     guard.fencing_token()
    /// })?;
    /// # let _ = total;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_lock<T>(
        &self,
        name: &str,
        options: LockOptions,
        work: impl FnOnce(&LockGuard) -> T,
    ) -> Result<T> {
        let guard = self.lock(name).options(options).acquire()?;
        let value = work(&guard);
        guard.release()?;
        Ok(value)
    }

    /// The current holder of `name`, or `None` when it is free. For
    /// operators; never reveals the owner token.
    pub fn lock_info(&self, name: &str) -> Result<Option<LockInfo>> {
        check_name("lock name", name)?;
        let inner = self.inner();
        let keys = inner.keyspace.lock(name);
        let record = resend_if_dropped(|| inner.store.lock_record(&keys))?;
        Ok(record.map(|record| LockInfo {
            name: name.to_owned(),
            fencing_token: record.fence,
            holder: record.holder,
            remaining_ttl: record.remaining,
        }))
    }

    /// Held locks whose names match `pattern` (`*` any characters, `?` one,
    /// `[abc]` a class), at most `limit`, for operators. A snapshot taken key
    /// by key, not one atomic step. A key under the locks' prefix that holds
    /// something tollgate did not write is left out (and logged as a
    /// warning), not an error for the whole listing.
    pub fn locks(&self, pattern: &str, limit: usize) -> Result<Vec<LockInfo>> {
        let inner = self.inner();
        let keyspace = &inner.keyspace;
        let found = inner
            .store
            .list_locks(&keyspace.lock_glob(pattern), limit)?;
        Ok(found
            .into_iter()
            .filter_map(|(key, record)| {
                Some(LockInfo {
                    name: keyspace.lock_name(&key)?.into_owned(),
                    fencing_token: record.fence,
                    holder: record.holder,
                    remaining_ttl: record.remaining,
                })
            })
            .collect())
    }

    /// Deletes the lock whoever holds it and wakes its waiters; `true` when
    /// it was held. The holder's guard learns it on its next call
    /// ([`Error::NotHeld`]). An operator's tool: it breaks mutual exclusion
    /// for the holder that is still running.
    pub fn force_unlock(&self, name: &str) -> Result<bool> {
        check_name("lock name", name)?;
        let inner = self.inner();
        inner.store.force_unlock(&inner.keyspace.lock(name))
    }
}
