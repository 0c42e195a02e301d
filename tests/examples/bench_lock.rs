//! Lock benchmarks, each against a naive baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p tollgate-tests --example bench_lock
//! ```
//!
//! 1. Uncontended acquire + release: tollgate (pool, one script each way)
//!    against the bare minimum on one raw connection (`SET NX PX`, then a
//!    compare-and-delete script).
//! 2. Hand-over latency: how long after a release a blocked waiter gets the
//!    lock, tollgate's woken waiter against a `SET NX` + 100 ms sleep loop.
//!
//! Uses `$REDIS_URL` when set, else a private redis-server. Numbers move
//! between runs and machines; compare the ratios.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tollgate::Client;

const CYCLES: u32 = 5_000;
const HANDOVERS: usize = 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, url) = tollgate_tests::redis_from_env_or_private();
    let client = Client::open(&url)?;
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;

    // 1. Uncontended cycles.
    let unlock = redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    );
    client.lock("bench").acquire()?.release()?; // load scripts, open a connection
    let start = Instant::now();
    for _ in 0..CYCLES {
        client
            .lock("bench")
            .ttl(Duration::from_secs(10))
            .acquire()?
            .release()?;
    }
    let ours = f64::from(CYCLES) / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..CYCLES {
        let token = i.to_string();
        let ok: Option<String> = redis::cmd("SET")
            .arg("raw")
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(10_000)
            .query(&mut raw)?;
        assert!(ok.is_some());
        let _: i64 = unlock.key("raw").arg(&token).invoke(&mut raw)?;
    }
    let bare = f64::from(CYCLES) / start.elapsed().as_secs_f64();
    println!("uncontended acquire+release ({CYCLES} cycles)");
    println!("  tollgate            {ours:>9.0} cycles/s");
    println!("  raw SET NX + EVALSHA {bare:>8.0} cycles/s");
    println!(
        "  ratio               {:>9.2} (tollgate / raw; fencing, pool and owner checks cost this)",
        ours / bare
    );

    // 2. Hand-over latency.
    let woken = handover(
        || {
            let c = client.clone();
            move |tx: mpsc::Sender<Instant>| {
                let guard = c
                    .lock("handover")
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .unwrap();
                tx.send(Instant::now()).unwrap();
                drop(guard);
            }
        },
        &client,
    )?;
    let polled = handover(
        || {
            let url = url.clone();
            move |tx: mpsc::Sender<Instant>| {
                let mut conn = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                loop {
                    let ok: Option<String> = redis::cmd("SET")
                        .arg("tollgate:lock:{handover}")
                        .arg("naive")
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query(&mut conn)
                        .unwrap();
                    if ok.is_some() {
                        tx.send(Instant::now()).unwrap();
                        let _: i64 = redis::cmd("DEL")
                            .arg("tollgate:lock:{handover}")
                            .query(&mut conn)
                            .unwrap();
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        },
        &client,
    )?;
    println!("hand-over latency, release → waiter holds it (median of {HANDOVERS})");
    println!(
        "  tollgate (woken)      {:>9.2} ms",
        woken.as_secs_f64() * 1e3
    );
    println!(
        "  SET NX + 100 ms sleep {:>9.2} ms",
        polled.as_secs_f64() * 1e3
    );
    println!(
        "  ratio                 {:>9.1}x faster",
        polled.as_secs_f64() / woken.as_secs_f64()
    );
    Ok(())
}

/// Median time from a release by tollgate to the moment the waiter built by
/// `make_waiter` holds the lock.
fn handover<W, F>(make_waiter: F, client: &Client) -> tollgate::Result<Duration>
where
    F: Fn() -> W,
    W: FnOnce(mpsc::Sender<Instant>) + Send + 'static,
{
    let mut samples = Vec::with_capacity(HANDOVERS);
    for _ in 0..HANDOVERS {
        let holder = client
            .lock("handover")
            .ttl(Duration::from_secs(10))
            .acquire()?;
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn({
            let work = make_waiter();
            move || work(tx)
        });
        // Let the waiter find the lock taken and go to sleep, at a random
        // point of a naive poller's 100 ms cycle.
        thread::sleep(Duration::from_millis(
            30 + (samples.len() as u64 * 37) % 100,
        ));
        let released = Instant::now();
        holder.release()?;
        let granted = rx.recv().expect("waiter got the lock");
        waiter.join().expect("waiter thread");
        samples.push(granted - released);
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}
