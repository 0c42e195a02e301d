//! Read-write locks: [`rw_lock`], [`RwLockBuilder`], [`RwGuard`].

use core::time::Duration;

use crate::Result;
use crate::host::rw_lock as wit;
use crate::time::millis;

/// Starts asking for the read-write lock `name` (in this plugin's
/// namespace): many readers at once, or one writer. A writer that waits
/// keeps new readers out until it gets in, so readers cannot starve it.
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let config = tollgate_guest::rw_lock("config").wait(Duration::from_secs(2));
/// let reading = config.read()?;
/// // ... read the configuration ...
/// drop(reading);
/// let writing = config.write()?;
/// writing.put("config/current", b"v2")?; // with the write hold's token
/// # Ok(())
/// # }
/// ```
///
/// Asking again while this instance holds the lock, the read-to-write
/// upgrade included, fails at once with
/// [`Error::WouldDeadlock`](crate::Error::WouldDeadlock).
pub fn rw_lock(name: impl Into<String>) -> RwLockBuilder {
    RwLockBuilder {
        name: name.into(),
        ttl: Duration::ZERO,
        wait: Duration::ZERO,
        watchdog: false,
    }
}

/// How holds are asked for; made by [`rw_lock`]. Reusable.
#[derive(Debug, Clone)]
#[must_use = "a read-write lock builder does nothing until `read` or `write`"]
pub struct RwLockBuilder {
    name: String,
    ttl: Duration,
    wait: Duration,
    watchdog: bool,
}

impl RwLockBuilder {
    crate::guard::lease_builder_setters!("hold", "`read` and `write`");

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn options(&self) -> wit::RwOptions {
        wit::RwOptions {
            ttl_ms: millis(self.ttl),
            wait_ms: millis(self.wait),
            renew: self.watchdog,
        }
    }

    fn guard(&self, inner: wit::Hold) -> RwGuard {
        let token = inner.fencing_token();
        RwGuard {
            inner,
            name: self.name.clone(),
            token,
        }
    }

    /// A read hold, blocking up to the wait;
    /// [`Error::Timeout`](crate::Error::Timeout) when a writer held or
    /// wanted the lock all along.
    pub fn read(&self) -> Result<RwGuard> {
        Ok(self.guard(wit::read(&self.name, self.options())?))
    }

    /// Like [`read`](Self::read), but `None` instead of a timeout.
    pub fn try_read(&self) -> Result<Option<RwGuard>> {
        let inner = wit::try_read(&self.name, self.options())?;
        Ok(inner.map(|h| self.guard(h)))
    }

    /// The write hold, blocking up to the wait;
    /// [`Error::Timeout`](crate::Error::Timeout) when others still held
    /// the lock then.
    pub fn write(&self) -> Result<RwGuard> {
        Ok(self.guard(wit::write(&self.name, self.options())?))
    }

    /// Like [`write`](Self::write), but `None` instead of a timeout.
    pub fn try_write(&self) -> Result<Option<RwGuard>> {
        let inner = wit::try_write(&self.name, self.options())?;
        Ok(inner.map(|h| self.guard(h)))
    }
}

/// A read or write hold. Dropping it releases it at once; so does the end
/// of the invocation, however it ends.
#[must_use = "dropping the guard releases the hold at once"]
pub struct RwGuard {
    inner: wit::Hold,
    name: String,
    token: u64,
}

crate::guard::lease_guard_api!(RwGuard, wit::Hold, "hold");

impl RwGuard {
    /// Whether this is the write hold.
    pub fn is_write(&self) -> bool {
        self.inner.is_write()
    }
}
