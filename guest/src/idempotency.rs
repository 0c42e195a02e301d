//! Idempotent actions: [`idempotent`], [`once`].

use core::fmt;
use core::time::Duration;

use crate::host::idempotency as wit;
use crate::time::millis;
use crate::{Error, Failure, Result};

/// Starts building an idempotent action on `key` (in this plugin's
/// namespace): the action runs at most once per key, and repeats get the
/// first run's result back.
///
/// ```
/// use std::time::Duration;
///
/// # fn charge() -> Result<Vec<u8>, tollgate_guest::Failure> { Ok(b"receipt".to_vec()) }
/// # fn main() -> Result<(), tollgate_guest::RunError> {
/// let outcome = tollgate_guest::idempotent("charge/order-7")
///     .fingerprint(b"amount=1200")
///     .wait(Duration::from_secs(5))
///     .run(|| charge())?;
/// if outcome.replayed {
///     // an earlier invocation charged; `outcome.value` is its receipt
/// }
/// # Ok(())
/// # }
/// ```
pub fn idempotent(key: impl Into<String>) -> Idempotent {
    Idempotent {
        key: key.into(),
        fingerprint: Vec::new(),
        lease: Duration::ZERO,
        result_ttl: Duration::ZERO,
        wait: Duration::ZERO,
    }
}

/// True for the first call with `key` in a window of `window`, false for
/// every repeat until the window ends.
pub fn once(key: &str, window: Duration) -> Result<bool> {
    Ok(wit::once(key, millis(window))?)
}

/// An idempotent action's key and options; made by [`idempotent`].
#[derive(Debug, Clone)]
#[must_use = "an idempotent builder does nothing until `run` or `begin`"]
pub struct Idempotent {
    key: String,
    fingerprint: Vec<u8>,
    lease: Duration,
    result_ttl: Duration,
    wait: Duration,
}

impl Idempotent {
    /// Ties the key to a payload (only its digest is stored): a later call
    /// with the same key and another payload fails with
    /// [`Error::PayloadMismatch`]. Empty, the default, means none.
    pub fn fingerprint(mut self, payload: &[u8]) -> Self {
        self.fingerprint = payload.to_vec();
        self
    }

    /// The in-progress lease, renewed by the host while the claim lives.
    /// Zero, the default, asks for the host's default (30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long the result (or a cached failure) is kept. Zero, the default,
    /// asks for the host's default (24 h).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// How long to wait while another caller runs the action. Zero, the
    /// default, reports it as in progress at once.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Claims the key, or reports what an earlier call left: for manual
    /// control where [`run`](Self::run) does not fit (for instance, to cache
    /// a failure with [`Claim::fail`]).
    pub fn begin(&self) -> Result<Begin> {
        let options = wit::ClaimOptions {
            lease_ms: millis(self.lease),
            result_ttl_ms: millis(self.result_ttl),
            wait_ms: millis(self.wait),
        };
        Ok(match wit::begin(&self.key, &self.fingerprint, options)? {
            wit::ClaimOutcome::Fresh(inner) => Begin::Fresh(Claim {
                inner,
                key: self.key.clone(),
            }),
            wit::ClaimOutcome::Completed(value) => Begin::Completed(value),
            wit::ClaimOutcome::Failed(failure) => Begin::Failed(failure),
            wit::ClaimOutcome::InProgress => Begin::InProgress,
        })
    }

    /// Runs `action` unless an earlier call already did, and gives back its
    /// result either way.
    ///
    /// - The key is fresh: `action` runs. `Ok` stores its value for repeats
    ///   and returns it with `replayed: false`; `Err` abandons the claim
    ///   (nothing is cached, the next caller runs the action) and returns
    ///   [`RunError::Action`] with its message. `?` inside `action` turns
    ///   any `Display` error into the [`Failure`].
    /// - An earlier run completed: its value, with `replayed: true`.
    /// - An earlier run's failure was cached: [`RunError::EarlierFailure`].
    /// - Another caller is still running it after the wait:
    ///   [`RunError::InProgress`].
    ///
    /// If the value cannot be stored (too large, lease lost, store down) the
    /// action has still run: [`RunError::NotStored`] carries its value. A
    /// panic in `action` aborts the invocation and the host abandons the
    /// claim.
    pub fn run<F>(&self, action: F) -> Result<Outcome, RunError>
    where
        F: FnOnce() -> core::result::Result<Vec<u8>, Failure>,
    {
        match self.begin()? {
            Begin::Fresh(claim) => match action() {
                Ok(value) => match claim.complete(&value) {
                    Ok(()) => Ok(Outcome {
                        value,
                        replayed: false,
                    }),
                    Err(error) => Err(RunError::NotStored { value, error }),
                },
                Err(failure) => {
                    claim.abandon();
                    Err(RunError::Action(failure.into_message()))
                }
            },
            Begin::Completed(value) => Ok(Outcome {
                value,
                replayed: true,
            }),
            Begin::Failed(failure) => Err(RunError::EarlierFailure(failure)),
            Begin::InProgress => Err(RunError::InProgress),
        }
    }
}

/// What [`Idempotent::begin`] found (named as in the host library).
#[derive(Debug)]
pub enum Begin {
    /// The caller runs the action now, holding the claim.
    Fresh(Claim),
    /// An earlier run completed; its result.
    Completed(Vec<u8>),
    /// An earlier run failed and its failure was cached.
    Failed(String),
    /// Another caller is running it (after waiting, if asked to).
    InProgress,
}

/// The former name of [`Begin`].
#[deprecated(since = "0.2.0", note = "renamed `Begin`, as in the host library")]
pub type ClaimOutcome = Begin;

/// The right to run an action, held while it runs.
///
/// Dropping it abandons the claim (the next caller may run the action); so
/// does the end of the invocation, however it ends.
#[must_use = "dropping the claim abandons it; call `complete` with the result"]
pub struct Claim {
    inner: wit::Claim,
    key: String,
}

impl Claim {
    /// The key, as given to [`idempotent`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stores the action's result, `value`, for repeats. [`Error::TooLarge`] when it
    /// is over the policy's limit (a failure saying so is stored instead);
    /// [`Error::NotHeld`] when the lease ran out and the key was taken over.
    pub fn complete(self, value: &[u8]) -> Result<()> {
        Ok(wit::Claim::complete(self.inner, value)?)
    }

    /// Caches a failure: repeats get it back instead of running the action.
    pub fn fail(self, failure: &str) -> Result<()> {
        Ok(wit::Claim::fail(self.inner, failure)?)
    }

    /// Gives the claim up without a result: the next caller may run the
    /// action. The same as dropping it.
    pub fn abandon(self) {
        drop(self);
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The result of [`Idempotent::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The action's value: from this run, or the first run's.
    pub value: Vec<u8>,
    /// True when the action did not run now and `value` is an earlier run's.
    pub replayed: bool,
}

/// Why [`Idempotent::run`] gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// The action ran now and failed; the claim was abandoned, so nothing is
    /// cached and the next caller runs it again.
    Action(String),
    /// An earlier run's failure was cached (see [`Claim::fail`]); the action
    /// did not run.
    EarlierFailure(String),
    /// Another caller is running the action (after the wait, if any).
    InProgress,
    /// The action ran now and produced `value`, but it could not be stored
    /// for repeats: `error` says why (for instance [`Error::TooLarge`] or
    /// [`Error::NotHeld`]).
    NotStored {
        /// The action's value.
        value: Vec<u8>,
        /// Why it was not stored.
        error: Error,
    },
    /// The key could not be claimed: nothing ran.
    Tollgate(Error),
}

impl From<Error> for RunError {
    fn from(e: Error) -> Self {
        RunError::Tollgate(e)
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Action(message) => write!(f, "the action failed: {message}"),
            RunError::EarlierFailure(failure) => write!(f, "an earlier run failed: {failure}"),
            RunError::InProgress => f.write_str("another caller is running the action"),
            RunError::NotStored { .. } => {
                f.write_str("the action ran but its result was not stored")
            }
            RunError::Tollgate(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::NotStored { error, .. } => Some(error),
            _ => None,
        }
    }
}
