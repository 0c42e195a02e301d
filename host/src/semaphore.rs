//! Semaphores: at most N permits of a name out at once, each grant a lease.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::in_memory();
//! // At most 4 exports run at once, across every process.
//! let exports = client.semaphore("exports", 4).ttl(Duration::from_secs(60));
//! let permit = exports.wait(Duration::from_secs(5)).acquire()?;
//! assert_eq!(exports.available()?, 3);
//! // ... the export; permit.fencing_token() goes to what it writes ...
//! permit.release()?; // or drop it
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - **Never more than N permits out**: a grant is one atomic step that
//!   counts the live grants and adds its own only if they leave room.
//! - **Each grant is a lease** with its own random owner token and TTL
//!   (store clock): the permits of a holder that crashed come back when
//!   its TTL ends, not never. [`watchdog`](Semaphore::watchdog) renews a
//!   grant while its [`Permit`] lives, as for locks. Release, extend and
//!   TTL queries check the owner token, so a lapsed permit never touches
//!   another grant.
//! - **A fencing token per grant**, larger than every earlier token of the
//!   name (the scheme of locks), for a resource that refuses stale writers
//!   such as a [fenced record](crate::record).
//! - **Waiting** is woken by releases: each release wakes the longest
//!   waiter of each client (not all of them); a woken waiter that is
//!   granted and sees permits left wakes the next. Waiters of one client
//!   are served in arrival order, so one asking for many permits is not
//!   overtaken for ever by ones asking for few. An ended grant sends no
//!   notification: waiters learn of it when the first grant's TTL, which
//!   a refusal reports, runs out, or at the fallback poll.
//!
//! # When `permits` changes
//! The number of permits is not stored: each request brings its own, and
//! is granted only if the permits already out, plus its own, fit within
//! it. Lowering it takes nothing back: grants already out keep their
//! permits until they end, and new requests wait until enough have ended
//! to fit under the new number. Raising it lets new requests in at once.
//! Clients that disagree on the number each apply their own: use one
//! number per name.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::SemaphoreKeys;
use crate::limits::{check_name, check_ttl, check_wait, millis};
use crate::lock::{DEFAULT_LOCK_TTL, MIN_WATCHDOG_TTL, resend_if_dropped};
use crate::store::{PermitAcquired, PermitRequest};
use crate::wait::{Attempt, Queue, retry_until};
use crate::watchdog::{Lease, LeaseTarget, QuorumLease, Renewal};

/// A semaphore's name, its number of permits, and how grants are asked for;
/// made by [`Client::semaphore`]. Cheap to clone and reusable: each
/// `acquire` is a new request.
#[derive(Debug, Clone)]
#[must_use = "a semaphore does nothing until `acquire` or `try_acquire`"]
pub struct Semaphore {
    client: Client,
    name: String,
    permits: u32,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
}

impl Client {
    /// The semaphore `name` (1 to 512 bytes) with `permits` permits in all
    /// (see [`semaphore`](crate::semaphore) for what happens when callers
    /// use different numbers). Grants last 30 s unless
    /// [`ttl`](Semaphore::ttl) says otherwise, and do not wait unless
    /// [`wait`](Semaphore::wait) says so.
    pub fn semaphore(&self, name: impl Into<String>, permits: u32) -> Semaphore {
        Semaphore {
            client: self.clone(),
            name: name.into(),
            permits,
            ttl: DEFAULT_LOCK_TTL,
            wait: Duration::ZERO,
            watchdog: false,
        }
    }
}

/// One holder of permits, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermitInfo {
    /// Permits the grant holds.
    pub count: u32,
    /// The grant's fencing token.
    pub fencing_token: u64,
    /// Who holds it: the client name, process id and thread.
    pub holder: String,
    /// Time left before the grant ends (store clock).
    pub remaining_ttl: Duration,
}

impl Semaphore {
    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Permits in all, as this handle counts them.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// How long a grant lasts unless extended or renewed (store clock).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `acquire` may wait for permits (monotonic clock); zero, the
    /// default, asks once.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Renews each grant at a third of its TTL for as long as its
    /// [`Permit`] lives.
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }

    /// One permit, waiting up to the wait: [`Error::Timeout`] when none
    /// was free in time.
    pub fn acquire(&self) -> Result<Permit> {
        self.acquire_many(1)
    }

    /// Like [`acquire`](Self::acquire), but `None` when not granted.
    pub fn try_acquire(&self) -> Result<Option<Permit>> {
        self.try_acquire_many(1)
    }

    /// `count` permits in one grant, waiting up to the wait:
    /// [`Error::Timeout`] when they were not free in time.
    pub fn acquire_many(&self, count: u32) -> Result<Permit> {
        self.try_acquire_many(count)?.ok_or_else(|| Error::Timeout {
            name: self.name.clone(),
            waited: self.wait,
        })
    }

    /// Like [`acquire_many`](Self::acquire_many), but `None` when not
    /// granted.
    pub fn try_acquire_many(&self, count: u32) -> Result<Option<Permit>> {
        let inner = self.client.inner();
        let settings = &inner.settings;
        check_name("semaphore name", &self.name)?;
        if count == 0 || count > self.permits {
            return Err(Error::invalid(
                "permits asked",
                format!(
                    "{count} of a semaphore of {}: ask for 1 to {} (more could never be granted)",
                    self.permits, self.permits
                ),
            ));
        }
        let ttl_ms = check_ttl("ttl", self.ttl, settings.max_ttl)?;
        check_wait(self.wait, settings.max_wait)?;
        if self.watchdog && self.ttl < MIN_WATCHDOG_TTL {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{:?} is too short for the watchdog (at least {MIN_WATCHDOG_TTL:?})",
                    self.ttl
                ),
            ));
        }
        let keys = inner.keyspace.semaphore(&self.name);
        let owner = Uuid::new_v4().simple().to_string();
        let holder = inner.holder_description();
        let retention_ms = millis(settings.fence_retention);
        let store = inner.store.as_ref();
        let asked = Instant::now();
        let request = PermitRequest {
            keys: &keys,
            owner: &owner,
            count,
            permits: self.permits,
            ttl_ms,
            holder: &holder,
            fence_retention_ms: retention_ms,
        };
        let granted = retry_until(
            store,
            &keys.semaphore,
            asked + self.wait,
            settings.poll_interval,
            Queue::Fifo,
            |_waiting| {
                let sent = Instant::now();
                let generation = store.server_generation();
                // Resending is safe: a grant to this owner token is answered again.
                Ok(
                    match resend_if_dropped(|| store.semaphore_acquire(&request))? {
                        PermitAcquired::Granted { fence, free } => {
                            Attempt::Done((fence, free, sent, generation))
                        }
                        PermitAcquired::Busy { first_end } => Attempt::Busy {
                            remaining: first_end,
                        },
                    },
                )
            },
        )?;
        let Some((fence, free, sent, generation)) = granted else {
            tracing::debug!(semaphore = %self.name, count, "tollgate: permits not granted");
            crate::metrics::lock_not_granted();
            return Ok(None);
        };
        if free > 0 {
            // Room for more: the next waiter here need not wait for a release.
            store.board().wake_next(&keys.semaphore);
        }
        tracing::debug!(semaphore = %self.name, count, fence, "tollgate: permits granted");
        crate::metrics::lock_granted(sent.saturating_duration_since(asked));
        let ttl = Duration::from_millis(ttl_ms);
        let mut permit = Permit {
            client: self.client.clone(),
            lease: Arc::new(PermitLease {
                client: self.client.clone(),
                keys,
                owner,
                retention_ms,
            }),
            name: self.name.clone(),
            count,
            fence,
            deadline: Arc::new(Lease::new(sent + ttl, generation)),
            renewal: None,
            finished: false,
        };
        if self.watchdog {
            let renewal = Renewal {
                name: self.name.clone(),
                target: LeaseTarget::Quorum(Arc::clone(&permit.lease) as Arc<dyn QuorumLease>),
                owner: permit.lease.owner.clone(),
                lease: Arc::clone(&permit.deadline),
                on_lost: None,
            };
            // On failure the permit drops here and is released.
            permit.renewal = Some(inner.watchdog.watch(renewal, ttl, sent)?);
        }
        Ok(Some(permit))
    }

    /// The grants out now, for operators and tests.
    pub fn holders(&self) -> Result<Vec<PermitInfo>> {
        check_name("semaphore name", &self.name)?;
        let inner = self.client.inner();
        let keys = inner.keyspace.semaphore(&self.name);
        let mut holders: Vec<PermitInfo> = inner
            .store
            .semaphore_grants(&keys)?
            .into_iter()
            .map(|grant| PermitInfo {
                count: grant.count,
                fencing_token: grant.fence,
                holder: grant.holder,
                remaining_ttl: grant.remaining,
            })
            .collect();
        holders.sort_by_key(|h| h.fencing_token);
        Ok(holders)
    }

    /// Permits free now, by this handle's number: permits less those out
    /// (zero when more are out, after the number was lowered).
    pub fn available(&self) -> Result<u32> {
        let out: u32 = self.holders()?.iter().map(|h| h.count).sum();
        Ok(self.permits.saturating_sub(out))
    }
}

/// How a permit's grant is renewed and ended in the store.
struct PermitLease {
    client: Client,
    keys: SemaphoreKeys,
    owner: String,
    retention_ms: u64,
}

impl QuorumLease for PermitLease {
    fn extend(&self, ttl: Duration) -> Result<bool> {
        let store = &self.client.inner().store;
        let left = resend_if_dropped(|| {
            store.semaphore_extend(&self.keys, &self.owner, millis(ttl), self.retention_ms)
        })?;
        Ok(left.is_some())
    }
}

/// Proof of holding permits of a semaphore. Dropping it releases them
/// (best effort, failures are logged); [`release`](Permit::release) does
/// the same and reports the outcome.
#[must_use = "dropping the permit releases it at once"]
pub struct Permit {
    client: Client,
    lease: Arc<PermitLease>,
    name: String,
    count: u32,
    fence: u64,
    /// The grant's local deadline, and whether it is known lost.
    deadline: Arc<Lease>,
    renewal: Option<u64>,
    finished: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("semaphore", &self.name)
            .field("count", &self.count)
            .field("fencing_token", &self.fence)
            .field("watchdog", &self.renewal.is_some())
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Permits this grant holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// This grant's fencing token: larger than every token issued before
    /// for this semaphore.
    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// Whether the grant is still live, asking the store unless it is
    /// known to be lost.
    pub fn is_held(&self) -> Result<bool> {
        Ok(self.remaining_ttl()?.is_some())
    }

    /// The grant's remaining TTL in the store, `None` when it has ended.
    pub fn remaining_ttl(&self) -> Result<Option<Duration>> {
        if self.deadline.known_lost() {
            return Ok(None);
        }
        let lease = &self.lease;
        let store = &self.client.inner().store;
        let left = resend_if_dropped(|| {
            store.semaphore_extend(&lease.keys, &lease.owner, 0, lease.retention_ms)
        })?;
        if left.is_none() {
            self.deadline.mark_lost();
        }
        Ok(left)
    }

    /// Sets the grant's remaining TTL to `ttl`; [`Error::NotHeld`] when it
    /// had ended.
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        let inner = self.client.inner();
        let ttl_ms = check_ttl("ttl", ttl, inner.settings.max_ttl)?;
        if self.deadline.known_lost() {
            return Err(self.not_held());
        }
        let sent = Instant::now();
        let generation = inner.store.server_generation();
        let ttl = Duration::from_millis(ttl_ms);
        if self.lease.extend(ttl)? {
            self.deadline.renewed(sent, ttl, generation);
            if let Some(id) = self.renewal {
                inner.watchdog.retime(id, ttl, sent);
            }
            Ok(())
        } else {
            self.deadline.mark_lost();
            Err(self.not_held())
        }
    }

    /// Writes `value` to the fenced record `record` with this grant's
    /// fencing token (see [`record`](crate::record)).
    pub fn put(&self, record: &str, value: &[u8]) -> Result<()> {
        if self.deadline.known_lost() {
            return Err(self.not_held());
        }
        self.client.record(record).put(value, self.fence)
    }

    /// Gives the permits back: [`Error::NotHeld`] when the grant had ended
    /// (its TTL ran out); another grant is never touched.
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

    /// Stops renewal and ends the grant if still live.
    fn finish(&mut self) -> Result<bool> {
        self.finished = true;
        let inner = self.client.inner();
        if let Some(id) = self.renewal.take() {
            inner.watchdog.unwatch(id);
        }
        let lease = &self.lease;
        let store = inner.store.as_ref();
        let valid_when_sent = !self.deadline.may_be_lost(store.server_generation());
        let release = || store.semaphore_release(&lease.keys, &lease.owner, lease.retention_ms);
        let released = match release() {
            // The connection broke before the answer: ask again. Gone then,
            // it was the first release that ended a grant still valid when
            // sent, unless the second met a new server.
            Err(Error::OutcomeUnknown {
                timed_out: false, ..
            }) => {
                release()?
                    || (valid_when_sent && !self.deadline.may_be_lost(store.server_generation()))
            }
            other => other?,
        };
        if !released {
            if !self.deadline.known_lost() {
                crate::metrics::lease_lost("permit");
            }
            self.deadline.mark_lost();
        }
        tracing::debug!(semaphore = %self.name, released, "tollgate: permits released");
        Ok(released)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match self.finish() {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(semaphore = %self.name, %error, "tollgate: releasing a dropped permit failed; it frees at its TTL");
            }
        }
    }
}
