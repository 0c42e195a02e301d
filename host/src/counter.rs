//! Counters: integers on the Redis server that many processes change at once.
//!
//! ```no_run
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::open("redis://127.0.0.1/")?;
//! let views = client.counter("page_views");
//! views.incr(1)?;
//! let stock = client.counter("stock:sku9").bounds(0..=100);
//! match stock.incr(-1) {
//!     Ok(left) => println!("{left} left"),
//!     Err(tollgate::Error::OutOfBounds { .. }) => println!("sold out"),
//!     Err(other) => return Err(other),
//! }
//! let op = views.incr_once("request-7f3a", 1)?; // safe to resend
//! println!("views: {} (applied now: {})", op.value, op.applied);
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - **No lost updates**: every change is one atomic step on the server
//!   (`INCRBY`, or one script for bounds and operation ids). There is no
//!   read-modify-write in the client, no `WATCH`/`MULTI` retry loop and no
//!   lock, so contention costs no retries.
//! - **Never resent**: a change whose reply was lost (response timeout,
//!   broken connection) fails with [`Error::OutcomeUnknown`]: it may or may
//!   not have been applied, and tollgate does not send it again. Use
//!   [`Counter::incr_once`] when the caller must retry: the operation id makes
//!   a resend count once.
//! - **Bounds** are checked in the same step as the change: a change whose
//!   result would leave `min..=max` is refused with [`Error::OutOfBounds`] and
//!   the value stays as it was. The check is on the result only, so a value
//!   that is already outside the bounds (set by another handle without them)
//!   refuses every change that leaves it outside.
//! - **Foreign values** (a key holding text or a hash) give
//!   [`Error::WrongType`] and are left unchanged; a sum beyond `i64` gives
//!   [`Error::Overflow`] and changes nothing.
//!
//! # Exactness
//! Sums are computed by Redis's `INCRBY` in 64-bit integers and values travel
//! as text, so every value of `i64` is exact. Only the bound checks run on Lua
//! numbers (doubles); bounds are therefore limited to ±[`MAX_EXACT_BOUND`]
//! (2^53 − 1), where those comparisons are exact.
//!
//! # Keys
//! A counter is the string key `PREFIX + "counter:{" + name + "}"` holding
//! the integer as text, without a TTL: a missing key reads as 0. Each
//! `incr_once` leaves a small hash `…:op:HEX(op_id)` (same hash tag) that
//! expires after the window.

use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::limits::{check_name, millis};
use crate::store::{Changed, CounterChange};

/// How long [`Counter::incr_once`] remembers an operation id unless
/// [`Counter::once_window`] says otherwise: 24 hours.
pub const DEFAULT_ONCE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The longest window [`Counter::once_window`] accepts: 30 days.
pub const MAX_ONCE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// The largest magnitude of a bound, 2^53 − 1: bound checks compare Lua
/// numbers (doubles), which are exact up to here.
pub const MAX_EXACT_BOUND: i64 = (1 << 53) - 1;

/// A handle on one counter. Cheap to clone; `Send + Sync`. Creating it
/// sends nothing; each call is one round trip.
///
/// Settings ([`bounds`](Counter::bounds), [`once_window`](Counter::once_window))
/// are checked when a call is made: a bad setting or name fails every call
/// with [`Error::InvalidArgument`], before anything is sent.
#[derive(Debug, Clone)]
pub struct Counter {
    client: Client,
    name: String,
    min: Option<i64>,
    max: Option<i64>,
    window: Duration,
    /// The first bad setting, reported by every call.
    invalid: Option<Error>,
}

/// What [`Counter::incr_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnceOutcome {
    /// The counter's value right after the operation was applied: now, or
    /// the first time when this is a repeat.
    pub value: i64,
    /// `true` when this call applied the change, `false` when the operation
    /// id had been applied before (within the window) and nothing changed.
    pub applied: bool,
}

impl Counter {
    pub(crate) fn new(client: &Client, name: String) -> Self {
        let invalid = check_name("counter name", &name).err();
        Counter {
            client: client.clone(),
            name,
            min: None,
            max: None,
            window: DEFAULT_ONCE_WINDOW,
            invalid,
        }
    }

    /// The counter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the counter inside `range` (e.g. `0..=100`, `0..`, `..=10`):
    /// a change whose result would leave it is refused with
    /// [`Error::OutOfBounds`], atomically. Each given end must be within
    /// ±[`MAX_EXACT_BOUND`], and the range must not be empty.
    pub fn bounds(mut self, range: impl RangeBounds<i64>) -> Self {
        // An excluded end at the edge of i64 saturates, and is then refused
        // as inexact like any bound that large.
        let min = match range.start_bound() {
            Bound::Included(&min) => Some(min),
            Bound::Excluded(&min) => Some(min.saturating_add(1)),
            Bound::Unbounded => None,
        };
        let max = match range.end_bound() {
            Bound::Included(&max) => Some(max),
            Bound::Excluded(&max) => Some(max.saturating_sub(1)),
            Bound::Unbounded => None,
        };
        match check_bounds(min, max) {
            Ok(()) => (self.min, self.max) = (min, max),
            Err(_) if min.zip(max).is_some_and(|(min, max)| min > max) => {
                self.fail(Error::invalid(
                    "counter bounds",
                    format!("{} is empty", range_text(&range)),
                ));
            }
            Err(error) => self.fail(error),
        }
        self
    }

    /// How long [`incr_once`](Counter::incr_once) remembers an operation id
    /// (default [`DEFAULT_ONCE_WINDOW`], at least 1 ms, at most
    /// [`MAX_ONCE_WINDOW`]). A resend after the window is applied again.
    pub fn once_window(mut self, window: Duration) -> Self {
        if window.as_millis() == 0 || window > MAX_ONCE_WINDOW {
            self.fail(Error::invalid(
                "once window",
                format!("{window:?} is outside 1 ms ..= {MAX_ONCE_WINDOW:?}"),
            ));
        } else {
            self.window = window;
        }
        self
    }

    /// The current value; 0 when the counter does not exist (it was never
    /// changed). One `GET`.
    pub fn get(&self) -> Result<i64> {
        Ok(self.get_if_set()?.unwrap_or(0))
    }

    /// The current value, or `None` when the counter does not exist (it
    /// was never changed, or was removed): tells a counter at 0 from a name
    /// never used. One `GET`.
    pub fn get_if_set(&self) -> Result<Option<i64>> {
        self.check()?;
        let inner = self.client.inner();
        inner.store.counter_get(&inner.keyspace.counter(&self.name))
    }

    /// Sets the value, replacing whatever other clients did before. A value
    /// outside the bounds is refused before anything is sent; a key holding
    /// something other than a counter gives [`Error::WrongType`] and is left
    /// unchanged.
    pub fn set(&self, value: i64) -> Result<()> {
        self.check()?;
        if self.min.is_some_and(|min| value < min) || self.max.is_some_and(|max| value > max) {
            return Err(Error::invalid(
                "counter value",
                format!(
                    "{value} is outside the bounds {}..={}",
                    self.min_or_floor(),
                    self.max_or_ceiling()
                ),
            ));
        }
        let inner = self.client.inner();
        inner
            .store
            .counter_set(&inner.keyspace.counter(&self.name), value)
    }

    /// Adds `delta` (negative to subtract) in one atomic step and returns the
    /// new value. Without bounds this is one `INCRBY`; with bounds, one
    /// script that refuses a result outside them ([`Error::OutOfBounds`]).
    ///
    /// [`Error::OutcomeUnknown`] means the reply was lost: the change may or
    /// may not have been applied, and it is not resent. Use
    /// [`incr_once`](Counter::incr_once) to be able to retry.
    pub fn incr(&self, delta: i64) -> Result<i64> {
        self.check()?;
        let inner = self.client.inner();
        let key = inner.keyspace.counter(&self.name);
        if self.min.is_none() && self.max.is_none() {
            return inner.store.counter_incr(&key, delta);
        }
        self.change(&key, delta, None).map(|outcome| outcome.value)
    }

    /// Subtracts `delta`: the same as `incr(-delta)`.
    pub fn decr(&self, delta: i64) -> Result<i64> {
        let negated = delta
            .checked_neg()
            .ok_or_else(|| Error::invalid("delta", format!("{delta} cannot be negated")))?;
        self.incr(negated)
    }

    /// Adds `delta` at most once for `op_id` (1 to 512 bytes, e.g. a request
    /// id) within the window: the id and the result are recorded in the same
    /// script as the change, so a call resent after
    /// [`Error::OutcomeUnknown`] or [`Error::Unavailable`] is safe. A repeat
    /// returns the first result with `applied: false` and changes nothing.
    ///
    /// The same id with a different `delta` is refused with
    /// [`Error::OpIdConflict`]. A change refused by the bounds is not
    /// recorded: resending it may succeed later if the value has moved.
    pub fn incr_once(&self, op_id: &str, delta: i64) -> Result<OnceOutcome> {
        self.check()?;
        check_name("op id", op_id)?;
        let inner = self.client.inner();
        let key = inner.keyspace.counter(&self.name);
        let op_key = inner.keyspace.counter_op(&self.name, op_id);
        self.change(&key, delta, Some((op_id, &op_key)))
    }

    /// One script: bounds and/or an operation id `(op_id, record key)`.
    fn change(&self, key: &str, delta: i64, once: Option<(&str, &str)>) -> Result<OnceOutcome> {
        let change = CounterChange {
            key,
            delta,
            min: self.min,
            max: self.max,
            once: once.map(|(_, op_key)| (op_key, millis(self.window))),
        };
        match self.client.inner().store.counter_change(&change)? {
            Changed::Applied(value) => Ok(OnceOutcome {
                value,
                applied: true,
            }),
            Changed::Repeated {
                value,
                delta: first,
            } if first == delta => Ok(OnceOutcome {
                value,
                applied: false,
            }),
            Changed::Repeated { delta: first, .. } => Err(Error::OpIdConflict {
                name: self.name.clone(),
                op_id: once.map(|(op_id, _)| op_id.to_owned()).unwrap_or_default(),
                first_delta: first,
            }),
            Changed::OutOfBounds(value) => Err(Error::OutOfBounds {
                name: self.name.clone(),
                value,
                min: self.min_or_floor(),
                max: self.max_or_ceiling(),
            }),
        }
    }

    fn min_or_floor(&self) -> i64 {
        self.min.unwrap_or(i64::MIN)
    }

    fn max_or_ceiling(&self) -> i64 {
        self.max.unwrap_or(i64::MAX)
    }

    fn fail(&mut self, error: Error) {
        self.invalid.get_or_insert(error);
    }

    fn check(&self) -> Result<()> {
        match &self.invalid {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

/// Accepts bounds within ±[`MAX_EXACT_BOUND`] with `min <= max`; `None` for
/// an end means "no bound".
/// `range` written as in Rust (`10..5`, `0..=100`, `..`).
fn range_text(range: &impl RangeBounds<i64>) -> String {
    let start = match range.start_bound() {
        Bound::Included(start) => start.to_string(),
        Bound::Excluded(start) => format!("{start} (excluded)"),
        Bound::Unbounded => String::new(),
    };
    let end = match range.end_bound() {
        Bound::Included(end) => format!("..={end}"),
        Bound::Excluded(end) => format!("..{end}"),
        Bound::Unbounded => "..".to_owned(),
    };
    format!("{start}{end}")
}

fn check_bounds(min: Option<i64>, max: Option<i64>) -> Result<()> {
    for bound in [min, max].into_iter().flatten() {
        if !(-MAX_EXACT_BOUND..=MAX_EXACT_BOUND).contains(&bound) {
            return Err(Error::invalid(
                "counter bounds",
                format!("{bound} is beyond ±{MAX_EXACT_BOUND} (2^53 - 1), where bounds stay exact"),
            ));
        }
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(Error::invalid(
            "counter bounds",
            format!("min {min} is greater than max {max}"),
        ));
    }
    Ok(())
}

impl Client {
    /// A handle on counter `name` (1 to 512 bytes, any text). Sends nothing
    /// until a call; see the [`counter`](crate::counter) module for what a
    /// counter guarantees.
    ///
    /// ```no_run
    /// # fn main() -> tollgate::Result<()> {
    /// let client = tollgate::Client::open("redis://127.0.0.1/")?;
    /// let views = client.counter("page_views");
    /// assert!(views.incr(1)? >= 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn counter(&self, name: impl Into<String>) -> Counter {
        Counter::new(self, name.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_must_be_ordered_and_exact() {
        assert!(check_bounds(Some(0), Some(100)).is_ok());
        assert!(check_bounds(Some(5), Some(5)).is_ok());
        assert!(check_bounds(None, None).is_ok());
        assert!(check_bounds(Some(-MAX_EXACT_BOUND), Some(MAX_EXACT_BOUND)).is_ok());
        assert!(check_bounds(Some(1), Some(0)).is_err());
        assert!(check_bounds(None, Some(MAX_EXACT_BOUND + 1)).is_err());
        assert!(check_bounds(Some(-MAX_EXACT_BOUND - 1), None).is_err());
    }
}
