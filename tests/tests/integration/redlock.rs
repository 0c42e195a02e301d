//! Redlock over 3 and 5 independent local masters: exclusion with growing
//! fencing tokens, masters stopped or down, a master restarted empty inside
//! a TTL (with and without the restart delay), and watchdog renewal.

use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::{Client, Error, Redlock};
use tollgate_tests::RedisServer;
use tollgate_tests::fenced::{FencedResource, FencedWrite};

fn masters(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

fn redlock_on(servers: &[RedisServer]) -> Redlock {
    Redlock::new(servers.iter().map(|server| {
        Client::builder(server.url())
            .connect_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    }))
    .unwrap()
}

#[test]
fn three_masters_give_one_holder_at_a_time_with_growing_tokens() {
    let servers = masters(3);
    let resource = FencedResource::start();
    let writes = Mutex::new(0);
    thread::scope(|scope| {
        for _ in 0..4 {
            let (servers, resource, writes) = (&servers, &resource, &writes);
            scope.spawn(move || {
                let redlock = redlock_on(servers);
                let mut conn = resource.conn();
                for _ in 0..25 {
                    let guard = redlock
                        .lock("ledger")
                        .ttl(Duration::from_secs(5))
                        .wait(Duration::from_secs(10))
                        .acquire()
                        .unwrap();
                    let written = increment_under_redlock(guard, &mut conn, "balance");
                    assert_eq!(written, FencedWrite::Ok, "two holders at once");
                    *writes.lock() += 1;
                }
            });
        }
    });
    assert_eq!(*writes.lock(), 100);
    assert_eq!(FencedResource::read(&mut resource.conn(), "balance"), "100");
}

/// A critical section under a Redlock guard, through the kit's fenced
/// resource: read, write + 1 with the guard's token, release.
fn increment_under_redlock(
    guard: tollgate::RedlockGuard,
    conn: &mut redis::Connection,
    record: &str,
) -> FencedWrite {
    let read = FencedResource::read(conn, record);
    let next = read.parse::<u64>().unwrap_or(0) + 1;
    let written = FencedResource::write(
        conn,
        record,
        guard.fencing_token(),
        &read,
        &next.to_string(),
    );
    guard.release().unwrap();
    written
}

#[test]
fn tokens_never_go_backwards_across_grants_by_different_majorities() {
    let servers = masters(3);
    let redlock = redlock_on(&servers);
    let mut last = 0;
    for round in 0..30 {
        // Every ten grants another master is stopped: the majorities
        // change, the tokens still grow.
        if round % 10 == 0 {
            if round > 0 {
                servers[round / 10 - 1].resume();
            }
            if round < 30 {
                servers[round / 10].pause();
            }
        }
        // A resumed master may run a grant it had queued while stopped (a
        // stale grant): the wait outlasts its short TTL.
        let guard = redlock
            .lock("t")
            .ttl(Duration::from_secs(1))
            .wait(Duration::from_secs(3))
            .node_timeout(Duration::from_millis(50))
            .acquire()
            .unwrap();
        assert!(
            guard.fencing_token() > last,
            "round {round}: {} after {last}",
            guard.fencing_token()
        );
        last = guard.fencing_token();
        guard.release().ok();
    }
    servers[2].resume();
}

#[test]
fn one_master_stopped_still_grants_and_excludes() {
    let servers = masters(3);
    servers[2].pause();
    let redlock = redlock_on(&servers);
    let started = Instant::now();
    let guard = redlock
        .lock("job")
        .ttl(Duration::from_secs(5))
        .acquire()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let rival = redlock_on(&servers);
    let other = thread::spawn(move || {
        rival
            .lock("job")
            .ttl(Duration::from_secs(5))
            .try_acquire()
            .map(|g| g.is_some())
    });
    assert!(
        !other.join().unwrap().unwrap(),
        "held by the first on 2 of 3"
    );
    guard.release().unwrap();
    servers[2].resume();
}

#[test]
fn threads_sharing_a_redlock_do_not_queue_behind_a_stopped_master() {
    let servers = masters(3);
    servers[2].pause();
    let redlock = redlock_on(&servers);
    // Each round waits out the stopped master (250 ms); were the rounds of
    // these threads asked one after another, 8 acquires and 8 releases
    // would take 4 s.
    let started = Instant::now();
    thread::scope(|scope| {
        for i in 0..8 {
            let redlock = redlock.clone();
            scope.spawn(move || {
                let guard = redlock
                    .lock(format!("job-{i}"))
                    .ttl(Duration::from_secs(5))
                    .acquire()
                    .expect("a majority grants");
                guard.release().expect("a majority releases");
            });
        }
    });
    let took = started.elapsed();
    servers[2].resume();
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[test]
fn two_of_three_masters_down_is_no_quorum_within_the_deadline() {
    let mut servers = masters(3);
    servers[0].kill();
    servers[1].kill();
    let redlock = redlock_on(&servers);
    let started = Instant::now();
    let err = redlock
        .lock("job")
        .ttl(Duration::from_secs(5))
        .wait(Duration::from_millis(500))
        .acquire()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::NoQuorum {
            needed: 2,
            granted: 1,
            failed: 2,
            refused: 0,
            ..
        } => {}
        other => panic!("expected NoQuorum, got {other:?}"),
    }
    assert!(err.to_string().contains("masters failed"), "{err}");
    assert!(err.is_retryable());
    // What the failed attempt was granted was given back.
    assert_eq!(crate::raw_lock(&servers[2], "job"), None);
}

#[test]
fn a_lock_held_elsewhere_is_reported_with_its_votes() {
    let servers = masters(3);
    let holder = redlock_on(&servers);
    let _held = holder
        .lock("job")
        .ttl(Duration::from_secs(5))
        .acquire()
        .unwrap();
    let rival = redlock_on(&servers);
    let err = rival.lock("job").acquire().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoQuorum {
                granted: 0,
                refused: 3,
                failed: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("held by another owner"), "{err}");
}

#[test]
fn five_masters_tolerate_two_failures() {
    let mut servers = masters(5);
    servers[0].kill();
    servers[3].pause();
    let redlock = redlock_on(&servers);
    assert_eq!(redlock.quorum(), 3);
    let guard = redlock
        .lock("job")
        .ttl(Duration::from_secs(5))
        .acquire()
        .unwrap();
    let rival = redlock_on(&servers);
    assert!(rival.lock("job").try_acquire().unwrap().is_none());
    guard.release().unwrap();
    servers[3].resume();
}

/// A holder granted by masters 0 and 1 (master 2 stopped); master 1 then
/// restarts empty while the lock is held.
fn held_then_master_restarted_empty(
    servers: &mut [RedisServer],
    rival: &Redlock,
) -> tollgate::RedlockGuard {
    // The rival knows every master before the restart (as a long-running
    // service would).
    rival
        .lock("warm-up")
        .ttl(Duration::from_secs(10))
        .acquire()
        .unwrap()
        .release()
        .unwrap();
    servers[2].pause();
    let holder = redlock_on(servers);
    let held = holder
        .lock("job")
        .ttl(Duration::from_secs(10))
        .acquire()
        .unwrap();
    servers[2].resume();
    servers[1].restart(); // no persistence: it forgot the grant
    held
}

#[test]
fn a_master_restarted_empty_can_give_a_second_holder_without_the_restart_delay() {
    let mut servers = masters(3);
    let rival = redlock_on(&servers).restart_delay(Duration::ZERO);
    let held = held_then_master_restarted_empty(&mut servers, &rival);
    // Masters 1 (empty) and 2 (never had it) make a second majority.
    let second = rival
        .lock("job")
        .ttl(Duration::from_secs(10))
        .try_acquire()
        .unwrap();
    assert!(second.is_some(), "the documented double grant");
    drop(held);
}

#[test]
fn a_master_restarted_empty_does_not_vote_during_the_restart_delay() {
    let mut servers = masters(3);
    let rival = redlock_on(&servers); // default delay: the longest TTL it granted (10 s)
    let held = held_then_master_restarted_empty(&mut servers, &rival);
    let second = rival.lock("job").ttl(Duration::from_secs(10)).try_acquire();
    match second {
        Ok(None) | Err(Error::NoQuorum { .. }) => {}
        Ok(Some(_)) => panic!("a restarted master helped grant a held lock"),
        Err(other) => panic!("{other:?}"),
    }
    drop(held);
}

#[test]
fn the_watchdog_renews_a_redlock_on_a_majority() {
    let servers = masters(3);
    let redlock = redlock_on(&servers);
    let guard = redlock
        .lock("job")
        .ttl(Duration::from_millis(600))
        .watchdog()
        .acquire()
        .unwrap();
    thread::sleep(Duration::from_millis(1800));
    assert!(!guard.is_lost());
    assert!(
        redlock_on(&servers)
            .lock("job")
            .try_acquire()
            .unwrap()
            .is_none()
    );
    guard.extend(Duration::from_secs(2)).unwrap();
    guard.release().unwrap();
    assert!(
        redlock_on(&servers)
            .lock("job")
            .try_acquire()
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_stalled_master_does_not_cost_the_leases_the_others_keep_alive() {
    // Each renewal of a Redlock waits for the stalled master until its
    // round ends (a tenth of the TTL): renewed one after another, twelve of
    // them outlast the 1.5 s leases.
    let servers = masters(3);
    let redlock = redlock_on(&servers);
    let guards: Vec<_> = (0..12)
        .map(|i| {
            redlock
                .lock(format!("job-{i}"))
                .ttl(Duration::from_millis(1500))
                .watchdog()
                .acquire()
                .unwrap()
        })
        .collect();
    servers[0].pause();
    thread::sleep(Duration::from_secs(4));
    let lost = guards.iter().filter(|guard| guard.is_lost()).count();
    servers[0].resume();
    assert_eq!(lost, 0, "leases lost while a majority answered");
    for guard in guards {
        guard.release().unwrap();
    }
}
