//! Fault injection over time: many clients doing real work while the test
//! kills their connections, pauses holders and servers, loses replies and
//! keeps scripts busy. Each scenario checks an invariant afterwards (no two
//! holders, no stale write accepted, exact counts, one execution per key,
//! bounded calls) and prints its figures on stderr as one `reliability:`
//! line (RELIABILITY.md collects them; run with `--nocapture` to see them).
//!
//! The default run is short, for CI. `TOLLGATE_TORTURE_SECS=N` makes each
//! timed scenario run for N seconds instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::{Client, Duplicate, Error};
use tollgate_tests::fenced::{
    FencedResource, FencedWrite, check_mutual_exclusion, increment_under,
};
use tollgate_tests::{FaultProxy, RedisServer, ReplyFault};

use crate::PausedHolder;

/// How long a timed scenario runs: `TOLLGATE_TORTURE_SECS`, or `default`.
fn duration(default: Duration) -> Duration {
    std::env::var("TOLLGATE_TORTURE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(default, Duration::from_secs)
}

/// A client with short timeouts, as a service under faults would set them.
fn quick_client(url: &str) -> Client {
    Client::builder(url)
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Kills every normal (and, every 10th round, pub/sub) client connection of
/// `server` every `every` until `stop`; returns how many rounds it ran.
fn kill_storm(server: &RedisServer, every: Duration, stop: &AtomicBool) -> u64 {
    let mut admin = server.conn();
    let mut rounds = 0;
    while !stop.load(Ordering::SeqCst) {
        let kind = if rounds % 10 == 9 { "pubsub" } else { "normal" };
        redis::cmd("CLIENT")
            .arg(["KILL", "TYPE", kind, "SKIPME", "yes"].as_slice())
            .exec(&mut admin)
            .unwrap();
        rounds += 1;
        thread::sleep(every);
    }
    rounds
}

/// The longest a call took, for the figures.
#[derive(Default)]
struct Longest(Mutex<Duration>);

impl Longest {
    fn time<T>(&self, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = call();
        self.record(started.elapsed());
        value
    }

    fn record(&self, took: Duration) {
        let mut longest = self.0.lock();
        *longest = (*longest).max(took);
    }

    fn get(&self) -> Duration {
        *self.0.lock()
    }
}

/// A cheap per-thread pseudo-random number (xorshift), for critical
/// sections of random length.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn contention_under_a_connection_kill_storm_keeps_one_holder_and_exact_counts() {
    let server = RedisServer::start();
    let resource = FencedResource::start();
    let url = server.url();
    let run_for = duration(Duration::from_secs(3));
    let stop = AtomicBool::new(false);
    let holds = Mutex::new(Vec::new());
    let writes: Mutex<HashMap<&'static str, u64>> = Mutex::default();
    let (errors, increments, lost_increments) =
        (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let longest = Longest::default();
    let started = Instant::now();
    let rounds = thread::scope(|scope| {
        for worker in 0..8u64 {
            let (url, stop, holds, writes, errors, longest) =
                (&url, &stop, &holds, &writes, &errors, &longest);
            let resource = &resource;
            scope.spawn(move || {
                let client = quick_client(url);
                let mut conn = resource.conn();
                let mut random = 0x9e37_79b9_7f4a_7c15 ^ (worker + 1);
                while !stop.load(Ordering::SeqCst) {
                    let acquired = longest.time(|| {
                        client
                            .lock("contended")
                            .ttl(Duration::from_secs(2))
                            .wait(Duration::from_secs(3))
                            .acquire()
                    });
                    let guard = match acquired {
                        Ok(guard) => guard,
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let pause = Duration::from_micros(next_random(&mut random) % 2000);
                    let turn = increment_under(guard, Instant::now(), &mut conn, "balance", pause);
                    let kind = match turn.write {
                        FencedWrite::Ok => "ok",
                        FencedWrite::Stale => "stale",
                        FencedWrite::Overlap => "overlap",
                    };
                    *writes.lock().entry(kind).or_default() += 1;
                    longest.record(turn.release_took);
                    if turn.release.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    holds.lock().push(turn.hold);
                }
            });
        }
        // Exactly-once increments, resent until they land.
        for worker in 0..4u64 {
            let (url, stop, increments, lost_increments) =
                (&url, &stop, &increments, &lost_increments);
            scope.spawn(move || {
                let client = quick_client(url);
                let counter = client.counter("hits");
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let op = format!("{worker}-{n}");
                    loop {
                        match counter.incr_once(&op, 1) {
                            Ok(_) => break,
                            Err(e) if e.is_retryable() => {
                                lost_increments.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("incr_once: {e}"),
                        }
                    }
                    increments.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        let killer = scope.spawn(|| kill_storm(&server, Duration::from_millis(10), &stop));
        thread::sleep(run_for);
        stop.store(true, Ordering::SeqCst);
        killer.join().unwrap()
    });

    let holds = holds.into_inner();
    let writes = writes.into_inner();
    let count = |kind| writes.get(kind).copied().unwrap_or(0);
    check_mutual_exclusion(&holds).unwrap();
    assert_eq!(
        count("overlap"),
        0,
        "two holders inside at once: {writes:?}"
    );
    let final_value: u64 = FencedResource::read(&mut resource.conn(), "balance")
        .parse()
        .unwrap();
    assert_eq!(
        final_value,
        count("ok"),
        "every accepted write counted once"
    );
    let increments = increments.load(Ordering::Relaxed);
    let client = quick_client(&url);
    let hits = loop {
        match client.counter("hits").get() {
            Ok(value) => break value,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(hits, i64::try_from(increments).unwrap(), "exact count");
    assert!(
        count("ok") > 0 && increments > 0,
        "no progress under the storm"
    );
    eprintln!(
        "reliability: contention+kill-storm clients=8+4 secs={:.1} kill_rounds={rounds} holds={} confirmed={} \
         writes_ok={} stale_refused={} overlaps={} lock_errors={} increments={increments} \
         resent_increments={} counter_final={hits} longest_call_ms={}",
        started.elapsed().as_secs_f64(),
        holds.len(),
        holds.iter().filter(|h| h.confirmed).count(),
        count("ok"),
        count("stale"),
        count("overlap"),
        errors.load(Ordering::Relaxed),
        lost_increments.load(Ordering::Relaxed),
        longest.get().as_millis(),
    );
}

#[test]
fn a_holder_paused_past_its_ttl_is_refused_by_the_resource_and_told_not_held() {
    let server = RedisServer::start();
    let resource = FencedResource::start();
    let paused = PausedHolder::start(&[
        "hold-then-write",
        &server.url(),
        "ledger",
        "300",
        &resource.url(),
        "balance",
    ]);
    let paused_token = paused.token;
    thread::sleep(Duration::from_millis(400)); // past its 300 ms TTL

    let next = quick_client(&server.url())
        .lock("ledger")
        .wait(Duration::from_secs(2))
        .acquire()
        .unwrap();
    assert!(next.fencing_token() > paused_token);
    let mut conn = resource.conn();
    let read = FencedResource::read(&mut conn, "balance");
    let written = FencedResource::write(
        &mut conn,
        "balance",
        next.fencing_token(),
        &read,
        "next-holder",
    );
    assert_eq!(written, FencedWrite::Ok);

    let rest = paused.resume();
    assert_eq!(rest[0], "write Stale", "{rest:?}");
    assert!(
        rest[1].starts_with("extend Err(") && rest[1].contains("no longer held"),
        "{rest:?}"
    );
    assert!(
        rest[2].starts_with("release Err(") && rest[2].contains("no longer held"),
        "{rest:?}"
    );
    assert_eq!(FencedResource::read(&mut conn, "balance"), "next-holder");
    assert!(
        next.is_held().unwrap(),
        "the paused holder touched the new lock"
    );
    eprintln!(
        "reliability: holder-sigstop-past-ttl clients=2 ttl_ms=300 paused_ms=400 stale_refused=1 stale_accepted=0 \
         paused_extend=not-held paused_release=not-held"
    );
}

#[test]
fn every_call_is_bounded_while_the_server_is_paused_and_works_again_after() {
    let server = RedisServer::start();
    let url = server.url();
    let clients: Vec<Client> = (0..4).map(|_| quick_client(&url)).collect();
    for client in &clients {
        client.counter("warm").incr(1).unwrap(); // connections open before the pause
    }
    let longest = Longest::default();
    let pause = Duration::from_millis(1500);
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .exec(&mut server.conn())
        .unwrap();
    let paused_at = Instant::now();
    let outcomes: Vec<String> = thread::scope(|scope| {
        let calls: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let longest = &longest;
                scope.spawn(move || {
                    let result = longest.time(|| match i % 2 {
                        0 => client.lock(format!("p{i}")).acquire().map(drop),
                        _ => client.counter("c").incr(1).map(drop),
                    });
                    match result {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("{e:?}"),
                    }
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    // Every call ended within its response timeout (plus scheduling), each
    // with OutcomeUnknown: the server took the request but did not answer.
    assert!(
        longest.get() < Duration::from_millis(900),
        "a call took {:?}",
        longest.get()
    );
    for outcome in &outcomes {
        assert!(outcome.contains("OutcomeUnknown"), "{outcomes:?}");
    }
    // After the pause every client works again.
    thread::sleep(pause.saturating_sub(paused_at.elapsed()) + Duration::from_millis(50));
    for client in &clients {
        client.counter("after").incr(1).unwrap();
    }
    eprintln!(
        "reliability: client-pause clients=4 pause_ms={} longest_call_ms={} outcome_unknown={} after_pause=ok",
        pause.as_millis(),
        longest.get().as_millis(),
        outcomes.len()
    );
}

/// The SHA1 by which tollgate calls a script built from `parts`.
fn script_sha(parts: &[&str]) -> String {
    redis::Script::new(&parts.concat()).get_hash().to_owned()
}

#[test]
fn lost_replies_to_acquire_claim_and_incr_once_are_resent_and_count_once() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let client = quick_client(&proxy.url());
    let acquire = crate::lock_script_sha(include_str!("../../../host/src/store/lock_acquire.lua"));
    let claim = script_sha(&[
        include_str!("../../../host/src/store/waiters.lua"),
        include_str!("../../../host/src/store/claim_begin.lua"),
    ]);
    let counter_change = script_sha(&[include_str!("../../../host/src/store/counter_incr.lua")]);

    // The scripts are loaded first, so that a lost reply is a lost answer
    // to the script's run, not to the server's NOSCRIPT.
    drop(client.lock("warm").acquire().unwrap());
    drop(client.idempotency("pay").key("warm").begin().unwrap());
    client.counter("warm").incr_once("warm", 1).unwrap();

    // A grant whose reply was lost: the resend finds it ours.
    proxy.fault_replies(&acquire, ReplyFault::Drop, 1);
    let guard = client.lock("l").acquire().unwrap();
    assert_eq!(proxy.faults_applied(), 1);
    let info = quick_client(&server.url()).lock_info("l").unwrap().unwrap();
    assert_eq!(info.fencing_token, guard.fencing_token(), "one grant");
    drop(guard);

    // A claim whose reply was lost: the resend finds it ours.
    proxy.fault_replies(&claim, ReplyFault::Drop, 1);
    let runs = AtomicUsize::new(0);
    client
        .idempotency("pay")
        .key("k")
        .run(|| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(b"v".to_vec())
        })
        .unwrap();
    assert_eq!(proxy.faults_applied(), 2);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // An exactly-once increment whose reply was lost: reported unknown,
    // resent by the caller, applied once.
    proxy.fault_replies(&counter_change, ReplyFault::Drop, 1);
    let counter = client.counter("c");
    let first = counter.incr_once("op-1", 5);
    assert!(
        matches!(first, Err(Error::OutcomeUnknown { .. })),
        "{first:?}"
    );
    let again = counter.incr_once("op-1", 5).unwrap();
    assert_eq!((again.value, again.applied), (5, false));
    assert_eq!(counter.get().unwrap(), 5);

    // A plain increment whose reply was lost is reported, never resent.
    proxy.fault_replies("INCRBY", ReplyFault::Drop, 1);
    let lost = counter.incr(1);
    assert!(
        matches!(lost, Err(Error::OutcomeUnknown { .. })),
        "{lost:?}"
    );
    assert_eq!(counter.get().unwrap(), 6, "applied once, not resent");

    // A reply held back past the response timeout: unknown, bounded.
    proxy.fault_replies("INCRBY", ReplyFault::Hold, 1);
    let started = Instant::now();
    let held = counter.incr(1);
    assert!(
        matches!(
            held,
            Err(Error::OutcomeUnknown {
                timed_out: true,
                ..
            })
        ),
        "{held:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(counter.get().unwrap(), 7);
}

#[test]
fn a_stopped_server_gives_typed_errors_in_time_and_a_restarted_one_serves_again() {
    let mut server = RedisServer::start();
    let client = quick_client(&server.url());
    let guard = client
        .lock("g")
        .ttl(Duration::from_secs(5))
        .watchdog()
        .acquire()
        .unwrap();
    server.pause();
    let longest = Longest::default();
    for _ in 0..3 {
        let result = longest.time(|| client.counter("c").incr(1));
        let err = result.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
    assert!(
        longest.get() < Duration::from_millis(900),
        "{:?}",
        longest.get()
    );
    server.resume();
    server.kill();
    let refused = client.counter("c").incr(1).unwrap_err();
    assert!(refused.is_retryable(), "{refused:?}");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.counter("c").incr(1) {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("not serving again: {e}"),
        }
    }
    assert!(guard.is_lost(), "the restarted server forgot the lock");
    assert!(matches!(guard.release(), Err(Error::NotHeld { .. })));
    eprintln!(
        "reliability: sigstop+kill+restart clients=1 longest_call_ms={} after_restart=ok guard_lost=true",
        longest.get().as_millis()
    );
}

#[test]
fn a_busy_script_is_refused_quickly_and_calls_recover_after_it_is_killed() {
    let server = RedisServer::builder()
        .args(["--busy-reply-threshold", "100"])
        .start();
    let client = quick_client(&server.url());
    client.counter("c").incr(1).unwrap();
    let url = server.url();
    let busy = thread::spawn(move || {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _ = redis::cmd("EVAL")
            .arg("local i = 0 while true do i = i + 1 end")
            .arg(0)
            .exec(&mut conn);
    });
    thread::sleep(Duration::from_millis(300)); // past the busy threshold
    let err = client.counter("c").incr(1).unwrap_err();
    assert!(
        matches!(&err, Error::Refused { code, .. } if code == "BUSY"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let err = client.lock("l").acquire().unwrap_err();
    assert!(
        matches!(&err, Error::Refused { code, .. } if code == "BUSY"),
        "{err:?}"
    );
    redis::cmd("SCRIPT")
        .arg("KILL")
        .exec(&mut server.conn())
        .unwrap();
    busy.join().unwrap();
    assert_eq!(
        client.counter("c").incr(1).unwrap(),
        2,
        "the refused increment changed nothing"
    );
    assert!(client.lock("l").try_acquire().unwrap().is_some());
}

#[test]
fn a_server_at_maxclients_is_unavailable_not_a_panic() {
    let server = RedisServer::builder().args(["--maxclients", "1"]).start();
    // Take the only place: the kit's own readiness probe may still hold it
    // for a moment after the start, so try until the server lets us in.
    let deadline = Instant::now() + Duration::from_secs(5);
    let _only = loop {
        let attempt = redis::Client::open(server.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn).map(|_| conn));
        match attempt {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot take the server's only connection: {e}"),
        }
    };
    let client = quick_client(&server.url());
    let err = client.counter("c").incr(1).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("max number of clients"), "{err}");
}

#[test]
fn fifty_concurrent_duplicates_on_a_hundred_keys_run_each_action_once() {
    let server = RedisServer::start();
    let url = server.url();
    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..100).map(|_| AtomicUsize::new(0)).collect());
    thread::scope(|scope| {
        for caller in 0..50usize {
            let (url, runs) = (&url, &runs);
            scope.spawn(move || {
                let client = Client::builder(url.as_str())
                    .max_connections(2)
                    .build()
                    .unwrap();
                let orders = client.idempotency("orders");
                for k in 0..100usize {
                    let key = (k + caller * 7) % 100; // every caller in its own order
                    let out = orders
                        .key(format!("order-{key}"))
                        .on_duplicate(Duplicate::Wait(Duration::from_secs(20)))
                        .run(|| {
                            runs[key].fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::io::Error>(format!("done-{key}").into_bytes())
                        })
                        .unwrap();
                    assert_eq!(out.value, format!("done-{key}").into_bytes());
                }
            });
        }
    });
    for (key, runs) in runs.iter().enumerate() {
        assert_eq!(runs.load(Ordering::SeqCst), 1, "order-{key}");
    }
    eprintln!("reliability: duplicates callers=50 keys=100 executions_per_key=1");
}

#[test]
fn a_server_loading_its_data_refuses_with_a_retryable_error_and_serves_after() {
    let mut server = RedisServer::builder()
        .args(["--enable-debug-command", "yes"])
        .start();
    let mut admin = server.conn();
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(1_000_000)
        .exec(&mut admin)
        .unwrap();
    redis::cmd("SAVE").exec(&mut admin).unwrap(); // loaded again at restart
    drop(admin);
    let client = quick_client(&server.url());
    let loading_seen = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let caller = scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                match client.counter("c").incr(1) {
                    Err(Error::Refused { code, .. }) if code == "LOADING" => {
                        loading_seen.store(true, Ordering::SeqCst);
                    }
                    Err(e) => assert!(e.is_retryable(), "{e:?}"),
                    Ok(_) => {}
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        server.restart(); // returns once loaded
        let served = client.counter("c").incr(1);
        stop.store(true, Ordering::SeqCst);
        caller.join().unwrap();
        assert!(served.is_ok(), "{served:?}");
    });
    assert!(
        loading_seen.load(Ordering::SeqCst),
        "no call met the server while it loaded"
    );
}
