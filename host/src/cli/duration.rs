//! Durations on the command line (`500ms`, `2s`, `1m30s`) and in tables.

use std::time::Duration;

/// Parses one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`:
/// `500ms`, `2s`, `1.5s`, `1m`, `1m30s`; the sum must be whole
/// milliseconds. A bare number is refused, so that
/// `--timeout 5` cannot mean five milliseconds to one reader and five
/// seconds to another.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    const HINT: &str = "use a number with a unit: 500ms, 2s, 1m, 1h, 1m30s";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || fraction.contains('.')
            || (number.contains('.') && fraction.is_empty())
        {
            return Err(format!("{text:?} is not a duration; {HINT}"));
        }
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("{text:?} has no unit; {HINT}")),
            other => return Err(format!("unknown unit {other:?} in {text:?}; {HINT}")),
        };
        let too_long = || format!("{text:?} is too long a duration");
        let mut part = whole
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per_unit))
            .ok_or_else(too_long)?;
        if !fraction.is_empty() {
            // `fraction` of a unit, in whole milliseconds only.
            let scale = 10u128
                .checked_pow(u32::try_from(fraction.len()).map_err(|_| too_long())?)
                .ok_or_else(too_long)?;
            let numerator =
                fraction.parse::<u128>().map_err(|_| too_long())? * u128::from(millis_per_unit);
            if numerator % scale != 0 {
                return Err(format!("{text:?} is finer than a millisecond; {HINT}"));
            }
            let extra = u64::try_from(numerator / scale).map_err(|_| too_long())?;
            part = part.checked_add(extra).ok_or_else(too_long)?;
        }
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
        rest = after;
    }
    Ok(total)
}

/// Parses a size in bytes: a whole number with an optional unit `B`, `KiB`,
/// `MiB`, `GiB` (or `K`, `M`, `G`, the same powers of 1024): `512KiB`,
/// `64MiB`, `1048576`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}; use 512KiB, 64MiB, 1GiB or bytes"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size; use 512KiB, 64MiB, 1GiB or bytes"))
}

/// A duration for people: `850ms`, `29.5s`, `4m05s`, `2h10m`.
pub(crate) fn show(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", ms / 1_000, ms % 1_000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums_parts() {
        let ms = Duration::from_millis;
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("2s"), Ok(ms(2_000)));
        assert_eq!(parse("1m"), Ok(ms(60_000)));
        assert_eq!(parse("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse(" 0s "), Ok(Duration::ZERO));
        assert_eq!(parse("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse("0.25m"), Ok(ms(15_000)));
        assert_eq!(parse("1.5h30m"), Ok(ms(7_200_000)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "5",
            "s",
            "-1s",
            "1.5ms",
            "1.s",
            ".5s",
            "1.2.3s",
            "2 s",
            "2sec",
            "1d",
            "1m30",
            "99999999999999999999ms",
            "18446744073709551615h",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
    }

    #[test]
    fn parses_sizes_in_powers_of_1024() {
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in ["", "MiB", "1.5MiB", "12TB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shows_durations_for_people() {
        let ms = Duration::from_millis;
        assert_eq!(show(ms(850)), "850ms");
        assert_eq!(show(ms(29_540)), "29.5s");
        assert_eq!(show(ms(245_000)), "4m05s");
        assert_eq!(show(ms(7_800_000)), "2h10m");
    }
}
