//! A DEBUG span around each operation: what it was, on which name, how it
//! ended and how long it took. Quiet (and almost free) without a
//! subscriber that enables DEBUG for `tollgate`.

use std::time::Instant;

use tracing::Span;

/// Runs `operation` inside `span` (made with [`span!`]) and records on it
/// how it ended (`outcome` names the result) and its time in ms.
pub(crate) fn in_span<T, E>(
    span: Span,
    operation: impl FnOnce() -> Result<T, E>,
    outcome: impl FnOnce(&T) -> &'static str,
) -> Result<T, E> {
    if span.is_disabled() {
        return operation();
    }
    let _entered = span.enter();
    let started = Instant::now();
    let result = operation();
    span.record(
        "outcome",
        match &result {
            Ok(value) => outcome(value),
            Err(_) => "error",
        },
    );
    span.record("elapsed_ms", started.elapsed().as_millis() as u64);
    result
}

/// A DEBUG span `tollgate` for operation `$op` on `$name`, with the
/// `outcome` and `elapsed_ms` fields that [`in_span`] fills.
macro_rules! span {
    ($op:literal, $name:expr) => {
        tracing::debug_span!(
            "tollgate",
            op = $op,
            name = %$name,
            outcome = tracing::field::Empty,
            elapsed_ms = tracing::field::Empty,
        )
    };
}

pub(crate) use span;
