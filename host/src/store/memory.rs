//! The store inside this process: every step runs whole under one mutex, so
//! it is atomic the way a Lua script is on Redis, with the same answers.
//!
//! Entries are typed ([`Value`]): a step that finds another kind of value
//! under its key fails with [`Error::WrongType`] where Redis would (and, like
//! Redis, changes nothing). Through tollgate's own keys that cannot happen:
//! every kind of object has its own key prefix.
//!
//! Clocks: TTLs, leases and windows run on the monotonic clock ([`Instant`]);
//! an expired entry is treated as absent at once and removed on the next step
//! that touches it, or by a sweep of the whole map every so often (so expired
//! entries nobody touches again do not pile up). What Redis takes from its
//! `TIME` — the floor of fencing tokens (microseconds since 1970) and the day
//! of daily sequences — is this machine's wall clock ([`SystemTime`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::{
    Acquired, Changed, ClaimRecord, ClaimRequest, ClaimState, CounterChange, FencedWrite, Finish,
    HeldGrant, LockRecord, LockRequest, Notifications, PermitAcquired, PermitRecord, PermitRequest,
    Reserved, RwRequest, Store, StoredRecord,
};
use crate::error::{Error, Result};
use crate::keys::{ClaimKeys, GrantKeys, LockKeys};
use crate::notify::{WakeBoard, Watch};

/// A full sweep runs once the steps since the last one reach the number of
/// entries (at least this many), so its cost is constant per step on average.
const SWEEP_EVERY: usize = 1024;

/// Locks, idempotency records, counters and sequences of one process.
#[derive(Default)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    /// Release notifications: the in-process counterpart of `PUBLISH`.
    board: Arc<WakeBoard>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.state.lock().entries.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    steps_since_sweep: usize,
}

struct Entry {
    value: Value,
    /// `None`: no TTL (counters, plain sequences).
    expires: Option<Instant>,
}

/// What a key holds; each variant is what one kind of Redis key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// A lock hash `{owner, fence, holder}`.
    Lock {
        owner: String,
        fence: u64,
        holder: String,
    },
    /// An idempotency record `{state, owner, fp, result}`.
    Claim {
        state: ClaimStatus,
        owner: String,
        fingerprint: Vec<u8>,
        result: Vec<u8>,
    },
    /// An operation record of `incr_once`: `{delta, value}`.
    Op { delta: i64, value: i64 },
    /// An integer: a counter, a sequence, a fencing counter.
    Int(i64),
    /// A marker whose presence is all that matters (`once`).
    Marker,
    /// A semaphore: the last fencing token, and its grants by owner.
    Semaphore {
        fence: u64,
        grants: HashMap<String, MemoryGrant>,
    },
    /// A read-write lock: the last fencing token, its holds by owner, and
    /// the writers waiting (whose wish keeps new readers out) with its end.
    RwLock(RwState),
    /// A fenced record: the highest token accepted, and the value (none
    /// after a delete).
    Record { fence: u64, value: Option<Vec<u8>> },
}

/// A read-write lock's holds and wishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RwState {
    fence: u64,
    readers: HashMap<String, MemoryGrant>,
    writer: Option<(String, MemoryGrant)>,
    wants: HashMap<String, Instant>,
}

impl RwState {
    /// Drops what ended by `now`.
    fn sweep(&mut self, now: Instant) {
        self.readers.retain(|_, g| g.expires > now);
        self.writer.take_if(|(_, g)| g.expires <= now);
        self.wants.retain(|_, at| *at > now);
    }

    /// When the last hold or wish ends (`now` when none).
    fn latest(&self, now: Instant) -> Instant {
        let holds = self
            .readers
            .values()
            .chain(self.writer.iter().map(|(_, g)| g));
        holds
            .map(|g| g.expires)
            .chain(self.wants.values().copied())
            .fold(now, Instant::max)
    }
}

/// One grant of a semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemoryGrant {
    expires: Instant,
    count: u32,
    fence: u64,
    holder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimStatus {
    Running,
    Done,
    Failed,
}

fn wrong_type(key: &str, detail: &str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
        detail: detail.to_owned(),
    }
}

/// `now + ms`; `None` (no expiry) only if that is beyond what `Instant` can
/// hold, which the client's limits rule out.
fn deadline(now: Instant, ms: u64) -> Option<Instant> {
    now.checked_add(Duration::from_millis(ms))
}

/// Whole milliseconds left, as `PTTL` answers; `None` for no TTL.
fn remaining(expires: Option<Instant>, now: Instant) -> Option<Duration> {
    expires.map(|at| {
        let left = at.saturating_duration_since(now);
        Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    })
}

/// The wall clock in microseconds since 1970 (0 before 1970).
fn wall_clock_micros() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

impl State {
    /// The live entry at `key`, dropping it first if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|at| at <= now))
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn value(&mut self, key: &str, now: Instant) -> Option<&Value> {
        self.live(key, now).map(|e| &e.value)
    }

    fn insert(&mut self, key: &str, value: Value, expires: Option<Instant>) {
        self.entries
            .insert(key.to_owned(), Entry { value, expires });
    }

    fn remove(&mut self, key: &str, now: Instant) -> bool {
        self.live(key, now).is_some() && self.entries.remove(key).is_some()
    }

    /// Sets the TTL of `key` if it exists (`PEXPIRE`).
    fn expire(&mut self, key: &str, expires: Option<Instant>, now: Instant) {
        if let Some(entry) = self.live(key, now) {
            entry.expires = expires;
        }
    }

    /// The integer at `key` (`None` when absent), as `INCRBY` reads it.
    fn int(&mut self, key: &str, now: Instant) -> Result<Option<i64>> {
        match self.value(key, now) {
            None => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(_) => Err(wrong_type(
                key,
                "holds a value that is not a 64-bit integer",
            )),
        }
    }

    /// `INCRBY`: adds to an integer (0 when absent), keeping its TTL.
    fn incr(&mut self, key: &str, delta: i64, now: Instant) -> Result<i64> {
        let old = self.int(key, now)?.unwrap_or(0);
        let new = old.checked_add(delta).ok_or_else(|| Error::Overflow {
            key: key.to_owned(),
        })?;
        self.set_int(key, new, now);
        Ok(new)
    }

    /// Stores an integer, keeping the key's TTL (`SET ... KEEPTTL`).
    fn set_int(&mut self, key: &str, value: i64, now: Instant) {
        match self.live(key, now) {
            Some(entry) => entry.value = Value::Int(value),
            None => self.insert(key, Value::Int(value), None),
        }
    }

    /// The lock hash at `key`, if any.
    fn lock(&mut self, key: &str, now: Instant) -> Result<Option<(&str, u64, &str)>> {
        match self.value(key, now) {
            None => Ok(None),
            Some(Value::Lock {
                owner,
                fence,
                holder,
            }) => Ok(Some((owner, *fence, holder))),
            Some(_) => Err(wrong_type(key, "lock key holds something else than a lock")),
        }
    }

    fn owns_lock(&mut self, key: &str, owner: &str, now: Instant) -> Result<bool> {
        Ok(self.lock(key, now)?.is_some_and(|(o, _, _)| o == owner))
    }

    /// The claim record at `key`, if any.
    fn claim(&mut self, key: &str, now: Instant) -> Result<Option<&mut Entry>> {
        match self.live(key, now) {
            None => Ok(None),
            Some(entry) if matches!(entry.value, Value::Claim { .. }) => Ok(Some(entry)),
            Some(_) => Err(wrong_type(
                key,
                "idempotency key holds something else than a record",
            )),
        }
    }

    /// The semaphore at `key`: its last fencing token (0 for a new one) and
    /// its grants that have not ended.
    fn semaphore(
        &mut self,
        key: &str,
        now: Instant,
    ) -> Result<(u64, HashMap<String, MemoryGrant>)> {
        match self.live(key, now) {
            None => Ok((0, HashMap::new())),
            Some(Entry {
                value: Value::Semaphore { fence, grants },
                ..
            }) => {
                let live = grants
                    .iter()
                    .filter(|(_, g)| g.expires > now)
                    .map(|(owner, g)| (owner.clone(), g.clone()))
                    .collect();
                Ok((*fence, live))
            }
            Some(_) => Err(wrong_type(key, "semaphore key holds something else")),
        }
    }

    /// Stores a semaphore, kept until its latest grant ends plus the
    /// fencing counter's retention.
    fn put_semaphore(
        &mut self,
        key: &str,
        fence: u64,
        grants: HashMap<String, MemoryGrant>,
        now: Instant,
        retention_ms: u64,
    ) {
        let latest = grants.values().map(|g| g.expires).max().unwrap_or(now);
        let expires = latest.checked_add(Duration::from_millis(retention_ms));
        self.insert(key, Value::Semaphore { fence, grants }, expires);
    }

    /// The read-write lock at `key`, without what has ended.
    fn rw_lock(&mut self, key: &str, now: Instant) -> Result<RwState> {
        match self.live(key, now) {
            None => Ok(RwState::default()),
            Some(Entry {
                value: Value::RwLock(rw),
                ..
            }) => {
                let mut rw = rw.clone();
                rw.sweep(now);
                Ok(rw)
            }
            Some(_) => Err(wrong_type(key, "read-write lock key holds something else")),
        }
    }

    /// Stores a read-write lock, kept until its last hold or wish ends plus
    /// the fencing counter's retention.
    fn put_rw(&mut self, key: &str, rw: RwState, now: Instant, retention_ms: u64) {
        let expires = rw
            .latest(now)
            .checked_add(Duration::from_millis(retention_ms));
        self.insert(key, Value::RwLock(rw), expires);
    }

    /// `true` when `owner` holds the running claim at `key`.
    fn runs_claim(&mut self, key: &str, owner: &str, now: Instant) -> Result<bool> {
        Ok(self.claim(key, now)?.is_some_and(|entry| {
            matches!(&entry.value, Value::Claim { state: ClaimStatus::Running, owner: o, .. } if o == owner)
        }))
    }

    /// Counts a step; every so often drops every expired entry.
    fn step(&mut self, now: Instant) {
        self.steps_since_sweep += 1;
        if self.steps_since_sweep >= self.entries.len().max(SWEEP_EVERY) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| e.expires.is_none_or(|at| at > now));
        self.steps_since_sweep = 0;
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Runs one step under the lock, with the time it started.
    fn step<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut state = self.state.lock();
        let now = Instant::now();
        state.step(now);
        f(&mut state, now)
    }

    /// Wakes the waiters of `key` when `woken` (after the step, outside the
    /// lock). Unlike Redis, no waiters marker is kept: a wake-up that nobody
    /// watches costs one map lookup.
    fn wake_if(&self, woken: Result<bool>, key: &str) -> Result<bool> {
        if matches!(woken, Ok(true)) {
            self.board.wake(key);
        }
        woken
    }
}

impl Store for MemoryStore {
    fn acquire_lock(&self, req: &LockRequest<'_>) -> Result<Acquired> {
        let keys = req.keys;
        self.step(|state, now| {
            match state.lock(&keys.lock, now)? {
                Some((owner, fence, _)) if owner == req.owner => {
                    return Ok(Acquired::Granted { fence });
                }
                Some(_) => {
                    let held = state.live(&keys.lock, now).and_then(|e| e.expires);
                    return Ok(Acquired::Held {
                        remaining: remaining(held, now),
                    });
                }
                None => {}
            }
            let fence_key = keys.fence();
            let last = match state.value(&fence_key, now) {
                None => None,
                Some(Value::Int(n)) => Some(u64::try_from(*n).unwrap_or(0)),
                Some(_) => {
                    return Err(wrong_type(&fence_key, "fencing counter is not a number"));
                }
            };
            // max(previous + 1, wall clock in µs), as the Redis script does
            // with the server's TIME.
            let floor = wall_clock_micros();
            let fence = last.map_or(floor, |last| floor.max(last.saturating_add(1)));
            let stored = i64::try_from(fence).unwrap_or(i64::MAX);
            let fence = u64::try_from(stored).unwrap_or(0);
            let kept = req.ttl_ms.saturating_add(req.fence_retention_ms);
            state.insert(&fence_key, Value::Int(stored), deadline(now, kept));
            state.insert(
                &keys.lock,
                Value::Lock {
                    owner: req.owner.to_owned(),
                    fence,
                    holder: req.holder.to_owned(),
                },
                deadline(now, req.ttl_ms),
            );
            Ok(Acquired::Granted { fence })
        })
    }

    fn extend_lock(
        &self,
        keys: &LockKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<bool> {
        self.step(|state, now| {
            if !state.owns_lock(&keys.lock, owner, now)? {
                return Ok(false);
            }
            state.expire(&keys.lock, deadline(now, ttl_ms), now);
            let kept = ttl_ms.saturating_add(fence_retention_ms);
            state.expire(&keys.fence(), deadline(now, kept), now);
            Ok(true)
        })
    }

    fn release_lock(&self, keys: &LockKeys, held: &HeldGrant<'_>) -> Result<bool> {
        // The owner token alone names a grant (a new one per acquire), and
        // this store reads its clock at no cost: `held.fence` and
        // `held.live` are not needed.
        let released = self.step(|state, now| {
            if !state.owns_lock(&keys.lock, held.owner, now)? {
                return Ok(false);
            }
            Ok(state.remove(&keys.lock, now))
        });
        self.wake_if(released, &keys.lock)
    }

    fn owned_ttl(&self, keys: &LockKeys, owner: &str) -> Result<Option<Duration>> {
        self.step(|state, now| {
            if !state.owns_lock(&keys.lock, owner, now)? {
                return Ok(None);
            }
            let expires = state.live(&keys.lock, now).and_then(|e| e.expires);
            Ok(Some(remaining(expires, now).unwrap_or(Duration::MAX)))
        })
    }

    fn lock_record(&self, keys: &LockKeys) -> Result<Option<LockRecord>> {
        self.step(|state, now| record_at(state, &keys.lock, now))
    }

    fn force_unlock(&self, keys: &LockKeys) -> Result<bool> {
        // Like `DEL`, whatever the key holds.
        let deleted = self.step(|state, now| Ok(state.remove(&keys.lock, now)));
        self.wake_if(deleted, &keys.lock)
    }

    fn list_locks(&self, key_glob: &str, limit: usize) -> Result<Vec<(String, LockRecord)>> {
        let glob = Glob::parse(key_glob.as_bytes());
        self.step(|state, now| {
            let mut keys: Vec<String> = state
                .entries
                .keys()
                .filter(|key| glob.matches(key.as_bytes()))
                .cloned()
                .collect();
            keys.sort_unstable();
            let mut found = Vec::new();
            for key in keys {
                if found.len() >= limit {
                    break;
                }
                match record_at(state, &key, now) {
                    Ok(Some(record)) => found.push((key, record)),
                    Ok(None) => {}
                    Err(Error::WrongType { .. }) => super::skipped_foreign(&key),
                    Err(error) => return Err(error),
                }
            }
            Ok(found)
        })
    }

    fn begin_claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimState> {
        let keys = req.keys;
        self.step(|state, now| {
            let Some(entry) = state.claim(&keys.record, now)? else {
                state.insert(
                    &keys.record,
                    Value::Claim {
                        state: ClaimStatus::Running,
                        owner: req.owner.to_owned(),
                        fingerprint: req.fingerprint.to_vec(),
                        result: Vec::new(),
                    },
                    deadline(now, req.lease_ms),
                );
                return Ok(ClaimState::Fresh);
            };
            let Value::Claim {
                state: status,
                owner,
                fingerprint,
                result,
            } = &entry.value
            else {
                return Err(wrong_type(&keys.record, "not an idempotency record"));
            };
            Ok(if fingerprint.as_slice() != req.fingerprint {
                ClaimState::Mismatch
            } else {
                match status {
                    ClaimStatus::Done => ClaimState::Done(result.clone()),
                    ClaimStatus::Failed => ClaimState::Failed(result.clone()),
                    ClaimStatus::Running if owner == req.owner => ClaimState::Fresh,
                    ClaimStatus::Running => ClaimState::Running {
                        remaining: remaining(entry.expires, now),
                    },
                }
            })
        })
    }

    fn extend_claim(&self, keys: &ClaimKeys, owner: &str, lease_ms: u64) -> Result<bool> {
        self.step(|state, now| {
            let Some(entry) = state.claim(&keys.record, now)? else {
                return Ok(false);
            };
            match &entry.value {
                Value::Claim {
                    state: ClaimStatus::Running,
                    owner: holder,
                    ..
                } if holder == owner => {}
                // Finished by this owner: nothing to renew, nothing lost.
                Value::Claim { owner: holder, .. } if holder == owner => return Ok(true),
                _ => return Ok(false),
            }
            state.expire(&keys.record, deadline(now, lease_ms), now);
            Ok(true)
        })
    }

    fn finish_claim(
        &self,
        keys: &ClaimKeys,
        owner: &str,
        finish: Finish<'_>,
        result_ttl_ms: u64,
    ) -> Result<bool> {
        let stored = self.step(|state, now| {
            let Some(entry) = state.claim(&keys.record, now)? else {
                return Ok(false);
            };
            let Value::Claim {
                state: status,
                owner: holder,
                result,
                ..
            } = &mut entry.value
            else {
                return Ok(false);
            };
            if holder != owner {
                return Ok(false);
            }
            if *status != ClaimStatus::Running {
                // Stored already by this owner: a resent request.
                return Ok(true);
            }
            (*status, *result) = match finish {
                Finish::Done(value) => (ClaimStatus::Done, value.to_vec()),
                Finish::Failed(failure) => (ClaimStatus::Failed, failure.to_vec()),
            };
            entry.expires = deadline(now, result_ttl_ms);
            Ok(true)
        });
        self.wake_if(stored, &keys.record)
    }

    fn abandon_claim(&self, keys: &ClaimKeys, owner: &str) -> Result<bool> {
        let abandoned = self.step(|state, now| {
            if !state.runs_claim(&keys.record, owner, now)? {
                return Ok(false);
            }
            Ok(state.remove(&keys.record, now))
        });
        self.wake_if(abandoned, &keys.record)
    }

    fn claim_record(&self, keys: &ClaimKeys) -> Result<Option<ClaimRecord>> {
        self.step(|state, now| {
            let Some(entry) = state.claim(&keys.record, now)? else {
                return Ok(None);
            };
            let Value::Claim {
                state: status,
                fingerprint,
                result,
                ..
            } = &entry.value
            else {
                unreachable!("claim() returns records only")
            };
            let remaining = remaining(entry.expires, now);
            Ok(Some(ClaimRecord {
                state: match status {
                    ClaimStatus::Running => ClaimState::Running { remaining },
                    ClaimStatus::Done => ClaimState::Done(result.clone()),
                    ClaimStatus::Failed => ClaimState::Failed(result.clone()),
                },
                fingerprinted: !fingerprint.is_empty(),
                remaining,
            }))
        })
    }

    fn semaphore_acquire(&self, req: &PermitRequest<'_>) -> Result<PermitAcquired> {
        let key = &req.keys.key;
        self.step(|state, now| {
            let (mut fence, mut grants) = state.semaphore(key, now)?;
            // Counted in u64: u32 counts could overflow past the permits.
            let used: u64 = grants.values().map(|g| u64::from(g.count)).sum();
            let permits = u64::from(req.permits);
            let free = |used: u64| u32::try_from(permits.saturating_sub(used)).unwrap_or(u32::MAX);
            let ttl = Duration::from_millis(req.ttl_ms);
            if let Some(mine) = grants.get_mut(req.owner) {
                // A resend: the grant again, with its TTL from now.
                mine.expires = now + ttl;
                let granted = PermitAcquired::Granted {
                    fence: mine.fence,
                    free: free(used),
                };
                state.put_semaphore(key, fence, grants, now, req.fence_retention_ms);
                return Ok(granted);
            }
            if used + u64::from(req.count) > permits {
                let first_end = grants.values().map(|g| g.expires).min();
                return Ok(PermitAcquired::Busy {
                    first_end: first_end.map(|at| at.saturating_duration_since(now)),
                });
            }
            // max(previous + 1, wall clock in µs), as the Redis script does.
            fence = wall_clock_micros().max(fence.saturating_add(1));
            grants.insert(
                req.owner.to_owned(),
                MemoryGrant {
                    expires: now + ttl,
                    count: req.count,
                    fence,
                    holder: req.holder.to_owned(),
                },
            );
            state.put_semaphore(key, fence, grants, now, req.fence_retention_ms);
            Ok(PermitAcquired::Granted {
                fence,
                free: free(used + u64::from(req.count)),
            })
        })
    }

    fn semaphore_release(
        &self,
        keys: &GrantKeys,
        owner: &str,
        fence_retention_ms: u64,
    ) -> Result<bool> {
        let released = self.step(|state, now| {
            let (fence, mut grants) = state.semaphore(&keys.key, now)?;
            if grants.remove(owner).is_none() {
                return Ok(false);
            }
            state.put_semaphore(&keys.key, fence, grants, now, fence_retention_ms);
            Ok(true)
        });
        self.wake_if(released, &keys.key)
    }

    fn semaphore_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>> {
        self.step(|state, now| {
            let (fence, mut grants) = state.semaphore(&keys.key, now)?;
            let Some(mine) = grants.get_mut(owner) else {
                return Ok(None);
            };
            if ttl_ms == 0 {
                return Ok(Some(mine.expires.saturating_duration_since(now)));
            }
            mine.expires = now + Duration::from_millis(ttl_ms);
            state.put_semaphore(&keys.key, fence, grants, now, fence_retention_ms);
            Ok(Some(Duration::from_millis(ttl_ms)))
        })
    }

    fn semaphore_grants(&self, keys: &GrantKeys) -> Result<Vec<PermitRecord>> {
        self.step(|state, now| {
            let (_, grants) = state.semaphore(&keys.key, now)?;
            Ok(grants
                .into_values()
                .map(|g| PermitRecord {
                    count: g.count,
                    fence: g.fence,
                    holder: g.holder,
                    remaining: g.expires.saturating_duration_since(now),
                })
                .collect())
        })
    }

    fn rw_acquire(&self, req: &RwRequest<'_>) -> Result<Acquired> {
        let key = &req.keys.key;
        self.step(|state, now| {
            let mut rw = state.rw_lock(key, now)?;
            let ttl = Duration::from_millis(req.ttl_ms);
            let mine = if req.write {
                rw.writer
                    .as_mut()
                    .filter(|(o, _)| o == req.owner)
                    .map(|(_, g)| g)
            } else {
                rw.readers.get_mut(req.owner)
            };
            if let Some(mine) = mine {
                // A resend: the grant again, with its TTL from now.
                mine.expires = now + ttl;
                let fence = mine.fence;
                state.put_rw(key, rw, now, req.fence_retention_ms);
                return Ok(Acquired::Granted { fence });
            }
            let free = rw.writer.is_none()
                && if req.write {
                    rw.readers.is_empty()
                } else {
                    rw.wants.is_empty()
                };
            if !free {
                let holds = rw.readers.values().chain(rw.writer.iter().map(|(_, g)| g));
                // A reader also waits for the wishes to write, which end
                // unannounced when their writer's wait does.
                let wishes = rw.wants.values().copied().filter(|_| !req.write);
                let first_end = holds.map(|g| g.expires).chain(wishes).min();
                if req.write && req.wish_ms > 0 {
                    rw.wants.insert(
                        req.owner.to_owned(),
                        now + Duration::from_millis(req.wish_ms),
                    );
                    state.put_rw(key, rw, now, req.fence_retention_ms);
                }
                return Ok(Acquired::Held {
                    remaining: first_end.map(|at| at.saturating_duration_since(now)),
                });
            }
            // max(previous + 1, wall clock in µs), as the Redis script does.
            rw.fence = wall_clock_micros().max(rw.fence.saturating_add(1));
            let grant = MemoryGrant {
                expires: now + ttl,
                count: 1,
                fence: rw.fence,
                holder: req.holder.to_owned(),
            };
            if req.write {
                rw.writer = Some((req.owner.to_owned(), grant));
            } else {
                rw.readers.insert(req.owner.to_owned(), grant);
            }
            rw.wants.remove(req.owner);
            let fence = rw.fence;
            state.put_rw(key, rw, now, req.fence_retention_ms);
            Ok(Acquired::Granted { fence })
        })
    }

    fn rw_release(&self, keys: &GrantKeys, owner: &str, fence_retention_ms: u64) -> Result<bool> {
        let (held, wished) = self.step(|state, now| {
            let mut rw = state.rw_lock(&keys.key, now)?;
            let held = rw.readers.remove(owner).is_some()
                || rw.writer.take_if(|(o, _)| o == owner).is_some();
            let wished = rw.wants.remove(owner).is_some();
            if held || wished {
                state.put_rw(&keys.key, rw, now, fence_retention_ms);
            }
            Ok((held, wished))
        })?;
        // A withdrawn wish to write lets readers in too.
        self.wake_if(Ok(held || wished), &keys.key)?;
        Ok(held)
    }

    fn rw_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>> {
        self.step(|state, now| {
            let mut rw = state.rw_lock(&keys.key, now)?;
            let mine = match rw.readers.get_mut(owner) {
                Some(grant) => grant,
                None => match rw.writer.as_mut().filter(|(o, _)| o == owner) {
                    Some((_, grant)) => grant,
                    None => return Ok(None),
                },
            };
            if ttl_ms == 0 {
                return Ok(Some(mine.expires.saturating_duration_since(now)));
            }
            mine.expires = now + Duration::from_millis(ttl_ms);
            state.put_rw(&keys.key, rw, now, fence_retention_ms);
            Ok(Some(Duration::from_millis(ttl_ms)))
        })
    }

    fn record_get(&self, key: &str) -> Result<Option<StoredRecord>> {
        self.step(|state, now| {
            let Some(entry) = state.live(key, now) else {
                return Ok(None);
            };
            let Value::Record { fence, value } = &entry.value else {
                return Err(wrong_type(key, "fenced record holds something else"));
            };
            Ok(Some(StoredRecord {
                fence: *fence,
                value: value.clone(),
                remaining: remaining(entry.expires, now),
            }))
        })
    }

    fn record_write(
        &self,
        key: &str,
        token: u64,
        value: Option<&[u8]>,
        ttl_ms: u64,
    ) -> Result<FencedWrite> {
        self.step(|state, now| {
            let (highest, existed, expires) = match state.live(key, now) {
                None => (None, false, None),
                Some(Entry {
                    value: Value::Record { fence, value },
                    expires,
                }) => (Some(*fence), value.is_some(), *expires),
                Some(_) => return Err(wrong_type(key, "fenced record holds something else")),
            };
            if let Some(highest) = highest.filter(|&highest| highest > token) {
                return Ok(FencedWrite::Stale { highest });
            }
            let expires = match value {
                _ if ttl_ms == 0 && (value.is_some() || highest.is_none()) => None,
                Some(_) => deadline(now, ttl_ms),
                // A delete keeps the record's TTL; a tombstone made where
                // there was none lives `ttl_ms`.
                None if highest.is_none() => deadline(now, ttl_ms),
                None => expires,
            };
            let value = value.map(<[u8]>::to_vec);
            state.insert(
                key,
                Value::Record {
                    fence: token,
                    value,
                },
                expires,
            );
            Ok(FencedWrite::Accepted { existed })
        })
    }

    fn mark_once(&self, key: &str, window_ms: u64) -> Result<bool> {
        // `SET NX PX`: any live value, of any kind, keeps the key taken.
        self.step(|state, now| {
            if state.live(key, now).is_some() {
                return Ok(false);
            }
            state.insert(key, Value::Marker, deadline(now, window_ms));
            Ok(true)
        })
    }

    fn watch(&self, key: &str, fair: bool, _until: Instant) -> Watch {
        self.board.watch(key, fair)
    }

    fn board(&self) -> &WakeBoard {
        &self.board
    }

    fn notifications(&self) -> Notifications {
        // Releases wake waiters directly, in this process.
        Notifications::Listening
    }

    // ---- counters and sequences ----

    fn counter_get(&self, key: &str) -> Result<Option<i64>> {
        self.step(|state, now| state.int(key, now))
    }

    fn counter_set(&self, key: &str, value: i64) -> Result<()> {
        self.step(|state, now| {
            state.int(key, now)?;
            state.set_int(key, value, now);
            Ok(())
        })
    }

    fn counter_incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.step(|state, now| state.incr(key, delta, now))
    }

    fn counter_change(&self, change: &CounterChange<'_>) -> Result<Changed> {
        let key = change.key;
        self.step(|state, now| {
            if let Some((op_key, _)) = change.once {
                match state.value(op_key, now) {
                    None => {}
                    Some(Value::Op { delta, value }) => {
                        return Ok(Changed::Repeated {
                            value: *value,
                            delta: *delta,
                        });
                    }
                    Some(_) => return Err(wrong_type(op_key, "not an operation record")),
                }
            }
            let old = state.int(key, now)?;
            let new =
                old.unwrap_or(0)
                    .checked_add(change.delta)
                    .ok_or_else(|| Error::Overflow {
                        key: key.to_owned(),
                    })?;
            if change.min.is_some_and(|min| new < min) || change.max.is_some_and(|max| new > max) {
                return Ok(Changed::OutOfBounds(old.unwrap_or(0)));
            }
            state.set_int(key, new, now);
            if let Some((op_key, window_ms)) = change.once {
                state.insert(
                    op_key,
                    Value::Op {
                        delta: change.delta,
                        value: new,
                    },
                    deadline(now, window_ms),
                );
            }
            Ok(Changed::Applied(new))
        })
    }

    fn sequence_reserve(
        &self,
        key: &str,
        count: u64,
        daily: bool,
        day_ttl_secs: u64,
        now: Option<u64>,
    ) -> Result<Reserved> {
        // The day and the time to midnight, from the wall clock or the seam.
        let (secs, micros) = match now {
            Some(secs) => (secs, 0),
            None => {
                let micros = wall_clock_micros();
                (micros / 1_000_000, micros % 1_000_000)
            }
        };
        let day = utc_day(secs);
        let to_midnight = Duration::from_secs(86_400 - secs % 86_400)
            .saturating_sub(Duration::from_millis(micros / 1_000));
        let counted = if daily {
            format!("{key}:{day}")
        } else {
            key.to_owned()
        };
        if count == 0 {
            // A read: the last number handed out (today's), writing nothing.
            let last = self.step(|state, at| state.int(&counted, at))?;
            return Ok(Reserved {
                last: u64::try_from(last.unwrap_or(0)).unwrap_or(0),
                day,
                to_midnight,
            });
        }
        let delta = i64::try_from(count)
            .map_err(|_| Error::invalid("block size", format!("{count} is too large")))?;
        let last = self
            .step(|state, at| {
                let last = state.incr(&counted, delta, at)?;
                if daily
                    && state
                        .live(&counted, at)
                        .is_some_and(|e| e.expires.is_none())
                {
                    let expires = at.checked_add(Duration::from_secs(day_ttl_secs));
                    state.expire(&counted, expires, at);
                }
                Ok(last)
            })
            // Errors name the sequence's key, as the Redis store's do.
            .map_err(|error| match error {
                Error::WrongType { detail, .. } => Error::WrongType {
                    key: key.to_owned(),
                    detail,
                },
                Error::Overflow { .. } => Error::Overflow {
                    key: key.to_owned(),
                },
                other => other,
            })?;
        let last = u64::try_from(last).map_err(|_| Error::WrongType {
            key: key.to_owned(),
            detail: format!("sequence is at {last}, below zero"),
        })?;
        Ok(Reserved {
            last,
            day,
            to_midnight,
        })
    }
}

/// The operator's view of the lock hash at `key`.
fn record_at(state: &mut State, key: &str, now: Instant) -> Result<Option<LockRecord>> {
    let Some((_, fence, holder)) = state.lock(key, now)? else {
        return Ok(None);
    };
    let holder = holder.to_owned();
    let expires = state.live(key, now).and_then(|e| e.expires);
    Ok(Some(LockRecord {
        fence,
        holder,
        remaining: remaining(expires, now),
    }))
}

/// `YYYYMMDD` (UTC) of unix time `secs`: days to a civil date by Howard
/// Hinnant's algorithm, the same one the Redis script uses.
fn utc_day(secs: u64) -> String {
    let z = secs / 86_400 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// A Redis glob (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), matched on bytes.
struct Glob {
    tokens: Vec<Token>,
}

enum Token {
    Star,
    Any,
    Byte(u8),
    Class {
        negated: bool,
        /// Inclusive ranges; a single byte is `(b, b)`.
        ranges: Vec<(u8, u8)>,
    },
}

impl Token {
    fn matches(&self, byte: u8) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Byte(b) => *b == byte,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= byte && byte <= hi) != *negated
            }
        }
    }
}

impl Glob {
    /// Parses like Redis's `stringmatchlen`: an unclosed `[` runs to the end
    /// of the pattern, a trailing `\` is a literal backslash.
    fn parse(pattern: &[u8]) -> Glob {
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = pattern.get(i) {
            i += 1;
            tokens.push(match c {
                b'*' => Token::Star,
                b'?' => Token::Any,
                b'\\' => match pattern.get(i) {
                    Some(&escaped) => {
                        i += 1;
                        Token::Byte(escaped)
                    }
                    None => Token::Byte(b'\\'),
                },
                b'[' => {
                    let negated = pattern.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    while let Some(&c) = pattern.get(i) {
                        i += 1;
                        match (c, pattern.get(i), pattern.get(i + 1)) {
                            (b']', _, _) => break,
                            (b'\\', Some(&escaped), _) => {
                                i += 1;
                                ranges.push((escaped, escaped));
                            }
                            (lo, Some(b'-'), Some(&hi)) => {
                                i += 2;
                                ranges.push((lo.min(hi), lo.max(hi)));
                            }
                            (c, _, _) => ranges.push((c, c)),
                        }
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Byte(c),
            });
        }
        Glob { tokens }
    }

    /// Every token but `*` takes exactly one byte, so backtracking to the
    /// last `*` is enough: linear in practice, never exponential.
    fn matches(&self, text: &[u8]) -> bool {
        let (mut t, mut s) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while s < text.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, s));
                    t += 1;
                }
                Some(token) if token.matches(text[s]) => {
                    t += 1;
                    s += 1;
                }
                _ => match star {
                    Some((star_t, star_s)) => {
                        t = star_t + 1;
                        s = star_s + 1;
                        star = Some((star_t, star_s + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t.min(self.tokens.len())..]
            .iter()
            .all(|token| matches!(token, Token::Star))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keyspace;

    impl MemoryStore {
        fn plant(&self, key: &str, value: Value) {
            self.state.lock().insert(key, value, None);
        }

        fn entries(&self) -> usize {
            self.state.lock().entries.len()
        }

        fn peek(&self, key: &str) -> Option<Value> {
            self.state
                .lock()
                .entries
                .get(key)
                .map(|entry| entry.value.clone())
        }
    }

    fn lock_request<'a>(keys: &'a LockKeys, owner: &'a str, ttl_ms: u64) -> LockRequest<'a> {
        LockRequest {
            keys,
            owner,
            holder: "test",
            ttl_ms,
            fence_retention_ms: 0,
            waiting: None,
        }
    }

    #[test]
    fn expired_entries_nobody_touches_are_swept() {
        let store = MemoryStore::new();
        for i in 0..2 * SWEEP_EVERY {
            assert!(store.mark_once(&format!("once:{i}"), 300).unwrap());
        }
        assert_eq!(store.entries(), 2 * SWEEP_EVERY);
        std::thread::sleep(Duration::from_millis(350));
        for _ in 0..2 * SWEEP_EVERY {
            store.counter_incr("kept", 1).unwrap();
        }
        assert_eq!(store.entries(), 1, "only the counter without a TTL is left");
        assert_eq!(
            store.counter_get("kept").unwrap(),
            Some(2 * SWEEP_EVERY as i64)
        );
    }

    #[test]
    fn an_expired_entry_is_absent_before_any_sweep() {
        let store = MemoryStore::new();
        assert!(store.mark_once("k", 200).unwrap());
        assert!(!store.mark_once("k", 200).unwrap());
        std::thread::sleep(Duration::from_millis(250));
        assert!(store.mark_once("k", 200).unwrap());
    }

    #[test]
    fn foreign_values_give_wrong_type_and_stay_unchanged() {
        let store = MemoryStore::new();
        let space = Keyspace::new("t:");
        let lock = space.lock("l");
        let claim = space.claim("n", "c");
        store.plant(&lock.lock, Value::Int(7));
        store.plant(&claim.record, Value::Marker);
        store.plant("counter", Value::Marker);
        store.plant("op", Value::Int(1));

        let wrong = |result: Result<()>, what: &str| match result {
            Err(Error::WrongType { .. }) => {}
            other => panic!("{what}: expected WrongType, got {other:?}"),
        };
        wrong(
            store
                .acquire_lock(&lock_request(&lock, "o", 1000))
                .map(drop),
            "acquire",
        );
        wrong(store.extend_lock(&lock, "o", 1000, 0).map(drop), "extend");
        wrong(
            store
                .release_lock(&lock, &HeldGrant::by_owner("o"))
                .map(drop),
            "release",
        );
        wrong(store.owned_ttl(&lock, "o").map(drop), "owned ttl");
        wrong(store.lock_record(&lock).map(drop), "record");
        assert_eq!(
            store.list_locks("t:lock:*", 10).map(|found| found.len()),
            Ok(0),
            "a listing skips a key tollgate did not write"
        );
        let request = ClaimRequest {
            keys: &claim,
            owner: "o",
            fingerprint: b"",
            lease_ms: 1000,
            waiting_ms: 0,
        };
        wrong(store.begin_claim(&request).map(drop), "begin");
        wrong(
            store.extend_claim(&claim, "o", 1000).map(drop),
            "extend claim",
        );
        wrong(
            store
                .finish_claim(&claim, "o", Finish::Done(b"x"), 1000)
                .map(drop),
            "finish",
        );
        wrong(store.abandon_claim(&claim, "o").map(drop), "abandon");
        wrong(store.counter_get("counter").map(drop), "get");
        wrong(store.counter_set("counter", 1), "set");
        wrong(store.counter_incr("counter", 1).map(drop), "incr");
        let change = CounterChange {
            key: "counter",
            delta: 1,
            min: Some(0),
            max: None,
            once: None,
        };
        wrong(store.counter_change(&change).map(drop), "change");
        let once = CounterChange {
            key: "fresh",
            once: Some(("op", 1000)),
            ..change
        };
        wrong(store.counter_change(&once).map(drop), "op record");
        wrong(
            store
                .sequence_reserve("counter", 1, false, 0, None)
                .map(drop),
            "reserve",
        );

        assert_eq!(store.peek(&lock.lock), Some(Value::Int(7)));
        assert_eq!(store.peek(&claim.record), Some(Value::Marker));
        assert_eq!(store.peek("counter"), Some(Value::Marker));
        assert_eq!(store.peek("op"), Some(Value::Int(1)));
        assert_eq!(
            store.peek("fresh"),
            None,
            "a refused change wrote the counter"
        );
        assert_eq!(
            store.peek(&lock.fence()),
            None,
            "a refused grant wrote the fence"
        );
        // `once` and `force_unlock` take any value, as SET NX and DEL do.
        assert!(!store.mark_once("counter", 1000).unwrap());
        assert!(store.force_unlock(&lock).unwrap());
    }

    #[test]
    fn a_fencing_counter_that_is_not_a_number_refuses_the_grant() {
        let store = MemoryStore::new();
        let lock = Keyspace::new("t:").lock("l");
        store.plant(&lock.fence(), Value::Marker);
        let err = store
            .acquire_lock(&lock_request(&lock, "o", 1000))
            .unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
        assert_eq!(store.lock_record(&lock).unwrap(), None);
    }

    #[test]
    fn a_sequence_below_zero_is_wrong_type() {
        let store = MemoryStore::new();
        store.plant("seq", Value::Int(-5));
        let err = store
            .sequence_reserve("seq", 1, false, 0, Some(0))
            .unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
    }

    #[test]
    fn utc_days_match_the_calendar() {
        for (secs, day) in [
            (0, "19700101"),
            (951_782_400, "20000229"),
            (1_798_761_599, "20261231"),
            (1_798_761_600, "20270101"),
            (4_107_542_400, "21000301"),
            (253_402_300_799, "99991231"),
        ] {
            assert_eq!(utc_day(secs), day, "{secs}");
        }
    }

    #[test]
    fn globs_follow_redis_rules() {
        let cases: &[(&str, &str, bool)] = &[
            ("t:lock:{*}", "t:lock:{a:1}", true),
            ("t:lock:{*}", "t:lock:{a:1}:fence", false),
            ("t:lock:{a?}", "t:lock:{ab}", true),
            ("t:lock:{a?}", "t:lock:{a}", false),
            ("[a-c]x", "bx", true),
            ("[c-a]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("[ab\\]]", "]", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("[abc", "b", true),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
            ("ab\\", "ab\\", true),
        ];
        for &(pattern, text, expected) in cases {
            let glob = Glob::parse(pattern.as_bytes());
            assert_eq!(
                glob.matches(text.as_bytes()),
                expected,
                "{pattern} vs {text}"
            );
        }
        // Many stars against a long near-miss stays fast.
        let glob = Glob::parse("*a*a*a*a*a*a*a*a*b".as_bytes());
        assert!(!glob.matches("a".repeat(10_000).as_bytes()));
    }

    #[test]
    fn a_release_wakes_a_watcher() {
        let store = MemoryStore::new();
        let lock = Keyspace::new("t:").lock("l");
        store
            .acquire_lock(&lock_request(&lock, "o", 10_000))
            .unwrap();
        let watch = store.watch(&lock.lock, true, Instant::now() + Duration::from_secs(5));
        assert!(
            store
                .release_lock(&lock, &HeldGrant::by_owner("o"))
                .unwrap()
        );
        assert!(watch.wait(Instant::now()));
    }
}
