//! Counters changed in one atomic step: [`counter`], [`Counter`].

use core::ops::RangeInclusive;

use crate::host::counter as wit;
use crate::{Error, Result};

/// A handle on the counter `name` (in this plugin's namespace). A counter
/// never set reads zero.
///
/// ```
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let seats = tollgate_guest::counter("seats-taken").bounds(0..=120);
/// match seats.incr(2) {
///     Ok(taken) => println!("{taken} seats taken"),
///     Err(tollgate_guest::Error::OutOfBounds(taken)) => println!("full ({taken} taken)"),
///     Err(e) => return Err(e),
/// }
/// # Ok(())
/// # }
/// ```
pub fn counter(name: impl Into<String>) -> Counter {
    Counter {
        name: name.into(),
        min: None,
        max: None,
    }
}

/// A counter's name and bounds; made by [`counter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    name: String,
    min: Option<i64>,
    max: Option<i64>,
}

/// The answer to [`Counter::incr_once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnceOutcome {
    /// The counter's value after the operation (the first time it ran).
    pub value: i64,
    /// False when the operation id was seen before and nothing was applied
    /// this time.
    pub applied: bool,
}

impl Counter {
    /// Limits that [`incr`](Self::incr), [`decr`](Self::decr) and
    /// [`incr_once`](Self::incr_once) may not take the counter out of: a
    /// change that would leave them fails with
    /// [`Error::OutOfBounds`] and changes nothing. [`set`](Self::set) is not
    /// checked.
    #[must_use]
    pub fn bounds(mut self, range: RangeInclusive<i64>) -> Self {
        let (min, max) = range.into_inner();
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// A lower bound only (see [`bounds`](Self::bounds)).
    #[must_use]
    pub fn min(mut self, min: i64) -> Self {
        self.min = Some(min);
        self
    }

    /// An upper bound only (see [`bounds`](Self::bounds)).
    #[must_use]
    pub fn max(mut self, max: i64) -> Self {
        self.max = Some(max);
        self
    }

    /// The counter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn wit_bounds(&self) -> Option<wit::Bounds> {
        if self.min.is_none() && self.max.is_none() {
            return None;
        }
        Some(wit::Bounds {
            min: self.min,
            max: self.max,
        })
    }

    /// Adds `delta` (may be negative) and returns the new value.
    /// [`Error::OutcomeUnknown`] when the reply was lost: the change may or
    /// may not have been applied (see [`incr_once`](Self::incr_once)).
    pub fn incr(&self, delta: i64) -> Result<i64> {
        Ok(wit::incr(&self.name, delta, self.wit_bounds())?)
    }

    /// Subtracts `delta` and returns the new value; [`Error::Overflow`] for
    /// `i64::MIN`, which has no negation.
    pub fn decr(&self, delta: i64) -> Result<i64> {
        self.incr(delta.checked_neg().ok_or(Error::Overflow)?)
    }

    /// Adds `delta` at most once per `op_id` within the host's window, so
    /// resending after [`Error::OutcomeUnknown`] is safe.
    pub fn incr_once(&self, op_id: &str, delta: i64) -> Result<OnceOutcome> {
        let out = wit::incr_once(&self.name, op_id, delta, self.wit_bounds())?;
        Ok(OnceOutcome {
            value: out.value,
            applied: out.applied,
        })
    }

    /// The current value; zero for a counter never set.
    pub fn get(&self) -> Result<i64> {
        Ok(wit::get(&self.name)?)
    }

    /// Sets the value (bounds are not checked).
    pub fn set(&self, value: i64) -> Result<()> {
        Ok(wit::set(&self.name, value)?)
    }
}
