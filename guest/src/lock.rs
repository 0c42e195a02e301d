//! Distributed locks: [`lock`], [`LockBuilder`], [`Guard`].

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::OnceLock;

use crate::Result;
use crate::host::lock as wit;
use crate::time::millis;

/// Starts building a lock on `name` (in this plugin's namespace).
///
/// Nothing is asked of the host until [`LockBuilder::acquire`] or
/// [`LockBuilder::try_acquire`].
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let guard = tollgate_guest::lock("invoice-42")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(2))
///     .acquire()?;
/// // ... the critical section; pass guard.fencing_token() along ...
/// guard.release()?;
/// # Ok(())
/// # }
/// ```
pub fn lock(name: impl Into<String>) -> LockBuilder {
    LockBuilder {
        name: name.into(),
        ttl: Duration::ZERO,
        wait: Duration::ZERO,
        watchdog: false,
    }
}

/// How a lock is taken; made by [`lock`]. Reusable: each `acquire` is a new
/// attempt with the same options.
#[derive(Debug, Clone)]
#[must_use = "a lock builder does nothing until `acquire` or `try_acquire`"]
pub struct LockBuilder {
    name: String,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
}

impl LockBuilder {
    crate::guard::lease_builder_setters!("lock", "[`acquire`](Self::acquire)");

    /// The former name of [`watchdog`](Self::watchdog).
    #[deprecated(since = "0.2.0", note = "renamed `watchdog`, as in the host library")]
    pub fn renew(self) -> Self {
        self.watchdog()
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn options(&self) -> wit::LockOptions {
        wit::LockOptions {
            ttl_ms: millis(self.ttl),
            wait_ms: millis(self.wait),
            renew: self.watchdog,
        }
    }

    /// Takes the lock, blocking up to the wait; [`Error::Timeout`] when
    /// another owner still holds it then.
    ///
    /// [`Error::Timeout`]: crate::Error::Timeout
    pub fn acquire(&self) -> Result<Guard> {
        let inner = wit::acquire(&self.name, self.options())?;
        Ok(Guard::new(inner))
    }

    /// Like [`acquire`](Self::acquire), but `None` instead of a timeout when
    /// the lock is not granted.
    pub fn try_acquire(&self) -> Result<Option<Guard>> {
        let inner = wit::try_acquire(&self.name, self.options())?;
        Ok(inner.map(Guard::new))
    }
}

/// Proof of holding a lock, in the manner of `std::sync::MutexGuard`: the
/// guard's lifetime is the critical section.
///
/// Dropping it releases the lock at once; so does the end of the invocation,
/// however it ends (return, trap, panic, timeout), even for a guard passed to
/// `std::mem::forget`. Use [`release`](Self::release) to learn whether the
/// lock was still held.
#[must_use = "dropping the guard releases the lock at once"]
pub struct Guard {
    inner: wit::Guard,
    /// Asked of the host at its first use, like the token.
    name: OnceLock<String>,
    /// Asked of the host at its first use (one call fewer per critical
    /// section that never needs it), 0 until then; fixed for the grant.
    token: AtomicU64,
}

impl Guard {
    fn new(inner: wit::Guard) -> Self {
        Guard {
            inner,
            name: OnceLock::new(),
            token: AtomicU64::new(0),
        }
    }

    /// The lock's name, as given to [`lock`].
    pub fn name(&self) -> &str {
        self.name.get_or_init(|| self.inner.name())
    }

    /// This grant's fencing token: larger than every token issued before for
    /// this name. Pass it to the resource the lock protects.
    pub fn fencing_token(&self) -> u64 {
        match self.token.load(Ordering::Relaxed) {
            0 => {
                let token = self.inner.fencing_token();
                self.token.store(token, Ordering::Relaxed);
                token
            }
            token => token,
        }
    }

    /// Sets the remaining TTL to `ttl` (rounded up to whole milliseconds);
    /// [`Error::NotHeld`](crate::Error::NotHeld) when the lock was lost.
    pub fn extend(&self, ttl: Duration) -> Result<()> {
        Ok(self.inner.extend(millis(ttl))?)
    }

    /// Whether this guard still holds the lock (asks the store).
    pub fn is_held(&self) -> Result<bool> {
        Ok(self.inner.is_held()?)
    }

    /// The remaining TTL, or `None` when the lock is no longer held.
    pub fn remaining_ttl(&self) -> Result<Option<Duration>> {
        Ok(self.inner.remaining_ttl_ms()?.map(Duration::from_millis))
    }

    /// Writes `value` to the fenced record `record` with this guard's
    /// fencing token: [`Error::StaleToken`](crate::Error::StaleToken) once a
    /// later holder of this lock has written it. See [`record`](crate::record).
    pub fn put(&self, record: &str, value: &[u8]) -> Result<()> {
        crate::record(record).put(value, self.fencing_token())
    }

    /// Releases the lock and reports the outcome:
    /// [`Error::NotHeld`](crate::Error::NotHeld) when it had already been
    /// lost. Another holder's lock is never touched.
    pub fn release(self) -> Result<()> {
        Ok(wit::Guard::release(self.inner)?)
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("name", &self.name())
            .field("fencing_token", &self.fencing_token())
            .finish_non_exhaustive()
    }
}
