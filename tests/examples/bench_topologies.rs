//! What a lock costs on each topology, against one Redis server measured in
//! the same run.
//!
//! ```text
//! cargo run --release -p tollgate-tests --example bench_topologies
//! ```
//!
//! Uncontended acquire + release cycles per second on: one server; a
//! primary with a replica in synced mode (`wait_for_replicas(1, …)`); a
//! local Redis Cluster of 3 masters (each with a replica); Redlock over 3
//! independent masters. Every server is private, on loopback, on this
//! machine: the ratios show what each topology adds per lock, not what a
//! network between hosts would.

use std::time::{Duration, Instant};

use tollgate::{Client, Redlock};
use tollgate_tests::{RedisCluster, RedisServer};

const CYCLES: u32 = 2_000;

/// Cycles per second of `cycle`, after a warm-up.
fn rate(mut cycle: impl FnMut() -> tollgate::Result<()>) -> tollgate::Result<f64> {
    for _ in 0..100 {
        cycle()?;
    }
    let start = Instant::now();
    for _ in 0..CYCLES {
        cycle()?;
    }
    Ok(f64::from(CYCLES) / start.elapsed().as_secs_f64())
}

fn lock_cycle(client: &Client) -> impl FnMut() -> tollgate::Result<()> + '_ {
    move || {
        client
            .lock("bench")
            .ttl(Duration::from_secs(10))
            .acquire()?
            .release()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let single = RedisServer::start();
    let baseline = rate(lock_cycle(&Client::open(&single.url())?))?;

    let primary = RedisServer::start();
    let replica = RedisServer::builder()
        .args(["--replicaof", "127.0.0.1", &primary.port().to_string()])
        .start();
    let synced = Client::builder(primary.url())
        .wait_for_replicas(1, Duration::from_millis(500))
        .build()?;
    // Until the replica has synced, WAIT cannot be confirmed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while synced.lock("warm").acquire().map(drop).is_err() {
        if Instant::now() > deadline {
            return Err("the replica never synced".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let synced_rate = rate(lock_cycle(&synced))?;
    drop(replica);

    let cluster = RedisCluster::start();
    let cluster_rate = rate(lock_cycle(&Client::open(&cluster.url())?))?;

    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let redlock = Redlock::new(
        masters
            .iter()
            .map(|m| Client::open(&m.url()))
            .collect::<tollgate::Result<Vec<_>>>()?,
    )?;
    let redlock_rate = rate(|| {
        redlock
            .lock("bench")
            .ttl(Duration::from_secs(10))
            .acquire()?
            .release()
    })?;

    println!("uncontended acquire+release ({CYCLES} cycles each), loopback");
    println!("  topology                        cycles/s   vs one server");
    for (name, cycles) in [
        ("one server", baseline),
        ("primary + replica, synced", synced_rate),
        ("cluster, 3 masters", cluster_rate),
        ("Redlock, 3 masters", redlock_rate),
    ] {
        println!("  {name:<30} {cycles:>9.0}   {:>6.2}", cycles / baseline);
    }
    Ok(())
}
