//! The threads of a client that keep watched locks and idempotency leases
//! alive: one schedules each renewal as it comes due, a few renew
//! (so that a renewal stuck on a stalled server delays no other).
//!
//! Each watched lease is renewed at a third of its TTL with a token-checked
//! step, so a renewal can never revive a lock that another owner holds now.
//! When a renewal finds the lock gone, or cannot reach Redis before the lock's
//! local deadline (start of the last successful renewal + TTL, on the
//! monotonic clock), the lease is marked lost for good and the owner's
//! callback runs.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::keys::{ClaimKeys, LockKeys};
use crate::limits::millis;
use crate::store::Store;

/// Called once, on one of the watchdog's threads, with the lock's name
/// when the watchdog finds the lock lost. It must return quickly.
pub(crate) type LostCallback = Arc<dyn Fn(&str) + Send + Sync>;

/// What a guard knows about its lock without asking Redis; shared by the
/// guard and the watchdog.
#[derive(Debug)]
pub(crate) struct Lease {
    lost: AtomicBool,
    valid_until: Mutex<Validity>,
    /// The store's server generation when the lease was last confirmed: a
    /// newer one means the server restarted or was replaced since, and the
    /// lease may be gone.
    generation: AtomicU64,
}

/// Until when a lease is surely held (monotonic clock): the start of the
/// latest-sent successful grant, extend or renewal, plus its TTL.
#[derive(Debug)]
struct Validity {
    until: Instant,
    /// When the request that set `until` was sent (`None`: the grant).
    sent: Option<Instant>,
}

impl Lease {
    pub fn new(valid_until: Instant, generation: u64) -> Self {
        Lease {
            lost: AtomicBool::new(false),
            valid_until: Mutex::new(Validity {
                until: valid_until,
                sent: None,
            }),
            generation: AtomicU64::new(generation),
        }
    }

    /// Lost for certain: found gone, or not renewed before its deadline.
    pub fn known_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Lost for certain, past its local deadline (it may have expired), or
    /// granted by a server that has since restarted or been replaced
    /// (`generation` is the store's current one).
    pub fn may_be_lost(&self, generation: u64) -> bool {
        self.known_lost()
            || Instant::now() >= self.deadline()
            || self.generation.load(Ordering::Acquire) != generation
    }

    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    pub fn deadline(&self) -> Instant {
        self.valid_until.lock().until
    }

    /// Records a successful grant, extend or renewal sent at `sent`, when the
    /// store's server generation was `generation`. A reply to a request sent
    /// before the one recorded last is ignored: the server may have applied
    /// the later request (say, an `extend` to a shorter TTL) after it, and
    /// its expiry then stands; if it applied this one last, the server's
    /// expiry is only later than the recorded deadline.
    pub fn renewed(&self, sent: Instant, ttl: Duration, generation: u64) {
        let mut validity = self.valid_until.lock();
        if validity.sent.is_some_and(|last| sent < last) {
            return;
        }
        *validity = Validity {
            until: sent + ttl,
            sent: Some(sent),
        };
        self.confirmed(generation);
    }

    /// Records that the lease was found held when the store's server
    /// generation was `generation`.
    pub fn confirmed(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }
}

/// What a renewal extends.
pub(crate) enum LeaseTarget {
    /// A lock; its fencing counter is kept alive with it.
    Lock {
        keys: LockKeys,
        fence_retention_ms: u64,
    },
    /// The in-progress lease of an idempotent action.
    Claim { keys: ClaimKeys },
    /// A lease extended by its own rule: kept by several stores at once (a
    /// Redlock), or a semaphore's permits or a read-write lock's hold.
    Quorum(Arc<dyn QuorumLease>),
}

/// A lease that extends itself: `Ok(true)` when it is still held (by a
/// quorum, for a Redlock) with the new TTL, `Ok(false)` when it is lost.
pub(crate) trait QuorumLease: Send + Sync {
    fn extend(&self, ttl: Duration) -> Result<bool>;

    /// How long after an extension to `ttl` was sent the lease is surely
    /// still held (less than `ttl` where the stores' clocks may drift).
    fn valid_for(&self, ttl: Duration) -> Duration;
}

/// A lock or claim to keep alive.
pub(crate) struct Renewal {
    pub name: String,
    pub target: LeaseTarget,
    pub owner: String,
    pub lease: Arc<Lease>,
    pub on_lost: Option<LostCallback>,
}

struct Entry {
    renewal: Arc<Renewal>,
    ttl: Duration,
    due: Instant,
    in_flight: bool,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_id: u64,
    started: bool,
    shutdown: bool,
    /// When the scheduling thread, asleep, wakes by itself (`None`: awake,
    /// or asleep with nothing to renew); a new entry due later need not
    /// wake it.
    sleeps_until: Option<Instant>,
    /// Renewals due, earliest first, for the renewing threads.
    queue: VecDeque<(u64, Arc<Renewal>, Duration)>,
    /// Renewing threads started, and how many of them are not renewing
    /// (waiting for work, or about to take it).
    renewers: usize,
    idle_renewers: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the scheduling thread: an entry was added or is due sooner.
    changed: Condvar,
    /// Wakes the renewing threads: renewals were queued.
    work: Condvar,
}

/// Most threads of one client renewing at once. A renewal stuck on a
/// stalled server (up to its response timeout) holds one of them, while
/// the others keep renewing leases on healthy servers.
const MAX_RENEWERS: usize = 8;

/// The renewal threads of one client: one schedules, up to
/// [`MAX_RENEWERS`] renew. They start with the first watched lock and stop
/// when the client is dropped.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
}

impl Watchdog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Watchdog {
            shared: Arc::default(),
            store,
        }
    }

    /// Starts renewing with `ttl` a lock granted at `granted_at`; returns the
    /// id to pass to [`Watchdog::unwatch`].
    pub fn watch(&self, renewal: Renewal, ttl: Duration, granted_at: Instant) -> Result<u64> {
        let mut state = self.shared.state.lock();
        if !state.started {
            let shared = Arc::clone(&self.shared);
            let store = Arc::clone(&self.store);
            thread::Builder::new()
                .name("tollgate-watchdog".into())
                .spawn(move || schedule(&shared, &store))
                .map_err(|e| Error::Unavailable {
                    reason: format!("cannot start the watchdog thread: {e}"),
                })?;
            state.started = true;
        }
        let id = state.next_id;
        state.next_id += 1;
        let due = granted_at + ttl / 3;
        state.entries.insert(
            id,
            Entry {
                renewal: Arc::new(renewal),
                ttl,
                due,
                in_flight: false,
            },
        );
        // A thread that wakes before this entry is due finds it then.
        let wake = state.sleeps_until.is_none_or(|wakes| due < wakes);
        drop(state);
        if wake {
            self.shared.changed.notify_all();
        }
        Ok(id)
    }

    /// Renews with `ttl` from now on, after the owner extended the lock to
    /// `ttl` at `sent`.
    pub fn retime(&self, id: u64, ttl: Duration, sent: Instant) {
        if let Some(entry) = self.shared.state.lock().entries.get_mut(&id) {
            entry.ttl = ttl;
            entry.due = sent + ttl / 3;
        }
        self.shared.changed.notify_all();
    }

    /// A hook for the store: when it meets a new server (a restart, a
    /// failover), every watched lease is renewed at once, so a lease that is
    /// gone is reported lost now rather than at its next renewal.
    pub fn renew_all_now_hook(&self) -> Box<dyn Fn() + Send + Sync> {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move || {
            if let Some(shared) = shared.upgrade() {
                let now = Instant::now();
                shared
                    .state
                    .lock()
                    .entries
                    .values_mut()
                    .for_each(|entry| entry.due = entry.due.min(now));
                shared.changed.notify_all();
            }
        })
    }

    /// Stops renewing; a renewal already under way may still complete.
    pub fn unwatch(&self, id: u64) {
        self.shared.state.lock().entries.remove(&id);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.changed.notify_all();
        self.shared.work.notify_all();
    }
}

enum Outcome {
    Renewed { sent: Instant, generation: u64 },
    Lost,
    Failed,
}

/// The scheduling thread: queues each lease as it comes due (earliest
/// first) for the renewing threads, starting more of them while renewals
/// wait and fewer than [`MAX_RENEWERS`] run. It never renews itself, so a
/// renewal stuck on a stalled server delays no other.
fn schedule(shared: &Arc<Shared>, store: &Arc<dyn Store>) {
    let mut state = shared.state.lock();
    while !state.shutdown {
        let now = Instant::now();
        let mut due: Vec<(Instant, u64)> = state
            .entries
            .iter()
            .filter(|(_, entry)| !entry.in_flight && entry.due <= now)
            .map(|(id, entry)| (entry.due, *id))
            .collect();
        if due.is_empty() {
            let next = state
                .entries
                .values()
                .filter(|entry| !entry.in_flight)
                .map(|entry| entry.due)
                .min();
            match next {
                Some(next) => {
                    state.sleeps_until = Some(next);
                    shared.changed.wait_until(&mut state, next);
                }
                None => shared.changed.wait(&mut state),
            }
            state.sleeps_until = None;
            continue;
        }
        due.sort_unstable();
        for (_, id) in due {
            if let Some(entry) = state.entries.get_mut(&id) {
                entry.in_flight = true;
                let job = (id, Arc::clone(&entry.renewal), entry.ttl);
                state.queue.push_back(job);
            }
        }
        while state.idle_renewers < state.queue.len() && state.renewers < MAX_RENEWERS {
            let (shared, store) = (Arc::clone(shared), Arc::clone(store));
            let started = thread::Builder::new()
                .name("tollgate-renewal".into())
                .spawn(move || renew_queued(&shared, store.as_ref()));
            match started {
                Ok(_) => {
                    // Idle from its start: it takes a queued renewal as
                    // soon as it runs.
                    state.renewers += 1;
                    state.idle_renewers += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, "tollgate: cannot start a renewal thread");
                    break;
                }
            }
        }
        if state.renewers == 0 {
            // Not one renewing thread: renew here, as best we can.
            while let Some(job) = state.queue.pop_front() {
                renew_and_settle(shared, store.as_ref(), &mut state, job);
            }
        }
        shared.work.notify_all();
    }
}

/// A renewing thread: takes queued renewals until the client is dropped.
/// It counts as idle (`State::idle_renewers`) except while it renews.
fn renew_queued(shared: &Shared, store: &dyn Store) {
    let mut state = shared.state.lock();
    while !state.shutdown {
        match state.queue.pop_front() {
            Some(job) => {
                state.idle_renewers -= 1;
                renew_and_settle(shared, store, &mut state, job);
                state.idle_renewers += 1;
            }
            None => shared.work.wait(&mut state),
        }
    }
}

/// Renews one queued lease (with the state unlocked), then records the
/// outcome: when it is next due, or that it is lost (reported, again
/// unlocked). Wakes the scheduling thread if the lease is due before it
/// would wake.
fn renew_and_settle(
    shared: &Shared,
    store: &dyn Store,
    state: &mut MutexGuard<'_, State>,
    (id, renewal, sent_ttl): (u64, Arc<Renewal>, Duration),
) {
    let outcome = MutexGuard::unlocked(state, || renew(store, &renewal, sent_ttl));
    let Some(entry) = state.entries.get_mut(&id) else {
        return; // unwatched while renewing
    };
    entry.in_flight = false;
    let ttl = entry.ttl;
    match outcome {
        Outcome::Renewed { sent, generation } => {
            // The server now has the TTL this renewal sent.
            let valid = match &entry.renewal.target {
                LeaseTarget::Quorum(lease) => lease.valid_for(sent_ttl),
                LeaseTarget::Lock { .. } | LeaseTarget::Claim { .. } => sent_ttl,
            };
            entry.renewal.lease.renewed(sent, valid, generation);
            entry.due = if sent_ttl == ttl {
                sent + ttl / 3
            } else {
                // extend() changed the TTL while this renewal was under way
                // and this renewal overwrote it: renew again now.
                Instant::now()
            };
        }
        Outcome::Failed if Instant::now() < entry.renewal.lease.deadline() => {
            // Try again soon, while the lock is still surely ours.
            entry.due = Instant::now() + (ttl / 10).max(Duration::from_millis(10));
        }
        Outcome::Failed if matches!(entry.renewal.target, LeaseTarget::Claim { .. }) => {
            // Past its deadline the claim may be lost (the owner sees it in
            // `is_lost`), but its action still runs: renewing is
            // token-checked, so keep trying rather than invite a second run
            // once Redis answers again.
            entry.due = Instant::now() + (ttl / 10).max(Duration::from_millis(10));
        }
        Outcome::Lost | Outcome::Failed => {
            if let Some(entry) = state.entries.remove(&id) {
                MutexGuard::unlocked(state, || report_lost(&entry.renewal));
            }
            return;
        }
    }
    // Unless the scheduling thread wakes before then by itself (asleep
    // without a deadline counts as never).
    let due = entry.due;
    if state.sleeps_until.is_none_or(|wakes| due < wakes) {
        shared.changed.notify_all();
    }
}

fn renew(store: &dyn Store, renewal: &Renewal, ttl: Duration) -> Outcome {
    let sent = Instant::now();
    let generation = store.server_generation();
    let extended = match &renewal.target {
        LeaseTarget::Lock {
            keys,
            fence_retention_ms,
        } => store.extend_lock(keys, &renewal.owner, millis(ttl), *fence_retention_ms),
        LeaseTarget::Claim { keys } => store.extend_claim(keys, &renewal.owner, millis(ttl)),
        LeaseTarget::Quorum(lease) => lease.extend(ttl),
    };
    match extended {
        Ok(true) => {
            crate::metrics::lease_renewal("ok");
            Outcome::Renewed { sent, generation }
        }
        Ok(false) => {
            crate::metrics::lease_renewal("lost");
            Outcome::Lost
        }
        Err(error) => {
            crate::metrics::lease_renewal("failed");
            tracing::warn!(name = %renewal.name, %error, "tollgate: lease renewal failed");
            Outcome::Failed
        }
    }
}

fn report_lost(renewal: &Renewal) {
    crate::metrics::lease_lost(match renewal.target {
        LeaseTarget::Claim { .. } => "claim",
        LeaseTarget::Lock { .. } | LeaseTarget::Quorum(_) => "lock",
    });
    renewal.lease.mark_lost();
    tracing::warn!(name = %renewal.name, "tollgate: watched lease was lost");
    if let Some(callback) = &renewal.on_lost {
        let name = renewal.name.as_str();
        if catch_unwind(AssertUnwindSafe(|| callback(name))).is_err() {
            tracing::error!(name = %renewal.name, "tollgate: on_lost callback panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A quorum lease that is always extended, valid for half its TTL, and
    /// remembers when it was last asked.
    struct HalfValid {
        last_extended: Mutex<Option<Instant>>,
    }

    impl QuorumLease for HalfValid {
        fn extend(&self, _ttl: Duration) -> Result<bool> {
            *self.last_extended.lock() = Some(Instant::now());
            Ok(true)
        }

        fn valid_for(&self, ttl: Duration) -> Duration {
            ttl / 2
        }
    }

    #[test]
    fn a_late_reply_to_an_earlier_renewal_does_not_move_the_deadline() {
        let start = Instant::now();
        let lease = Lease::new(start + Duration::from_secs(1), 1);
        let (earlier, later) = (start, start + Duration::from_millis(10));
        // The later request (a shorter extend) is answered first.
        lease.renewed(later, Duration::from_secs(2), 2);
        lease.renewed(earlier, Duration::from_secs(60), 3);
        assert_eq!(lease.deadline(), later + Duration::from_secs(2));
        assert!(!lease.may_be_lost(2), "the later reply's generation stands");
        // In order, each reply moves it.
        lease.renewed(later + Duration::from_millis(5), Duration::from_secs(5), 2);
        assert_eq!(
            lease.deadline(),
            later + Duration::from_millis(5) + Duration::from_secs(5)
        );
    }

    #[test]
    fn a_renewed_quorum_lease_is_trusted_only_for_its_own_validity() {
        let watchdog = Watchdog::new(Arc::new(MemoryStore::new()));
        let quorum = Arc::new(HalfValid {
            last_extended: Mutex::new(None),
        });
        let ttl = Duration::from_millis(600);
        let granted = Instant::now();
        let lease = Arc::new(Lease::new(granted + ttl / 2, 0));
        let renewal = Renewal {
            name: "report".into(),
            target: LeaseTarget::Quorum(Arc::clone(&quorum) as Arc<dyn QuorumLease>),
            owner: "owner".into(),
            lease: Arc::clone(&lease),
            on_lost: None,
        };
        let id = watchdog.watch(renewal, ttl, granted).unwrap();
        let give_up = Instant::now() + Duration::from_secs(5);
        // The deadline is recorded after the extension returns.
        while lease.deadline() <= granted + ttl / 2 {
            assert!(Instant::now() < give_up, "the watchdog renews the lease");
            thread::sleep(Duration::from_millis(5));
        }
        // Read in this order, the extension is the one that set the
        // deadline or a later one.
        let deadline = lease.deadline();
        let extended = quorum.last_extended.lock().expect("extended");
        assert!(
            deadline <= extended + ttl / 2,
            "trusted for {:?} past the extension, its validity is {:?}",
            deadline.saturating_duration_since(extended),
            ttl / 2
        );
        watchdog.unwatch(id);
    }
}
