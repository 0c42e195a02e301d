//! The `Host*` traits generated from the WIT, implemented by translating
//! each call to the invocation's [`Session`] and its answer back.

use std::time::Instant;

use wasmtime::Result as TrapResult;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::tollgate::coord::fenced_record as record;
use super::bindings::tollgate::coord::rw_lock;
use super::bindings::tollgate::coord::{counter, idempotency, lock, semaphore, sequence, types};
use super::error::CallError;
use super::limits::InvocationLimits;
use crate::Reset;
use crate::sandbox::{
    ClaimOutcome, ClaimRequest, CounterBounds, GuestError, HeldClaim, HeldLock, HeldPermit, HeldRw,
    LockRequest, PermitRequest, SequenceRequest, Session,
};

/// The state of one invocation: everything the plugin holds lives in
/// `table` and goes when the store does (each lock is released and each
/// claim abandoned as its handle drops).
pub(crate) struct Invocation {
    /// The guest's calls, checked against its policy; its deadline is a
    /// little after `ends_at`, so that the guest is stopped by its timeout
    /// rather than failed by a cut-short wait.
    pub session: Session,
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub limits: InvocationLimits,
    /// When the invocation's time is up (monotonic clock): the next epoch
    /// tick after it stops the guest.
    pub ends_at: Instant,
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for Invocation {
    fn convert_error(&mut self, error: CallError) -> TrapResult<types::Error> {
        use types::Error as Wit;
        let error = match error {
            CallError::Guest(error) => error,
            CallError::Trap(trap) => return Err(trap),
        };
        Ok(match error {
            GuestError::InvalidArgument(why) => Wit::InvalidArgument(why),
            GuestError::AccessDenied(why) => Wit::AccessDenied(why),
            GuestError::QuotaExceeded(why) => Wit::QuotaExceeded(why),
            GuestError::Timeout => Wit::Timeout,
            GuestError::NotHeld => Wit::NotHeld,
            GuestError::WouldDeadlock => Wit::WouldDeadlock,
            GuestError::Unavailable(why) => Wit::Unavailable(why),
            GuestError::OutcomeUnknown(why) => Wit::OutcomeUnknown(why),
            GuestError::WrongType(why) => Wit::WrongType(why),
            GuestError::Refused(why) => Wit::Refused(why),
            GuestError::UnexpectedReply(why) => Wit::UnexpectedReply(why),
            GuestError::InProgress => Wit::InProgress,
            GuestError::PayloadMismatch => Wit::PayloadMismatch,
            GuestError::TooLarge(why) => Wit::TooLarge(why),
            GuestError::OutOfBounds(value) => Wit::OutOfBounds(value),
            GuestError::Overflow => Wit::Overflow,
            GuestError::OpIdConflict => Wit::OpIdConflict,
            // Only record writes refuse stale tokens, and they answer
            // `write-outcome.stale` instead.
            other @ GuestError::StaleToken(_) => Wit::UnexpectedReply(other.to_string()),
        })
    }
}

fn lock_request(options: lock::LockOptions) -> LockRequest {
    LockRequest {
        ttl_ms: options.ttl_ms,
        wait_ms: options.wait_ms,
        renew: options.renew,
    }
}

impl lock::Host for Invocation {
    fn acquire(
        &mut self,
        name: String,
        options: lock::LockOptions,
    ) -> Result<Resource<HeldLock>, CallError> {
        let held = self.session.acquire(&name, lock_request(options))?;
        Ok(self.table.push(held)?)
    }

    fn try_acquire(
        &mut self,
        name: String,
        options: lock::LockOptions,
    ) -> Result<Option<Resource<HeldLock>>, CallError> {
        match self.session.try_acquire(&name, lock_request(options))? {
            Some(held) => Ok(Some(self.table.push(held)?)),
            None => Ok(None),
        }
    }
}

impl lock::HostGuard for Invocation {
    fn name(&mut self, guard: Resource<HeldLock>) -> TrapResult<String> {
        Ok(self.table.get(&guard)?.name().to_owned())
    }

    fn fencing_token(&mut self, guard: Resource<HeldLock>) -> TrapResult<u64> {
        Ok(self.table.get(&guard)?.fencing_token())
    }

    fn extend(&mut self, guard: Resource<HeldLock>, ttl_ms: u64) -> Result<(), CallError> {
        Ok(self.table.get(&guard)?.extend(ttl_ms)?)
    }

    fn is_held(&mut self, guard: Resource<HeldLock>) -> Result<bool, CallError> {
        Ok(self.table.get(&guard)?.is_held()?)
    }

    fn remaining_ttl_ms(&mut self, guard: Resource<HeldLock>) -> Result<Option<u64>, CallError> {
        Ok(self.table.get(&guard)?.remaining_ttl_ms()?)
    }

    fn release(&mut self, guard: Resource<HeldLock>) -> Result<(), CallError> {
        Ok(self.table.delete(guard)?.release()?)
    }

    fn drop(&mut self, guard: Resource<HeldLock>) -> TrapResult<()> {
        self.table.delete(guard)?; // its Drop releases the lock
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
        let request = ClaimRequest {
            lease_ms: options.lease_ms,
            result_ttl_ms: options.result_ttl_ms,
            wait_ms: options.wait_ms,
        };
        Ok(match self.session.begin(&key, &fingerprint, request)? {
            ClaimOutcome::Fresh(claim) => idempotency::ClaimOutcome::Fresh(self.table.push(claim)?),
            ClaimOutcome::Completed(value) => idempotency::ClaimOutcome::Completed(value),
            ClaimOutcome::Failed(text) => idempotency::ClaimOutcome::Failed(text),
            ClaimOutcome::InProgress => idempotency::ClaimOutcome::InProgress,
        })
    }

    fn once(&mut self, key: String, window_ms: u64) -> Result<bool, CallError> {
        Ok(self.session.once(&key, window_ms)?)
    }
}

impl idempotency::HostClaim for Invocation {
    fn key(&mut self, claim: Resource<HeldClaim>) -> TrapResult<String> {
        Ok(self.table.get(&claim)?.key().to_owned())
    }

    fn complete(&mut self, claim: Resource<HeldClaim>, result: Vec<u8>) -> Result<(), CallError> {
        Ok(self.table.delete(claim)?.complete(&result)?)
    }

    fn fail(&mut self, claim: Resource<HeldClaim>, failure: String) -> Result<(), CallError> {
        Ok(self.table.delete(claim)?.fail(&failure)?)
    }

    fn drop(&mut self, claim: Resource<HeldClaim>) -> TrapResult<()> {
        self.table.delete(claim)?; // its Drop abandons the claim
        Ok(())
    }
}

fn counter_bounds(bounds: Option<counter::Bounds>) -> Option<CounterBounds> {
    bounds.map(|b| CounterBounds {
        min: b.min,
        max: b.max,
    })
}

impl counter::Host for Invocation {
    fn incr(
        &mut self,
        name: String,
        delta: i64,
        bounds: Option<counter::Bounds>,
    ) -> Result<i64, CallError> {
        Ok(self.session.incr(&name, delta, counter_bounds(bounds))?)
    }

    fn incr_once(
        &mut self,
        name: String,
        op_id: String,
        delta: i64,
        bounds: Option<counter::Bounds>,
    ) -> Result<counter::OnceOutcome, CallError> {
        let outcome = self
            .session
            .incr_once(&name, &op_id, delta, counter_bounds(bounds))?;
        Ok(counter::OnceOutcome {
            value: outcome.value,
            applied: outcome.applied,
        })
    }

    fn get(&mut self, name: String) -> Result<i64, CallError> {
        Ok(self.session.get(&name)?)
    }

    fn set(&mut self, name: String, value: i64) -> Result<(), CallError> {
        Ok(self.session.set(&name, value)?)
    }
}

fn sequence_request(options: sequence::SequenceOptions) -> SequenceRequest {
    SequenceRequest {
        format: options.format,
        reset: match options.reset {
            sequence::Reset::Never => Reset::Never,
            sequence::Reset::Daily => Reset::Daily,
        },
    }
}

impl sequence::Host for Invocation {
    fn next(
        &mut self,
        name: String,
        options: sequence::SequenceOptions,
    ) -> Result<String, CallError> {
        Ok(self.session.next(&name, &sequence_request(options))?)
    }

    fn next_raw(
        &mut self,
        name: String,
        options: sequence::SequenceOptions,
    ) -> Result<u64, CallError> {
        Ok(self.session.next_raw(&name, &sequence_request(options))?)
    }
}

/// A fenced write's answer: a stale token is an outcome, not an error.
fn write_outcome(written: Result<(), GuestError>) -> Result<record::WriteOutcome, CallError> {
    match written {
        Ok(()) => Ok(record::WriteOutcome::Written),
        Err(GuestError::StaleToken(highest)) => Ok(record::WriteOutcome::Stale(highest)),
        Err(error) => Err(error.into()),
    }
}

impl record::Host for Invocation {
    fn get(&mut self, name: String) -> Result<Option<record::Entry>, CallError> {
        let entry = self.session.record_get(&name)?;
        Ok(entry.map(|entry| record::Entry {
            value: entry.value,
            token: entry.token,
        }))
    }

    fn put(
        &mut self,
        name: String,
        value: Vec<u8>,
        token: u64,
        ttl_ms: u64,
    ) -> Result<record::WriteOutcome, CallError> {
        write_outcome(self.session.record_put(&name, &value, token, ttl_ms))
    }

    fn delete(&mut self, name: String, token: u64) -> Result<record::WriteOutcome, CallError> {
        write_outcome(self.session.record_delete(&name, token))
    }
}

fn permit_request(options: semaphore::PermitOptions) -> PermitRequest {
    PermitRequest {
        permits: options.permits,
        count: options.count,
        ttl_ms: options.ttl_ms,
        wait_ms: options.wait_ms,
        renew: options.renew,
    }
}

impl semaphore::Host for Invocation {
    fn acquire(
        &mut self,
        name: String,
        options: semaphore::PermitOptions,
    ) -> Result<Resource<HeldPermit>, CallError> {
        let held = self
            .session
            .acquire_permit(&name, permit_request(options))?;
        Ok(self.table.push(held)?)
    }

    fn try_acquire(
        &mut self,
        name: String,
        options: semaphore::PermitOptions,
    ) -> Result<Option<Resource<HeldPermit>>, CallError> {
        match self
            .session
            .try_acquire_permit(&name, permit_request(options))?
        {
            Some(held) => Ok(Some(self.table.push(held)?)),
            None => Ok(None),
        }
    }

    fn available(&mut self, name: String, permits: u32) -> Result<u32, CallError> {
        Ok(self.session.available_permits(&name, permits)?)
    }
}

impl semaphore::HostPermit for Invocation {
    fn name(&mut self, permit: Resource<HeldPermit>) -> TrapResult<String> {
        Ok(self.table.get(&permit)?.name().to_owned())
    }

    fn count(&mut self, permit: Resource<HeldPermit>) -> TrapResult<u32> {
        Ok(self.table.get(&permit)?.count())
    }

    fn fencing_token(&mut self, permit: Resource<HeldPermit>) -> TrapResult<u64> {
        Ok(self.table.get(&permit)?.fencing_token())
    }

    fn extend(&mut self, permit: Resource<HeldPermit>, ttl_ms: u64) -> Result<(), CallError> {
        Ok(self.table.get(&permit)?.extend(ttl_ms)?)
    }

    fn is_held(&mut self, permit: Resource<HeldPermit>) -> Result<bool, CallError> {
        Ok(self.table.get(&permit)?.is_held()?)
    }

    fn release(&mut self, permit: Resource<HeldPermit>) -> Result<(), CallError> {
        Ok(self.table.delete(permit)?.release()?)
    }

    fn drop(&mut self, permit: Resource<HeldPermit>) -> TrapResult<()> {
        self.table.delete(permit)?; // its Drop releases the permits
        Ok(())
    }
}

fn rw_request(options: rw_lock::RwOptions) -> LockRequest {
    LockRequest {
        ttl_ms: options.ttl_ms,
        wait_ms: options.wait_ms,
        renew: options.renew,
    }
}

impl Invocation {
    fn rw(
        &mut self,
        name: &str,
        write: bool,
        options: rw_lock::RwOptions,
    ) -> Result<Option<Resource<HeldRw>>, CallError> {
        match self.session.try_rw(name, write, rw_request(options))? {
            Some(held) => Ok(Some(self.table.push(held)?)),
            None => Ok(None),
        }
    }
}

impl rw_lock::Host for Invocation {
    fn read(
        &mut self,
        name: String,
        options: rw_lock::RwOptions,
    ) -> Result<Resource<HeldRw>, CallError> {
        self.rw(&name, false, options)?
            .ok_or(CallError::Guest(GuestError::Timeout))
    }

    fn try_read(
        &mut self,
        name: String,
        options: rw_lock::RwOptions,
    ) -> Result<Option<Resource<HeldRw>>, CallError> {
        self.rw(&name, false, options)
    }

    fn write(
        &mut self,
        name: String,
        options: rw_lock::RwOptions,
    ) -> Result<Resource<HeldRw>, CallError> {
        self.rw(&name, true, options)?
            .ok_or(CallError::Guest(GuestError::Timeout))
    }

    fn try_write(
        &mut self,
        name: String,
        options: rw_lock::RwOptions,
    ) -> Result<Option<Resource<HeldRw>>, CallError> {
        self.rw(&name, true, options)
    }
}

impl rw_lock::HostHold for Invocation {
    fn name(&mut self, hold: Resource<HeldRw>) -> TrapResult<String> {
        Ok(self.table.get(&hold)?.name().to_owned())
    }

    fn is_write(&mut self, hold: Resource<HeldRw>) -> TrapResult<bool> {
        Ok(self.table.get(&hold)?.is_write())
    }

    fn fencing_token(&mut self, hold: Resource<HeldRw>) -> TrapResult<u64> {
        Ok(self.table.get(&hold)?.fencing_token())
    }

    fn extend(&mut self, hold: Resource<HeldRw>, ttl_ms: u64) -> Result<(), CallError> {
        Ok(self.table.get(&hold)?.extend(ttl_ms)?)
    }

    fn is_held(&mut self, hold: Resource<HeldRw>) -> Result<bool, CallError> {
        Ok(self.table.get(&hold)?.is_held()?)
    }

    fn release(&mut self, hold: Resource<HeldRw>) -> Result<(), CallError> {
        Ok(self.table.delete(hold)?.release()?)
    }

    fn drop(&mut self, hold: Resource<HeldRw>) -> TrapResult<()> {
        self.table.delete(hold)?; // its Drop releases the hold
        Ok(())
    }
}
