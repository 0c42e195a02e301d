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

use crate::client::Client;
use crate::error::{Error, Result};
use crate::hold::{self, Answer, Asking, Hold, HoldKind};
use crate::limits::millis;
use crate::store::{Acquired, RwRequest};

/// A read-write lock's name and how holds are asked for; made by
/// [`Client::rw_lock`]. Cheap to clone and reusable.
#[derive(Debug, Clone)]
#[must_use = "a read-write lock does nothing until `read` or `write`"]
pub struct RwLock {
    client: Client,
    name: String,
    asking: Asking,
}

impl Client {
    /// The read-write lock `name` (1 to 512 bytes). Holds last 30 s unless
    /// [`ttl`](RwLock::ttl) says otherwise, and asking does not wait unless
    /// [`wait`](RwLock::wait) says so.
    pub fn rw_lock(&self, name: impl Into<String>) -> RwLock {
        RwLock {
            client: self.clone(),
            name: name.into(),
            asking: Asking::DEFAULT,
        }
    }
}

impl RwLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    crate::hold::asking_setters!("hold", "`read` and `write`");

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
            waited: self.asking.wait,
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
        let store = self.client.inner().store.as_ref();
        hold::acquire(
            &self.client,
            HoldKind::ReadWrite,
            ("read-write lock name", &self.name),
            self.asking,
            false,
            |ask| {
                let request = RwRequest {
                    keys: ask.keys,
                    write,
                    owner: ask.owner,
                    ttl_ms: ask.ttl_ms,
                    holder: ask.holder,
                    fence_retention_ms: ask.retention_ms,
                    // A writer that will wait keeps new readers out for as
                    // long as it may wait (set again at each attempt, and
                    // withdrawn when it gives up): a wish shorter than the
                    // sleeps between attempts could lapse in between.
                    wish_ms: millis(ask.waiting),
                };
                Ok(match store.rw_acquire(&request)? {
                    Acquired::Granted { fence } => Answer::Granted {
                        fence,
                        room_left: false,
                    },
                    Acquired::Held { remaining } => Answer::Busy {
                        first_end: remaining,
                    },
                })
            },
            |ask| {
                if write && !self.asking.wait.is_zero() {
                    // Withdraw the wish to write, so readers need not wait
                    // for it to end.
                    let _ = store.rw_release(ask.keys, ask.owner, ask.retention_ms);
                }
            },
        )
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
