//! The one error type of the crate.

use std::time::Duration;

/// The result type of every fallible tollgate call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a tollgate call.
///
/// The variants say what the caller can do next: fix the argument
/// ([`InvalidArgument`](Error::InvalidArgument)), try again later
/// ([`Timeout`](Error::Timeout), [`Unavailable`](Error::Unavailable)), stop
/// relying on a lock ([`NotHeld`](Error::NotHeld)), treat a write as possibly
/// applied ([`OutcomeUnknown`](Error::OutcomeUnknown)), or accept that a
/// counter refused a change ([`OutOfBounds`](Error::OutOfBounds)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was rejected before anything was sent to Redis.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument: `"lock name"`, `"ttl"`, `"wait"`, `"redis url"`, ...
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The lock (or semaphore permits) was not granted within the wait the
    /// caller allowed.
    #[error("{name:?} was not granted within {waited:?}")]
    Timeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The guard no longer holds its lock or claim: the TTL or lease ran out
    /// (another holder may have it now) or an operator force-unlocked it.
    /// Nothing was changed.
    #[error("{name:?} is no longer held by this guard")]
    NotHeld {
        /// The lock's name or the idempotency key.
        name: String,
    },
    /// The calling thread already holds this lock through this client (its
    /// guard is alive, even if the lock behind it expired), so waiting for
    /// it would wait for itself.
    #[error(
        "this thread already holds lock {name:?} through this client: its guard is still alive \
         (drop or release it first, even if its lock expired)"
    )]
    WouldDeadlock {
        /// The lock's name.
        name: String,
    },
    /// No connection to Redis could be had in time (nothing was sent), or
    /// Redis answered a grant only after its lease had run out (the grant
    /// was given back, so that nothing runs without it). Nothing is held:
    /// the call may be retried.
    #[error("Redis is unavailable: {reason}")]
    Unavailable {
        /// What went wrong while connecting.
        reason: String,
    },
    /// The request was sent (or may have been) but no reply came: the response
    /// timeout passed or the connection broke. A write may or may not have
    /// taken effect; tollgate never resends it blindly.
    #[error("no reply from Redis ({reason}); the request may or may not have taken effect")]
    OutcomeUnknown {
        /// What happened to the reply.
        reason: String,
        /// `true` when the response timeout passed (Redis slow or stopped),
        /// `false` when the connection broke.
        timed_out: bool,
    },
    /// A key that tollgate uses holds a value tollgate did not write.
    /// Nothing was changed.
    #[error("key {key:?} holds a value tollgate did not write: {detail}")]
    WrongType {
        /// The key, with its prefix.
        key: String,
        /// What Redis or tollgate found.
        detail: String,
    },
    /// Redis did not accept the client's credentials (wrong password, unknown
    /// or disabled ACL user, or a password required and none given). Retrying
    /// will not help: fix the URL or the server's users. Nothing was sent.
    #[error("Redis refused the credentials: {message}")]
    Auth {
        /// The server's message, such as `WRONGPASS invalid username-password
        /// pair or user is disabled.`
        message: String,
    },
    /// The Redis server may evict keys under memory pressure: its
    /// `maxmemory-policy` is not `noeviction` (or could not be read). Such a
    /// server can drop a live lock and grant it again, or drop a stored
    /// result and let its action run again, so tollgate refuses to use it.
    /// Nothing was sent. Set `maxmemory-policy noeviction` on the server, or
    /// accept the risk with [`ClientBuilder::accept_eviction`](crate::ClientBuilder::accept_eviction).
    #[error(
        "Redis's maxmemory-policy is {policy}: it may evict tollgate's keys (locks, results, counters); \
         set it to noeviction, or accept the risk with ClientBuilder::accept_eviction"
    )]
    EvictionPolicy {
        /// The server's policy, such as `allkeys-lru`.
        policy: String,
    },
    /// In synced mode ([`ClientBuilder::wait_for_replicas`](crate::ClientBuilder::wait_for_replicas)),
    /// fewer replicas than asked confirmed a write in time. A lock grant or
    /// an idempotency claim is given back before this is returned, so
    /// nothing is held and retrying is safe. A stored result stays stored on
    /// the primary, unconfirmed: a failover now could lose it.
    #[error("only {confirmed} of {wanted} replicas confirmed the write in time")]
    NotReplicated {
        /// The replicas asked for.
        wanted: u32,
        /// The replicas that confirmed it.
        confirmed: u32,
    },
    /// A [`Redlock`](crate::Redlock) step did not reach a majority of its
    /// masters in time: `refused` of them hold the lock for another owner,
    /// `failed` ones did not answer in time, refused the request or
    /// restarted too recently to vote. Whatever a failed attempt was granted
    /// has been released.
    #[error("{}", no_quorum(name, *needed, *granted, *refused, *failed))]
    NoQuorum {
        /// The lock's name.
        name: String,
        /// The majority needed.
        needed: usize,
        /// Masters that granted (or extended, or released).
        granted: usize,
        /// Masters where another owner holds it (or it was gone).
        refused: usize,
        /// Masters that failed to answer.
        failed: usize,
    },
    /// Redis refused the request (out of memory, read-only replica, missing
    /// permission, ...). Nothing was changed.
    #[error("Redis refused the request: {code}: {message}")]
    Refused {
        /// The error code Redis sent, such as `OOM` or `READONLY`.
        code: String,
        /// The rest of Redis's message.
        message: String,
    },
    /// Redis answered with something tollgate did not expect.
    #[error("unexpected reply from Redis: {0}")]
    UnexpectedReply(String),
    /// Another caller is running the action for this idempotency key now.
    #[error("idempotency key {key:?} is in progress elsewhere")]
    InProgress {
        /// The idempotency key.
        key: String,
    },
    /// The idempotency key was used before with a different payload; the
    /// earlier result is not returned for it.
    #[error("idempotency key {key:?} was used with a different payload")]
    PayloadMismatch {
        /// The idempotency key.
        key: String,
    },
    /// A value is larger than its limit; nothing was stored.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large, such as `"result"`.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A bounded counter refused a change that would have taken it outside
    /// `min..=max`. Nothing was changed; `value` is the counter's value when
    /// the change was refused.
    #[error("counter {name:?} is at {value}; the change would leave {}", bounds_text(*min, *max))]
    OutOfBounds {
        /// The counter's name.
        name: String,
        /// The counter's value, unchanged.
        value: i64,
        /// The lower bound (`i64::MIN` when there is none).
        min: i64,
        /// The upper bound (`i64::MAX` when there is none).
        max: i64,
    },
    /// The change would take a counter or sequence beyond the 64-bit signed
    /// integer range. Nothing was changed.
    #[error("key {key:?}: the change would overflow a 64-bit integer")]
    Overflow {
        /// The key, with its prefix.
        key: String,
    },
    /// An operation id was used again on a counter with a different change
    /// than the first time, inside the id's window. Nothing was changed.
    #[error(
        "operation id {op_id:?} was already applied to counter {name:?} with delta {first_delta}"
    )]
    OpIdConflict {
        /// The counter's name.
        name: String,
        /// The operation id.
        op_id: String,
        /// The delta applied the first time.
        first_delta: i64,
    },
    /// A fenced record refused a write: its fencing token is older than
    /// one the record has already accepted, so its writer's lock (or
    /// permit) has passed to someone else. Nothing was changed; the writer
    /// must stop.
    #[error(
        "record {name:?} refused a write with fencing token {token}: it has seen {highest}, \
         so the writer no longer holds the lock"
    )]
    StaleToken {
        /// The record's name.
        name: String,
        /// The token of the refused write.
        token: u64,
        /// The highest token the record has accepted.
        highest: u64,
    },
}

/// Counter bounds as a Rust range, leaving out an unbounded side.
fn bounds_text(min: i64, max: i64) -> String {
    match (min, max) {
        (i64::MIN, i64::MAX) => "..".to_owned(),
        (i64::MIN, max) => format!("..={max}"),
        (min, i64::MAX) => format!("{min}.."),
        (min, max) => format!("{min}..={max}"),
    }
}

/// The message of [`Error::NoQuorum`]: held elsewhere, or masters failed.
fn no_quorum(name: &str, needed: usize, granted: usize, refused: usize, failed: usize) -> String {
    let masters = granted + refused + failed;
    if granted + failed >= needed {
        format!(
            "no quorum for lock {name:?}: {failed} of {masters} masters failed \
             ({granted} granted, {needed} needed)"
        )
    } else {
        format!(
            "lock {name:?} is held by another owner on {refused} of {masters} masters \
             ({granted} granted, {needed} needed)"
        )
    }
}

impl Error {
    /// `true` for errors after which Redis's state is unknown to the caller
    /// ([`OutcomeUnknown`](Error::OutcomeUnknown)).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// `true` when the call ran out of time: a lock wait that ended without a
    /// grant, or a Redis reply that did not arrive within the response timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::OutcomeUnknown {
                    timed_out: true,
                    ..
                }
        )
    }

    /// `true` when trying again later may succeed with nothing changed by the
    /// caller: Redis was unreachable, slow or busy. Not for errors that need a
    /// fix ([`Auth`](Error::Auth), [`EvictionPolicy`](Error::EvictionPolicy),
    /// [`InvalidArgument`](Error::InvalidArgument), ...). An
    /// [`OutcomeUnknown`](Error::OutcomeUnknown) write is retryable only if
    /// it is safe to repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. }
            | Error::OutcomeUnknown { .. }
            | Error::Timeout { .. }
            | Error::NotReplicated { .. }
            | Error::NoQuorum { .. } => true,
            Error::Refused { code, .. } => {
                matches!(
                    code.as_str(),
                    "OOM"
                        | "BUSY"
                        | "LOADING"
                        | "MASTERDOWN"
                        | "TRYAGAIN"
                        | "CLUSTERDOWN"
                        | "READONLY"
                        | "NOREPLICAS"
                )
            }
            _ => false,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}
