//! Off wasm, the host's imports answered in this process: the same
//! functions and resources as the generated bindings, served by
//! `tollgate::sandbox` over an in-process store, so plugin code runs under
//! `cargo test` with the host's semantics.

use std::cell::RefCell;

use tollgate::LockGuard;
use tollgate::sandbox::{Grant, GuestError, Held, HeldClaim, RwGrant, Session};

use crate::bindings::tollgate::coord::types::Error as WitError;
use crate::testing::Sandbox;

thread_local! {
    /// The invocation this thread's calls belong to: set by
    /// [`Sandbox::invoke`], else this thread's implicit one.
    static CURRENT: RefCell<Option<Session>> = const { RefCell::new(None) };
    /// Calls made outside any `Sandbox::invoke`: one invocation per thread,
    /// on a store of its own.
    static IMPLICIT: Session = Sandbox::new().open_session(None);
}

/// The session of the calling thread's invocation.
fn session() -> Session {
    CURRENT
        .with_borrow(|current| current.clone())
        .unwrap_or_else(|| IMPLICIT.with(Session::clone))
}

/// Makes `session` the calling thread's invocation while `work` runs.
pub(crate) fn with_session<R>(session: Session, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<Session>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0.take());
        }
    }
    let _restore = Restore(CURRENT.replace(Some(session)));
    work()
}

fn wit_error(error: GuestError) -> WitError {
    match error {
        GuestError::InvalidArgument(why) => WitError::InvalidArgument(why),
        GuestError::AccessDenied(why) => WitError::AccessDenied(why),
        GuestError::QuotaExceeded(why) => WitError::QuotaExceeded(why),
        GuestError::Timeout => WitError::Timeout,
        GuestError::NotHeld => WitError::NotHeld,
        GuestError::WouldDeadlock => WitError::WouldDeadlock,
        GuestError::Unavailable(why) => WitError::Unavailable(why),
        GuestError::OutcomeUnknown(why) => WitError::OutcomeUnknown(why),
        GuestError::WrongType(why) => WitError::WrongType(why),
        GuestError::Refused(why) => WitError::Refused(why),
        GuestError::UnexpectedReply(why) => WitError::UnexpectedReply(why),
        GuestError::InProgress => WitError::InProgress,
        GuestError::PayloadMismatch => WitError::PayloadMismatch,
        GuestError::TooLarge(why) => WitError::TooLarge(why),
        GuestError::OutOfBounds(value) => WitError::OutOfBounds(value),
        GuestError::Overflow => WitError::Overflow,
        GuestError::OpIdConflict => WitError::OpIdConflict,
        // A case added to the sandbox before the WIT learns it.
        other => WitError::UnexpectedReply(other.to_string()),
    }
}

type Answer<T> = Result<T, WitError>;

/// A lock, permits or a read-write hold a guest holds, as the generated
/// resource types present them; dropping it releases the grant.
#[derive(Debug)]
pub(crate) struct Handle<G: Grant>(Held<G>);

impl<G: Grant> Handle<G> {
    pub(crate) fn name(&self) -> String {
        self.0.name().to_owned()
    }
    pub(crate) fn fencing_token(&self) -> u64 {
        self.0.fencing_token()
    }
    pub(crate) fn extend(&self, ttl_ms: u64) -> Answer<()> {
        self.0.extend(ttl_ms).map_err(wit_error)
    }
    pub(crate) fn is_held(&self) -> Answer<bool> {
        self.0.is_held().map_err(wit_error)
    }
    pub(crate) fn release(handle: Self) -> Answer<()> {
        handle.0.release().map_err(wit_error)
    }
}

pub(crate) mod lock {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::lock::LockOptions;
    use tollgate::sandbox::LockRequest;

    fn request(options: LockOptions) -> LockRequest {
        LockRequest {
            ttl_ms: options.ttl_ms,
            wait_ms: options.wait_ms,
            renew: options.renew,
        }
    }

    /// A held lock; dropping it releases the lock.
    pub(crate) type Guard = Handle<LockGuard>;

    impl Guard {
        pub(crate) fn remaining_ttl_ms(&self) -> Answer<Option<u64>> {
            self.0.remaining_ttl_ms().map_err(wit_error)
        }
    }

    pub(crate) fn acquire(name: &str, options: LockOptions) -> Answer<Guard> {
        session()
            .acquire(name, request(options))
            .map(Handle)
            .map_err(wit_error)
    }

    pub(crate) fn try_acquire(name: &str, options: LockOptions) -> Answer<Option<Guard>> {
        session()
            .try_acquire(name, request(options))
            .map(|held| held.map(Handle))
            .map_err(wit_error)
    }
}

pub(crate) mod idempotency {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::idempotency::ClaimOptions;
    use tollgate::sandbox::{ClaimOutcome as Found, ClaimRequest};

    /// A held claim; dropping it abandons the claim. Boxed: as small as
    /// the wasm handle it stands for.
    #[derive(Debug)]
    pub(crate) struct Claim(Box<HeldClaim>);

    impl Claim {
        pub(crate) fn complete(c: Claim, value: &[u8]) -> Answer<()> {
            c.0.complete(value).map_err(wit_error)
        }
        pub(crate) fn fail(c: Claim, failure: &str) -> Answer<()> {
            c.0.fail(failure).map_err(wit_error)
        }
    }

    /// What `begin` found.
    pub(crate) enum ClaimOutcome {
        Fresh(Claim),
        Completed(Vec<u8>),
        Failed(String),
        InProgress,
    }

    pub(crate) fn begin(
        key: &str,
        fingerprint: &[u8],
        options: ClaimOptions,
    ) -> Answer<ClaimOutcome> {
        let request = ClaimRequest {
            lease_ms: options.lease_ms,
            result_ttl_ms: options.result_ttl_ms,
            wait_ms: options.wait_ms,
        };
        Ok(
            match session()
                .begin(key, fingerprint, request)
                .map_err(wit_error)?
            {
                Found::Fresh(claim) => ClaimOutcome::Fresh(Claim(Box::new(claim))),
                Found::Completed(value) => ClaimOutcome::Completed(value),
                Found::Failed(text) => ClaimOutcome::Failed(text),
                Found::InProgress => ClaimOutcome::InProgress,
            },
        )
    }

    pub(crate) fn once(key: &str, window_ms: u64) -> Answer<bool> {
        session().once(key, window_ms).map_err(wit_error)
    }
}

pub(crate) mod counter {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::counter::{Bounds, OnceOutcome};
    use tollgate::sandbox::CounterBounds;

    fn bounds(bounds: Option<Bounds>) -> Option<CounterBounds> {
        bounds.map(|b| CounterBounds {
            min: b.min,
            max: b.max,
        })
    }

    pub(crate) fn incr(name: &str, delta: i64, b: Option<Bounds>) -> Answer<i64> {
        session().incr(name, delta, bounds(b)).map_err(wit_error)
    }

    pub(crate) fn incr_once(
        name: &str,
        op_id: &str,
        delta: i64,
        b: Option<Bounds>,
    ) -> Answer<OnceOutcome> {
        let out = session()
            .incr_once(name, op_id, delta, bounds(b))
            .map_err(wit_error)?;
        Ok(OnceOutcome {
            value: out.value,
            applied: out.applied,
        })
    }

    pub(crate) fn get(name: &str) -> Answer<i64> {
        session().get(name).map_err(wit_error)
    }

    pub(crate) fn set(name: &str, value: i64) -> Answer<()> {
        session().set(name, value).map_err(wit_error)
    }
}

pub(crate) mod semaphore {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::semaphore::PermitOptions;
    use tollgate::sandbox::PermitRequest;

    fn request(options: PermitOptions) -> PermitRequest {
        PermitRequest {
            permits: options.permits,
            count: options.count,
            ttl_ms: options.ttl_ms,
            wait_ms: options.wait_ms,
            renew: options.renew,
        }
    }

    /// Held permits; dropping them releases them.
    pub(crate) type Permit = Handle<tollgate::Permit>;

    impl Permit {
        pub(crate) fn count(&self) -> u32 {
            self.0.count()
        }
    }

    pub(crate) fn acquire(name: &str, options: PermitOptions) -> Answer<Permit> {
        session()
            .acquire_permit(name, request(options))
            .map(Handle)
            .map_err(wit_error)
    }

    pub(crate) fn try_acquire(name: &str, options: PermitOptions) -> Answer<Option<Permit>> {
        session()
            .try_acquire_permit(name, request(options))
            .map(|held| held.map(Handle))
            .map_err(wit_error)
    }

    pub(crate) fn available(name: &str, permits: u32) -> Answer<u32> {
        session()
            .available_permits(name, permits)
            .map_err(wit_error)
    }
}

pub(crate) mod rw_lock {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::rw_lock::RwOptions;
    use tollgate::sandbox::LockRequest;

    fn request(options: RwOptions) -> LockRequest {
        LockRequest {
            ttl_ms: options.ttl_ms,
            wait_ms: options.wait_ms,
            renew: options.renew,
        }
    }

    /// A read or write hold; dropping it releases it.
    pub(crate) type Hold = Handle<RwGrant>;

    impl Hold {
        pub(crate) fn is_write(&self) -> bool {
            self.0.is_write()
        }
    }

    fn take(name: &str, write: bool, options: RwOptions) -> Answer<Option<Hold>> {
        session()
            .try_rw(name, write, request(options))
            .map(|held| held.map(Handle))
            .map_err(wit_error)
    }

    pub(crate) fn read(name: &str, options: RwOptions) -> Answer<Hold> {
        take(name, false, options)?.ok_or(WitError::Timeout)
    }

    pub(crate) fn try_read(name: &str, options: RwOptions) -> Answer<Option<Hold>> {
        take(name, false, options)
    }

    pub(crate) fn write(name: &str, options: RwOptions) -> Answer<Hold> {
        take(name, true, options)?.ok_or(WitError::Timeout)
    }

    pub(crate) fn try_write(name: &str, options: RwOptions) -> Answer<Option<Hold>> {
        take(name, true, options)
    }
}

pub(crate) mod fenced_record {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::fenced_record::{Entry, WriteOutcome};

    pub(crate) fn get(name: &str) -> Answer<Option<Entry>> {
        let entry = session().record_get(name).map_err(wit_error)?;
        Ok(entry.map(|entry| Entry {
            value: entry.value,
            token: entry.token,
        }))
    }

    fn outcome(written: Result<(), GuestError>) -> Answer<WriteOutcome> {
        match written {
            Ok(()) => Ok(WriteOutcome::Written),
            Err(GuestError::StaleToken(highest)) => Ok(WriteOutcome::Stale(highest)),
            Err(error) => Err(wit_error(error)),
        }
    }

    pub(crate) fn put(name: &str, value: &[u8], token: u64, ttl_ms: u64) -> Answer<WriteOutcome> {
        outcome(session().record_put(name, value, token, ttl_ms))
    }

    pub(crate) fn delete(name: &str, token: u64) -> Answer<WriteOutcome> {
        outcome(session().record_delete(name, token))
    }
}

pub(crate) mod sequence {
    use super::*;
    pub(crate) use crate::bindings::tollgate::coord::sequence::{Reset, SequenceOptions};
    use tollgate::sandbox::SequenceRequest;

    fn request(options: &SequenceOptions) -> SequenceRequest {
        SequenceRequest {
            format: options.format.clone(),
            reset: match options.reset {
                Reset::Never => tollgate::Reset::Never,
                Reset::Daily => tollgate::Reset::Daily,
            },
        }
    }

    pub(crate) fn next(name: &str, options: &SequenceOptions) -> Answer<String> {
        session().next(name, &request(options)).map_err(wit_error)
    }

    pub(crate) fn next_raw(name: &str, options: &SequenceOptions) -> Answer<u64> {
        session()
            .next_raw(name, &request(options))
            .map_err(wit_error)
    }
}
