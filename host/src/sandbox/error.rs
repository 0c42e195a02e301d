//! What a guest's call returns to the guest, and what an invocation returns
//! to the embedder.

use std::time::Duration;

use crate::error::Error;

/// Why a guest's call failed: one case per case of the WIT `error`
/// variant (`tollgate:coord/types.error`), in the same order, so a host maps
/// it across one to one. Each [`Error`] of the library has exactly one case
/// here ([`From<Error>`](#impl-From%3CError%3E-for-GuestError)); the policy
/// adds `AccessDenied` and `QuotaExceeded`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// An argument was rejected before anything was done; the text says
    /// which and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// The plugin's policy does not allow the call.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The call would exceed one of the plugin's quotas; nothing was done.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A lock was not granted within the wait.
    #[error("the lock was not granted within the wait (held elsewhere; no wait asks once)")]
    Timeout,
    /// The guard or claim no longer holds its lock or lease.
    #[error("the lock or lease is no longer held")]
    NotHeld,
    /// This invocation already holds this lock.
    #[error("this plugin already holds this lock")]
    WouldDeadlock,
    /// The store could not be reached (or a grant was given back because
    /// replicas or a quorum did not confirm it); nothing is held.
    #[error("{0}")]
    Unavailable(String),
    /// No reply came: a write may or may not have taken effect.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// A key holds a value tollgate did not write.
    #[error("{0}")]
    WrongType(String),
    /// The store refused the request, or the host cannot use it.
    #[error("{0}")]
    Refused(String),
    /// The store answered something the host did not expect.
    #[error("{0}")]
    UnexpectedReply(String),
    /// Another caller is running this idempotent action now.
    #[error("another caller is running this action")]
    InProgress,
    /// The idempotency key was used before with a different payload.
    #[error("the idempotency key was used with a different payload")]
    PayloadMismatch,
    /// A value exceeds its size limit; nothing was stored.
    #[error("{0}")]
    TooLarge(String),
    /// A bounded counter refused the change; the counter's unchanged value.
    #[error("change refused by the counter's bounds (value stays {0})")]
    OutOfBounds(i64),
    /// The change would take a counter or sequence beyond 64 bits.
    #[error("the change would overflow 64 bits")]
    Overflow,
    /// An operation id was reused with a different change.
    #[error("operation id reused with a different change")]
    OpIdConflict,
    /// A fenced record refused a write: it has accepted the token given
    /// here, above the write's. Not a case of the WIT `error`: the record
    /// interface reports it as its `write-outcome` `stale`.
    #[error("the record has accepted a newer fencing token ({0})")]
    StaleToken(u64),
}

impl From<Error> for GuestError {
    fn from(error: Error) -> Self {
        match error {
            e @ Error::InvalidArgument { .. } => GuestError::InvalidArgument(e.to_string()),
            Error::Timeout { .. } => GuestError::Timeout,
            Error::NotHeld { .. } => GuestError::NotHeld,
            Error::WouldDeadlock { .. } => GuestError::WouldDeadlock,
            // A grant that replicas did not confirm was given back: nothing
            // is held, as when the store is unreachable.
            e @ (Error::Unavailable { .. }
            | Error::NotReplicated { .. }
            | Error::NoQuorum { .. }) => GuestError::Unavailable(e.to_string()),
            e @ Error::OutcomeUnknown { .. } => GuestError::OutcomeUnknown(e.to_string()),
            e @ Error::WrongType { .. } => GuestError::WrongType(e.to_string()),
            // The host's configuration errors: the guest can only stop.
            e @ (Error::Refused { .. } | Error::Auth { .. } | Error::EvictionPolicy { .. }) => {
                GuestError::Refused(e.to_string())
            }
            e @ Error::UnexpectedReply(_) => GuestError::UnexpectedReply(e.to_string()),
            Error::InProgress { .. } => GuestError::InProgress,
            Error::PayloadMismatch { .. } => GuestError::PayloadMismatch,
            e @ Error::TooLarge { .. } => GuestError::TooLarge(e.to_string()),
            Error::OutOfBounds { value, .. } => GuestError::OutOfBounds(value),
            Error::Overflow { .. } => GuestError::Overflow,
            Error::OpIdConflict { .. } => GuestError::OpIdConflict,
            Error::StaleToken { highest, .. } => GuestError::StaleToken(highest),
        }
    }
}

/// Why an invocation of a plugin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not a component of the `tollgate:coord` plugin world, or
    /// it imports something the host does not grant.
    #[error("cannot load the plugin: {0}")]
    Load(String),
    /// The plugin ran and returned an error of its own.
    #[error("the plugin failed: {0}")]
    Failed(String),
    /// The plugin ran past its time limit (the policy's, or the call's) and
    /// was stopped. Everything it held was released.
    #[error("the plugin ran past its time limit of {limit:?} and was stopped{}",
        .cut_wait.as_ref().map(|wait| format!(
            "; its time ran out during {wait}, which the deadline cut short"
        )).unwrap_or_default())]
    TimedOut {
        /// The time limit.
        limit: Duration,
        /// The wait that the deadline cut short, when the time ran out
        /// during one: `a wait for lock "x" (asked up to 10s)`, `a sleep of
        /// 60s`, ... `None` when the plugin's own code used the time.
        cut_wait: Option<String>,
    },
    /// The guest panicked; its panic message and where. Everything it held
    /// was released.
    #[error("the plugin panicked: {0}")]
    Panicked(String),
    /// The plugin asked for more linear memory than its policy allows (in
    /// all its memories together): `requested` bytes against `limit`.
    /// Everything it held was released.
    #[error(
        "the plugin ran out of memory: it asked for {requested} bytes, over the policy's {limit}"
    )]
    OutOfMemory {
        /// The bytes the plugin would have had after the growth it asked for.
        requested: usize,
        /// The policy's limit (`Policy::max_memory`).
        limit: usize,
    },
    /// The input is larger than the policy allows; the plugin did not run.
    #[error("the input is {size} bytes, over the policy's limit of {limit}")]
    InputTooLarge {
        /// The input's size in bytes.
        size: usize,
        /// The policy's limit (`Policy::max_input`).
        limit: usize,
    },
    /// The plugin trapped: `cause` says why in a form to match on,
    /// `detail` is the runtime's full report (with the wasm backtrace).
    /// Everything it held was released.
    #[error("the plugin trapped: {cause}")]
    Trapped {
        /// Why.
        cause: TrapCause,
        /// The runtime's report, several lines.
        detail: String,
    },
    /// The host could not set up the invocation.
    #[error("the host could not run the plugin: {0}")]
    Host(String),
}

impl TrapCause {
    /// The cause's name in snake_case (`stack_overflow`), as in metrics.
    pub fn name(self) -> &'static str {
        match self {
            TrapCause::Unreachable => "unreachable",
            TrapCause::StackOverflow => "stack_overflow",
            TrapCause::MemoryOutOfBounds => "memory_out_of_bounds",
            TrapCause::BadIndirectCall => "bad_indirect_call",
            TrapCause::Arithmetic => "arithmetic",
            TrapCause::ResourceLimit => "resource_limit",
            TrapCause::HostCallMisused => "host_call_misused",
            TrapCause::Other => "other",
        }
    }
}

/// Why a plugin trapped (see [`PluginError::Trapped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TrapCause {
    /// It executed `unreachable`: how most guest languages abort (a Rust
    /// guest's `std::process::abort`, or a panic whose message was lost).
    #[error("it aborted (wasm `unreachable`)")]
    Unreachable,
    /// Its call stack overflowed (deep or unbounded recursion). A Rust or
    /// C guest keeps locals whose address is taken on a shadow stack in its
    /// linear memory; that one overflows as
    /// [`MemoryOutOfBounds`](Self::MemoryOutOfBounds).
    #[error("its stack overflowed")]
    StackOverflow,
    /// It accessed linear memory out of bounds.
    #[error("it accessed memory out of bounds")]
    MemoryOutOfBounds,
    /// It accessed a table out of bounds, or called through a null or
    /// mistyped table entry.
    #[error("it made a bad indirect call or table access")]
    BadIndirectCall,
    /// An integer division by zero, an overflowing division, or a float
    /// that does not fit the integer it was converted to.
    #[error("an integer operation trapped (division by zero, overflow or bad conversion)")]
    Arithmetic,
    /// It asked for more table elements or instances than the host allows.
    #[error("it passed the host's table or instance limit")]
    ResourceLimit,
    /// It misused a host call: a handle it does not own (dropped,
    /// released, or of another type).
    #[error("it misused a host call (a bad handle)")]
    HostCallMisused,
    /// Anything else; the detail says what.
    #[error("see the detail")]
    Other,
}
