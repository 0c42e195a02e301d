//! The main job end to end: several workers share one distributed lock.
//!
//! Uses `$REDIS_URL` when set; otherwise starts a private `redis-server` on a
//! free loopback port (and stops it at the end).
//!
//! ```text
//! cargo run -p tollgate-tests --example demo
//! ```

use std::thread;
use std::time::{Duration, Instant};

use tollgate::{Client, Error};

fn main() -> Result<(), Error> {
    let (server, url) = tollgate_tests::redis_from_env_or_private();
    if server.is_some() {
        println!("started a private redis-server at {url}");
    }
    let client = Client::builder(&url).client_name("demo").build()?;

    println!("\n1. four workers, one lock: one holder at a time, tokens always grow");
    let start = Instant::now();
    let workers: Vec<_> = (1..=4)
        .map(|n| {
            let client = client.clone();
            thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || -> Result<(), Error> {
                    let asked = Instant::now();
                    let guard = client
                        .lock("orders:42")
                        .ttl(Duration::from_secs(5))
                        .wait(Duration::from_secs(10))
                        .acquire()?;
                    println!(
                        "   [{:>6.0?}] worker-{n} holds orders:42 after waiting {:>6.1?}, fencing token {}",
                        start.elapsed(),
                        asked.elapsed(),
                        guard.fencing_token()
                    );
                    thread::sleep(Duration::from_millis(150)); // the critical section
                    guard.release()
                })
                .expect("thread starts")
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished")?;
    }

    println!("\n2. a holder whose TTL ran out cannot touch the next holder's lock");
    let stale = client
        .lock("report")
        .ttl(Duration::from_millis(100))
        .acquire()?;
    thread::sleep(Duration::from_millis(150));
    // Another thread: this one still has the stale guard, so asking here
    // would be refused with WouldDeadlock.
    let fresh = client.clone();
    let next = thread::spawn(move || fresh.lock("report").ttl(Duration::from_secs(5)).acquire())
        .join()
        .expect("thread finished")?;
    println!(
        "   new holder's token {} > stale token {}",
        next.fencing_token(),
        stale.fencing_token()
    );
    match stale.extend(Duration::from_secs(5)) {
        Err(e @ Error::NotHeld { .. }) => println!("   stale extend refused: {e}"),
        other => println!("   unexpected: {other:?}"),
    }
    println!("   new holder still holds it: {}", next.is_held()?);
    next.release()?;

    println!("\n3. the watchdog keeps a 300 ms lock alive for a 1 s job");
    let guard = client
        .lock("nightly")
        .ttl(Duration::from_millis(300))
        .watchdog()
        .acquire()?;
    thread::sleep(Duration::from_secs(1));
    let info = client.lock_info("nightly")?.expect("still held");
    println!(
        "   still held by {:?}, {:?} left",
        info.holder,
        info.remaining_ttl.unwrap_or_default()
    );
    guard.release()?;

    println!("\n4. one payment, three identical requests at once: charged once");
    let charges = std::sync::atomic::AtomicUsize::new(0);
    thread::scope(|scope| {
        for n in 1..=3 {
            let (client, charges) = (&client, &charges);
            scope.spawn(move || {
                let out = client
                    .idempotency("payments")
                    .key("pay-123")
                    .fingerprint(b"amount=4200&currency=eur")
                    .on_duplicate(tollgate::Duplicate::Wait(Duration::from_secs(5)))
                    .run(|| {
                        charges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(200)); // talk to the bank
                        Ok::<_, Error>(b"charge ch_42".to_vec())
                    })
                    .expect("idempotent run");
                println!(
                    "   request {n}: {} (replayed: {})",
                    String::from_utf8_lossy(&out.value),
                    out.replayed
                );
            });
        }
    });
    println!("   the card was charged {} time(s)", charges.into_inner());
    let again = client
        .idempotency("payments")
        .key("pay-123")
        .fingerprint(b"amount=9900&currency=eur")
        .run(|| Ok::<_, Error>(b"charge ch_43".to_vec()));
    if let Err(e) = again {
        println!("   same id, other amount: {e}");
    }

    println!("\n5. a double click: only the first submission in 10 s passes");
    for click in 1..=2 {
        let first = client.once("submit:user42:form-9f2c", Duration::from_secs(10))?;
        println!(
            "   click {click}: {}",
            if first {
                "processed"
            } else {
                "ignored (duplicate)"
            }
        );
    }
    println!("\ndone");
    Ok(())
}
