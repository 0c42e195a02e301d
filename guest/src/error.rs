//! The error every tollgate call can return.

use core::fmt;

use crate::bindings::tollgate::coord::types::Error as WitError;

/// Why a tollgate call failed.
///
/// One case per case of the WIT `error` variant, and
/// [`StaleToken`](Error::StaleToken) for a fenced record's refusal;
/// [`Error::code`] gives the WIT case name. The strings carry the host's
/// explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An argument was rejected before anything was done (an empty name, a
    /// refused character, ...); the text says which and why.
    InvalidArgument(String),
    /// The plugin's policy does not allow this call.
    AccessDenied(String),
    /// The call would exceed one of the plugin's quotas (locks held at once,
    /// TTL, wait, result size); nothing was done.
    QuotaExceeded(String),
    /// A lock was not granted within the wait.
    Timeout,
    /// The guard or claim no longer holds its lock or lease; nothing was
    /// changed.
    NotHeld,
    /// This plugin instance already holds this lock.
    WouldDeadlock,
    /// The store could not be reached in time, or granted a lease only after
    /// it had run out (the grant was given back); nothing is held, so
    /// retrying is safe.
    Unavailable(String),
    /// No reply came from the store: a write may or may not have taken
    /// effect. Resend only calls that are safe to repeat
    /// ([`Counter::incr_once`](crate::Counter::incr_once)).
    OutcomeUnknown(String),
    /// A key holds a value tollgate did not write.
    WrongType(String),
    /// The store refused the request (out of memory, read-only, ...).
    Refused(String),
    /// The store answered something the host did not expect.
    UnexpectedReply(String),
    /// Another caller is running this idempotent action now.
    InProgress,
    /// The idempotency key was used before with a different payload.
    PayloadMismatch,
    /// A value exceeds its size limit; nothing was stored.
    TooLarge(String),
    /// A bounded counter refused the change; the payload is the counter's
    /// unchanged value.
    OutOfBounds(i64),
    /// The change would take a counter or sequence beyond 64 bits.
    Overflow,
    /// An operation id was reused with a different change.
    OpIdConflict,
    /// A fenced record refused a write: it has accepted `highest`, a newer
    /// fencing token than the write's, so the writer's lock has passed on.
    /// Nothing was changed; stop. (The WIT reports it as the record's
    /// `write-outcome.stale`, not as an `error` case.)
    StaleToken {
        /// The highest token the record has accepted.
        highest: u64,
    },
}

impl Error {
    /// The name of the WIT error case, in kebab-case: `"timeout"`,
    /// `"quota-exceeded"`, ...; `"stale-token"` for
    /// [`StaleToken`](Error::StaleToken), which the WIT reports as the
    /// record's `write-outcome.stale` instead.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid-argument",
            Error::AccessDenied(_) => "access-denied",
            Error::QuotaExceeded(_) => "quota-exceeded",
            Error::Timeout => "timeout",
            Error::NotHeld => "not-held",
            Error::WouldDeadlock => "would-deadlock",
            Error::Unavailable(_) => "unavailable",
            Error::OutcomeUnknown(_) => "outcome-unknown",
            Error::WrongType(_) => "wrong-type",
            Error::Refused(_) => "refused",
            Error::UnexpectedReply(_) => "unexpected-reply",
            Error::InProgress => "in-progress",
            Error::PayloadMismatch => "payload-mismatch",
            Error::TooLarge(_) => "too-large",
            Error::OutOfBounds(_) => "out-of-bounds",
            Error::Overflow => "overflow",
            Error::OpIdConflict => "op-id-conflict",
            Error::StaleToken { .. } => "stale-token",
        }
    }

    /// Whether nothing was done, so the same call may simply be sent again
    /// (`unavailable`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::AccessDenied(why) => write!(f, "access denied: {why}"),
            Error::QuotaExceeded(why) => write!(f, "quota exceeded: {why}"),
            Error::Timeout => f.write_str(
                "the lock was not granted within the wait (held elsewhere; no wait asks once)",
            ),
            Error::NotHeld => f.write_str("the lock or lease is no longer held"),
            Error::WouldDeadlock => f.write_str("this plugin already holds this lock"),
            Error::Unavailable(why) => write!(f, "store unavailable (nothing was done): {why}"),
            Error::OutcomeUnknown(why) => {
                write!(f, "no reply from the store, the outcome is unknown: {why}")
            }
            Error::WrongType(why) => write!(f, "key holds a value tollgate did not write: {why}"),
            Error::Refused(why) => write!(f, "the store refused the request: {why}"),
            Error::UnexpectedReply(why) => write!(f, "unexpected reply from the store: {why}"),
            Error::InProgress => f.write_str("another caller is running this action"),
            Error::PayloadMismatch => {
                f.write_str("the idempotency key was used with a different payload")
            }
            Error::TooLarge(why) => write!(f, "value too large: {why}"),
            Error::OutOfBounds(value) => {
                write!(
                    f,
                    "change refused by the counter's bounds (value stays {value})"
                )
            }
            Error::Overflow => f.write_str("the change would overflow 64 bits"),
            Error::OpIdConflict => f.write_str("operation id reused with a different change"),
            Error::StaleToken { highest } => write!(
                f,
                "the record has accepted a newer fencing token ({highest}): the lock has passed on"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::InvalidArgument(s) => Error::InvalidArgument(s),
            WitError::AccessDenied(s) => Error::AccessDenied(s),
            WitError::QuotaExceeded(s) => Error::QuotaExceeded(s),
            WitError::Timeout => Error::Timeout,
            WitError::NotHeld => Error::NotHeld,
            WitError::WouldDeadlock => Error::WouldDeadlock,
            WitError::Unavailable(s) => Error::Unavailable(s),
            WitError::OutcomeUnknown(s) => Error::OutcomeUnknown(s),
            WitError::WrongType(s) => Error::WrongType(s),
            WitError::Refused(s) => Error::Refused(s),
            WitError::UnexpectedReply(s) => Error::UnexpectedReply(s),
            WitError::InProgress => Error::InProgress,
            WitError::PayloadMismatch => Error::PayloadMismatch,
            WitError::TooLarge(s) => Error::TooLarge(s),
            WitError::OutOfBounds(v) => Error::OutOfBounds(v),
            WitError::Overflow => Error::Overflow,
            WitError::OpIdConflict => Error::OpIdConflict,
        }
    }
}

/// `Result` with tollgate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
