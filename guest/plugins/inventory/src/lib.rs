//! Reserves stock: a bounded counter per SKU that can never go below zero,
//! and a lock so that a SKU's stock is loaded from the warehouse once, however
//! many reservations arrive at the same moment.
//!
//! Input: `SKU QTY`. Output: one line,
//!
//! | Output                        | When                                          |
//! |-------------------------------|-----------------------------------------------|
//! | `reserved 3 sku9 (97 left)`   | the stock was reduced by QTY                  |
//! | `refused 500 sku9 (97 left)`  | not enough stock: nothing was reserved        |
//!
//! The reservation itself takes no lock: a bounded decrement is one atomic
//! step in the store, so two reservations can never both take the last unit
//! (a `get`, a check and a `set` under a lock would only be slower). The
//! lock is for what is not one step: asking the warehouse for a SKU's stock
//! the first time it is seen, which must happen once, not once per waiting
//! reservation.

use std::time::Duration;

use tollgate_guest::{Error, Failure, Plugin, counter, lock};

/// What the (simulated) warehouse holds of every SKU.
const WAREHOUSE_STOCK: i64 = 100;

struct Inventory;

impl Plugin for Inventory {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let (sku, qty) = parse(&input)?;
        let reply = reserve(sku, qty)?;
        Ok(reply.into_bytes())
    }
}

tollgate_guest::export_plugin!(Inventory);

fn parse(input: &[u8]) -> Result<(&str, i64), String> {
    const USAGE: &str = "expected SKU QTY, the quantity from 1 to 1000000";
    let text = std::str::from_utf8(input).map_err(|_| "the input is not UTF-8")?;
    let [sku, qty] = text.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(format!("{USAGE}, got {text:?}"));
    };
    match qty.parse::<i64>() {
        Ok(qty @ 1..=1_000_000) => Ok((sku, qty)),
        _ => Err(format!("{USAGE}; got {qty:?}")),
    }
}

fn reserve(sku: &str, qty: i64) -> Result<String, Error> {
    load_stock_once(sku)?;
    let stock = counter(format!("stock/{sku}")).min(0);
    match stock.decr(qty) {
        Ok(left) => Ok(format!("reserved {qty} {sku} ({left} left)")),
        // The counter refused the change and says what it holds.
        Err(Error::OutOfBounds(left)) => Ok(format!("refused {qty} {sku} ({left} left)")),
        Err(e) => Err(e),
    }
}

/// Loads the SKU's stock from the warehouse the first time it is seen.
/// Checked once without the lock (the common case: already loaded), and
/// again under it, since another instance may have loaded it while this one
/// waited.
fn load_stock_once(sku: &str) -> Result<(), Error> {
    let loaded = counter(format!("loaded/{sku}"));
    if loaded.get()? != 0 {
        return Ok(());
    }
    let guard = lock(format!("load/{sku}"))
        .ttl(Duration::from_secs(10))
        .wait(Duration::from_secs(5))
        .acquire()?;
    if loaded.get()? == 0 {
        let from_warehouse = WAREHOUSE_STOCK; // a call to the warehouse system
        // `incr_once`: if the reply is lost and the load is retried, the
        // stock is still added once.
        counter(format!("stock/{sku}")).incr_once(&format!("load/{sku}"), from_warehouse)?;
        loaded.set(1)?;
    }
    // Releasing reports a lock lost while loading (dropping would not).
    guard.release()
}

/// Run natively with `cargo test`: the SDK serves the calls in-process with
/// the host's rules (see `tollgate_guest::testing`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use tollgate_guest::testing::Sandbox;

    use super::{Inventory, WAREHOUSE_STOCK};

    #[test]
    fn concurrent_reservations_never_sell_more_than_the_stock() {
        const THREADS: i64 = 8;
        const EACH: i64 = 20; // 160 asked of 100
        let sandbox = Sandbox::new();
        let reserved: i64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        let mut reserved = 0;
                        for _ in 0..EACH {
                            let reply = sandbox.run::<Inventory>("sku9 1").unwrap();
                            if reply.starts_with(b"reserved") {
                                reserved += 1;
                            }
                        }
                        reserved
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(reserved, WAREHOUSE_STOCK);
        let left = sandbox.client().counter("plugin/stock/sku9").get().unwrap();
        assert_eq!(
            left, 0,
            "the stock was loaded once and never went below zero"
        );
    }
}
