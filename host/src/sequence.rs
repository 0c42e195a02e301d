//! Serial numbers: unique, increasing, human-readable, across processes.
//!
//! ```no_run
//! use tollgate::Reset;
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::open("redis://127.0.0.1/")?;
//! let orders = client
//!     .sequence("orders")
//!     .format("ORD-{date}-{seq:06}")? // prefix, server's day, zero padding
//!     .reset(Reset::Daily)             // a fresh count each day (UTC)
//!     .block(1000);                    // reserve 1,000 numbers per round trip
//! let number = orders.next()?;         // "ORD-20261122-000042"
//! # let _ = number;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - **Unique across processes**: numbers are reserved with one `INCRBY` (in
//!   one script that also reads the server's clock). No lock, no spin loop:
//!   `INCRBY` is atomic by itself.
//! - **Increasing** within one [`Sequence`] handle (per day with
//!   [`Reset::Daily`]). Across processes in block mode, numbers are unique
//!   but interleave: process A may hand out 1,001 after process B handed out
//!   2,000.
//! - **Gaps, never duplicates**: numbers of a block that a process does not
//!   use before it exits (or before the server's midnight, see below) are
//!   lost, and so is a reservation whose reply was lost
//!   ([`Error::OutcomeUnknown`]; it is not resent). Use a sequence for unique
//!   numbers, not for counting.
//!
//! # Days
//! The day in `{date}` and the daily reset come from the **Redis server's
//! clock (`TIME`), in UTC**, never from this process's clock. A daily
//! sequence counts in one key per day, `PREFIX + "seq:{" + name + "}:" +
//! YYYYMMDD`, chosen by the script from the server's time in the same step
//! as the increment, so there is no reset at midnight to race with: the
//! first number of a new day is 1 because that day's key is new. Each day's
//! key expires [`DAY_KEY_TTL`] after its first number. A sequence without a
//! reset counts in `PREFIX + "seq:{" + name + "}"`, which never expires.
//!
//! A block belongs to the server day it was reserved on. When the sequence
//! resets daily or its format shows `{date}`, the rest of a block is dropped
//! at the server's midnight (measured conservatively on this process's
//! monotonic clock from the reservation), so a number never carries the
//! wrong day.
//!
//! # Exactness
//! Numbers are `INCRBY` results (64-bit) sent back as text: exact up to
//! `i64::MAX`; beyond, [`Error::Overflow`].

mod format;

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use self::format::Format;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::limits::check_name;

/// How long the key of one day of a daily sequence lives after its first
/// number: 48 hours, so it outlasts its day wherever the day started.
pub const DAY_KEY_TTL: Duration = Duration::from_secs(48 * 3600);

/// The largest block [`Sequence::block`] accepts: 1,000,000 numbers.
pub const MAX_BLOCK: u64 = 1_000_000;

/// The latest time the test seam accepts: 9999-12-31T23:59:59Z, so the year
/// keeps four digits.
const MAX_OVERRIDE_SECS: u64 = 253_402_300_799;

/// When a sequence starts counting again from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reset {
    /// Never: one count for the sequence's whole life (the default).
    #[default]
    Never,
    /// At midnight UTC by the Redis server's clock: each day counts from 1.
    /// The format must then show `{date}`, or numbers would repeat.
    Daily,
}

/// A source of serial numbers. `Send + Sync`: share one handle between
/// threads (by reference or in an `Arc`) so they share its block; a
/// `parking_lot::Mutex` inside hands the block out.
///
/// Settings are checked when a number is asked for: a bad name, block size
/// or time override fails every call with [`Error::InvalidArgument`],
/// before anything is sent. [`format`](Sequence::format) checks its format
/// at once.
#[derive(Debug)]
pub struct Sequence {
    client: Client,
    name: String,
    format: Format,
    reset: Reset,
    block_size: u64,
    now: Option<u64>,
    invalid: Option<Error>,
    block: Mutex<Block>,
}

/// The reserved numbers not handed out yet: `next..=last`, on `day`, usable
/// until `until` (this process's clock) when set.
#[derive(Debug, Default)]
struct Block {
    next: u64,
    last: u64,
    day: String,
    until: Option<Instant>,
}

impl Block {
    fn is_usable(&self) -> bool {
        self.next != 0
            && self.next <= self.last
            && self.until.is_none_or(|until| Instant::now() < until)
    }
}

impl Sequence {
    fn new(client: &Client, name: String) -> Self {
        let invalid = check_name("sequence name", &name).err();
        Sequence {
            client: client.clone(),
            name,
            format: Format::default(),
            reset: Reset::Never,
            block_size: 1,
            now: None,
            invalid,
            block: Mutex::default(),
        }
    }

    /// The sequence's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How [`next`](Sequence::next) writes a number (default `{seq}`):
    /// literal text, `{date}` (the server's day, `YYYYMMDD`, UTC), `{seq}`
    /// (the number) or `{seq:0N}` (zero-padded to at least N digits, N from 1
    /// to 20; a larger number is written in full), and `{{` / `}}` for
    /// literal braces. `{seq}` must appear exactly once. At most 256 bytes.
    ///
    /// A bad format is refused here with [`Error::InvalidArgument`].
    pub fn format(mut self, format: &str) -> Result<Self> {
        self.format = Format::parse(format)?;
        Ok(self)
    }

    /// When counting starts again from 1 (default [`Reset::Never`]).
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// Reserves `size` numbers per round trip (one `INCRBY`) and hands them
    /// out from this handle (default 1, at most [`MAX_BLOCK`]). Numbers
    /// stay unique across processes; numbers left over when the process
    /// exits are never used (a gap).
    pub fn block(mut self, size: u64) -> Self {
        if size == 0 || size > MAX_BLOCK {
            self.fail(Error::invalid(
                "block size",
                format!("{size} is outside 1..={MAX_BLOCK}"),
            ));
        } else {
            self.block_size = size;
        }
        self
    }

    /// Test seam: the script uses `unix_secs` instead of the server's `TIME`
    /// for the day, so a test can cross midnight without waiting.
    #[doc(hidden)]
    pub fn server_time_override(mut self, unix_secs: u64) -> Self {
        if unix_secs > MAX_OVERRIDE_SECS {
            self.fail(Error::invalid(
                "server time override",
                format!("{unix_secs} is after the year 9999"),
            ));
        } else {
            self.now = Some(unix_secs);
        }
        self
    }

    /// The next number, formatted. See the [module](crate::sequence) docs for
    /// what is guaranteed. A daily sequence whose format lacks `{date}` is
    /// refused with [`Error::InvalidArgument`] (its numbers would repeat).
    pub fn next(&self) -> Result<String> {
        if self.reset == Reset::Daily && !self.format.shows_date() {
            return Err(Error::invalid(
                "sequence format",
                "a daily sequence must show {date}, or its numbers repeat from day to day",
            ));
        }
        let (seq, day) = self.take()?;
        Ok(self.format.render(&day, seq))
    }

    /// The next number, unformatted (from 1). With [`Reset::Daily`] it
    /// restarts at 1 each server day, so it is unique only within its day.
    pub fn next_raw(&self) -> Result<u64> {
        self.take().map(|(seq, _)| seq)
    }

    /// The highest number reserved from the store so far, by any client
    /// (today's, by the store's clock, for [`Reset::Daily`]): every number
    /// up to it is handed out or waiting in some client's block. `None`
    /// before the first. Reads only; for operators and tests.
    pub fn last_reserved(&self) -> Result<Option<u64>> {
        let inner = self.client.inner();
        let daily = self.reset == Reset::Daily;
        let key = if daily {
            inner.keyspace.daily_sequence(&self.name)
        } else {
            inner.keyspace.sequence(&self.name)
        };
        let reserved =
            inner
                .store
                .sequence_reserve(&key, 0, daily, DAY_KEY_TTL.as_secs(), self.now)?;
        Ok((reserved.last > 0).then_some(reserved.last))
    }

    /// Hands out the next number of the block, reserving a new block first
    /// when it is used up or its day is over.
    fn take(&self) -> Result<(u64, String)> {
        if let Some(error) = &self.invalid {
            return Err(error.clone());
        }
        let mut block = self.block.lock();
        if !block.is_usable() {
            *block = self.reserve()?;
        }
        let seq = block.next;
        block.next += 1;
        Ok((seq, block.day.clone()))
    }

    fn reserve(&self) -> Result<Block> {
        let inner = self.client.inner();
        let daily = self.reset == Reset::Daily;
        let sent = Instant::now();
        let key = if daily {
            inner.keyspace.daily_sequence(&self.name)
        } else {
            inner.keyspace.sequence(&self.name)
        };
        let dated = daily || self.format.shows_date();
        if !dated && self.now.is_none() {
            // No day to know: one INCRBY, no script.
            let delta = i64::try_from(self.block_size).unwrap_or(i64::MAX);
            let last = inner.store.counter_incr(&key, delta)?;
            let last = u64::try_from(last).map_err(|_| Error::WrongType {
                key: key.clone(),
                detail: format!("sequence is at {last}, below zero"),
            })?;
            return Ok(Block {
                next: last.saturating_sub(self.block_size - 1).max(1),
                last,
                day: String::new(),
                until: None,
            });
        }
        let reserved = inner.store.sequence_reserve(
            &key,
            self.block_size,
            daily,
            DAY_KEY_TTL.as_secs(),
            self.now,
        )?;
        Ok(Block {
            // A key set lower by hand could make the block start below 1.
            next: reserved.last.saturating_sub(self.block_size - 1).max(1),
            last: reserved.last,
            day: reserved.day,
            until: dated.then(|| sent + reserved.to_midnight),
        })
    }

    fn fail(&mut self, error: Error) {
        self.invalid.get_or_insert(error);
    }
}

impl Client {
    /// A source of serial numbers named `name` (1 to 512 bytes, any text).
    /// Sends nothing until a number is asked for; see the
    /// [`sequence`](crate::sequence) module for what it guarantees.
    ///
    /// ```no_run
    /// # fn main() -> tollgate::Result<()> {
    /// let client = tollgate::Client::open("redis://127.0.0.1/")?;
    /// let invoices = client.sequence("invoices").format("INV-{seq:08}")?;
    /// println!("{}", invoices.next()?); // INV-00000001
    /// # Ok(())
    /// # }
    /// ```
    pub fn sequence(&self, name: impl Into<String>) -> Sequence {
        Sequence::new(self, name.into())
    }
}
