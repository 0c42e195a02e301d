//! The `Host*` traits generated from the WIT, implemented by translating:
//! check the policy, call the library, map the error.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Result as TrapResult;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::tollgate::coord::{counter, idempotency, lock, sequence, types};
use super::error::CallError;
use super::limits::InvocationLimits;
use super::policy::Policy;
use crate::error::Error;
use crate::idempotency::{Begin, Claim, DEFAULT_LEASE, DEFAULT_RESULT_TTL, Duplicate};
use crate::lock::{DEFAULT_LOCK_TTL, LockGuard};
use crate::{Client, Counter, Sequence};

/// A lock held by a guest. Dropping it releases the lock, whether the guest
/// dropped its handle or the invocation's store went away (trap, timeout).
pub struct GuestGuard {
    guard: LockGuard,
    name: String,
}

/// A guest's claim on an idempotency key. Dropping it abandons the claim.
pub struct GuestClaim {
    claim: Claim,
    key: String,
}

/// The state of one invocation: everything the plugin holds lives in
/// `table` and goes when the store does.
pub(crate) struct Invocation {
    pub client: Client,
    pub policy: Arc<Policy>,
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub limits: InvocationLimits,
    /// When the invocation's time is up (monotonic clock): the next epoch
    /// tick after it stops the guest.
    pub ends_at: Instant,
    /// When host waits and Redis requests of the invocation end: a little
    /// after `ends_at`, so that the guest is stopped by its timeout rather
    /// than failed by a cut-short wait.
    pub deadline: Instant,
    pub locks_held: usize,
    pub claims_held: usize,
    /// The names the invocation wrote to, by kind (for the policy's quota).
    pub written: HashSet<(&'static str, String)>,
    /// Bytes of results and failures stored so far.
    pub stored_bytes: usize,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Invocation {
    /// Counts a write to `name` (scoped) of kind `kind`; refuses the call
    /// when it would write to more distinct names than the policy allows.
    fn writes(&mut self, kind: &'static str, name: &str) -> Result<(), CallError> {
        let max = self.policy.max_written_names;
        if self.written.len() >= max && !self.written.contains(&(kind, name.to_owned())) {
            return Err(CallError::QuotaExceeded(format!(
                "the plugin may write to at most {max} names per invocation \
                 (locks, idempotency keys, once keys, counters, operation ids, sequences)"
            )));
        }
        self.written.insert((kind, name.to_owned()));
        Ok(())
    }

    /// Counts `bytes` of a result or failure about to be stored; refuses
    /// past the policy's total.
    fn stores(&mut self, bytes: usize) -> Result<(), CallError> {
        let max = self.policy.max_stored_bytes;
        if self.stored_bytes.saturating_add(bytes) > max {
            return Err(CallError::QuotaExceeded(format!(
                "storing {bytes} more bytes would pass the plugin's {max} bytes of results per invocation \
                 ({} stored so far)",
                self.stored_bytes
            )));
        }
        self.stored_bytes += bytes;
        Ok(())
    }

    /// Ends a claim whose outcome the quota refused with a short failure
    /// record saying why, so that repeats do not run the action again.
    fn record_refused(&mut self, claim: Resource<GuestClaim>, why: &str) -> Result<(), CallError> {
        let held = self.table.delete(claim)?;
        self.claims_held -= 1;
        if let Err(error) = held.claim.fail(&format!("the action ran, but {why}")) {
            tracing::warn!(key = %held.key, %error, "tollgate: could not record a refused outcome; the claim frees when its lease ends");
        }
        Ok(())
    }

    /// A guest's wait, within the policy and the invocation's deadline.
    fn wait(&self, wait_ms: u64) -> Result<Duration, CallError> {
        let wait = self
            .policy
            .duration("wait", wait_ms, Duration::ZERO, self.policy.max_wait)?;
        Ok(wait.min(self.deadline.saturating_duration_since(Instant::now())))
    }

    fn take_lock(
        &mut self,
        name: String,
        options: lock::LockOptions,
    ) -> Result<Option<Resource<GuestGuard>>, CallError> {
        let policy = Arc::clone(&self.policy);
        let scoped = policy.scoped("lock name", &name)?;
        if self.locks_held >= policy.max_locks {
            return Err(CallError::QuotaExceeded(format!(
                "the plugin may hold at most {} locks at once",
                policy.max_locks
            )));
        }
        let ttl = policy.duration("ttl", options.ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        self.writes("lock", &scoped)?;
        let mut request = self
            .client
            .lock(scoped)
            .ttl(ttl)
            .wait(self.wait(options.wait_ms)?);
        if options.renew {
            request = request.watchdog();
        }
        let Some(guard) = request.try_acquire()? else {
            return Ok(None);
        };
        self.locks_held += 1;
        Ok(Some(self.table.push(GuestGuard { guard, name })?))
    }

    /// The guest's counter `name`, counted as written to when `writes`.
    fn counter(
        &mut self,
        name: &str,
        bounds: Option<counter::Bounds>,
        writes: bool,
    ) -> Result<Counter, CallError> {
        let scoped = self.policy.scoped("counter name", name)?;
        if writes {
            self.writes("counter", &scoped)?;
        }
        let counter = self.client.counter(scoped);
        Ok(match bounds {
            None => counter,
            Some(b) => counter.bounds((
                b.min.map_or(Bound::Unbounded, Bound::Included),
                b.max.map_or(Bound::Unbounded, Bound::Included),
            )),
        })
    }

    fn sequence(
        &mut self,
        name: &str,
        options: sequence::SequenceOptions,
    ) -> Result<Sequence, CallError> {
        let scoped = self.policy.scoped("sequence name", name)?;
        self.writes("sequence", &scoped)?;
        let mut sequence = self.client.sequence(scoped);
        if let Some(format) = options.format {
            sequence = sequence.format(&format)?;
        }
        Ok(sequence.reset(match options.reset {
            sequence::Reset::Never => crate::Reset::Never,
            sequence::Reset::Daily => crate::Reset::Daily,
        }))
    }
}

impl types::Host for Invocation {
    fn convert_error(&mut self, error: CallError) -> TrapResult<types::Error> {
        use types::Error as Wit;
        Ok(match error {
            CallError::Trap(trap) => return Err(trap),
            CallError::AccessDenied(why) => Wit::AccessDenied(why),
            CallError::QuotaExceeded(why) => Wit::QuotaExceeded(why),
            CallError::Tollgate(error) => match error {
                e @ Error::InvalidArgument { .. } => Wit::InvalidArgument(e.to_string()),
                Error::Timeout { .. } => Wit::Timeout,
                Error::NotHeld { .. } => Wit::NotHeld,
                Error::WouldDeadlock { .. } => Wit::WouldDeadlock,
                // A grant that replicas did not confirm was given back:
                // nothing is held, as when the store is unreachable.
                e @ (Error::Unavailable { .. }
                | Error::NotReplicated { .. }
                | Error::NoQuorum { .. }) => Wit::Unavailable(e.to_string()),
                e @ Error::OutcomeUnknown { .. } => Wit::OutcomeUnknown(e.to_string()),
                e @ Error::WrongType { .. } => Wit::WrongType(e.to_string()),
                // The host's configuration errors: the guest can only stop.
                e @ (Error::Refused { .. } | Error::Auth { .. } | Error::EvictionPolicy { .. }) => {
                    Wit::Refused(e.to_string())
                }
                e @ Error::UnexpectedReply(_) => Wit::UnexpectedReply(e.to_string()),
                Error::InProgress { .. } => Wit::InProgress,
                Error::PayloadMismatch { .. } => Wit::PayloadMismatch,
                e @ Error::TooLarge { .. } => Wit::TooLarge(e.to_string()),
                Error::OutOfBounds { value, .. } => Wit::OutOfBounds(value),
                Error::Overflow { .. } => Wit::Overflow,
                Error::OpIdConflict { .. } => Wit::OpIdConflict,
            },
        })
    }
}

impl lock::Host for Invocation {
    fn acquire(
        &mut self,
        name: String,
        options: lock::LockOptions,
    ) -> Result<Resource<GuestGuard>, CallError> {
        let waited = Duration::from_millis(options.wait_ms);
        self.take_lock(name.clone(), options)?
            .ok_or(CallError::Tollgate(Error::Timeout { name, waited }))
    }

    fn try_acquire(
        &mut self,
        name: String,
        options: lock::LockOptions,
    ) -> Result<Option<Resource<GuestGuard>>, CallError> {
        self.take_lock(name, options)
    }
}

impl lock::HostGuard for Invocation {
    fn name(&mut self, guard: Resource<GuestGuard>) -> TrapResult<String> {
        Ok(self.table.get(&guard)?.name.clone())
    }

    fn fencing_token(&mut self, guard: Resource<GuestGuard>) -> TrapResult<u64> {
        Ok(self.table.get(&guard)?.guard.fencing_token())
    }

    fn extend(&mut self, guard: Resource<GuestGuard>, ttl_ms: u64) -> Result<(), CallError> {
        if ttl_ms == 0 {
            return Err(Error::invalid("ttl", "extend needs a TTL above zero").into());
        }
        let policy = &self.policy;
        let ttl = policy.duration("ttl", ttl_ms, DEFAULT_LOCK_TTL, policy.max_ttl)?;
        Ok(self.table.get(&guard)?.guard.extend(ttl)?)
    }

    fn is_held(&mut self, guard: Resource<GuestGuard>) -> Result<bool, CallError> {
        Ok(self.table.get(&guard)?.guard.is_held()?)
    }

    fn remaining_ttl_ms(&mut self, guard: Resource<GuestGuard>) -> Result<Option<u64>, CallError> {
        let ttl = self.table.get(&guard)?.guard.remaining_ttl()?;
        Ok(ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)))
    }

    fn release(&mut self, guard: Resource<GuestGuard>) -> Result<(), CallError> {
        let held = self.table.delete(guard)?;
        self.locks_held -= 1;
        Ok(held.guard.release()?)
    }

    fn drop(&mut self, guard: Resource<GuestGuard>) -> TrapResult<()> {
        self.table.delete(guard)?; // its Drop releases the lock
        self.locks_held -= 1;
        Ok(())
    }
}

impl idempotency::Host for Invocation {
    fn begin(
        &mut self,
        key: String,
        fingerprint: Vec<u8>,
        options: idempotency::ClaimOptions,
    ) -> Result<idempotency::ClaimOutcome, CallError> {
        let policy = Arc::clone(&self.policy);
        let scoped = policy.scoped("idempotency key", &key)?;
        if self.claims_held >= policy.max_claims {
            return Err(CallError::QuotaExceeded(format!(
                "the plugin may hold at most {} claims at once",
                policy.max_claims
            )));
        }
        let lease = policy.duration("lease", options.lease_ms, DEFAULT_LEASE, policy.max_ttl)?;
        let result_ttl = policy.duration(
            "result ttl",
            options.result_ttl_ms,
            DEFAULT_RESULT_TTL,
            policy.max_retention,
        )?;
        let wait = self.wait(options.wait_ms)?;
        self.writes("idempotency key", &scoped)?;
        let idempotency = self
            .client
            .idempotency(policy.namespace())
            .lease(lease)
            .result_ttl(result_ttl)
            .max_result_size(policy.max_result_bytes);
        let mut call = idempotency.key(&key).on_duplicate(if wait.is_zero() {
            Duplicate::Fail
        } else {
            Duplicate::Wait(wait)
        });
        if !fingerprint.is_empty() {
            call = call.fingerprint(&fingerprint);
        }
        Ok(match call.begin()? {
            Begin::Fresh(mut claim) => {
                // Storing its outcome may not outlast the invocation.
                claim.give_up_at(self.deadline);
                self.claims_held += 1;
                idempotency::ClaimOutcome::Fresh(self.table.push(GuestClaim { claim, key })?)
            }
            Begin::Completed(value) => idempotency::ClaimOutcome::Completed(value),
            Begin::Failed(text) => idempotency::ClaimOutcome::Failed(text),
            Begin::InProgress => idempotency::ClaimOutcome::InProgress,
        })
    }

    fn once(&mut self, key: String, window_ms: u64) -> Result<bool, CallError> {
        let policy = Arc::clone(&self.policy);
        let scoped = policy.scoped("once key", &key)?;
        let window = Duration::from_millis(window_ms);
        if window > policy.max_retention {
            return Err(CallError::QuotaExceeded(format!(
                "window of {window:?} is above the plugin's limit of {:?}",
                policy.max_retention
            )));
        }
        self.writes("once key", &scoped)?;
        Ok(self.client.once(&scoped, window)?)
    }
}

impl idempotency::HostClaim for Invocation {
    fn key(&mut self, claim: Resource<GuestClaim>) -> TrapResult<String> {
        Ok(self.table.get(&claim)?.key.clone())
    }

    fn complete(&mut self, claim: Resource<GuestClaim>, result: Vec<u8>) -> Result<(), CallError> {
        self.table.get(&claim)?; // a bad handle traps before any quota is used
        if let Err(quota) = self.stores(result.len()) {
            // The action ran: a short failure record keeps repeats from
            // running it again, as for a result over the size limit.
            self.record_refused(claim, "its result was over the plugin's stored-bytes quota")?;
            return Err(quota);
        }
        let held = self.table.delete(claim)?;
        self.claims_held -= 1;
        Ok(held.claim.complete(&result)?)
    }

    fn fail(&mut self, claim: Resource<GuestClaim>, failure: String) -> Result<(), CallError> {
        self.table.get(&claim)?;
        if let Err(quota) = self.stores(failure.len().min(self.policy.max_result_bytes)) {
            self.record_refused(
                claim,
                "its failure was over the plugin's stored-bytes quota",
            )?;
            return Err(quota);
        }
        let held = self.table.delete(claim)?;
        self.claims_held -= 1;
        Ok(held.claim.fail(&failure)?)
    }

    fn drop(&mut self, claim: Resource<GuestClaim>) -> TrapResult<()> {
        self.table.delete(claim)?; // its Drop abandons the claim
        self.claims_held -= 1;
        Ok(())
    }
}

impl counter::Host for Invocation {
    fn incr(
        &mut self,
        name: String,
        delta: i64,
        bounds: Option<counter::Bounds>,
    ) -> Result<i64, CallError> {
        Ok(self.counter(&name, bounds, true)?.incr(delta)?)
    }

    fn incr_once(
        &mut self,
        name: String,
        op_id: String,
        delta: i64,
        bounds: Option<counter::Bounds>,
    ) -> Result<counter::OnceOutcome, CallError> {
        let counter = self.counter(&name, bounds, true)?;
        self.writes("operation id", &format!("{name}\0{op_id}"))?;
        let outcome = counter.incr_once(&op_id, delta)?;
        Ok(counter::OnceOutcome {
            value: outcome.value,
            applied: outcome.applied,
        })
    }

    fn get(&mut self, name: String) -> Result<i64, CallError> {
        Ok(self.counter(&name, None, false)?.get()?)
    }

    fn set(&mut self, name: String, value: i64) -> Result<(), CallError> {
        Ok(self.counter(&name, None, true)?.set(value)?)
    }
}

impl sequence::Host for Invocation {
    fn next(
        &mut self,
        name: String,
        options: sequence::SequenceOptions,
    ) -> Result<String, CallError> {
        Ok(self.sequence(&name, options)?.next()?)
    }

    fn next_raw(
        &mut self,
        name: String,
        options: sequence::SequenceOptions,
    ) -> Result<u64, CallError> {
        Ok(self.sequence(&name, options)?.next_raw()?)
    }
}
