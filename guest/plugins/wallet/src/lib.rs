//! A wallet: deposits and withdrawals on an account's balance, which a
//! plugin instance that was paused past its lock's TTL cannot overwrite.
//!
//! Input: `deposit ACCOUNT AMOUNT`, `withdraw ACCOUNT AMOUNT` or
//! `balance ACCOUNT` (amounts in cents). Output: one line,
//!
//! | Output                       | When                                              |
//! |------------------------------|---------------------------------------------------|
//! | `balance 1200 (3 movements)` | the account after the call                        |
//! | `refused: balance 200`       | a withdrawal larger than the balance: no change   |
//!
//! The account is a small document (`BALANCE MOVEMENTS`) read, changed and
//! written back under the account's lock: a read-modify-write, which a
//! counter cannot do in one step once there is more than one number. The
//! lock alone would not be enough: an instance stopped for longer than the
//! lock's TTL (a slow host, a paused VM) wakes up still believing it holds
//! the lock, and would write a balance computed from a stale read over the
//! one the next holder wrote. The balance is therefore a fenced record
//! written through the guard: the store refuses the stale instance's write
//! ([`Error::StaleToken`]) and the next holder's balance stands. The
//! invocation then fails without having changed anything, and the caller
//! may retry.

use std::time::Duration;

use tollgate_guest::{Error, Failure, Plugin, lock, record};

/// The account lock's TTL: far longer than a call takes.
const LOCK_TTL: Duration = Duration::from_secs(5);
/// How long a call waits for another call on the same account.
const LOCK_WAIT: Duration = Duration::from_secs(5);

struct Wallet;

impl Plugin for Wallet {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let text = std::str::from_utf8(&input)?;
        let reply = match text.split_whitespace().collect::<Vec<_>>()[..] {
            ["deposit", account, amount] => change(account, parse_amount(amount)?)?,
            ["withdraw", account, amount] => change(account, -parse_amount(amount)?)?,
            ["balance", account] => {
                let account = read(account)?;
                account.describe()
            }
            _ => {
                return Err(
                    "expected `deposit ACCOUNT AMOUNT`, `withdraw ACCOUNT AMOUNT` or `balance ACCOUNT`"
                        .into(),
                );
            }
        };
        Ok(reply.into_bytes())
    }
}

tollgate_guest::export_plugin!(Wallet);

/// An account's stored document.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Account {
    balance: i64,
    movements: u64,
}

impl Account {
    /// `balance 1200 (3 movements)`, or `(1 movement)`.
    fn describe(&self) -> String {
        let plural = if self.movements == 1 { "" } else { "s" };
        format!(
            "balance {} ({} movement{plural})",
            self.balance, self.movements
        )
    }
}

fn parse_amount(text: &str) -> Result<i64, Failure> {
    match text.parse::<i64>() {
        Ok(amount @ 1..=1_000_000_000) => Ok(amount),
        _ => Err(format!("the amount must be 1 to 1000000000 cents, got {text:?}").into()),
    }
}

fn balance_record(account: &str) -> String {
    format!("balance/{account}")
}

fn read(account: &str) -> Result<Account, Failure> {
    let Some(entry) = record(balance_record(account)).get()? else {
        return Ok(Account::default());
    };
    let text = String::from_utf8(entry.value)?;
    let (balance, movements) = text
        .split_once(' ')
        .ok_or_else(|| format!("account {account} holds {text:?}, not `BALANCE MOVEMENTS`"))?;
    Ok(Account {
        balance: balance.parse()?,
        movements: movements.parse()?,
    })
}

/// Adds `delta` to the account under its lock; refuses to go below zero.
fn change(account: &str, delta: i64) -> Result<String, Failure> {
    let guard = lock(format!("account/{account}"))
        .ttl(LOCK_TTL)
        .wait(LOCK_WAIT)
        .acquire()?;
    let before = read(account)?;
    let Some(balance) = before.balance.checked_add(delta).filter(|b| *b >= 0) else {
        return Ok(format!("refused: balance {}", before.balance));
    };
    let after = Account {
        balance,
        movements: before.movements + 1,
    };
    let document = format!("{} {}", after.balance, after.movements);
    match guard.put(&balance_record(account), document.as_bytes()) {
        Ok(()) => {}
        Err(Error::StaleToken { .. }) => {
            return Err(format!(
                "the lock on account {account} passed to another call before this one wrote; \
                 nothing was changed, retry"
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    guard.release()?;
    Ok(after.describe())
}

/// Run natively with `cargo test`: the SDK serves the calls in-process with
/// the host's rules (see `tollgate_guest::testing`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::time::Duration;

    use tollgate_guest::testing::Sandbox;
    use tollgate_guest::{Error, lock};

    use super::{Wallet, balance_record};

    fn call(sandbox: &Sandbox, input: &str) -> String {
        String::from_utf8(sandbox.run::<Wallet>(input).unwrap()).unwrap()
    }

    #[test]
    fn concurrent_deposits_all_count() {
        let sandbox = Sandbox::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10 {
                        call(&sandbox, "deposit acct 100");
                    }
                });
            }
        });
        assert_eq!(
            call(&sandbox, "balance acct"),
            "balance 8000 (80 movements)"
        );
    }

    #[test]
    fn a_withdrawal_beyond_the_balance_changes_nothing() {
        let sandbox = Sandbox::new();
        call(&sandbox, "deposit acct 200");
        assert_eq!(call(&sandbox, "withdraw acct 500"), "refused: balance 200");
        assert_eq!(
            call(&sandbox, "withdraw acct 150"),
            "balance 50 (2 movements)"
        );
    }

    #[test]
    fn an_instance_paused_past_its_lock_cannot_overwrite_the_next_callers_balance() {
        let sandbox = Sandbox::new();
        call(&sandbox, "deposit acct 100");
        sandbox.invoke(|| {
            // An instance takes the account's lock and is paused past its TTL.
            let stale = lock("account/acct")
                .ttl(Duration::from_millis(100))
                .acquire()
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            // Meanwhile another call deposits (on its own thread and
            // invocation) and gets the lock.
            let other = sandbox.clone();
            let reply = std::thread::spawn(move || {
                String::from_utf8(other.run::<Wallet>("deposit acct 5").unwrap()).unwrap()
            })
            .join()
            .unwrap();
            assert_eq!(reply, "balance 105 (2 movements)");
            // The paused instance wakes and writes what it computed earlier.
            let refused = stale.put(&balance_record("acct"), b"0 1");
            assert!(
                matches!(refused, Err(Error::StaleToken { .. })),
                "{refused:?}"
            );
        });
        assert_eq!(call(&sandbox, "balance acct"), "balance 105 (2 movements)");
    }

    #[test]
    fn bad_input_says_what_is_expected() {
        let error = Sandbox::new().run::<Wallet>("deposit acct -5").unwrap_err();
        assert!(error.contains("1 to 1000000000 cents"), "{error}");
    }
}
