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

use tollgate_guest::{Begin, Error, Failure, Plugin, counter, idempotent, once};

/// How long a repeat waits for a charge that is running now.
const WAIT_FOR_RUNNING: Duration = Duration::from_secs(5);
/// The double-submit window.
const DOUBLE_SUBMIT_WINDOW: Duration = Duration::from_secs(10);

struct ChargeOnce;

impl Plugin for ChargeOnce {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let request = Request::parse(&input)?;
        let reply = charge_once(&request)?;
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
        Ok(Begin::Fresh(claim)) => claim,
        Ok(Begin::Completed(receipt)) => {
            return Ok(format!("replayed {}", String::from_utf8_lossy(&receipt)));
        }
        Ok(Begin::Failed(why)) => return Ok(why),
        Ok(Begin::InProgress) => return Err(Error::InProgress),
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

/// Run natively with `cargo test`: the SDK serves the calls in-process with
/// the host's rules (see `tollgate_guest::testing`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use tollgate_guest::testing::Sandbox;

    use super::ChargeOnce;

    fn charge(sandbox: &Sandbox, input: &str) -> String {
        let reply = sandbox
            .run::<ChargeOnce>(input)
            .expect("the plugin answers");
        String::from_utf8(reply).expect("UTF-8 reply")
    }

    #[test]
    fn a_retried_request_is_charged_once_and_gets_the_first_receipt() {
        let sandbox = Sandbox::new();
        assert_eq!(charge(&sandbox, "req-1 1200 alice"), "charged ch_000001");
        assert_eq!(charge(&sandbox, "req-1 1200 alice"), "replayed ch_000001");
        assert_eq!(sandbox.client().counter("plugin/charges").get().unwrap(), 1);
    }

    #[test]
    fn a_request_id_reused_for_another_amount_is_not_charged() {
        let sandbox = Sandbox::new();
        charge(&sandbox, "req-1 1200 alice");
        assert!(charge(&sandbox, "req-1 999 alice").starts_with("mismatch:"));
        assert_eq!(sandbox.client().counter("plugin/charges").get().unwrap(), 1);
    }

    #[test]
    fn a_double_submission_under_a_new_id_is_refused_and_stays_refused() {
        let sandbox = Sandbox::new();
        charge(&sandbox, "req-1 1200 alice");
        assert!(charge(&sandbox, "req-2 1200 alice").starts_with("duplicate:"));
        // Its retry gets the cached refusal, not a charge.
        assert!(charge(&sandbox, "req-2 1200 alice").starts_with("duplicate:"));
        assert_eq!(sandbox.client().counter("plugin/charges").get().unwrap(), 1);
    }

    #[test]
    fn concurrent_retries_of_one_request_charge_once() {
        let sandbox = Sandbox::new();
        let replies: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| charge(&sandbox, "req-9 500 bob")))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let charged = replies.iter().filter(|r| r.starts_with("charged")).count();
        assert_eq!(charged, 1, "{replies:?}");
        assert!(
            replies.iter().all(|r| r.ends_with("ch_000001")),
            "{replies:?}"
        );
        assert_eq!(sandbox.client().counter("plugin/charges").get().unwrap(), 1);
    }

    #[test]
    fn malformed_input_fails_with_the_usage() {
        let sandbox = Sandbox::new();
        let error = sandbox.run::<ChargeOnce>("req-1 -5").unwrap_err();
        assert!(error.contains("not a positive amount"), "{error}");
    }
}
