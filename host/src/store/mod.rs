//! The atomic steps tollgate needs from a backing store, one method each.
//!
//! Each method is one Redis command or one Lua script ([`RedisStore`]), or
//! one step under a mutex ([`MemoryStore`], for one process), so it either
//! happens whole or not at all, whatever other clients do at the same time.
//! Both stores give the same answers; the integration tests run one suite
//! against both. Higher
//! layers (locks, the watchdog, counters, sequences) compose these steps and
//! never read-modify-write across two of them.

mod cluster;
mod connect;
mod heartbeat;
mod lua;
mod lua_library;
mod memory;
mod pool;
mod redis;
mod sentinel;
mod slot;
mod subscriber;
mod wire;

use std::time::{Duration, Instant};

pub(crate) use self::memory::MemoryStore;
pub(crate) use self::pool::{PoolConfig, current_deadline, within_deadline};
pub(crate) use self::redis::RedisStore;
pub(crate) use self::sentinel::Sentinels;
#[cfg(test)]
pub(crate) use self::slot::hash_tag;
pub use self::subscriber::Notifications;
use crate::error::Result;
use crate::keys::{ClaimKeys, GrantKeys, LockKeys};
use crate::notify::{WakeBoard, Watch};

/// What a lock request asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockRequest<'a> {
    pub keys: &'a LockKeys,
    /// Random per acquisition; proves ownership in later steps.
    pub owner: &'a str,
    /// Free text for operators (`lock_info`).
    pub holder: &'a str,
    pub ttl_ms: u64,
    /// How long the fencing counter outlives the lock.
    pub fence_retention_ms: u64,
    /// Set when the caller waits: its process then takes its turn among
    /// the processes waiting for the lock.
    pub waiting: Option<Waiting>,
}

/// A waiter's part in its process's turn for a lock (see
/// `store/lock_record.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiting {
    /// Another waiter of this process remains once this one is served.
    pub more_here: bool,
}

/// The answer to a lock request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Granted, with the fencing token of this grant.
    Granted { fence: u64 },
    /// Held by another owner; `remaining` is its TTL when it has one.
    Held { remaining: Option<Duration> },
}

/// The grant a release ends, as its holder knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldGrant<'a> {
    /// The owner token the grant was made to.
    pub owner: &'a str,
    /// The grant's fencing token, when the caller knows it (not for a
    /// grant whose answer was lost).
    pub fence: Option<u64>,
    /// The caller's own monotonic clock says the grant has not ended, and
    /// the server that made it is the one asked (no restart or failover
    /// seen since). The store may then skip reading its own clock: where
    /// the two disagree, a grant that nobody took since is released all the
    /// same.
    pub live: bool,
}

impl<'a> HeldGrant<'a> {
    /// A grant known by its owner token alone.
    pub fn by_owner(owner: &'a str) -> Self {
        HeldGrant {
            owner,
            fence: None,
            live: false,
        }
    }
}

/// A waiter of this process to whom a release may grant the lock at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NextOwner<'a> {
    pub owner: &'a str,
    pub ttl_ms: u64,
    pub holder: &'a str,
    pub fence_retention_ms: u64,
    /// The turn of the waiters of this process left after the next owner.
    pub after: Waiting,
    /// The lock may go to `owner` though another process's turn has come.
    pub keep_past_others: bool,
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// The caller no longer held the lock.
    NotHeld,
    /// Freed, and its waiters woken.
    Freed,
    /// Freed, and the turn given to a waiter of another process: none of
    /// this process's waiters is woken.
    FreedForAnother,
    /// Granted to the next owner, with this fencing token; `past_others`
    /// when another process's turn had come.
    HandedOver { fence: u64, past_others: bool },
}

impl Released {
    /// What a plain release did: freed, or found the lock no longer held.
    pub fn freed_if(released: bool) -> Released {
        if released {
            Released::Freed
        } else {
            Released::NotHeld
        }
    }
}

/// What an operator may see of a held lock (never the owner token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockRecord {
    pub fence: u64,
    pub holder: String,
    pub remaining: Option<Duration>,
}

/// What a claim on an idempotency key asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimRequest<'a> {
    pub keys: &'a ClaimKeys,
    /// Random per claim; proves ownership in later steps.
    pub owner: &'a str,
    /// Digest of the payload; empty when the caller gave none.
    pub fingerprint: &'a [u8],
    pub lease_ms: u64,
    /// How much longer the caller will wait if refused; zero when it will not.
    pub waiting_ms: u64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimState {
    /// The caller holds the claim now and runs the action.
    Fresh,
    /// An earlier run finished; its result.
    Done(Vec<u8>),
    /// An earlier run failed and its failure was cached.
    Failed(Vec<u8>),
    /// Another caller runs it; `remaining` is its lease's TTL.
    Running { remaining: Option<Duration> },
    /// The key was used with another payload.
    Mismatch,
}

/// The operator's view of an idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRecord {
    /// `Running`, `Done` or `Failed` (with the payload); never `Fresh` or
    /// `Mismatch`.
    pub state: ClaimState,
    /// Whether the key is tied to a payload's fingerprint.
    pub fingerprinted: bool,
    /// The record's TTL: the lease while running, the retention after.
    pub remaining: Option<Duration>,
}

/// What a request for semaphore permits asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PermitRequest<'a> {
    pub keys: &'a GrantKeys,
    /// Random per grant; proves ownership in later steps.
    pub owner: &'a str,
    /// Permits asked for (at least 1).
    pub count: u32,
    /// Permits in all, as this caller counts them.
    pub permits: u32,
    pub ttl_ms: u64,
    /// Free text for operators.
    pub holder: &'a str,
    /// How long the fencing counter outlives the latest grant.
    pub fence_retention_ms: u64,
}

/// What a request for permits found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitAcquired {
    /// Granted; `free` permits are left.
    Granted { fence: u64, free: u32 },
    /// Not enough free; `first_end` is when the first grant ends.
    Busy { first_end: Option<Duration> },
}

/// One live grant of a semaphore, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PermitRecord {
    pub count: u32,
    pub fence: u64,
    pub holder: String,
    pub remaining: Duration,
}

/// What a request for a read or write hold asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RwRequest<'a> {
    pub keys: &'a GrantKeys,
    /// A write hold (else a read hold).
    pub write: bool,
    /// Random per grant; proves ownership in later steps.
    pub owner: &'a str,
    pub ttl_ms: u64,
    /// Free text for operators.
    pub holder: &'a str,
    /// How long the fencing counter outlives the latest grant.
    pub fence_retention_ms: u64,
    /// For a writer that will wait when refused: how long its wish to
    /// write (which keeps new readers out) lives; 0 for none.
    pub wish_ms: u64,
}

/// A fenced record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    /// The highest token accepted.
    pub fence: u64,
    /// The value; `None` after a delete.
    pub value: Option<Vec<u8>>,
    /// The record's TTL, `None` without one.
    pub remaining: Option<Duration>,
}

/// What a fenced write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FencedWrite {
    /// Written; `existed` tells whether a value was there before.
    Accepted { existed: bool },
    /// Refused: the record has accepted `highest`, above the write's token.
    Stale { highest: u64 },
}

/// How a claimed action ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Finish<'a> {
    Done(&'a [u8]),
    Failed(&'a [u8]),
}

/// A change to a counter that needs a script: bounds, an operation id, or both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CounterChange<'a> {
    pub key: &'a str,
    pub delta: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// The operation's record key and how long it is kept, for `incr_once`.
    pub once: Option<(&'a str, u64)>,
}

/// The answer to a [`CounterChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed {
    /// Applied; the counter's new value.
    Applied(i64),
    /// The operation id was seen before: nothing was applied this time.
    Repeated { value: i64, delta: i64 },
    /// Refused by the bounds; the counter's unchanged value.
    OutOfBounds(i64),
}

/// Serial numbers reserved in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reserved {
    /// The last number reserved; the block ends here.
    pub last: u64,
    /// The server's day (UTC) when they were reserved, `YYYYMMDD`.
    pub day: String,
    /// How long until the server's next midnight (UTC), as it answered.
    pub to_midnight: Duration,
}

/// The atomic steps behind locks, idempotency, counters and sequences. Implementations
/// must make each method a single atomic step on the store.
pub(crate) trait Store: Send + Sync + 'static {
    /// Grants the lock if free (or already held by `owner`), issuing a fencing
    /// token larger than every earlier one for the name.
    fn acquire_lock(&self, req: &LockRequest<'_>) -> Result<Acquired>;

    /// Sets the lock's TTL to `ttl_ms` if `owner` still holds it.
    fn extend_lock(
        &self,
        keys: &LockKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<bool>;

    /// Ends the grant `held` if its owner still holds it (keeping the
    /// fencing counter), waking the waiters whose turn it is.
    fn release_lock(&self, keys: &LockKeys, held: &HeldGrant<'_>) -> Result<bool>;

    /// Releases the lock if `held`'s owner still holds it; when no other process
    /// waits for it, or it is this process's turn, grants it at once to
    /// `next` (a waiter of this process) instead of freeing it. A `resend` after a lost reply answers
    /// `HandedOver` again when the first send handed it over.
    fn release_lock_to(
        &self,
        keys: &LockKeys,
        held: &HeldGrant<'_>,
        next: &NextOwner<'_>,
        resend: bool,
    ) -> Result<Released> {
        let _ = (next, resend);
        self.release_lock(keys, held).map(Released::freed_if)
    }

    /// The last waiter of this process for the lock gave up: its process
    /// leaves the queue of waiting processes.
    fn leave_turns(&self, keys: &LockKeys) -> Result<()> {
        let _ = keys;
        Ok(())
    }

    /// The remaining TTL if `owner` holds the lock, `None` if it does not.
    fn owned_ttl(&self, keys: &LockKeys, owner: &str) -> Result<Option<Duration>>;

    /// The current holder's record, `None` when the lock is free.
    fn lock_record(&self, keys: &LockKeys) -> Result<Option<LockRecord>>;

    /// Deletes the lock whoever holds it, waking waiters.
    fn force_unlock(&self, keys: &LockKeys) -> Result<bool>;

    /// Held locks whose hash keys match the Redis glob `key_glob` (`*`, `?`,
    /// `[...]`), at most `limit`, as (lock key, record). A snapshot for
    /// operators, not one atomic step.
    fn list_locks(&self, key_glob: &str, limit: usize) -> Result<Vec<(String, LockRecord)>>;

    /// Claims an idempotency key if nobody ran or runs it (or `owner` holds
    /// it already), else reports what is there.
    fn begin_claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimState>;

    /// Renews the lease of a running claim that `owner` holds; `true` also
    /// when `owner` has stored its outcome already (nothing is changed then).
    fn extend_claim(&self, keys: &ClaimKeys, owner: &str, lease_ms: u64) -> Result<bool>;

    /// Stores the outcome if `owner` still holds the claim, waking waiters.
    fn finish_claim(
        &self,
        keys: &ClaimKeys,
        owner: &str,
        finish: Finish<'_>,
        result_ttl_ms: u64,
    ) -> Result<bool>;

    /// Deletes the claim if `owner` still holds it, waking waiters.
    fn abandon_claim(&self, keys: &ClaimKeys, owner: &str) -> Result<bool>;

    /// The record at `keys`, read in one step, changing nothing.
    fn claim_record(&self, keys: &ClaimKeys) -> Result<Option<ClaimRecord>>;

    /// Sets `key` for `window_ms` unless it exists; `true` when it was set.
    fn mark_once(&self, key: &str, window_ms: u64) -> Result<bool>;

    /// Lines up for the object whose notification key is `key` until
    /// `until` (`fair`: a lock; see [`crate::notify`]) and starts listening
    /// for its releases. Returns once notifications are flowing, or by
    /// `until` (or sooner) when they cannot be had: the waiter then relies
    /// on polling.
    fn watch(&self, key: &str, fair: bool, until: Instant) -> Watch;

    /// The wait queues of this store's waiters in this process.
    fn board(&self) -> &WakeBoard;

    /// Whether release notifications reach this store's waiters.
    fn notifications(&self) -> Notifications;

    /// Counts the times a new server (a restart, a failover) was met: every
    /// lease granted at an earlier count may be gone.
    fn server_generation(&self) -> u64 {
        0
    }

    /// Sets what to call when a new server is met (the watchdog checks every
    /// lease then). Stores that cannot change server ignore it.
    fn on_server_changed(&self, _callback: Box<dyn Fn() + Send + Sync>) {}

    // ---- counters and sequences ----

    /// Grants permits if enough are free, in one step.
    fn semaphore_acquire(&self, req: &PermitRequest<'_>) -> Result<PermitAcquired>;

    /// Ends `owner`'s grant, waking waiters; `false` when it held none.
    fn semaphore_release(
        &self,
        keys: &GrantKeys,
        owner: &str,
        fence_retention_ms: u64,
    ) -> Result<bool>;

    /// Sets `owner`'s grant to end in `ttl_ms` (0: only reads); its
    /// remaining TTL, `None` when it holds no live grant.
    fn semaphore_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>>;

    /// The live grants, read in one step.
    fn semaphore_grants(&self, keys: &GrantKeys) -> Result<Vec<PermitRecord>>;

    /// Grants a read or write hold if the lock allows it, in one step; a
    /// refused writer that will wait leaves its wish to write.
    fn rw_acquire(&self, req: &RwRequest<'_>) -> Result<Acquired>;

    /// Ends `owner`'s hold and withdraws its wish to write, waking waiters;
    /// `false` when it held nothing.
    fn rw_release(&self, keys: &GrantKeys, owner: &str, fence_retention_ms: u64) -> Result<bool>;

    /// Sets `owner`'s hold to end in `ttl_ms` (0: only reads); its
    /// remaining TTL, `None` when it holds nothing.
    fn rw_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>>;

    /// The fenced record at `key`, read in one step.
    fn record_get(&self, key: &str) -> Result<Option<StoredRecord>>;

    /// Writes `value` (or deletes, with `None`) if `token` is at least the
    /// highest token the record has accepted, in one step; sets the TTL to
    /// `ttl_ms` (0: none) on a write, keeps it on a delete (a tombstone
    /// made where there was no record gets `ttl_ms`).
    fn record_write(
        &self,
        key: &str,
        token: u64,
        value: Option<&[u8]>,
        ttl_ms: u64,
    ) -> Result<FencedWrite>;

    /// The counter's value, `None` when the key is absent.
    fn counter_get(&self, key: &str) -> Result<Option<i64>>;

    /// Sets the counter if the key is absent or holds an integer.
    fn counter_set(&self, key: &str, value: i64) -> Result<()>;

    /// Adds `delta` (`INCRBY`) and returns the new value.
    fn counter_incr(&self, key: &str, delta: i64) -> Result<i64>;

    /// Adds within bounds and/or once per operation id (one script).
    fn counter_change(&self, change: &CounterChange<'_>) -> Result<Changed>;

    /// Reserves `count` numbers of the sequence at `key` (zero: reads the
    /// last number handed out, 0 when none, and writes nothing); with `daily`, in
    /// the key of the server's current day, which expires `day_ttl_secs`
    /// after its first number. `now` replaces the server's clock (tests).
    fn sequence_reserve(
        &self,
        key: &str,
        count: u64,
        daily: bool,
        day_ttl_secs: u64,
        now: Option<u64>,
    ) -> Result<Reserved>;
}

/// Notes a key under the locks' prefix that holds something tollgate did
/// not write: a listing skips it rather than fail for every other lock.
pub(crate) fn skipped_foreign(key: &str) {
    tracing::warn!(
        key,
        "tollgate: not listed: the key holds a value tollgate did not write"
    );
}
