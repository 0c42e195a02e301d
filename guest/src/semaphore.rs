//! Semaphores: [`semaphore`], [`SemaphoreBuilder`], [`Permit`].

use core::time::Duration;

use crate::Result;
use crate::host::semaphore as wit;
use crate::time::millis;

/// Starts asking for permits of the semaphore `name` (in this plugin's
/// namespace), which has `permits` permits in all: at most that many are
/// out at once, across every instance and host sharing the store.
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let exports = tollgate_guest::semaphore("exports", 4).wait(Duration::from_secs(2));
/// let permit = exports.acquire()?;
/// // ... at most 4 of these run at once; pass permit.fencing_token() on ...
/// permit.release()?;
/// # Ok(())
/// # }
/// ```
///
/// The number of permits is not stored: a request is granted only if the
/// permits out plus its own fit within its number, and grants out are
/// never taken back. Use one number per name.
pub fn semaphore(name: impl Into<String>, permits: u32) -> SemaphoreBuilder {
    SemaphoreBuilder {
        name: name.into(),
        permits,
        ttl: Duration::ZERO,
        wait: Duration::ZERO,
        watchdog: false,
    }
}

/// How permits are asked for; made by [`semaphore`]. Reusable: each
/// `acquire` is a new request.
#[derive(Debug, Clone)]
#[must_use = "a semaphore builder does nothing until `acquire` or `try_acquire`"]
pub struct SemaphoreBuilder {
    name: String,
    permits: u32,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
}

impl SemaphoreBuilder {
    crate::guard::lease_builder_setters!("grant", "[`acquire`](Self::acquire)");

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn options(&self, count: u32) -> wit::PermitOptions {
        wit::PermitOptions {
            permits: self.permits,
            count,
            ttl_ms: millis(self.ttl),
            wait_ms: millis(self.wait),
            renew: self.watchdog,
        }
    }

    /// One permit, blocking up to the wait;
    /// [`Error::Timeout`](crate::Error::Timeout) when none is free then.
    pub fn acquire(&self) -> Result<Permit> {
        self.acquire_many(1)
    }

    /// Like [`acquire`](Self::acquire), but `None` instead of a timeout.
    pub fn try_acquire(&self) -> Result<Option<Permit>> {
        self.try_acquire_many(1)
    }

    /// `count` permits in one grant (1 to the semaphore's number).
    pub fn acquire_many(&self, count: u32) -> Result<Permit> {
        let inner = wit::acquire(&self.name, self.options(count))?;
        Ok(Permit::new(inner, self.name.clone()))
    }

    /// Like [`acquire_many`](Self::acquire_many), but `None` instead of a
    /// timeout.
    pub fn try_acquire_many(&self, count: u32) -> Result<Option<Permit>> {
        let inner = wit::try_acquire(&self.name, self.options(count))?;
        Ok(inner.map(|p| Permit::new(p, self.name.clone())))
    }

    /// Permits free now.
    pub fn available(&self) -> Result<u32> {
        Ok(wit::available(&self.name, self.permits)?)
    }
}

/// Proof of holding permits. Dropping it releases them at once; so does the
/// end of the invocation, however it ends.
#[must_use = "dropping the permit releases it at once"]
pub struct Permit {
    inner: wit::Permit,
    name: String,
    token: u64,
}

impl Permit {
    fn new(inner: wit::Permit, name: String) -> Self {
        let token = inner.fencing_token();
        Permit { inner, name, token }
    }

    /// Permits this grant holds.
    pub fn count(&self) -> u32 {
        self.inner.count()
    }
}

crate::guard::lease_guard_api!(Permit, wit::Permit, "grant");
