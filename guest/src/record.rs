//! Fenced records: [`record`], [`Record`].

use core::time::Duration;

use crate::host::fenced_record as wit;
use crate::time::millis;
use crate::{Error, Result};

/// A handle on the fenced record `name` (in this plugin's namespace): a
/// small value whose writes carry a fencing token and are refused with
/// [`Error::StaleToken`] once the record has accepted a newer token. A
/// plugin instance paused past its lock's TTL therefore cannot overwrite
/// what the next holder wrote. Write through the lock's guard
/// ([`Guard::put`](crate::Guard::put)) so that its token goes along.
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let guard = tollgate_guest::lock("wallet-7").ttl(Duration::from_secs(10)).acquire()?;
/// let balance = tollgate_guest::record("wallet-7/balance");
/// let current: i64 = match balance.get()? {
///     Some(entry) => String::from_utf8_lossy(&entry.value).parse().unwrap_or(0),
///     None => 0,
/// };
/// guard.put("wallet-7/balance", (current + 50).to_string().as_bytes())?;
/// assert_eq!(balance.get()?.unwrap().value, b"50");
/// # Ok(())
/// # }
/// ```
pub fn record(name: impl Into<String>) -> Record {
    Record {
        name: name.into(),
        ttl: Duration::ZERO,
    }
}

/// A record's name and write options; made by [`record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    name: String,
    ttl: Duration,
}

/// A record's value and the token of the write that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Vec<u8>,
    /// The fencing token that wrote it: the highest the record has
    /// accepted.
    pub token: u64,
}

impl Record {
    /// Each write makes the record expire after `ttl` (store clock; rounded
    /// up to whole milliseconds). Zero, the default, keeps it.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The record's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value and the token that wrote it; `None` when never written,
    /// deleted, or expired.
    pub fn get(&self) -> Result<Option<Entry>> {
        Ok(wit::get(&self.name)?.map(|entry| Entry {
            value: entry.value,
            token: entry.token,
        }))
    }

    /// Stores `value` with fencing token `token`: [`Error::StaleToken`],
    /// and nothing changed, when the record has accepted a newer token.
    pub fn put(&self, value: &[u8], token: u64) -> Result<()> {
        written(wit::put(&self.name, value, token, millis(self.ttl))?)
    }

    /// Deletes the value with fencing token `token`, keeping the token so
    /// that no older writer can write it again; [`Error::StaleToken`] when
    /// refused.
    pub fn delete(&self, token: u64) -> Result<()> {
        written(wit::delete(&self.name, token)?)
    }
}

fn written(outcome: wit::WriteOutcome) -> Result<()> {
    match outcome {
        wit::WriteOutcome::Written => Ok(()),
        wit::WriteOutcome::Stale(highest) => Err(Error::StaleToken { highest }),
    }
}
