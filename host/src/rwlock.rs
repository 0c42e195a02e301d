//! Read-write locks: many readers or one writer, and writers are not
//! starved by a stream of readers.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::in_memory();
//! let config = client.rw_lock("config").wait(Duration::from_secs(2));
//! let reading = config.read()?; // with readers on other threads and processes
//! drop(reading);
//! let writing = config.write()?; // nobody else while this lives
//! writing.put("config/current", b"v2")?; // with the write hold's token
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - **Never a writer with a reader, never two writers**: a grant is one
//!   atomic step that checks the other holds.
//! - **Writers are not starved**: a writer that is refused and will wait
//!   leaves a wish to write for as long as it may wait, and no new reader
//!   is let in while a wish lives; the readers inside finish, and the
//!   writer goes in. A writer that gives up withdraws its wish; one whose
//!   process dies keeps readers out until its wait would have ended.
//!   Readers may wait behind a stream of writers instead.
//! - **Each hold is a lease** with its own owner token, TTL (store clock)
//!   and fencing token, renewable by the [`watchdog`](RwLock::watchdog): a
//!   crashed holder's hold ends at its TTL. Release, extend and TTL
//!   queries check the owner token.
//! - **No waiting for yourself**: asking for the lock (read or write)
//!   while the same thread holds it through the same client fails at once
//!   with [`Error::WouldDeadlock`], the read-then-write upgrade included.
//! - **Waiting** is woken by releases (every waiter of a client wakes:
//!   several readers may go in at once), by the first hold's TTL that a
//!   refusal reports, or by the fallback poll.

use std::thread;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::hold::{Granted, Hold, HoldKind};
use crate::limits::millis;
use crate::lock::{DEFAULT_LOCK_TTL, check_request, resend_if_dropped};
use crate::store::{Acquired, RwRequest};
use crate::wait::{Attempt, Queue, retry_until};

/// A read-write lock's name and how holds are asked for; made by
/// [`Client::rw_lock`]. Cheap to clone and reusable.
#[derive(Debug, Clone)]
#[must_use = "a read-write lock does nothing until `read` or `write`"]
pub struct RwLock {
    client: Client,
    name: String,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
}

impl Client {
    /// The read-write lock `name` (1 to 512 bytes). Holds last 30 s unless
    /// [`ttl`](RwLock::ttl) says otherwise, and asking does not wait unless
    /// [`wait`](RwLock::wait) says so.
    pub fn rw_lock(&self, name: impl Into<String>) -> RwLock {
        RwLock {
            client: self.clone(),
            name: name.into(),
            ttl: DEFAULT_LOCK_TTL,
            wait: Duration::ZERO,
            watchdog: false,
        }
    }
}

impl RwLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a hold lasts unless extended or renewed (store clock).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `read` and `write` may wait (monotonic clock); zero, the
    /// default, asks once.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Renews each hold at a third of its TTL for as long as its guard
    /// lives.
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }

    /// A read hold, waiting up to the wait: [`Error::Timeout`] when a
    /// writer held or wanted the lock all along.
    pub fn read(&self) -> Result<ReadGuard> {
        self.try_read()?.ok_or_else(|| self.timeout())
    }

    /// Like [`read`](Self::read), but `None` when not granted.
    pub fn try_read(&self) -> Result<Option<ReadGuard>> {
        Ok(self.take(false)?.map(|held| ReadGuard { held }))
    }

    /// The write hold, waiting up to the wait: [`Error::Timeout`] when
    /// others still held the lock then.
    pub fn write(&self) -> Result<WriteGuard> {
        self.try_write()?.ok_or_else(|| self.timeout())
    }

    /// Like [`write`](Self::write), but `None` when not granted.
    pub fn try_write(&self) -> Result<Option<WriteGuard>> {
        Ok(self.take(true)?.map(|held| WriteGuard { held }))
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            name: self.name.clone(),
            waited: self.wait,
        }
    }

    fn take(&self, write: bool) -> Result<Option<Hold>> {
        let span = match write {
            true => crate::trace::span!("rw_lock write", self.name),
            false => crate::trace::span!("rw_lock read", self.name),
        };
        let take = || self.take_traced(write);
        crate::trace::in_span(span, take, crate::lock::granted_or_not)
    }

    fn take_traced(&self, write: bool) -> Result<Option<Hold>> {
        let inner = self.client.inner();
        let settings = &inner.settings;
        let name = ("read-write lock name", self.name.as_str());
        let ttl_ms = check_request(settings, name, self.ttl, self.wait, self.watchdog)?;
        let thread = thread::current().id();
        if inner.held_rw.contains(&self.name, thread) {
            return Err(Error::WouldDeadlock {
                name: self.name.clone(),
            });
        }
        let keys = inner.keyspace.rw_lock(&self.name);
        let owner = Uuid::new_v4().simple().to_string();
        let holder = inner.holder_description();
        let retention_ms = millis(settings.fence_retention);
        let store = inner.store.as_ref();
        let asked = Instant::now();
        let deadline = asked + self.wait;
        let granted = retry_until(
            store,
            &keys.key,
            deadline,
            settings.poll_interval,
            Queue::All,
            |waiting| {
                let request = RwRequest {
                    keys: &keys,
                    write,
                    owner: &owner,
                    ttl_ms,
                    holder: &holder,
                    fence_retention_ms: retention_ms,
                    // A writer that will wait keeps new readers out for as
                    // long as it may wait (set again at each attempt, and
                    // withdrawn when it gives up): a wish shorter than the
                    // sleeps between attempts could lapse in between.
                    wish_ms: millis(waiting),
                };
                let sent = Instant::now();
                let generation = store.server_generation();
                // Resending is safe: a grant to this owner token is answered again.
                Ok(match resend_if_dropped(|| store.rw_acquire(&request))? {
                    Acquired::Granted { fence } => Attempt::Done((fence, sent, generation)),
                    Acquired::Held { remaining } => Attempt::Busy { remaining },
                })
            },
        );
        let granted = match granted {
            Ok(Some(granted)) => granted,
            other => {
                if write && !self.wait.is_zero() {
                    // Gave up (or failed): withdraw the wish to write, so
                    // readers need not wait for it to end.
                    let _ = store.rw_release(&keys, &owner, retention_ms);
                }
                other?;
                tracing::debug!(rw_lock = %self.name, write, "tollgate: read-write lock not granted");
                crate::metrics::lock_not_granted();
                return Ok(None);
            }
        };
        let (fence, sent, generation) = granted;
        tracing::debug!(rw_lock = %self.name, write, fence, "tollgate: read-write lock granted");
        crate::metrics::lock_granted(sent.saturating_duration_since(asked));
        let granted = Granted {
            kind: HoldKind::ReadWrite,
            name: self.name.clone(),
            keys,
            owner,
            fence,
            sent,
            generation,
            ttl: Duration::from_millis(ttl_ms),
            retention_ms,
        };
        Hold::start(&self.client, granted, self.watchdog).map(Some)
    }
}

/// A read hold of a read-write lock; other readers may hold it too, no
/// writer does. Dropping it releases it (best effort, failures logged);
/// [`release`](ReadGuard::release) reports the outcome.
#[must_use = "dropping the guard releases the read hold at once"]
pub struct ReadGuard {
    held: Hold,
}

/// The write hold of a read-write lock: nobody else holds it. Dropping it
/// releases it (best effort, failures logged);
/// [`release`](WriteGuard::release) reports the outcome.
#[must_use = "dropping the guard releases the write hold at once"]
pub struct WriteGuard {
    held: Hold,
}

crate::hold::guard_api!(ReadGuard, "hold");
crate::hold::guard_api!(WriteGuard, "hold");
