//! A grant of a semaphore or read-write lock held by this process: its
//! lease, renewal, queries and release, shared by [`Permit`](crate::Permit),
//! [`ReadGuard`](crate::ReadGuard) and [`WriteGuard`](crate::WriteGuard).

use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::GrantKeys;
use crate::limits::{check_ttl, millis};
use crate::lock::resend_if_dropped;
use crate::watchdog::{Lease, LeaseTarget, QuorumLease, Renewal};

/// Which kind of object the grant is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldKind {
    Permits,
    ReadWrite,
}

/// How a grant is renewed, read and ended in the store.
struct HoldLease {
    client: Client,
    kind: HoldKind,
    keys: GrantKeys,
    owner: String,
    retention_ms: u64,
}

impl HoldLease {
    /// Sets the grant to end in `ttl_ms` (0: only reads); what is left of
    /// it, `None` when it has ended.
    fn extend_ms(&self, ttl_ms: u64) -> Result<Option<Duration>> {
        let store = &self.client.inner().store;
        resend_if_dropped(|| match self.kind {
            HoldKind::Permits => {
                store.semaphore_extend(&self.keys, &self.owner, ttl_ms, self.retention_ms)
            }
            HoldKind::ReadWrite => {
                store.rw_extend(&self.keys, &self.owner, ttl_ms, self.retention_ms)
            }
        })
    }

    fn release(&self) -> Result<bool> {
        let store = &self.client.inner().store;
        match self.kind {
            HoldKind::Permits => {
                store.semaphore_release(&self.keys, &self.owner, self.retention_ms)
            }
            HoldKind::ReadWrite => store.rw_release(&self.keys, &self.owner, self.retention_ms),
        }
    }
}

impl QuorumLease for HoldLease {
    fn extend(&self, ttl: Duration) -> Result<bool> {
        Ok(self.extend_ms(millis(ttl))?.is_some())
    }
}

/// What a grant was, as the acquiring call saw it.
pub(crate) struct Granted {
    pub kind: HoldKind,
    pub name: String,
    pub keys: GrantKeys,
    pub owner: String,
    pub fence: u64,
    /// When the granting request was sent (monotonic clock).
    pub sent: Instant,
    /// The store's server generation then.
    pub generation: u64,
    /// The TTL the store got.
    pub ttl: Duration,
    pub retention_ms: u64,
}

/// A grant held by this process; dropping it ends the grant.
pub(crate) struct Hold {
    client: Client,
    lease: Arc<HoldLease>,
    name: String,
    fence: u64,
    /// The grant's local deadline, and whether it is known lost.
    deadline: Arc<Lease>,
    renewal: Option<u64>,
    /// The thread recorded as holding it (read-write locks), forgotten
    /// when the grant ends.
    thread: Option<ThreadId>,
    finished: bool,
}

impl Hold {
    /// Takes over a grant; with `watchdog`, renews it at a third of its TTL
    /// until it is released (on failure the grant is released). A
    /// read-write lock's grant is recorded as held by the calling thread
    /// until it ends.
    pub fn start(client: &Client, granted: Granted, watchdog: bool) -> Result<Hold> {
        let thread = (granted.kind == HoldKind::ReadWrite).then(|| {
            let thread = thread::current().id();
            client.inner().held_rw.insert(&granted.name, thread);
            thread
        });
        let mut hold = Hold {
            client: client.clone(),
            lease: Arc::new(HoldLease {
                client: client.clone(),
                kind: granted.kind,
                keys: granted.keys,
                owner: granted.owner,
                retention_ms: granted.retention_ms,
            }),
            name: granted.name,
            fence: granted.fence,
            deadline: Arc::new(Lease::new(granted.sent + granted.ttl, granted.generation)),
            renewal: None,
            thread,
            finished: false,
        };
        if watchdog {
            let renewal = Renewal {
                name: hold.name.clone(),
                target: LeaseTarget::Quorum(Arc::clone(&hold.lease) as Arc<dyn QuorumLease>),
                owner: hold.lease.owner.clone(),
                lease: Arc::clone(&hold.deadline),
                on_lost: None,
            };
            let watchdog = &client.inner().watchdog;
            hold.renewal = Some(watchdog.watch(renewal, granted.ttl, granted.sent)?);
        }
        Ok(hold)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn fencing_token(&self) -> u64 {
        self.fence
    }

    /// What is left of the grant in the store, `None` when it has ended.
    pub fn remaining_ttl(&self) -> Result<Option<Duration>> {
        if self.deadline.known_lost() {
            return Ok(None);
        }
        let left = self.lease.extend_ms(0)?;
        if left.is_none() {
            self.deadline.mark_lost();
        }
        Ok(left)
    }

    pub fn extend(&self, ttl: Duration) -> Result<()> {
        let inner = self.client.inner();
        let ttl_ms = check_ttl("ttl", ttl, inner.settings.max_ttl)?;
        if self.deadline.known_lost() {
            return Err(self.not_held());
        }
        let sent = Instant::now();
        let generation = inner.store.server_generation();
        let ttl = Duration::from_millis(ttl_ms);
        if self.lease.extend_ms(ttl_ms)?.is_some() {
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

    /// Writes `value` to the fenced record `record` with the grant's token.
    pub fn put(&self, record: &str, value: &[u8]) -> Result<()> {
        if self.deadline.known_lost() {
            return Err(self.not_held());
        }
        self.client.record(record).put(value, self.fence)
    }

    /// Ends the grant: [`Error::NotHeld`] when it had ended already.
    pub fn release(mut self) -> Result<()> {
        match self.finish()? {
            true => Ok(()),
            false => Err(self.not_held()),
        }
    }

    pub fn not_held(&self) -> Error {
        Error::NotHeld {
            name: self.name.clone(),
        }
    }

    /// Stops renewal and ends the grant if still live. A release whose
    /// connection broke is sent once more; gone then, it was the first one
    /// that ended a grant still valid when sent, unless the second met a
    /// new server.
    fn finish(&mut self) -> Result<bool> {
        self.finished = true;
        let inner = self.client.inner();
        if let Some(id) = self.renewal.take() {
            inner.watchdog.unwatch(id);
        }
        if let Some(thread) = self.thread.take() {
            inner.held_rw.remove(&self.name, thread);
        }
        let store = inner.store.as_ref();
        let valid_when_sent = !self.deadline.may_be_lost(store.server_generation());
        let released = match self.lease.release() {
            Err(Error::OutcomeUnknown {
                timed_out: false, ..
            }) => {
                self.lease.release()?
                    || (valid_when_sent && !self.deadline.may_be_lost(store.server_generation()))
            }
            other => other?,
        };
        if !released {
            if !self.deadline.known_lost() {
                crate::metrics::lease_lost(match self.lease.kind {
                    HoldKind::Permits => "permit",
                    HoldKind::ReadWrite => "rw_lock",
                });
            }
            self.deadline.mark_lost();
        }
        tracing::debug!(name = %self.name, released, "tollgate: grant released");
        Ok(released)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Err(error) = self.finish() {
            tracing::warn!(name = %self.name, %error, "tollgate: releasing a dropped guard failed; it frees at its TTL");
        }
    }
}

/// The API every guard of a [`Hold`] shares (a field `held: Hold`):
/// name, token, liveness, extend, fenced writes, release, Debug.
macro_rules! guard_api {
    ($guard:ident, $what:literal) => {
        impl $guard {
            /// The name of the lock or semaphore.
            pub fn name(&self) -> &str {
                self.held.name()
            }

            #[doc = concat!("This ", $what, "'s fencing token: larger than every token issued before for this name.")]
            pub fn fencing_token(&self) -> u64 {
                self.held.fencing_token()
            }

            #[doc = concat!("Whether the ", $what, " is still live, asking the store unless it is known to be lost.")]
            pub fn is_held(&self) -> crate::Result<bool> {
                Ok(self.held.remaining_ttl()?.is_some())
            }

            #[doc = concat!("The ", $what, "'s remaining TTL in the store, `None` when it ended.")]
            pub fn remaining_ttl(&self) -> crate::Result<Option<std::time::Duration>> {
                self.held.remaining_ttl()
            }

            #[doc = concat!("Sets the ", $what, "'s remaining TTL to `ttl`; [`Error::NotHeld`](crate::Error::NotHeld) when it had ended.")]
            pub fn extend(&self, ttl: std::time::Duration) -> crate::Result<()> {
                self.held.extend(ttl)
            }

            #[doc = concat!("Writes `value` to the fenced record `record` with this ", $what, "'s fencing token (see [`record`](crate::record)); [`Error::NotHeld`](crate::Error::NotHeld) once it is known to have ended.")]
            ///
            /// Read holds and permits are shared: another holder's newer
            /// token makes this one's writes stale, so write through a
            /// hold that excludes the others (a write hold, a lock, a
            /// semaphore of one permit) when the writes must not race.
            pub fn put(&self, record: &str, value: &[u8]) -> crate::Result<()> {
                self.held.put(record, value)
            }

            #[doc = concat!("Gives the ", $what, " back: [`Error::NotHeld`](crate::Error::NotHeld) when it had ended; no other grant is touched. A release whose connection broke is sent once more, as for locks.")]
            pub fn release(self) -> crate::Result<()> {
                self.held.release()
            }
        }

        impl std::fmt::Debug for $guard {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("name", &self.held.name())
                    .field("fencing_token", &self.held.fencing_token())
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use guard_api;
