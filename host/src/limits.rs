//! Checks on caller input, done before anything is sent to Redis.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest name accepted for a lock or any other object, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// Accepts a non-empty name of at most [`MAX_NAME_BYTES`] bytes.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            what,
            format!(
                "is {} bytes long; the limit is {MAX_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Accepts a TTL of at least one millisecond and at most `max`; returns it in
/// milliseconds, the unit on the wire.
pub(crate) fn check_ttl(what: &'static str, ttl: Duration, max: Duration) -> Result<u64> {
    let ms = ttl.as_millis();
    if ms == 0 {
        return Err(Error::invalid(
            what,
            format!("{ttl:?} is shorter than the 1 ms minimum"),
        ));
    }
    if ttl > max {
        return Err(Error::invalid(
            what,
            format!("{ttl:?} is above the client's maximum of {max:?}"),
        ));
    }
    Ok(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Accepts a wait of at most `max` (zero means "try once").
pub(crate) fn check_wait(wait: Duration, max: Duration) -> Result<()> {
    if wait > max {
        return Err(Error::invalid(
            "wait",
            format!("{wait:?} is above the client's maximum of {max:?}"),
        ));
    }
    Ok(())
}

/// Milliseconds of a duration, saturating, for durations already checked.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_names_are_refused() {
        assert!(check_name("lock name", "").is_err());
        assert!(check_name("lock name", &"x".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(check_name("lock name", &"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn ttl_must_be_at_least_a_millisecond_and_at_most_the_maximum() {
        let max = Duration::from_secs(10);
        assert!(check_ttl("ttl", Duration::ZERO, max).is_err());
        assert!(check_ttl("ttl", Duration::from_micros(999), max).is_err());
        assert_eq!(check_ttl("ttl", Duration::from_millis(1), max), Ok(1));
        assert_eq!(check_ttl("ttl", max, max), Ok(10_000));
        assert!(check_ttl("ttl", max + Duration::from_millis(1), max).is_err());
    }
}
