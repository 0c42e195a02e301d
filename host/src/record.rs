//! Fenced records: small named values that refuse writers whose lock has
//! passed to someone else.
//!
//! A lock alone cannot stop a holder that was paused past its TTL (a GC
//! pause, a stopped process, a slow disk) from writing when it wakes: by
//! then the next holder has the lock, and both write. A fenced record closes
//! that gap. Every write carries a fencing token, and the record accepts it
//! only if the token is at least the highest it has accepted so far, in the
//! same atomic step as the write. Tokens of a lock's grants only grow, so
//! the paused holder's write is refused with [`Error::StaleToken`] and the
//! newer holder's value stands.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::in_memory();
//! let guard = client.lock("wallet:7").ttl(Duration::from_secs(10)).acquire()?;
//! // The guard's token goes with the write.
//! guard.put("wallet:7:balance", b"120")?;
//! let entry = client.record("wallet:7:balance").get()?.expect("written");
//! assert_eq!(entry.value, b"120");
//! assert_eq!(entry.token, guard.fencing_token());
//!
//! // A writer holding an older token (its lock expired and was taken
//! // again) is refused, and the value stays.
//! let stale = guard.fencing_token() - 1;
//! let refused = client.record("wallet:7:balance").put(b"0", stale);
//! assert!(matches!(refused, Err(tollgate::Error::StaleToken { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! Any token source works: a lock's guard, a Redlock grant, a token kept
//! from elsewhere. Use one token source per record: tokens of different
//! locks are not ordered with each other.
//!
//! - **Atomic**: each call is one step in the store (one Lua script on
//!   Redis); the check and the write cannot be separated.
//! - **Deletes are fenced too**, and leave the token behind (a tombstone),
//!   so a stale writer cannot bring a deleted record back.
//! - **Synced mode** ([`ClientBuilder::wait_for_replicas`](crate::ClientBuilder::wait_for_replicas)):
//!   an accepted write is confirmed by the replicas, so that a failover
//!   cannot set the record's highest token back; when too few confirm, the
//!   call fails with [`Error::NotReplicated`], and the write, made on the
//!   primary, may or may not survive a failover.
//! - **Bounded**: values up to [`FencedRecord::max_size`] (1 MiB by
//!   default); an optional TTL (store clock), set again by each write. A
//!   record that expires forgets its highest token with its value.

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::limits::{check_name, check_ttl, millis};
use crate::store::FencedWrite;

/// The largest value a record takes unless [`FencedRecord::max_size`] says
/// otherwise: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// A handle on the fenced record `name`; made by [`Client::record`].
/// Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct FencedRecord {
    client: Client,
    name: String,
    ttl: Option<Duration>,
    max_size: usize,
}

/// A record's value and the token of the write that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordEntry {
    /// The value.
    pub value: Vec<u8>,
    /// The fencing token of the write that stored it: the highest the
    /// record has accepted.
    pub token: u64,
    /// The record's remaining TTL (store clock), `None` without one.
    pub remaining_ttl: Option<Duration>,
}

impl Client {
    /// The fenced record `name` (1 to 512 bytes): a value whose writes are
    /// accepted only with a fencing token at least as high as any it has
    /// accepted. See [`record`](crate::record).
    pub fn record(&self, name: impl Into<String>) -> FencedRecord {
        FencedRecord {
            client: self.clone(),
            name: name.into(),
            ttl: None,
            max_size: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl FencedRecord {
    /// The record's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Each write sets the record to expire after `ttl` (store clock); by
    /// default records do not expire. An expired record forgets its
    /// highest token.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The largest value [`put`](Self::put) accepts; larger ones fail with
    /// [`Error::TooLarge`] and nothing is written.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The value and the token that wrote it; `None` when never written,
    /// deleted, or expired.
    pub fn get(&self) -> Result<Option<RecordEntry>> {
        check_name("record name", &self.name)?;
        let inner = self.client.inner();
        let stored = inner.store.record_get(&inner.keyspace.record(&self.name))?;
        Ok(stored.and_then(|record| {
            record.value.map(|value| RecordEntry {
                value,
                token: record.fence,
                remaining_ttl: record.remaining,
            })
        }))
    }

    /// The highest token the record has accepted (kept after a delete);
    /// `None` when it has accepted none, or expired.
    pub fn highest_token(&self) -> Result<Option<u64>> {
        check_name("record name", &self.name)?;
        let inner = self.client.inner();
        let stored = inner.store.record_get(&inner.keyspace.record(&self.name))?;
        Ok(stored.map(|record| record.fence))
    }

    /// Stores `value` if `token` is at least the highest token the record
    /// has accepted; [`Error::StaleToken`] (and nothing changed) otherwise.
    /// A lost reply is [`Error::OutcomeUnknown`]: sending the same write
    /// again is safe (the same token is accepted again).
    pub fn put(&self, value: &[u8], token: u64) -> Result<()> {
        check_name("record name", &self.name)?;
        if value.len() > self.max_size {
            return Err(Error::TooLarge {
                what: "record value",
                size: value.len(),
                limit: self.max_size,
            });
        }
        let inner = self.client.inner();
        let ttl_ms = match self.ttl {
            Some(ttl) => check_ttl("record ttl", ttl, inner.settings.max_ttl)?,
            None => 0,
        };
        self.write(token, Some(value), ttl_ms).map(drop)
    }

    /// Deletes the value if `token` is at least the highest token the
    /// record has accepted, keeping the token so that no older writer can
    /// write it again: `Ok(true)` when a value was deleted, `Ok(false)`
    /// when there was none; [`Error::StaleToken`] when refused. The token
    /// is kept as long as the record would have lived; where there was no
    /// record, for the handle's [`ttl`](Self::ttl), or else the client's
    /// fence retention (one hour by default), so deletes leave nothing
    /// behind for ever.
    pub fn delete(&self, token: u64) -> Result<bool> {
        check_name("record name", &self.name)?;
        let inner = self.client.inner();
        let keep = self.ttl.unwrap_or(inner.settings.fence_retention);
        self.write(token, None, millis(keep).max(1))
    }

    fn write(&self, token: u64, value: Option<&[u8]>, ttl_ms: u64) -> Result<bool> {
        let inner = self.client.inner();
        let key = inner.keyspace.record(&self.name);
        match inner.store.record_write(&key, token, value, ttl_ms)? {
            FencedWrite::Accepted { existed } => Ok(existed),
            FencedWrite::Stale { highest } => Err(Error::StaleToken {
                name: self.name.clone(),
                token,
                highest,
            }),
        }
    }
}
