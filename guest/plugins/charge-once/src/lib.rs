//! A payment that is charged at most once per request id, and a guard
//! against double submissions.
//!
//! Input: `REQUEST_ID AMOUNT [CUSTOMER]`, the amount in cents (the customer
//! defaults to `guest`). Output: one line whose first word says what
//! happened:
//!
//! | Output                        | When                                                              |
//! |-------------------------------|-------------------------------------------------------------------|
//! | `charged ch_000001`           | this call charged; the receipt                                    |
//! | `replayed ch_000001`          | the request id was charged before (or is being charged right now): the first receipt |
//! | `duplicate: ...`              | another request of the same customer for the same amount came in the last 10 s: a double submission, not charged |
//! | `mismatch: ...`               | the request id was used before with another amount or customer: not charged |
//!
//! Two tools, two different repeats:
//!
//! - A **retry** of one request (the client timed out and sent it again)
//!   carries the same request id: [`idempotent`] runs the charge once per id
//!   and gives every repeat the first receipt. A repeat that arrives while the
//!   charge runs waits for it. The payload's fingerprint makes a reused id
//!   with another amount a `mismatch` instead of someone else's receipt.
//! - A **double click** makes two requests with two ids: only a guard keyed
//!   by what was submitted (customer and amount) sees them as one. [`once`]
//!   lets the first through and refuses the others for 10 s; its key is kept
//!   for the whole window, so a late duplicate is refused too.
//!
//! The charge itself is simulated: it counts charges in the counter
//! `charges`, whose value is the receipt number.

use std::time::Duration;

use tollgate_guest::{ClaimOutcome, Error, Plugin, counter, idempotent, once};

/// How long a repeat waits for a charge that is running now.
const WAIT_FOR_RUNNING: Duration = Duration::from_secs(5);
/// The double-submit window.
const DOUBLE_SUBMIT_WINDOW: Duration = Duration::from_secs(10);

struct ChargeOnce;

impl Plugin for ChargeOnce {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let request = Request::parse(&input)?;
        let reply = charge_once(&request).map_err(|e| e.to_string())?;
        Ok(reply.into_bytes())
    }
}

tollgate_guest::export_plugin!(ChargeOnce);

struct Request<'a> {
    id: &'a str,
    amount: u64,
    customer: &'a str,
}

impl<'a> Request<'a> {
    fn parse(input: &'a [u8]) -> Result<Request<'a>, String> {
        const USAGE: &str = "expected REQUEST_ID AMOUNT [CUSTOMER], the amount in cents";
        let text = std::str::from_utf8(input).map_err(|_| "the input is not UTF-8")?;
        let (id, amount, customer) = match text.split_whitespace().collect::<Vec<_>>()[..] {
            [id, amount] => (id, amount, "guest"),
            [id, amount, customer] => (id, amount, customer),
            _ => return Err(format!("{USAGE}, got {text:?}")),
        };
        let amount = match amount.parse::<u64>() {
            Ok(amount) if amount > 0 => amount,
            _ => return Err(format!("{USAGE}; {amount:?} is not a positive amount")),
        };
        Ok(Request {
            id,
            amount,
            customer,
        })
    }
}

fn charge_once(request: &Request) -> Result<String, Error> {
    let Request {
        id,
        amount,
        customer,
    } = request;
    let payment = idempotent(format!("payment/{id}"))
        .fingerprint(format!("{customer} {amount}").as_bytes())
        .wait(WAIT_FOR_RUNNING);
    let claim = match payment.begin() {
        Ok(ClaimOutcome::Fresh(claim)) => claim,
        Ok(ClaimOutcome::Completed(receipt)) => {
            return Ok(format!("replayed {}", String::from_utf8_lossy(&receipt)));
        }
        Ok(ClaimOutcome::Failed(why)) => return Ok(why),
        Ok(ClaimOutcome::InProgress) => return Err(Error::InProgress),
        Err(Error::PayloadMismatch) => {
            return Ok(format!(
                "mismatch: request {id} was used before with another amount or customer"
            ));
        }
        Err(e) => return Err(e),
    };

    // This request id is ours to charge. Was the same thing submitted a
    // moment ago under another id?
    if !once(&format!("submit/{customer}/{amount}"), DOUBLE_SUBMIT_WINDOW)? {
        let why = format!(
            "duplicate: {customer} submitted {amount} in the last {}s",
            DOUBLE_SUBMIT_WINDOW.as_secs()
        );
        // Cached: this request id stays a duplicate when it is retried.
        claim.fail(&why)?;
        return Ok(why);
    }

    // The charge. If it fails, dropping the claim lets a retry charge.
    let number = counter("charges").incr(1)?;
    let receipt = format!("ch_{number:06}");
    match claim.complete(receipt.as_bytes()) {
        Ok(()) => Ok(format!("charged {receipt}")),
        // The card was charged; only the record for retries is missing. Say
        // so: failing here would read as "nothing happened".
        Err(e) => Ok(format!("charged {receipt} (not recorded for retries: {e})")),
    }
}
