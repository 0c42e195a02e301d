//! Hands out order numbers such as `ORD-20261122-000042`: unique across
//! every process that uses the same store, increasing, and starting again at
//! 1 each day (the store's day, UTC) without a race at midnight.
//!
//! Input: how many numbers to hand out, 1 to 1000, as text; empty means 1.
//! Output: the numbers, one a line.
//!
//! ```text
//! $ tollgate run order_numbers.wasm --input 2
//! ORD-20261122-000001
//! ORD-20261122-000002
//! ```
//!
//! No lock is taken: each number is one atomic increment in the store, and
//! a daily sequence counts in one key per day, so midnight needs no reset.

use tollgate_guest::{Failure, Plugin, Reset, sequence};

/// The most numbers one invocation hands out.
const MAX_COUNT: u32 = 1000;

struct OrderNumbers;

impl Plugin for OrderNumbers {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let count = parse_count(&input)?;
        let orders = sequence("orders")
            .format("ORD-{date}-{seq:06}")
            .reset(Reset::Daily);
        let mut output = String::new();
        for _ in 0..count {
            let number = orders.next()?;
            output.push_str(&number);
            output.push('\n');
        }
        Ok(output.into_bytes())
    }
}

tollgate_guest::export_plugin!(OrderNumbers);

/// The count in `input`: empty means 1.
fn parse_count(input: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(input).map_err(|_| "the input is not UTF-8")?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(1);
    }
    match text.parse::<u32>() {
        Ok(count @ 1..=MAX_COUNT) => Ok(count),
        _ => Err(format!(
            "expected how many numbers to hand out (1 to {MAX_COUNT}), got {text:?}"
        )),
    }
}
