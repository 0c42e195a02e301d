//! Idempotent execution: an action runs at most once per key, and every
//! repeat gets the first run's result back.
//!
//! # Guarantees
//! - **One claim per key.** Claiming is one script: it finds the stored
//!   result, or a run in progress (owner token and lease), or claims the key
//!   for the caller, never two of these at once. Two callers cannot both
//!   see "missing" and both run.
//! - **The lease follows the action.** A claim holds an in-progress lease
//!   (default 30 s) that the client's watchdog renews at a third of its
//!   length while the action runs, so a long action is not run twice. A
//!   caller that crashes stops renewing; its lease expires and the next
//!   caller runs the action.
//! - **Only the owner stores a result.** Completing is a token-checked
//!   script. A caller whose lease expired and whose key was claimed again
//!   gets [`Error::NotHeld`]: the newer owner's result stands.
//! - **Repeats get the first result**, marked `replayed`, for the result
//!   TTL (default 24 h); after it the key is free again. A repeat with a
//!   different payload fingerprint gets [`Error::PayloadMismatch`], never the
//!   old result.
//! - **Duplicates choose**: [`Duplicate::Fail`] returns
//!   [`Error::InProgress`] at once; [`Duplicate::Wait`] blocks, woken by the
//!   first caller's completion, and returns its result.
//! - **Failures** remove the claim so that a retry may run, unless
//!   [`Idempotency::cache_failures`] asks to store them (Stripe style).
//! - **A result that cannot be stored** (too large, lease lost, Redis gone)
//!   comes back to the caller in [`RunError::NotStored`] with the value.
//!
//! # Where "exactly once" stops
//! tollgate decides who runs the action and stores what it returned. It
//! cannot undo the action's side effects: if a process dies after charging a
//! card but before `complete`, its lease expires and the next caller charges
//! again. The same holds when Redis cannot be reached for longer than the
//! lease while the action runs (the watchdog keeps trying, token-checked,
//! but the lease may run out meanwhile). Make the action itself idempotent
//! downstream (pass the key on to the payment provider) where that matters.
//! A waiting duplicate whose first
//! caller failed without cached failures claims the key and runs the action
//! itself.
//!
//! # Clocks
//! Leases and result TTLs are counted by the Redis server in milliseconds;
//! waits and the watchdog use this process's monotonic clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::keys::ClaimKeys;
use crate::limits::{check_name, check_ttl, check_wait, millis};
use crate::lock::{MIN_WATCHDOG_TTL, resend_if_dropped};
use crate::store::{ClaimRequest, ClaimState, Finish};
use crate::wait::{Attempt, Queue, after_late_grant, lease_ran_out, retry_until};
use crate::watchdog::{Lease, LeaseTarget, Renewal};

/// How long a result is kept when none is given: 24 hours.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The in-progress lease when none is given: 30 seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The largest result stored when no limit is given: 1 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1 << 20;
/// How long storing an outcome is retried when none is given: 10 seconds.
pub const DEFAULT_STORE_RETRY: Duration = Duration::from_secs(10);

/// What a call does when another caller is running the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplicate {
    /// Return [`Error::InProgress`] at once.
    #[default]
    Fail,
    /// Wait up to this long (this process's monotonic clock) for the first
    /// caller's result, then return [`Error::InProgress`].
    Wait(Duration),
}

/// Idempotent actions in one namespace, with their settings. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use tollgate::Duplicate;
/// # fn charge_card() -> Result<Vec<u8>, std::io::Error> { Ok(b"ch_1".to_vec()) }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = tollgate::Client::open("redis://127.0.0.1/")?;
/// let payments = client.idempotency("payments").lease(Duration::from_secs(30));
/// let out = payments
///     .key("pay-123")
///     .fingerprint(b"amount=4200&currency=eur")
///     .on_duplicate(Duplicate::Wait(Duration::from_secs(5)))
///     .run(charge_card)?;
/// println!("charge {:?}, replayed: {}", out.value, out.replayed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Idempotency {
    client: Client,
    namespace: String,
    result_ttl: Duration,
    lease: Duration,
    max_result_bytes: usize,
    cache_failures: bool,
    store_retry: Duration,
}

impl Client {
    /// Idempotent actions under `namespace` (1 to 512 bytes), with default
    /// settings: result TTL 24 h, lease 30 s, results up to 1 MiB, failures
    /// not cached.
    pub fn idempotency(&self, namespace: impl Into<String>) -> Idempotency {
        Idempotency {
            client: self.clone(),
            namespace: namespace.into(),
            result_ttl: DEFAULT_RESULT_TTL,
            lease: DEFAULT_LEASE,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            cache_failures: false,
            store_retry: DEFAULT_STORE_RETRY,
        }
    }

    /// `true` for the first call with `key` in a window of `window` (server
    /// clock), `false` for every repeat until the window ends, whatever
    /// happened to the first submission. One atomic `SET NX PX`; nothing
    /// releases it early. Build the key from the submitter and a fingerprint
    /// of the payload (`"submit:user42:9f2c…"`), not one key for everybody.
    ///
    /// A lost reply gives [`Error::OutcomeUnknown`] and is never resent (a
    /// resend would answer `false` to the first caller).
    pub fn once(&self, key: &str, window: Duration) -> Result<bool> {
        check_name("once key", key)?;
        let inner = self.inner();
        let window_ms = check_ttl("window", window, inner.settings.max_ttl)?;
        inner.store.mark_once(&inner.keyspace.once(key), window_ms)
    }
}

impl Idempotency {
    /// How long a finished action's result (or cached failure) is kept; after
    /// it the key may run again.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = ttl;
        self
    }

    /// The in-progress lease, renewed while the action runs (at least
    /// [`MIN_WATCHDOG_TTL`]). A crashed caller blocks its key this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The largest result stored. A larger result is not stored (the action
    /// has run by then): the call gets [`RunError::NotStored`] with
    /// [`Error::TooLarge`], and repeats get a failure saying so instead of
    /// running again. Cached failure texts are cut to this size.
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// Stores a failed action's error text like a result, so repeats get
    /// [`RunError::EarlierFailure`] instead of running again.
    pub fn cache_failures(mut self) -> Self {
        self.cache_failures = true;
        self
    }

    /// How long storing an action's outcome keeps being tried while Redis
    /// cannot take it — unreachable, no reply, or refusing writes (`OOM`,
    /// `BUSY`, `LOADING`, ...) — default 10 s (this process's monotonic
    /// clock). Meanwhile the watchdog keeps renewing the lease, so no repeat
    /// runs the action while renewals get through (when they do not either,
    /// the lease may end first). When it runs out, the call fails with the last error
    /// ([`RunError::NotStored`] from `run`); the key stays claimed until its
    /// lease ends, and a repeat after that runs the action again.
    pub fn store_retry(mut self, patience: Duration) -> Self {
        self.store_retry = patience;
        self
    }

    /// What the store holds for `key` in this namespace, read in one step
    /// and changing nothing: `None` when no call has claimed it (or its
    /// record expired). For operators and tests.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tollgate::idempotency::RecordState;
    ///
    /// let payments = tollgate::Client::in_memory().idempotency("payments");
    /// payments.key("pay-1").run(|| Ok::<_, std::io::Error>(b"ch_1".to_vec()))?;
    /// let record = payments.inspect("pay-1")?.expect("stored");
    /// assert_eq!(record.state, RecordState::Completed(b"ch_1".to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn inspect(&self, key: &str) -> Result<Option<RecordInfo>> {
        check_name("idempotency namespace", &self.namespace)?;
        check_name("idempotency key", key)?;
        let inner = self.client.inner();
        let keys = inner.keyspace.claim(&self.namespace, key);
        let Some(record) = inner.store.claim_record(&keys)? else {
            return Ok(None);
        };
        let state = match record.state {
            ClaimState::Done(value) => RecordState::Completed(value),
            ClaimState::Failed(text) => {
                RecordState::Failed(String::from_utf8_lossy(&text).into_owned())
            }
            _ => RecordState::Running,
        };
        Ok(Some(RecordInfo {
            state,
            fingerprinted: record.fingerprinted,
            remaining_ttl: record.remaining,
        }))
    }

    /// Starts a call for `key` (1 to 512 bytes) in this namespace.
    pub fn key(&self, key: impl Into<String>) -> IdempotentCall<'_> {
        IdempotentCall {
            idempotency: self,
            key: key.into(),
            fingerprint: Vec::new(),
            on_duplicate: Duplicate::default(),
        }
    }
}

/// One idempotent call being put together; finish it with
/// [`run`](IdempotentCall::run) or, for manual control, [`begin`](IdempotentCall::begin).
#[must_use = "an idempotent call does nothing until run() or begin()"]
#[derive(Debug)]
pub struct IdempotentCall<'i> {
    idempotency: &'i Idempotency,
    key: String,
    fingerprint: Vec<u8>,
    on_duplicate: Duplicate,
}

/// What [`Idempotency::inspect`] found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordInfo {
    /// Running, completed or failed.
    pub state: RecordState,
    /// Whether the key is tied to a payload (a repeat with another payload
    /// gets [`Error::PayloadMismatch`]).
    pub fingerprinted: bool,
    /// The record's remaining TTL (store clock): the in-progress lease while
    /// running, the result's retention after. `None` without a TTL.
    pub remaining_ttl: Option<Duration>,
}

/// The state of an idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// A caller holds the claim and runs the action now.
    Running,
    /// The action completed; its stored result, replayed to repeats.
    Completed(Vec<u8>),
    /// The action's failure was cached; repeats get it back.
    Failed(String),
}

/// The result of an idempotent action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the action returned, now or in the earlier run.
    pub value: Vec<u8>,
    /// `true` when the value comes from an earlier run.
    pub replayed: bool,
}

/// Why [`IdempotentCall::run`] did not return a value.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError<E> {
    /// This call ran the action and it failed.
    Action(E),
    /// An earlier run failed and its failure was cached; its error text.
    EarlierFailure(String),
    /// This call ran the action and it succeeded, but its result could not
    /// be stored: too large (a failure record saying so is stored instead,
    /// so repeats do not run it again), the lease was lost, or Redis did not
    /// answer. `value` is what the action returned.
    NotStored {
        /// What the action returned.
        value: Vec<u8>,
        /// Why it was not stored.
        error: Error,
    },
    /// tollgate failed before the action ran: in progress elsewhere, payload
    /// mismatch, Redis unavailable, ...
    Tollgate(Error),
}

impl<E> RunError<E> {
    /// The action's own error, if that is what this is.
    pub fn into_action(self) -> Option<E> {
        match self {
            RunError::Action(error) => Some(error),
            _ => None,
        }
    }

    /// Converts the action's error, keeping the other cases.
    pub fn map_action<F>(self, convert: impl FnOnce(E) -> F) -> RunError<F> {
        match self {
            RunError::Action(error) => RunError::Action(convert(error)),
            RunError::EarlierFailure(text) => RunError::EarlierFailure(text),
            RunError::NotStored { value, error } => RunError::NotStored { value, error },
            RunError::Tollgate(error) => RunError::Tollgate(error),
        }
    }
}

impl<E> From<Error> for RunError<E> {
    fn from(error: Error) -> Self {
        RunError::Tollgate(error)
    }
}

impl<E: fmt::Display> fmt::Display for RunError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Action(error) => write!(f, "the action failed: {error}"),
            RunError::EarlierFailure(text) => write!(f, "an earlier run failed: {text}"),
            RunError::NotStored { error, .. } => {
                write!(f, "the action ran, but its result is not stored: {error}")?;
                match error {
                    Error::TooLarge { .. } => f.write_str(" (repeats get a failure saying so)"),
                    Error::NotHeld { .. } => {
                        f.write_str(" (its lease ran out and the key was taken over)")
                    }
                    _ => f.write_str(" (a repeat after the key's lease ends runs it again)"),
                }
            }
            RunError::Tollgate(error) => error.fmt(f),
        }
    }
}

/// Every message is in `Display`, so `source` is `None`; this keeps
/// `RunError<&str>` and `RunError<String>` usable with `?` into
/// `Box<dyn Error>`.
impl<E: fmt::Display + fmt::Debug> std::error::Error for RunError<E> {}

/// What [`IdempotentCall::begin`] found.
#[derive(Debug)]
#[must_use = "dropping a fresh claim abandons it at once"]
pub enum Begin {
    /// The caller holds the claim and runs the action now.
    Fresh(Claim),
    /// An earlier run completed; its result.
    Completed(Vec<u8>),
    /// An earlier run failed and its failure was cached; its error text.
    Failed(String),
    /// Another caller is running the action (after waiting, if asked to).
    InProgress,
}

impl IdempotentCall<'_> {
    /// Ties the key to this payload: a later call with the same key and
    /// another payload gets [`Error::PayloadMismatch`]. Only a SHA-256
    /// digest of the payload is stored.
    pub fn fingerprint(mut self, payload: &[u8]) -> Self {
        self.fingerprint = Sha256::digest(payload).to_vec();
        self
    }

    /// What to do when another caller runs the same key (default
    /// [`Duplicate::Fail`]).
    pub fn on_duplicate(mut self, duplicate: Duplicate) -> Self {
        self.on_duplicate = duplicate;
        self
    }

    /// Waits up to `wait` (monotonic clock) while another caller runs the
    /// same key: `on_duplicate(Duplicate::Wait(wait))`, or
    /// [`Duplicate::Fail`] for zero. The guest SDK's `.wait` is the same.
    pub fn wait(self, wait: Duration) -> Self {
        self.on_duplicate(if wait.is_zero() {
            Duplicate::Fail
        } else {
            Duplicate::Wait(wait)
        })
    }

    /// Runs `action` unless an earlier run's result is stored, and stores its
    /// result for repeats. A panic in `action` abandons the claim. Calling
    /// `run` for the same key from inside `action` waits for itself: it ends
    /// with [`Error::InProgress`].
    pub fn run<E: fmt::Display>(
        self,
        action: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Outcome, RunError<E>> {
        let cache_failures = self.idempotency.cache_failures;
        let claim = match self.begin_by_ref()? {
            Begin::Fresh(claim) => claim,
            Begin::Completed(value) => {
                return Ok(Outcome {
                    value,
                    replayed: true,
                });
            }
            Begin::Failed(text) => return Err(RunError::EarlierFailure(text)),
            Begin::InProgress => {
                return Err(Error::InProgress {
                    key: self.display_name(),
                }
                .into());
            }
        };
        match action() {
            Ok(value) => match claim.complete(&value) {
                Ok(()) => Ok(Outcome {
                    value,
                    replayed: false,
                }),
                Err(error) => Err(RunError::NotStored { value, error }),
            },
            Err(error) => {
                let ended = if cache_failures {
                    claim.fail(&error.to_string())
                } else {
                    claim.abandon()
                };
                if let Err(end_error) = ended {
                    tracing::warn!(key = %self.logged_name(), error = %end_error, "tollgate: could not record a failed action; its claim frees when the lease ends");
                }
                Err(RunError::Action(error))
            }
        }
    }

    /// Claims the key, or reports what an earlier call left. With
    /// [`Duplicate::Wait`] it blocks while another caller runs the action.
    /// The returned [`Claim`] must be completed, failed or abandoned;
    /// dropping it abandons it.
    pub fn begin(self) -> Result<Begin> {
        self.begin_by_ref()
    }

    fn begin_by_ref(&self) -> Result<Begin> {
        let span = crate::trace::span!("idempotency", self.key);
        crate::trace::in_span(
            span,
            || self.begin_traced(),
            |found| match found {
                Begin::Fresh(_) => "fresh",
                Begin::Completed(_) => "replayed",
                Begin::Failed(_) => "earlier failure",
                Begin::InProgress => "in progress",
            },
        )
    }

    fn begin_traced(&self) -> Result<Begin> {
        let idem = self.idempotency;
        let inner = idem.client.inner();
        let settings = &inner.settings;
        check_name("idempotency namespace", &idem.namespace)?;
        check_name("idempotency key", &self.key)?;
        let lease_ms = check_ttl("lease", idem.lease, settings.max_ttl)?;
        let lease = Duration::from_millis(lease_ms); // what the server gets
        if idem.lease < MIN_WATCHDOG_TTL {
            return Err(Error::invalid(
                "lease",
                format!("{:?} is below the {MIN_WATCHDOG_TTL:?} minimum", idem.lease),
            ));
        }
        check_ttl("result ttl", idem.result_ttl, settings.max_ttl)?;
        let wait = match self.on_duplicate {
            Duplicate::Fail => Duration::ZERO,
            Duplicate::Wait(wait) => wait,
        };
        check_wait(wait, settings.max_wait)?;

        let keys = inner.keyspace.claim(&idem.namespace, &self.key);
        let owner = Uuid::new_v4().simple().to_string();
        let store = inner.store.as_ref();
        let deadline = Instant::now() + wait;
        let found = retry_until(
            store,
            &keys.record,
            deadline,
            settings.poll_interval,
            Queue::All,
            |waiting| {
                let request = ClaimRequest {
                    keys: &keys,
                    owner: &owner,
                    fingerprint: &self.fingerprint,
                    lease_ms,
                    waiting_ms: millis(waiting),
                };
                let sent = Instant::now();
                let generation = store.server_generation();
                // Resending is safe: a claim by this owner token is answered again.
                Ok(match resend_if_dropped(|| store.begin_claim(&request))? {
                    ClaimState::Running { remaining } => Attempt::Busy { remaining },
                    ClaimState::Fresh if lease_ran_out(sent, lease) => {
                        let _ = store.abandon_claim(&keys, &owner);
                        return after_late_grant(&self.display_name(), lease, sent, deadline);
                    }
                    state => Attempt::Done((state, sent, generation)),
                })
            },
        )?;
        let Some((state, sent, generation)) = found else {
            tracing::debug!(key = %self.logged_name(), "tollgate: idempotency key in progress elsewhere");
            crate::metrics::claim_found("in_progress");
            return Ok(Begin::InProgress);
        };
        crate::metrics::claim_found(match &state {
            ClaimState::Fresh => "fresh",
            ClaimState::Done(_) => "replayed",
            ClaimState::Failed(_) => "failed",
            ClaimState::Running { .. } => "in_progress",
            ClaimState::Mismatch => "mismatch",
        });
        tracing::debug!(
            key = %self.logged_name(),
            found = match &state {
                ClaimState::Fresh => "fresh: this call runs the action",
                ClaimState::Done(_) => "done: replaying the result",
                ClaimState::Failed(_) => "failed earlier",
                ClaimState::Running { .. } => "running elsewhere",
                ClaimState::Mismatch => "another payload",
            },
            "tollgate: idempotency key claimed or found"
        );
        Ok(match state {
            ClaimState::Fresh => {
                let name = self.display_name();
                let claim = Claim::start(idem, name, keys, owner, lease, sent, generation)?;
                Begin::Fresh(claim)
            }
            ClaimState::Done(value) => Begin::Completed(value),
            ClaimState::Failed(text) => Begin::Failed(String::from_utf8_lossy(&text).into_owned()),
            ClaimState::Mismatch => {
                return Err(Error::PayloadMismatch {
                    key: self.display_name(),
                });
            }
            ClaimState::Running { .. } => Begin::InProgress,
        })
    }

    /// `namespace/key`: how errors and claims name the key.
    fn display_name(&self) -> String {
        [&self.idempotency.namespace, "/", &self.key].concat()
    }

    /// The same for a log line, written only if the line is.
    fn logged_name(&self) -> impl fmt::Display + '_ {
        LoggedName(&self.idempotency.namespace, &self.key)
    }
}

/// `namespace/key` as a [`fmt::Display`] (see `IdempotentCall::logged_name`).
struct LoggedName<'a>(&'a str, &'a str);

impl fmt::Display for LoggedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)
    }
}

/// The right to run an idempotent action, held while it runs. Its lease is
/// renewed until it is completed, failed, abandoned or dropped; dropping
/// abandons it (best effort), so the next caller may run the action.
#[must_use = "dropping a claim abandons it at once"]
pub struct Claim {
    client: Client,
    name: String,
    keys: ClaimKeys,
    owner: String,
    lease: Arc<Lease>,
    renewal: Option<u64>,
    result_ttl_ms: u64,
    max_result_bytes: usize,
    /// How long storing the outcome is retried.
    store_retry: Duration,
    /// Storing the outcome is retried no later than this.
    give_up_at: Option<Instant>,
    finished: bool,
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("key", &self.name)
            .field("lost", &self.lease.known_lost())
            .finish_non_exhaustive()
    }
}

impl Claim {
    fn start(
        idem: &Idempotency,
        name: String,
        keys: ClaimKeys,
        owner: String,
        lease: Duration,
        sent: Instant,
        generation: u64,
    ) -> Result<Claim> {
        let mut claim = Claim {
            client: idem.client.clone(),
            name,
            keys,
            owner,
            lease: Arc::new(Lease::new(sent + lease, generation)),
            renewal: None,
            result_ttl_ms: millis(idem.result_ttl),
            max_result_bytes: idem.max_result_bytes,
            store_retry: idem.store_retry,
            give_up_at: None,
            finished: false,
        };
        let renewal = Renewal {
            name: claim.name.clone(),
            target: LeaseTarget::Claim {
                keys: claim.keys.clone(),
            },
            owner: claim.owner.clone(),
            lease: Arc::clone(&claim.lease),
            on_lost: None,
        };
        // On failure the claim drops here and is abandoned.
        claim.renewal = Some(claim.client.inner().watchdog.watch(renewal, lease, sent)?);
        Ok(claim)
    }

    /// Stops retrying to store the outcome at `deadline` (a plugin
    /// invocation's end), even if the lease lasts longer.
    #[cfg_attr(not(feature = "plugin"), allow(dead_code))]
    pub(crate) fn give_up_at(&mut self, deadline: Instant) {
        self.give_up_at = Some(deadline);
    }

    /// `namespace/key` of this claim.
    pub fn key(&self) -> &str {
        &self.name
    }

    /// `true` once the lease may be gone (renewal found it lost, or its local
    /// deadline passed). Asks nothing of Redis.
    pub fn is_lost(&self) -> bool {
        self.lease
            .may_be_lost(self.client.inner().store.server_generation())
    }

    /// Stores the action's result for repeats.
    ///
    /// A result over the size limit is not stored: a failure record saying so
    /// is stored instead (the action ran; repeats must not run it again), and
    /// the call returns [`Error::TooLarge`]. [`Error::NotHeld`] when the
    /// lease had run out and the key was taken over: the newer owner's
    /// outcome stands. While Redis does not answer or refuses writes for a
    /// while (`OOM`, `BUSY`, `LOADING`, `NOREPLICAS`), storing is retried
    /// (it is safe to repeat: a resend that finds this claim's outcome
    /// stored succeeds) and the lease renewed, for up to [`Idempotency::store_retry`]; then the
    /// last error comes back, and the action must be taken as run with its
    /// result not stored.
    pub fn complete(mut self, result: &[u8]) -> Result<()> {
        if result.len() > self.max_result_bytes {
            let too_large = Error::TooLarge {
                what: "result",
                size: result.len(),
                limit: self.max_result_bytes,
            };
            self.finish(Some(Finish::Failed(too_large.to_string().as_bytes())))?;
            return Err(too_large);
        }
        self.finish(Some(Finish::Done(result)))
    }

    /// Caches a failure: repeats get `text` back as an earlier failure
    /// instead of running. A text over the size limit is cut to fit. Errors
    /// and retries as for [`complete`](Self::complete).
    pub fn fail(mut self, text: &str) -> Result<()> {
        let text = truncate_at_char(text, self.max_result_bytes);
        self.finish(Some(Finish::Failed(text.as_bytes())))
    }

    /// Gives the claim up so that the next caller runs the action.
    pub fn abandon(mut self) -> Result<()> {
        self.finish(None)
    }

    fn finish(&mut self, outcome: Option<Finish<'_>>) -> Result<()> {
        self.finished = true;
        let held = match outcome {
            // The watchdog keeps renewing until the outcome is stored.
            Some(finish) => self.store_outcome(finish),
            None => {
                self.stop_renewal();
                let inner = self.client.inner();
                inner.store.abandon_claim(&self.keys, &self.owner)
            }
        };
        self.stop_renewal();
        if held? {
            Ok(())
        } else {
            self.lease.mark_lost();
            Err(Error::NotHeld {
                name: self.name.clone(),
            })
        }
    }

    /// Stores the outcome, resending while Redis cannot take it (the step is
    /// safe to repeat), for up to the store retry or the invocation's end.
    /// The watchdog keeps the lease renewed meanwhile.
    fn store_outcome(&self, finish: Finish<'_>) -> Result<bool> {
        let store = &self.client.inner().store;
        let patience = Instant::now()
            .checked_add(self.store_retry)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let give_up = self.give_up_at.map_or(patience, |at| at.min(patience));
        let mut pause = Duration::from_millis(5);
        loop {
            match store.finish_claim(&self.keys, &self.owner, finish, self.result_ttl_ms) {
                Err(error) if error.is_retryable() && Instant::now() + pause < give_up => {
                    tracing::debug!(key = %self.name, %error, "tollgate: storing an outcome again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn stop_renewal(&mut self) {
        if let Some(id) = self.renewal.take() {
            self.client.inner().watchdog.unwatch(id);
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Err(error) = self.finish(None) {
            tracing::warn!(key = %self.name, %error, "tollgate: abandoning a dropped claim failed; it frees when its lease ends");
        }
    }
}
