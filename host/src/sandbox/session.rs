//! One invocation's calls, checked against the policy: [`Session`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::GuestError;
use super::policy::Policy;
use crate::error::Error;
use crate::idempotency::{Begin, Claim, DEFAULT_LEASE, DEFAULT_RESULT_TTL};
use crate::lock::{DEFAULT_LOCK_TTL, LockGuard};
use crate::store::within_deadline;
use crate::{
    Client, Counter, FencedRecord, OnceOutcome, Permit, ReadGuard, RecordEntry, Reset, Sequence,
    WriteGuard,
};

/// How a guest asks for a lock (the WIT `lock-options`). Zero TTL asks for
/// the default (30 s, or the policy's `max_ttl` if lower); zero wait tries
/// once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockRequest {
    /// The lock's TTL in ms (store clock).
    pub ttl_ms: u64,
    /// How long to wait for a held lock, in ms (monotonic clock), also cut
    /// at the session's deadline.
    pub wait_ms: u64,
    /// Renew the lock at a third of its TTL while it is held.
    pub renew: bool,
}

/// How a guest claims an idempotency key (the WIT `claim-options`). Zeros
/// ask for the defaults: a 30 s lease, results kept 24 h, no wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The in-progress lease in ms, renewed while the claim is held.
    pub lease_ms: u64,
    /// How long the result or cached failure is kept, in ms.
    pub result_ttl_ms: u64,
    /// How long to wait while another caller runs the action, in ms.
    pub wait_ms: u64,
}

/// How a guest draws from a sequence (the WIT `sequence-options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceRequest {
    /// A format such as `ORD-{date}-{seq:06}`; none gives the bare number.
    pub format: Option<String>,
    /// When numbering restarts.
    pub reset: Reset,
}

/// A counter's limits (the WIT `bounds`); none is unbounded on that side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterBounds {
    /// The lowest value a change may leave.
    pub min: Option<i64>,
    /// The highest value a change may leave.
    pub max: Option<i64>,
}

/// How a guest asks for semaphore permits (the WIT `permit-options`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermitRequest {
    /// Permits of the semaphore in all.
    pub permits: u32,
    /// Permits this grant takes; zero means 1.
    pub count: u32,
    /// The grant's TTL in ms; zero asks for the default (30 s, or the
    /// policy's `max_ttl` if lower).
    pub ttl_ms: u64,
    /// How long to wait, in ms, also cut at the session's deadline.
    pub wait_ms: u64,
    /// Renew the grant at a third of its TTL while it is held.
    pub renew: bool,
}

/// What [`Session::begin`] found (the WIT `claim-outcome`).
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The caller runs the action now, holding the claim.
    Fresh(HeldClaim),
    /// An earlier run completed; its result.
    Completed(Vec<u8>),
    /// An earlier run's failure was cached.
    Failed(String),
    /// Another caller is running it (after the wait).
    InProgress,
}

/// The host side of one plugin invocation, without any wasm runtime: every
/// call a guest can make, checked against its [`Policy`] and bounded by the
/// invocation's deadline, with the error the guest gets.
///
/// - Every name is put in the policy's namespace; key syntax is refused.
/// - Quotas count across the session: locks and claims held at once, names
///   written, bytes of results stored.
/// - Every wait and every store request ends by the deadline (monotonic
///   clock), so no call outlives the invocation.
///
/// The wasmtime host makes one per invocation. It is public so that other
/// hosts (another wasm runtime, or `tollgate-guest`'s native test mode) give
/// guests exactly the same semantics. Cheap to clone; clones share the
/// quotas. What a session hands out ([`HeldLock`], [`HeldClaim`]) is
/// released or abandoned when dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    policy: Arc<Policy>,
    deadline: Instant,
    locks_held: Arc<AtomicUsize>,
    claims_held: Arc<AtomicUsize>,
    permits_held: Arc<AtomicUsize>,
    tally: Mutex<Tally>,
    /// The last wait the deadline cut short, described.
    cut_wait: Mutex<Option<String>>,
}

impl Shared {
    /// Counts `bytes` of a result, failure or record value about to be
    /// stored; refuses past the policy's total.
    fn stores(&self, bytes: usize) -> Result<(), GuestError> {
        let max = self.policy.max_stored_bytes;
        let mut tally = self.tally.lock();
        if tally.stored_bytes.saturating_add(bytes) > max {
            return Err(GuestError::QuotaExceeded(format!(
                "storing {bytes} more bytes would pass the plugin's {max} bytes stored per invocation \
                 ({} stored so far)",
                tally.stored_bytes
            )));
        }
        tally.stored_bytes += bytes;
        Ok(())
    }
}

/// What the invocation has written so far, for the policy's quotas.
#[derive(Default)]
struct Tally {
    /// The names written to, by kind.
    written: HashMap<&'static str, HashSet<String>>,
    /// How many names `written` holds, all kinds together.
    names_written: usize,
    /// Bytes of results and failures stored.
    stored_bytes: usize,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("namespace", &self.shared.policy.namespace())
            .field("deadline", &self.shared.deadline)
            .field(
                "locks_held",
                &self.shared.locks_held.load(Ordering::Relaxed),
            )
            .field(
                "claims_held",
                &self.shared.claims_held.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for one invocation of a plugin running under `policy`
    /// with `client`'s store, ending at `deadline`.
    pub fn new(client: Client, policy: Arc<Policy>, deadline: Instant) -> Session {
        Session {
            shared: Arc::new(Shared {
                client,
                policy,
                deadline,
                locks_held: Arc::default(),
                claims_held: Arc::default(),
                permits_held: Arc::default(),
                tally: Mutex::default(),
                cut_wait: Mutex::default(),
            }),
        }
    }

    /// The policy the calls are checked against.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// When every wait and store request of the session ends.
    pub fn deadline(&self) -> Instant {
        self.shared.deadline
    }

    /// Locks held now through this session.
    pub fn locks_held(&self) -> usize {
        self.shared.locks_held.load(Ordering::Acquire)
    }

    /// Idempotency claims held now through this session.
    pub fn claims_held(&self) -> usize {
        self.shared.claims_held.load(Ordering::Acquire)
    }

    /// The last host wait that the deadline cut short without its call
    /// succeeding (`a wait for lock "x" (asked up to 10s)`), if any: when an
    /// invocation then runs out of time, this is where its time went.
    pub fn cut_wait(&self) -> Option<String> {
        self.shared.cut_wait.lock().clone()
    }

    /// Records that the deadline cut short a wait for `what`.
    pub(crate) fn note_cut_wait(&self, what: String) {
        *self.shared.cut_wait.lock() = Some(what);
    }

    /// Takes the lock `name`, waiting as asked: `Timeout` when another
    /// owner still holds it at the end of the wait.
    pub fn acquire(&self, name: &str, request: LockRequest) -> Result<HeldLock, GuestError> {
        self.try_acquire(name, request)?.ok_or(GuestError::Timeout)
    }

    /// Like [`acquire`](Self::acquire), but `None` when not granted.
    pub fn try_acquire(
        &self,
        name: &str,
        request: LockRequest,
    ) -> Result<Option<HeldLock>, GuestError> {
        let policy = &self.shared.policy;
        let scoped = policy.scoped("lock name", name)?;
        let slot = Slot::reserve(&self.shared.locks_held, policy.max_locks, "locks")?;
        let ttl = policy.duration("ttl", request.ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        let (wait, cut) = self.wait(request.wait_ms)?;
        self.writes("lock", &scoped)?;
        let mut builder = self.shared.client.lock(scoped).ttl(ttl).wait(wait);
        if request.renew {
            builder = builder.watchdog();
        }
        let granted = self.within_deadline(|| builder.try_acquire());
        // Not granted in a wait the deadline shortened (a refusal, or a
        // store request the deadline ended): that is where the time went.
        if cut && ran_out(&granted) {
            self.note_cut_wait(format!(
                "a wait for lock {name:?} (asked up to {:?})",
                Duration::from_millis(request.wait_ms)
            ));
        }
        Ok(granted?.map(|guard| HeldLock {
            grant: guard,
            name: name.to_owned(),
            shared: Arc::clone(&self.shared),
            _slot: slot,
        }))
    }

    /// Takes permits of the semaphore `name`, waiting as asked: `Timeout`
    /// when they are not free at the end of the wait.
    pub fn acquire_permit(
        &self,
        name: &str,
        request: PermitRequest,
    ) -> Result<HeldPermit, GuestError> {
        self.try_acquire_permit(name, request)?
            .ok_or(GuestError::Timeout)
    }

    /// Like [`acquire_permit`](Self::acquire_permit), but `None` when not
    /// granted.
    pub fn try_acquire_permit(
        &self,
        name: &str,
        request: PermitRequest,
    ) -> Result<Option<HeldPermit>, GuestError> {
        let policy = &self.shared.policy;
        let scoped = policy.scoped("semaphore name", name)?;
        let slot = Slot::reserve(
            &self.shared.permits_held,
            policy.max_permits,
            "semaphore grants",
        )?;
        let ttl = policy.duration("ttl", request.ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        let (wait, cut) = self.wait(request.wait_ms)?;
        self.writes("semaphore", &scoped)?;
        let mut semaphore = self
            .shared
            .client
            .semaphore(scoped, request.permits)
            .ttl(ttl)
            .wait(wait);
        if request.renew {
            semaphore = semaphore.watchdog();
        }
        let granted = self.within_deadline(|| semaphore.try_acquire_many(request.count.max(1)));
        if cut && ran_out(&granted) {
            self.note_cut_wait(format!(
                "a wait for semaphore {name:?} (asked up to {:?})",
                Duration::from_millis(request.wait_ms)
            ));
        }
        Ok(granted?.map(|permit| HeldPermit {
            grant: permit,
            name: name.to_owned(),
            shared: Arc::clone(&self.shared),
            _slot: slot,
        }))
    }

    /// Takes a read (or, with `write`, the write) hold of the read-write
    /// lock `name`, waiting as asked; `None` when not granted. Holds count
    /// as locks in the policy's quota.
    pub fn try_rw(
        &self,
        name: &str,
        write: bool,
        request: LockRequest,
    ) -> Result<Option<HeldRw>, GuestError> {
        let policy = &self.shared.policy;
        let scoped = policy.scoped("read-write lock name", name)?;
        let slot = Slot::reserve(&self.shared.locks_held, policy.max_locks, "locks")?;
        let ttl = policy.duration("ttl", request.ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        let (wait, cut) = self.wait(request.wait_ms)?;
        self.writes("read-write lock", &scoped)?;
        let mut lock = self.shared.client.rw_lock(scoped).ttl(ttl).wait(wait);
        if request.renew {
            lock = lock.watchdog();
        }
        let granted = self.within_deadline(|| match write {
            true => lock.try_write().map(|g| g.map(RwGrant::Write)),
            false => lock.try_read().map(|g| g.map(RwGrant::Read)),
        });
        if cut && ran_out(&granted) {
            self.note_cut_wait(format!(
                "a wait to {} lock {name:?} (asked up to {:?})",
                if write { "write" } else { "read" },
                Duration::from_millis(request.wait_ms)
            ));
        }
        Ok(granted?.map(|grant| HeldRw {
            grant,
            name: name.to_owned(),
            shared: Arc::clone(&self.shared),
            _slot: slot,
        }))
    }

    /// Like [`try_rw`](Self::try_rw), but `Timeout` when not granted.
    pub fn rw(&self, name: &str, write: bool, request: LockRequest) -> Result<HeldRw, GuestError> {
        self.try_rw(name, write, request)?
            .ok_or(GuestError::Timeout)
    }

    /// Permits of the semaphore `name` free now, out of `permits`.
    pub fn available_permits(&self, name: &str, permits: u32) -> Result<u32, GuestError> {
        let scoped = self.shared.policy.scoped("semaphore name", name)?;
        let semaphore = self.shared.client.semaphore(scoped, permits);
        Ok(self.within_deadline(|| semaphore.available())?)
    }

    /// Claims the idempotency key `key`, or reports what an earlier call
    /// left. A non-empty `fingerprint` ties the key to a payload.
    pub fn begin(
        &self,
        key: &str,
        fingerprint: &[u8],
        request: ClaimRequest,
    ) -> Result<ClaimOutcome, GuestError> {
        let policy = &self.shared.policy;
        let scoped = policy.scoped("idempotency key", key)?;
        let lease = policy.duration("lease", request.lease_ms, DEFAULT_LEASE, policy.max_ttl)?;
        let result_ttl = policy.duration(
            "result ttl",
            request.result_ttl_ms,
            DEFAULT_RESULT_TTL,
            policy.max_retention,
        )?;
        let (wait, cut) = self.wait(request.wait_ms)?;
        let slot = Slot::reserve(&self.shared.claims_held, policy.max_claims, "claims")?;
        self.writes("idempotency key", &scoped)?;
        let idempotency = self
            .shared
            .client
            .idempotency(policy.namespace())
            .lease(lease)
            .result_ttl(result_ttl)
            .max_result_size(policy.max_result_bytes);
        let mut call = idempotency.key(key).wait(wait);
        if !fingerprint.is_empty() {
            call = call.fingerprint(fingerprint);
        }
        let begun = self.within_deadline(|| call.begin());
        if cut
            && (matches!(begun, Ok(Begin::InProgress)) || begun.as_ref().is_err_and(deadline_error))
        {
            self.note_cut_wait(format!(
                "a wait for idempotency key {key:?}, run by another caller (asked up to {:?})",
                Duration::from_millis(request.wait_ms)
            ));
        }
        Ok(match begun? {
            Begin::Fresh(mut claim) => {
                // Storing its outcome may not outlast the invocation.
                claim.give_up_at(self.shared.deadline);
                ClaimOutcome::Fresh(HeldClaim {
                    claim,
                    key: key.to_owned(),
                    shared: Arc::clone(&self.shared),
                    _slot: slot,
                })
            }
            Begin::Completed(value) => ClaimOutcome::Completed(value),
            Begin::Failed(text) => ClaimOutcome::Failed(text),
            Begin::InProgress => ClaimOutcome::InProgress,
        })
    }

    /// True for the first call with `key` in a window of `window_ms`.
    pub fn once(&self, key: &str, window_ms: u64) -> Result<bool, GuestError> {
        let policy = &self.shared.policy;
        let scoped = policy.scoped("once key", key)?;
        let window = Duration::from_millis(window_ms);
        if window > policy.max_retention {
            return Err(GuestError::QuotaExceeded(format!(
                "window of {window:?} is above the plugin's limit of {:?}",
                policy.max_retention
            )));
        }
        self.writes("once key", &scoped)?;
        Ok(self.within_deadline(|| self.shared.client.once(&scoped, window))?)
    }

    /// The fenced record `name`'s value and the token that wrote it.
    pub fn record_get(&self, name: &str) -> Result<Option<RecordEntry>, GuestError> {
        let record = self.record(name, false)?;
        Ok(self.within_deadline(|| record.get())?)
    }

    /// Writes `value` to the fenced record `name` with `token`; a stale
    /// token is `StaleToken`. `ttl_ms` zero keeps the record without a TTL;
    /// above zero it is bounded by the policy's retention.
    pub fn record_put(
        &self,
        name: &str,
        value: &[u8],
        token: u64,
        ttl_ms: u64,
    ) -> Result<(), GuestError> {
        let policy = &self.shared.policy;
        if value.len() > policy.max_record_bytes {
            return Err(Error::TooLarge {
                what: "record value",
                size: value.len(),
                limit: policy.max_record_bytes,
            }
            .into());
        }
        let ttl = match ttl_ms {
            0 => None,
            ms => Some(policy.duration("record ttl", ms, Duration::ZERO, policy.max_retention)?),
        };
        let mut record = self.record(name, true)?;
        if let Some(ttl) = ttl {
            record = record.ttl(ttl);
        }
        self.shared.stores(value.len())?;
        self.within_deadline(|| record.put(value, token))
            .map_err(record_error)
    }

    /// Deletes the fenced record `name`'s value with `token`.
    pub fn record_delete(&self, name: &str, token: u64) -> Result<(), GuestError> {
        let record = self.record(name, true)?;
        self.within_deadline(|| record.delete(token))
            .map(drop)
            .map_err(record_error)
    }

    /// Adds `delta` to the counter `name` within `bounds`; the new value.
    pub fn incr(
        &self,
        name: &str,
        delta: i64,
        bounds: Option<CounterBounds>,
    ) -> Result<i64, GuestError> {
        let counter = self.counter(name, bounds, true)?;
        Ok(self.within_deadline(|| counter.incr(delta))?)
    }

    /// Adds `delta` at most once per `op_id`.
    pub fn incr_once(
        &self,
        name: &str,
        op_id: &str,
        delta: i64,
        bounds: Option<CounterBounds>,
    ) -> Result<OnceOutcome, GuestError> {
        let counter = self.counter(name, bounds, true)?;
        self.writes("operation id", &format!("{name}\0{op_id}"))?;
        Ok(self.within_deadline(|| counter.incr_once(op_id, delta))?)
    }

    /// The counter's value; zero when never set.
    pub fn get(&self, name: &str) -> Result<i64, GuestError> {
        let counter = self.counter(name, None, false)?;
        Ok(self.within_deadline(|| counter.get())?)
    }

    /// Sets the counter's value.
    pub fn set(&self, name: &str, value: i64) -> Result<(), GuestError> {
        let counter = self.counter(name, None, true)?;
        Ok(self.within_deadline(|| counter.set(value))?)
    }

    /// The sequence's next number, formatted.
    pub fn next(&self, name: &str, request: &SequenceRequest) -> Result<String, GuestError> {
        let sequence = self.sequence(name, request)?;
        Ok(self.within_deadline(|| sequence.next())?)
    }

    /// The sequence's next number.
    pub fn next_raw(&self, name: &str, request: &SequenceRequest) -> Result<u64, GuestError> {
        let sequence = self.sequence(name, request)?;
        Ok(self.within_deadline(|| sequence.next_raw())?)
    }

    fn within_deadline<T>(&self, work: impl FnOnce() -> T) -> T {
        within_deadline(self.shared.deadline, work)
    }

    /// A guest's wait, within the policy and the session's deadline, and
    /// whether the deadline shortened it.
    fn wait(&self, wait_ms: u64) -> Result<(Duration, bool), GuestError> {
        let policy = &self.shared.policy;
        let wait = policy.duration("wait", wait_ms, Duration::ZERO, policy.max_wait)?;
        let left = self
            .shared
            .deadline
            .saturating_duration_since(Instant::now());
        Ok((wait.min(left), wait > left))
    }

    /// Counts a write to `name` (scoped) of kind `kind`; refuses the call
    /// when it would write to more distinct names than the policy allows.
    fn writes(&self, kind: &'static str, name: &str) -> Result<(), GuestError> {
        let max = self.shared.policy.max_written_names;
        let mut tally = self.shared.tally.lock();
        let over = tally.names_written >= max;
        let names = tally.written.entry(kind).or_default();
        if names.contains(name) {
            return Ok(());
        }
        if over {
            return Err(GuestError::QuotaExceeded(format!(
                "the plugin may write to at most {max} names per invocation \
                 (locks, read-write locks, semaphores, idempotency keys, once keys, counters, \
                 operation ids, sequences, fenced records)"
            )));
        }
        names.insert(name.to_owned());
        tally.names_written += 1;
        Ok(())
    }

    fn record(&self, name: &str, writes: bool) -> Result<FencedRecord, GuestError> {
        let scoped = self.shared.policy.scoped("record name", name)?;
        if writes {
            self.writes("record", &scoped)?;
        }
        Ok(self.shared.client.record(scoped))
    }

    fn counter(
        &self,
        name: &str,
        bounds: Option<CounterBounds>,
        writes: bool,
    ) -> Result<Counter, GuestError> {
        let scoped = self.shared.policy.scoped("counter name", name)?;
        if writes {
            self.writes("counter", &scoped)?;
        }
        let counter = self.shared.client.counter(scoped);
        Ok(match bounds {
            None => counter,
            Some(b) => counter.bounds((
                b.min.map_or(Bound::Unbounded, Bound::Included),
                b.max.map_or(Bound::Unbounded, Bound::Included),
            )),
        })
    }

    fn sequence(&self, name: &str, request: &SequenceRequest) -> Result<Sequence, GuestError> {
        let scoped = self.shared.policy.scoped("sequence name", name)?;
        self.writes("sequence", &scoped)?;
        let mut sequence = self.shared.client.sequence(scoped);
        if let Some(format) = &request.format {
            sequence = sequence.format(format)?;
        }
        Ok(sequence.reset(request.reset))
    }
}

/// Whether a call in a wait that the deadline shortened ended for lack of
/// time: not granted, or a store request that the deadline ended.
fn ran_out<T>(result: &crate::Result<Option<T>>) -> bool {
    match result {
        Ok(granted) => granted.is_none(),
        Err(error) => deadline_error(error),
    }
}

/// The errors of a store request that the invocation's deadline ended.
fn deadline_error(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable { .. } | Error::OutcomeUnknown { .. }
    )
}

/// A record write's error for the guest: a write the replicas did not
/// confirm was made on the primary, so it is an unknown outcome, not the
/// "nothing happened" of `unavailable`.
fn record_error(error: Error) -> GuestError {
    match error {
        e @ Error::NotReplicated { .. } => GuestError::OutcomeUnknown(e.to_string()),
        e => e.into(),
    }
}

/// One of the policy's held-at-once places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn reserve(held: &Arc<AtomicUsize>, max: usize, what: &str) -> Result<Slot, GuestError> {
        if held.fetch_add(1, Ordering::AcqRel) >= max {
            held.fetch_sub(1, Ordering::AcqRel);
            return Err(GuestError::QuotaExceeded(format!(
                "the plugin may hold at most {max} {what} at once"
            )));
        }
        Ok(Slot(Arc::clone(held)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a guest can hold and give back: a lock's guard or a semaphore's
/// permit. Sealed: implemented by [`LockGuard`] and [`Permit`] only.
pub trait Grant: Send + 'static + sealed::Sealed {
    /// The grant's fencing token.
    fn fencing_token(&self) -> u64;
    /// Sets its remaining TTL.
    fn extend(&self, ttl: Duration) -> crate::Result<()>;
    /// Whether it is still live (asks the store).
    fn is_held(&self) -> crate::Result<bool>;
    /// Gives it back.
    fn release(self) -> crate::Result<()>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::LockGuard {}
    impl Sealed for crate::Permit {}
    impl Sealed for super::RwGrant {}
}

/// A read or write hold of a read-write lock, as one grant (the WIT
/// `rw-lock.hold`).
#[derive(Debug)]
pub enum RwGrant {
    /// A read hold.
    Read(ReadGuard),
    /// The write hold.
    Write(WriteGuard),
}

impl Grant for RwGrant {
    fn fencing_token(&self) -> u64 {
        match self {
            RwGrant::Read(g) => g.fencing_token(),
            RwGrant::Write(g) => g.fencing_token(),
        }
    }
    fn extend(&self, ttl: Duration) -> crate::Result<()> {
        match self {
            RwGrant::Read(g) => g.extend(ttl),
            RwGrant::Write(g) => g.extend(ttl),
        }
    }
    fn is_held(&self) -> crate::Result<bool> {
        match self {
            RwGrant::Read(g) => g.is_held(),
            RwGrant::Write(g) => g.is_held(),
        }
    }
    fn release(self) -> crate::Result<()> {
        match self {
            RwGrant::Read(g) => g.release(),
            RwGrant::Write(g) => g.release(),
        }
    }
}

/// A read or write hold held by a guest.
pub type HeldRw = Held<RwGrant>;

impl Held<RwGrant> {
    /// Whether this is the write hold.
    pub fn is_write(&self) -> bool {
        matches!(self.grant, RwGrant::Write(_))
    }
}

impl Grant for LockGuard {
    fn fencing_token(&self) -> u64 {
        LockGuard::fencing_token(self)
    }
    fn extend(&self, ttl: Duration) -> crate::Result<()> {
        LockGuard::extend(self, ttl)
    }
    fn is_held(&self) -> crate::Result<bool> {
        LockGuard::is_held(self)
    }
    fn release(self) -> crate::Result<()> {
        LockGuard::release(self)
    }
}

impl Grant for Permit {
    fn fencing_token(&self) -> u64 {
        Permit::fencing_token(self)
    }
    fn extend(&self, ttl: Duration) -> crate::Result<()> {
        Permit::extend(self, ttl)
    }
    fn is_held(&self) -> crate::Result<bool> {
        Permit::is_held(self)
    }
    fn release(self) -> crate::Result<()> {
        Permit::release(self)
    }
}

/// A grant held by a guest, counted in the session's quota. Dropping it
/// releases the grant at once.
pub struct Held<G: Grant> {
    // Declared before the slot: the grant is released before its place in
    // the quota is given back.
    grant: G,
    name: String,
    shared: Arc<Shared>,
    _slot: Slot,
}

/// A lock held by a guest.
pub type HeldLock = Held<LockGuard>;

/// Semaphore permits held by a guest.
pub type HeldPermit = Held<Permit>;

impl<G: Grant> Held<G> {
    /// The lock's or semaphore's name, as the guest gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This grant's fencing token.
    pub fn fencing_token(&self) -> u64 {
        self.grant.fencing_token()
    }

    /// Sets the remaining TTL to `ttl_ms` (not zero, within the policy).
    pub fn extend(&self, ttl_ms: u64) -> Result<(), GuestError> {
        if ttl_ms == 0 {
            return Err(Error::invalid("ttl", "extend needs a TTL above zero").into());
        }
        let policy = &self.shared.policy;
        let ttl = policy.duration("ttl", ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        Ok(within_deadline(self.shared.deadline, || {
            self.grant.extend(ttl)
        })?)
    }

    /// Whether the grant is still live (asks the store).
    pub fn is_held(&self) -> Result<bool, GuestError> {
        Ok(within_deadline(self.shared.deadline, || {
            self.grant.is_held()
        })?)
    }

    /// Gives the grant back: `NotHeld` when it had already ended.
    pub fn release(self) -> Result<(), GuestError> {
        let Held {
            grant,
            shared,
            _slot,
            ..
        } = self;
        Ok(within_deadline(shared.deadline, || grant.release())?)
    }
}

impl Held<LockGuard> {
    /// The remaining TTL in ms, or none when the lock is no longer held.
    pub fn remaining_ttl_ms(&self) -> Result<Option<u64>, GuestError> {
        let ttl = within_deadline(self.shared.deadline, || self.grant.remaining_ttl())?;
        Ok(ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)))
    }
}

impl Held<Permit> {
    /// Permits this grant holds.
    pub fn count(&self) -> u32 {
        self.grant.count()
    }
}

impl<G: Grant> fmt::Debug for Held<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("name", &self.name)
            .field("fencing_token", &self.fencing_token())
            .finish_non_exhaustive()
    }
}

/// A guest's claim on an idempotency key. Dropping it abandons the claim.
pub struct HeldClaim {
    claim: Claim,
    key: String,
    shared: Arc<Shared>,
    _slot: Slot,
}

impl HeldClaim {
    /// The key, as the guest gave it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stores the action's result for repeats, within the policy's
    /// stored-bytes quota. Over the quota, a short failure saying so is
    /// stored instead (the action ran: repeats must not run it again) and
    /// the call fails with `QuotaExceeded`.
    pub fn complete(self, value: &[u8]) -> Result<(), GuestError> {
        self.store(value.len(), "result", |claim| claim.complete(value))
    }

    /// Caches a failure: repeats get `failure` back instead of running.
    /// Over the stored-bytes quota, as for [`complete`](Self::complete).
    pub fn fail(self, failure: &str) -> Result<(), GuestError> {
        let size = failure.len().min(self.shared.policy.max_result_bytes);
        self.store(size, "failure", |claim| claim.fail(failure))
    }

    /// Counts `bytes` against the policy's total and stores them with
    /// `store`; past the total, records the refusal instead.
    fn store(
        self,
        bytes: usize,
        what: &str,
        store: impl FnOnce(Claim) -> crate::Result<()>,
    ) -> Result<(), GuestError> {
        let HeldClaim {
            claim, key, shared, ..
        } = self;
        if let Err(quota) = shared.stores(bytes) {
            // The action ran: a short failure record keeps repeats from
            // running it again, as for a result over the size limit.
            let text =
                format!("the action ran, but its {what} was over the plugin's stored-bytes quota");
            if let Err(error) = within_deadline(shared.deadline, || claim.fail(&text)) {
                tracing::warn!(%key, %error, "tollgate: could not record a refused outcome; the claim frees when its lease ends");
            }
            return Err(quota);
        }
        Ok(within_deadline(shared.deadline, || store(claim))?)
    }
}

impl fmt::Debug for HeldClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldClaim")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
