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

use tollgate_guest::{Error, Plugin, counter, lock};

/// What the (simulated) warehouse holds of every SKU.
const WAREHOUSE_STOCK: i64 = 100;

struct Inventory;

impl Plugin for Inventory {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let (sku, qty) = parse(&input)?;
        let reply = reserve(sku, qty).map_err(|e| e.to_string())?;
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
