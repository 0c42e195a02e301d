//! Locks over several independent Redis masters (the Redlock algorithm).
//!
//! A [`Redlock`] is made of N clients, each on its own Redis master (not
//! replicas of each other, not one cluster). A lock is granted when a
//! majority of them grant it within its validity:
//!
//! - **Acquire** asks every master at once, each bounded by a short
//!   per-master timeout, with one random owner token. The lock is granted
//!   when at least `N / 2 + 1` granted it and the validity left —
//!   TTL − time taken − drift (1 % of the TTL + 2 ms) — is above zero. Else
//!   it is released on every master (also where the answer was lost) and
//!   tried again after a jittered pause, until the wait ends.
//! - **Extend** and the watchdog's renewals succeed on a majority within
//!   the validity; **release** goes to every master.
//! - **Fencing token**: the largest of the granting majority's tokens. Any
//!   two majorities share a master, whose counter only grows, so a later
//!   grant's token is larger than an earlier one's unless the masters'
//!   clocks differ by more than the time between the two grants (each
//!   master's token floor is its clock in µs).
//! - **Restarted masters**: a master that restarted empty forgets its
//!   grants, and could make a second majority for a lock that is held. A
//!   master seen with a new run id does not vote for the restart delay
//!   (by default the longest TTL this Redlock has granted), as the
//!   algorithm's "delayed restart" asks. This process can only see restarts
//!   of masters it had talked to before; for other processes, keep a
//!   restarted master out of service for the longest TTL in use (start it
//!   late), or give it persistence with `appendfsync always`.
//!
//! # What Redlock does not guarantee
//! Its safety rests on timing: the validity is counted on this process's
//! monotonic clock, and each master counts the TTL on its own clock. A
//! holder paused (GC, SIGSTOP, a slow disk) past its validity, or a master
//! whose clock jumps, can leave two holders at once (Martin Kleppmann's
//! critique). The fencing token is what makes that harmless: the protected
//! resource must refuse a token lower than the highest it has seen.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, mpsc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::LockKeys;
use crate::limits::{check_ttl, millis};
use crate::lock::{DEFAULT_LOCK_TTL, check_request};
use crate::store::{Acquired, HeldGrant, LockRequest, current_deadline, within_deadline};
use crate::watchdog::{Lease, LeaseTarget, QuorumLease, Renewal};

/// The longest a master is waited for in one round of a Redlock
/// operation when the TTL allows it (else a tenth of the TTL).
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(250);

/// Locks that a majority of independent Redis masters must grant.
///
/// Each round asks every master at once: the first from the calling
/// thread, the others from threads the Redlock keeps for the purpose (a few
/// per master; more are started while more rounds run at once), which end
/// when the Redlock and all its clones are dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate::{Client, Redlock};
///
/// # fn main() -> tollgate::Result<()> {
/// let redlock = Redlock::new([
///     Client::open("redis://10.0.0.1:6379/")?,
///     Client::open("redis://10.0.0.2:6379/")?,
///     Client::open("redis://10.0.0.3:6379/")?,
/// ])?;
/// let guard = redlock
///     .lock("orders:42")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(3))
///     .acquire()?;
/// println!("fencing token {}", guard.fencing_token());
/// guard.release()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Redlock {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Vec<Arc<Node>>,
    /// The threads that ask the masters but the first (which the caller's
    /// thread asks itself).
    voters: Vec<Voters>,
    quorum: usize,
    restart_delay: Option<Duration>,
    /// The longest TTL granted so far: how long a restarted master may have
    /// forgotten a live grant (the default restart delay).
    longest_ttl: Mutex<Duration>,
    /// Locks held through this Redlock, by name and acquiring thread.
    held: crate::held::HeldByThread,
}

struct Node {
    client: Client,
    /// The server generation last seen, and when it last changed.
    seen: Mutex<(u64, Option<Instant>)>,
}

impl fmt::Debug for Redlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redlock")
            .field("masters", &self.inner.nodes.len())
            .field("quorum", &self.inner.quorum)
            .finish_non_exhaustive()
    }
}

/// How one master answered one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Granted(u64),
    Refused,
    Failed,
}

impl Redlock {
    /// A Redlock over the masters of `clients` (at least one; an odd number,
    /// 3 or 5, tolerates the most failures). Each client's settings apply to
    /// its master; the first client's watchdog renews guards that ask for it.
    pub fn new(clients: impl IntoIterator<Item = Client>) -> Result<Redlock> {
        let nodes: Vec<Arc<Node>> = clients
            .into_iter()
            .map(|client| {
                Arc::new(Node {
                    seen: Mutex::new((client.inner().store.server_generation(), None)),
                    client,
                })
            })
            .collect();
        if nodes.is_empty() {
            return Err(Error::invalid("redlock", "needs at least one master"));
        }
        let voters = nodes[1..]
            .iter()
            .map(|node| Voters::new(Arc::clone(node)))
            .collect();
        Ok(Redlock {
            inner: Arc::new(Inner {
                quorum: nodes.len() / 2 + 1,
                nodes,
                voters,
                restart_delay: None,
                longest_ttl: Mutex::new(Duration::ZERO),
                held: Default::default(),
            }),
        })
    }

    /// How long a master seen restarted (a new run id) does not vote. The
    /// default is the longest TTL this Redlock has granted, the longest a
    /// restarted master may have forgotten a live grant. Zero turns the
    /// delay off (a restarted master votes at once, and may help grant a
    /// lock that is held: see the module docs).
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.restart_delay = Some(delay);
        }
        self
    }

    /// How many masters must grant a lock: a majority.
    pub fn quorum(&self) -> usize {
        self.inner.quorum
    }

    /// Starts a lock request for `name`.
    pub fn lock(&self, name: impl Into<String>) -> RedlockBuilder<'_> {
        RedlockBuilder {
            redlock: self,
            name: name.into(),
            ttl: DEFAULT_LOCK_TTL,
            wait: Duration::ZERO,
            watchdog: false,
            node_timeout: None,
        }
    }
}

impl Inner {
    fn first(&self) -> &Client {
        &self.nodes[0].client
    }

    /// Asks every master at once; `op` runs on each with its deadline set.
    /// The answers come in the order of the masters.
    fn ask_all<T: Send + 'static>(
        &self,
        node_timeout: Duration,
        op: impl Fn(&Node) -> Result<T> + Send + Sync + 'static,
    ) -> Vec<Result<T>> {
        // The round's deadline, or the caller's when it is nearer (a plugin
        // invocation's), for every master alike.
        let round = Instant::now() + node_timeout;
        let deadline = current_deadline().map_or(round, |outer| outer.min(round));
        let op = Arc::new(op);
        let asked: Vec<_> = self
            .voters
            .iter()
            .map(|voter| {
                let op = Arc::clone(&op);
                voter.ask(move |node| within_deadline(deadline, || op(node)))
            })
            .collect();
        // The first master is asked from this thread.
        let mine = within_deadline(deadline, || op(&self.nodes[0]));
        std::iter::once(mine)
            .chain(asked.into_iter().map(Answer::wait))
            .collect()
    }

    /// Notes that a master may keep a grant for `ttl` from now: a restart
    /// delay that follows the longest TTL waits at least that long.
    fn granted_for(&self, ttl: Duration) {
        let mut longest = self.longest_ttl.lock();
        *longest = (*longest).max(ttl);
    }

    /// Whether `node` may vote: not seen restarted within the delay. A new
    /// restart seen now starts the delay.
    fn may_vote(&self, node: &Node) -> bool {
        let generation = node.client.inner().store.server_generation();
        let delay = self
            .restart_delay
            .unwrap_or_else(|| *self.longest_ttl.lock());
        let mut seen = node.seen.lock();
        if seen.0 != generation {
            *seen = (generation, Some(Instant::now()));
        }
        seen.1.is_none_or(|at| at.elapsed() >= delay)
    }

    fn release_all(&self, name: &str, owner: &str, node_timeout: Duration) -> Vec<Result<bool>> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.ask_all(node_timeout, move |node| {
            let keys = node.client.inner().keyspace.lock(&name);
            // A node's own fencing token is not kept (nor known where its
            // answer was lost): released by owner.
            node.client
                .inner()
                .store
                .release_lock(&keys, &HeldGrant::by_owner(&owner))
        })
    }
}

/// A Redlock request being put together; finish it with
/// [`acquire`](RedlockBuilder::acquire) or
/// [`try_acquire`](RedlockBuilder::try_acquire).
#[must_use = "a lock builder does nothing until acquire() or try_acquire()"]
#[derive(Debug)]
pub struct RedlockBuilder<'r> {
    redlock: &'r Redlock,
    name: String,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
    node_timeout: Option<Duration>,
}

impl RedlockBuilder<'_> {
    /// How long the lock lives on each master unless extended (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long `acquire` may keep trying (this process's monotonic clock).
    /// Zero, the default, tries one round.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Renews the lock on a majority at a third of its TTL while the guard
    /// lives (the first client's watchdog).
    pub fn watchdog(mut self) -> Self {
        self.watchdog = true;
        self
    }

    /// The longest one master is waited for in one round (default: a tenth
    /// of the TTL, at most [`DEFAULT_NODE_TIMEOUT`]).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = Some(timeout);
        self
    }

    /// Takes the lock, trying until the wait ends; [`Error::NoQuorum`] with
    /// the last round's votes when no majority granted it.
    pub fn acquire(self) -> Result<RedlockGuard> {
        self.attempt()?
    }

    /// Takes the lock, trying until the wait ends; `Ok(None)` when other
    /// owners still hold it on too many masters, [`Error::NoQuorum`] when
    /// failed masters kept a majority out of reach.
    pub fn try_acquire(self) -> Result<Option<RedlockGuard>> {
        match self.attempt()? {
            Ok(guard) => Ok(Some(guard)),
            // Refusals, not failures, kept the majority out: held elsewhere.
            Err(Error::NoQuorum {
                needed,
                granted,
                failed,
                ..
            }) if granted + failed < needed => Ok(None),
            Err(no_quorum) => Err(no_quorum),
        }
    }

    /// The rounds: `Ok(Ok(guard))` when granted, `Ok(Err(NoQuorum))` when
    /// not by the deadline, `Err` for bad input.
    fn attempt(self) -> Result<Result<RedlockGuard>> {
        let span = crate::trace::span!("redlock", self.name);
        crate::trace::in_span(
            span,
            || self.attempt_traced(),
            |granted| match granted {
                Ok(_) => "granted",
                Err(_) => "no quorum",
            },
        )
    }

    fn attempt_traced(self) -> Result<Result<RedlockGuard>> {
        let asked = Instant::now();
        let outcome = self.rounds()?;
        match &outcome {
            Ok(_) => crate::metrics::lock_granted(asked.elapsed()),
            Err(_) => crate::metrics::lock_not_granted(),
        }
        Ok(outcome)
    }

    fn rounds(self) -> Result<Result<RedlockGuard>> {
        let inner = &self.redlock.inner;
        let settings = &inner.first().inner().settings;
        let name = ("lock name", self.name.as_str());
        let ttl_ms = check_request(settings, name, self.ttl, self.wait, self.watchdog)?;
        let thread = thread::current().id();
        if inner.held.contains(&self.name, thread) {
            return Err(Error::WouldDeadlock { name: self.name });
        }
        let ttl = Duration::from_millis(ttl_ms);
        let node_timeout = self
            .node_timeout
            .unwrap_or((ttl / 10).min(DEFAULT_NODE_TIMEOUT))
            .max(Duration::from_millis(1));
        let drift = clock_drift(ttl);
        let owner = Uuid::new_v4().simple().to_string();
        let holder = format!("redlock {}", inner.first().inner().holder_description());
        let deadline = Instant::now() + self.wait;
        loop {
            let started = Instant::now();
            let asked = (self.name.clone(), owner.clone(), holder.clone());
            let votes: Vec<Vote> = inner
                .ask_all(node_timeout, move |node| {
                    let (name, owner, holder) = &asked;
                    let client = node.client.inner();
                    let keys = client.keyspace.lock(name);
                    let request = LockRequest {
                        keys: &keys,
                        owner,
                        holder,
                        ttl_ms,
                        fence_retention_ms: millis(client.settings.fence_retention),
                        waiting: None,
                    };
                    client.store.acquire_lock(&request)
                })
                .into_iter()
                .zip(&inner.nodes)
                .map(|(answer, node)| match answer {
                    // A master seen restarted within the delay does not vote.
                    Ok(Acquired::Granted { .. }) if !inner.may_vote(node) => Vote::Failed,
                    Ok(Acquired::Granted { fence }) => Vote::Granted(fence),
                    Ok(Acquired::Held { .. }) => Vote::Refused,
                    Err(_) => Vote::Failed,
                })
                .collect();
            let validity = ttl.saturating_sub(started.elapsed()).saturating_sub(drift);
            let tokens: Vec<u64> = votes
                .iter()
                .filter_map(|vote| match vote {
                    Vote::Granted(token) => Some(*token),
                    _ => None,
                })
                .collect();
            if tokens.len() >= inner.quorum && !validity.is_zero() {
                let granted = Grant {
                    fence: tokens.iter().copied().max().unwrap_or_default(),
                    valid_until: started + validity,
                    ttl,
                };
                return RedlockGuard::start(
                    self.redlock,
                    self.name,
                    owner,
                    granted,
                    self.watchdog,
                    node_timeout,
                )
                .map(Ok);
            }
            // Not granted: give back what was granted, also where the
            // answer was lost.
            inner.release_all(&self.name, &owner, node_timeout);
            let count = |wanted: fn(&Vote) -> bool| votes.iter().filter(|v| wanted(v)).count();
            let no_quorum = Error::NoQuorum {
                name: self.name.clone(),
                needed: inner.quorum,
                granted: tokens.len(),
                refused: count(|v| *v == Vote::Refused),
                failed: count(|v| *v == Vote::Failed),
            };
            let pause = jittered_pause(ttl);
            if Instant::now() + pause >= deadline {
                return Ok(Err(no_quorum));
            }
            thread::sleep(pause);
        }
    }
}

/// A pause of 5 to 50 ms (less for short TTLs) between rounds, so that
/// contenders do not meet in step.
fn jittered_pause(ttl: Duration) -> Duration {
    let max = (ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(50));
    let random = (Uuid::new_v4().as_u128() & 0xffff) as u32;
    max / 10 + max * random / 0x1_0000 * 9 / 10
}

/// A majority's grant.
struct Grant {
    fence: u64,
    /// When the validity ends (monotonic clock).
    valid_until: Instant,
    ttl: Duration,
}

/// Proof of holding a Redlock on a majority of its masters. Dropping it
/// releases the lock on every master (best effort);
/// [`release`](RedlockGuard::release) does the same and reports the outcome.
#[must_use = "dropping the guard releases the lock at once"]
pub struct RedlockGuard {
    redlock: Redlock,
    shared: Arc<Held>,
    lease: Arc<Lease>,
    renewal: Option<u64>,
    thread: ThreadId,
    finished: bool,
}

/// What the guard and the watchdog share.
struct Held {
    redlock: Redlock,
    name: String,
    owner: String,
    fence: u64,
    node_timeout: Duration,
}

impl fmt::Debug for RedlockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockGuard")
            .field("name", &self.shared.name)
            .field("fencing_token", &self.shared.fence)
            .finish_non_exhaustive()
    }
}

impl Held {
    /// Sets the TTL on every master; `Ok(true)` when a majority did within
    /// the validity.
    fn extend_all(&self, ttl: Duration) -> Result<bool> {
        let inner = &self.redlock.inner;
        let started = Instant::now();
        let (name, owner) = (self.name.clone(), self.owner.clone());
        let answers = inner.ask_all(self.node_timeout, move |node| {
            let client = node.client.inner();
            let keys: LockKeys = client.keyspace.lock(&name);
            client.store.extend_lock(
                &keys,
                &owner,
                millis(ttl),
                millis(client.settings.fence_retention),
            )
        });
        let extended = answers.iter().filter(|a| matches!(a, Ok(true))).count();
        let lost = answers.iter().filter(|a| matches!(a, Ok(false))).count();
        let drift = clock_drift(ttl);
        let in_time = started.elapsed() + drift < ttl;
        if extended >= inner.quorum && in_time {
            return Ok(true);
        }
        if lost > inner.nodes.len() - inner.quorum {
            return Ok(false); // a majority no longer has it
        }
        Err(Error::NoQuorum {
            name: self.name.clone(),
            needed: inner.quorum,
            granted: extended,
            refused: lost,
            failed: answers.len() - extended - lost,
        })
    }
}

impl QuorumLease for Held {
    fn extend(&self, ttl: Duration) -> Result<bool> {
        self.extend_all(ttl)
    }

    fn valid_for(&self, ttl: Duration) -> Duration {
        ttl.saturating_sub(clock_drift(ttl))
    }
}

/// How far the masters' clocks may run ahead of ours over `ttl`: a grant or
/// extension to `ttl` is trusted for `ttl` less this and the time it took.
fn clock_drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

impl RedlockGuard {
    fn start(
        redlock: &Redlock,
        name: String,
        owner: String,
        grant: Grant,
        watchdog: bool,
        node_timeout: Duration,
    ) -> Result<RedlockGuard> {
        let inner = &redlock.inner;
        inner.granted_for(grant.ttl);
        let thread = thread::current().id();
        inner.held.insert(&name, thread);
        let first = inner.first().inner();
        let shared = Arc::new(Held {
            redlock: redlock.clone(),
            name,
            owner,
            fence: grant.fence,
            node_timeout,
        });
        let mut guard = RedlockGuard {
            redlock: redlock.clone(),
            lease: Arc::new(Lease::new(
                grant.valid_until,
                first.store.server_generation(),
            )),
            shared,
            renewal: None,
            thread,
            finished: false,
        };
        if watchdog {
            let renewal = Renewal {
                name: guard.shared.name.clone(),
                target: LeaseTarget::Quorum(Arc::clone(&guard.shared) as Arc<dyn QuorumLease>),
                owner: guard.shared.owner.clone(),
                lease: Arc::clone(&guard.lease),
                on_lost: None,
            };
            let granted_at = grant
                .valid_until
                .checked_sub(grant.ttl)
                .unwrap_or_else(Instant::now);
            guard.renewal = Some(first.watchdog.watch(renewal, grant.ttl, granted_at)?);
        }
        Ok(guard)
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This grant's fencing token: the largest of the granting majority's.
    pub fn fencing_token(&self) -> u64 {
        self.shared.fence
    }

    /// `true` once the lock may be gone: past its validity (on this
    /// process's monotonic clock) without an extension, or found lost.
    pub fn is_lost(&self) -> bool {
        let first = self.redlock.inner.first().inner();
        self.lease.may_be_lost(first.store.server_generation())
    }

    /// Sets the lock's TTL on every master; succeeds when a majority did
    /// within the validity. [`Error::NotHeld`] when a majority no longer
    /// holds it.
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        let first = self.redlock.inner.first().inner();
        let ttl_ms = check_ttl("ttl", ttl, first.settings.max_ttl)?;
        let ttl = Duration::from_millis(ttl_ms);
        let sent = Instant::now();
        let generation = first.store.server_generation();
        // Before any master takes it: one that restarts after taking it
        // must sit out at least this TTL.
        self.redlock.inner.granted_for(ttl);
        if self.shared.extend_all(ttl)? {
            let drift = clock_drift(ttl);
            self.lease
                .renewed(sent, ttl.saturating_sub(drift), generation);
            if let Some(id) = self.renewal {
                first.watchdog.retime(id, ttl, sent);
            }
            Ok(())
        } else {
            self.lease.mark_lost();
            Err(Error::NotHeld {
                name: self.shared.name.clone(),
            })
        }
    }

    /// Releases the lock on every master. [`Error::NotHeld`] when fewer
    /// than a majority still had it (it had expired, at least in part);
    /// [`Error::NoQuorum`] when failed masters leave that unknown. Another
    /// owner's lock is never touched.
    pub fn release(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        let inner = &self.redlock.inner;
        if let Some(id) = self.renewal.take() {
            inner.first().inner().watchdog.unwatch(id);
        }
        inner.held.remove(&self.shared.name, self.thread);
        let answers = inner.release_all(
            &self.shared.name,
            &self.shared.owner,
            self.shared.node_timeout,
        );
        let released = answers.iter().filter(|a| matches!(a, Ok(true))).count();
        let gone = answers.iter().filter(|a| matches!(a, Ok(false))).count();
        if released >= inner.quorum {
            return Ok(());
        }
        self.lease.mark_lost();
        if gone > inner.nodes.len() - inner.quorum {
            return Err(Error::NotHeld {
                name: self.shared.name.clone(),
            });
        }
        Err(Error::NoQuorum {
            name: self.shared.name.clone(),
            needed: inner.quorum,
            granted: released,
            refused: gone,
            failed: answers.len() - released - gone,
        })
    }
}

impl Drop for RedlockGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Err(error) = self.finish() {
            tracing::warn!(lock = %self.shared.name, %error, "tollgate: releasing a dropped Redlock guard failed; it frees at its TTL");
        }
    }
}

/// The most idle threads kept per master.
const MAX_IDLE_VOTERS: usize = 4;

/// A task for a voter thread.
type Job = Box<dyn FnOnce(&Node) + Send>;

/// The threads that ask one master for the rounds of other threads: kept
/// between rounds (up to [`MAX_IDLE_VOTERS`]) so a round starts none, and
/// started when all are busy, so concurrent rounds never queue behind each
/// other (nor behind a stalled master). A kept thread ends when its Redlock
/// and every clone of it are dropped.
struct Voters {
    node: Arc<Node>,
    /// The idle threads, each by the channel that feeds it.
    idle: Mutex<Vec<mpsc::Sender<Job>>>,
}

impl Voters {
    fn new(node: Arc<Node>) -> Voters {
        Voters {
            node,
            idle: Mutex::default(),
        }
    }

    /// Starts `op` on this master, in an idle thread or a new one.
    fn ask<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Node) -> Result<T> + Send + 'static,
    ) -> Answer<'_, T> {
        let (answer, receiver) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |node| {
            // A panicking vote must not end the thread.
            let result = panic::catch_unwind(AssertUnwindSafe(|| op(node)));
            let _ = answer.send(result.unwrap_or_else(|_| Err(vote_panicked())));
        });
        let idle = self.idle.lock().pop();
        let sent = match idle {
            Some(thread) => thread.send(job).map(|()| thread).map_err(|e| e.0),
            None => Err(job),
        };
        let thread = match sent {
            Ok(thread) => Some(thread),
            Err(job) => self.start(job),
        };
        Answer {
            voters: self,
            thread,
            receiver,
        }
    }

    /// A new thread, running `job` first.
    fn start(&self, job: Job) -> Option<mpsc::Sender<Job>> {
        let (thread, jobs) = mpsc::channel::<Job>();
        let _ = thread.send(job);
        let node = Arc::clone(&self.node);
        let started = thread::Builder::new()
            .name("tollgate-redlock".into())
            .spawn(move || {
                for job in jobs {
                    job(&node);
                }
            });
        match started {
            Ok(_) => Some(thread),
            Err(error) => {
                tracing::warn!("tollgate: cannot start a Redlock thread: {error}");
                None
            }
        }
    }
}

/// A master's answer to come.
struct Answer<'v, T> {
    voters: &'v Voters,
    /// The thread asking, given back once it answered.
    thread: Option<mpsc::Sender<Job>>,
    receiver: mpsc::Receiver<Result<T>>,
}

impl<T> Answer<'_, T> {
    /// Waits for it (each job is bounded by its round's deadline).
    fn wait(self) -> Result<T> {
        let Some(thread) = self.thread else {
            return Err(Error::Unavailable {
                reason: "no thread could be started to ask a Redlock master".into(),
            });
        };
        let answer = self
            .receiver
            .recv()
            .unwrap_or_else(|_| Err(vote_panicked()));
        let mut idle = self.voters.idle.lock();
        // Past the cap, the thread is let go (it ends with its channel):
        // a burst of rounds leaves no crowd of threads behind.
        if idle.len() < MAX_IDLE_VOTERS {
            idle.push(thread);
        }
        answer
    }
}

fn vote_panicked() -> Error {
    Error::UnexpectedReply("a Redlock vote panicked".into())
}
