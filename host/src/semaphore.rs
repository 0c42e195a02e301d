//! Semaphores: at most N permits of a name out at once, each grant a lease.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::in_memory();
//! // At most 4 exports run at once, across every process.
//! let exports = client
//!     .semaphore("exports", 4)
//!     .ttl(Duration::from_secs(60))
//!     .wait(Duration::from_secs(5));
//! let permit = exports.acquire()?;
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
//!   granted and sees permits left wakes the next. Wake-ups go to a
//!   client's waiters in arrival order, though a waiter whose fallback
//!   poll comes first may be served before one woken, and one asking for
//!   more permits than are free keeps the wake-up while smaller requests
//!   behind it sleep until the next release or poll. An ended grant sends
//!   no notification: waiters learn of it when the first grant's TTL, which
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

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::hold::{self, Answer, Asking, Hold, HoldKind};
use crate::limits::check_name;
use crate::store::{PermitAcquired, PermitRequest};

/// A semaphore's name, its number of permits, and how grants are asked for;
/// made by [`Client::semaphore`]. Cheap to clone and reusable: each
/// `acquire` is a new request.
#[derive(Debug, Clone)]
#[must_use = "a semaphore does nothing until `acquire` or `try_acquire`"]
pub struct Semaphore {
    client: Client,
    name: String,
    permits: u32,
    asking: Asking,
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
            asking: Asking::DEFAULT,
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

    crate::hold::asking_setters!("grant", "`acquire`");

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
            waited: self.asking.wait,
        })
    }

    /// Like [`acquire_many`](Self::acquire_many), but `None` when not
    /// granted.
    pub fn try_acquire_many(&self, count: u32) -> Result<Option<Permit>> {
        let span = crate::trace::span!("semaphore", self.name);
        let take = || self.take(count);
        crate::trace::in_span(span, take, crate::lock::granted_or_not)
    }

    fn take(&self, count: u32) -> Result<Option<Permit>> {
        if count == 0 || count > self.permits {
            check_name("semaphore name", &self.name)?;
            return Err(Error::invalid(
                "permits asked",
                format!(
                    "{count} of a semaphore of {}: ask for 1 to {} (more could never be granted)",
                    self.permits, self.permits
                ),
            ));
        }
        let store = self.client.inner().store.as_ref();
        let held = hold::acquire(
            &self.client,
            HoldKind::Permits,
            ("semaphore name", &self.name),
            self.asking,
            true,
            |ask| {
                let request = PermitRequest {
                    keys: ask.keys,
                    owner: ask.owner,
                    count,
                    permits: self.permits,
                    ttl_ms: ask.ttl_ms,
                    holder: ask.holder,
                    fence_retention_ms: ask.retention_ms,
                };
                Ok(match store.semaphore_acquire(&request)? {
                    PermitAcquired::Granted { fence, free } => Answer::Granted {
                        fence,
                        room_left: free > 0,
                    },
                    PermitAcquired::Busy { first_end } => Answer::Busy { first_end },
                })
            },
            |_| {},
        )?;
        Ok(held.map(|held| Permit { held, count }))
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
        let out: u64 = self.holders()?.iter().map(|h| u64::from(h.count)).sum();
        let free = u64::from(self.permits).saturating_sub(out);
        Ok(u32::try_from(free).unwrap_or(u32::MAX))
    }
}

/// Proof of holding permits of a semaphore. Dropping it releases them
/// (best effort, failures are logged); [`release`](Permit::release) does
/// the same and reports the outcome.
#[must_use = "dropping the permit releases it at once"]
pub struct Permit {
    held: Hold,
    count: u32,
}

crate::hold::guard_api!(Permit, "grant");

impl Permit {
    /// Permits this grant holds.
    pub fn count(&self) -> u32 {
        self.count
    }
}
