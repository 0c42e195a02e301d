//! A grant of a semaphore or read-write lock held by this process: its
//! lease, renewal, queries and release, shared by [`Permit`](crate::Permit),
//! [`ReadGuard`](crate::ReadGuard) and [`WriteGuard`](crate::WriteGuard).

use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::GrantKeys;
use uuid::Uuid;

use crate::limits::{check_ttl, millis};
use crate::lock::{check_request, resend_if_dropped};
use crate::store::Store;
use crate::wait::{Attempt, Queue, after_late_grant, lease_ran_out, retry_until};
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
        let store = self.client.inner().store.as_ref();
        end_grant(store, self.kind, &self.keys, &self.owner, self.retention_ms)
    }
}

/// Ends `owner`'s grant of a `kind` object; whether it still held it.
fn end_grant(
    store: &dyn Store,
    kind: HoldKind,
    keys: &GrantKeys,
    owner: &str,
    retention_ms: u64,
) -> Result<bool> {
    match kind {
        HoldKind::Permits => store.semaphore_release(keys, owner, retention_ms),
        HoldKind::ReadWrite => store.rw_release(keys, owner, retention_ms),
    }
}

impl QuorumLease for HoldLease {
    fn extend(&self, ttl: Duration) -> Result<bool> {
        Ok(self.extend_ms(millis(ttl))?.is_some())
    }

    fn valid_for(&self, ttl: Duration) -> Duration {
        ttl // one store, whose clock the TTL runs on
    }
}

/// How a semaphore's permits or a read-write lock's hold are asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asking {
    pub ttl: Duration,
    pub wait: Duration,
    pub watchdog: bool,
}

impl Asking {
    /// A 30 s TTL, no wait, no watchdog.
    pub const DEFAULT: Asking = Asking {
        ttl: crate::lock::DEFAULT_LOCK_TTL,
        wait: Duration::ZERO,
        watchdog: false,
    };
}

/// The `ttl`, `wait` and `watchdog` setters of a builder with a field
/// `asking: Asking`; `$what` names what is granted, `$asks` the calls that
/// wait.
macro_rules! asking_setters {
    ($what:literal, $asks:literal) => {
        #[doc = concat!("How long a ", $what, " lasts unless extended or renewed (store clock).")]
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.asking.ttl = ttl;
            self
        }

        #[doc = concat!("How long ", $asks, " may wait (monotonic clock); zero, the default, asks once.")]
        pub fn wait(mut self, wait: std::time::Duration) -> Self {
            self.asking.wait = wait;
            self
        }

        #[doc = concat!("Renews each ", $what, " at a third of its TTL for as long as its guard lives.")]
        pub fn watchdog(mut self) -> Self {
            self.asking.watchdog = true;
            self
        }
    };
}

pub(crate) use asking_setters;

/// One request to the store, as [`acquire`]'s `ask` sends it.
pub(crate) struct Ask<'a> {
    pub keys: &'a GrantKeys,
    pub owner: &'a str,
    pub holder: &'a str,
    pub ttl_ms: u64,
    pub retention_ms: u64,
    /// The wait left.
    pub waiting: Duration,
}

/// What one request found.
pub(crate) enum Answer {
    /// Granted; `room_left`: another waiter could be granted too.
    Granted { fence: u64, room_left: bool },
    /// Refused; `first_end` is when the first grant in the way ends.
    Busy { first_end: Option<Duration> },
}

/// Asks for a grant of `name` until it is given or the wait ends, and
/// takes it over: the flow semaphores and read-write locks share. `ask`
/// sends one (owner-checked, so resendable) request; `gave_up` runs when
/// the wait ended, or failed, without a grant. A read-write lock is refused
/// at once to a thread that holds it already. Waiters of one client line up
/// in arrival order with `in_order`, else all wake at each release.
pub(crate) fn acquire(
    client: &Client,
    kind: HoldKind,
    name: (&'static str, &str),
    asking: Asking,
    in_order: bool,
    ask: impl Fn(&Ask<'_>) -> Result<Answer>,
    gave_up: impl FnOnce(&Ask<'_>),
) -> Result<Option<Hold>> {
    let inner = client.inner();
    let settings = &inner.settings;
    let ttl_ms = check_request(settings, name, asking.ttl, asking.wait, asking.watchdog)?;
    let name = name.1;
    if kind == HoldKind::ReadWrite && inner.held_rw.contains(name, thread::current().id()) {
        return Err(Error::WouldDeadlock {
            name: name.to_owned(),
        });
    }
    let keys = match kind {
        HoldKind::Permits => inner.keyspace.semaphore(name),
        HoldKind::ReadWrite => inner.keyspace.rw_lock(name),
    };
    let owner = Uuid::new_v4().simple().to_string();
    let holder = inner.holder_description();
    let request = |waiting| Ask {
        keys: &keys,
        owner: &owner,
        holder: &holder,
        ttl_ms,
        retention_ms: millis(settings.fence_retention),
        waiting,
    };
    let store = inner.store.as_ref();
    let asked = Instant::now();
    let deadline = asked + asking.wait;
    let ttl = Duration::from_millis(ttl_ms); // what the server gets
    let queue = if in_order { Queue::Fifo } else { Queue::All };
    let granted = retry_until(
        store,
        &keys.key,
        deadline,
        settings.poll_interval,
        queue,
        |waiting| {
            let sent = Instant::now();
            let generation = store.server_generation();
            // Resending is safe: a grant to this owner token is answered again.
            Ok(match resend_if_dropped(|| ask(&request(waiting)))? {
                Answer::Granted { .. } if lease_ran_out(sent, ttl) => {
                    let retention_ms = millis(settings.fence_retention);
                    let _ = end_grant(store, kind, &keys, &owner, retention_ms);
                    return after_late_grant(name, ttl, sent, deadline);
                }
                Answer::Granted { fence, room_left } => {
                    Attempt::Done((fence, room_left, sent, generation))
                }
                Answer::Busy { first_end } => Attempt::Busy {
                    remaining: first_end,
                },
            })
        },
    );
    let (fence, room_left, sent, generation) = match granted {
        Ok(Some(granted)) => granted,
        other => {
            gave_up(&request(Duration::ZERO));
            other?;
            tracing::debug!(name, ?kind, "tollgate: not granted");
            crate::metrics::lock_not_granted();
            return Ok(None);
        }
    };
    if room_left {
        // The next waiter here need not wait for a release.
        store.board().wake_next(&keys.key);
    }
    tracing::debug!(name, ?kind, fence, "tollgate: granted");
    crate::metrics::lock_granted(sent.saturating_duration_since(asked));
    let retention_ms = millis(settings.fence_retention);
    let granted = Granted {
        kind,
        name: name.to_owned(),
        keys,
        owner,
        fence,
        sent,
        generation,
        ttl: Duration::from_millis(ttl_ms),
        retention_ms,
    };
    Hold::start(client, granted, asking.watchdog).map(Some)
}

/// What a grant was, as the acquiring call saw it.
struct Granted {
    kind: HoldKind,
    name: String,
    keys: GrantKeys,
    owner: String,
    fence: u64,
    /// When the granting request was sent (monotonic clock).
    sent: Instant,
    /// The store's server generation then.
    generation: u64,
    /// The TTL the store got.
    ttl: Duration,
    retention_ms: u64,
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
    fn start(client: &Client, granted: Granted, watchdog: bool) -> Result<Hold> {
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
