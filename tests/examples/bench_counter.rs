//! Serial-number throughput: block mode against one `INCR` per number,
//! measured in the same run.
//!
//! ```text
//! cargo run --release -p tollgate-tests --example bench_counter
//! ```
//!
//! 1. `INCR` on one raw connection, one round trip per number (the naive
//!    baseline, without its spin lock).
//! 2. tollgate's sequence without a block: one script call per number.
//! 3. tollgate's sequence with blocks of 1,000: one round trip per 1,000.
//!
//! Uses `$REDIS_URL` when set, else a private redis-server. Numbers move
//! between runs and machines; compare the ratios.

use std::time::Instant;

use tollgate::Client;

const NUMBERS: u32 = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = tollgate_tests::redis_from_env_or_private();
    let client = Client::open(&url)?;
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;

    let start = Instant::now();
    for _ in 0..NUMBERS {
        let _: u64 = redis::cmd("INCR").arg("bench:raw").query(&mut raw)?;
    }
    let incr = f64::from(NUMBERS) / start.elapsed().as_secs_f64();

    let single = client.sequence("bench:single");
    single.next_raw()?; // load the script, open a connection
    let start = Instant::now();
    for _ in 0..NUMBERS {
        single.next_raw()?;
    }
    let unblocked = f64::from(NUMBERS) / start.elapsed().as_secs_f64();

    let blocked = client.sequence("bench:block").block(1_000);
    blocked.next_raw()?;
    let start = Instant::now();
    for _ in 0..NUMBERS {
        blocked.next_raw()?;
    }
    let block = f64::from(NUMBERS) / start.elapsed().as_secs_f64();

    println!("serial numbers ({NUMBERS} each)");
    println!("  raw INCR per number       {incr:>12.0} numbers/s");
    println!("  sequence, no block        {unblocked:>12.0} numbers/s");
    println!("  sequence, blocks of 1000  {block:>12.0} numbers/s");
    println!("  ratio block / raw INCR    {:>12.1}", block / incr);
    Ok(())
}
