//! Locks: exclusion, ownership checks, expiry, fencing, watchdog, bad input.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::{Error, LockGuard, LockOptions, MAX_NAME_BYTES};
use tollgate_tests::RedisServer;

use crate::{Backend, client, conformance, raw_lock, spawn_helper};

// Run against both stores; the `#[test]`s in this file need Redis itself.
conformance![
    sixteen_threads_never_hold_the_lock_at_once,
    expired_guard_cannot_extend_or_release_the_next_holders_lock,
    release_and_extend_by_a_non_owner_are_refused_and_change_nothing,
    dropping_a_guard_frees_the_lock_at_once,
    watchdog_keeps_a_one_second_lock_for_four_seconds,
    watchdog_reports_a_lock_taken_away,
    fencing_tokens_strictly_increase_over_1000_grants_by_4_clients,
    fencing_token_keeps_growing_after_its_counter_expires,
    same_thread_asking_again_gets_would_deadlock,
    with_lock_releases_after_the_work_and_after_a_panic,
    lock_info_shows_holder_token_and_ttl_but_not_the_owner_token,
    bad_lock_input_gets_a_typed_error,
    different_names_do_not_exclude_each_other,
    extend_on_a_watched_guard_sets_the_ttl_the_watchdog_renews_with,
    is_lost_turns_true_at_the_local_deadline_without_asking_redis,
    held_locks_can_be_listed_by_pattern,
];

fn sixteen_threads_never_hold_the_lock_at_once(backend: &Backend) {
    let clients: Vec<_> = (0..4).map(|_| backend.client()).collect();
    let inside = Arc::new(AtomicBool::new(false));
    // Updated with a separate load and store: exact only under exclusion.
    let counter = Arc::new(AtomicU64::new(0));
    let grants = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(2);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let client = clients[i % 4].clone();
            let (inside, counter, grants) = (inside.clone(), counter.clone(), grants.clone());
            thread::spawn(move || {
                while Instant::now() < end {
                    let guard = client
                        .lock("shared")
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(10))
                        .acquire()
                        .expect("granted within the wait");
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    let seen = counter.load(Ordering::SeqCst);
                    thread::yield_now();
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.store(false, Ordering::SeqCst);
                    grants.fetch_add(1, Ordering::SeqCst);
                    guard.release().expect("still held at release");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread");
    }
    let grants = grants.load(Ordering::SeqCst);
    assert!(grants >= 16, "only {grants} grants in 2 s");
    assert_eq!(counter.load(Ordering::SeqCst), grants);
}

/// A guard that lost its lock is refused on extend and release, and the
/// current holder's record (on Redis, with its owner token) and TTL (at most
/// `holder_ttl`) stay as they were.
fn assert_stale_guard_changes_nothing(
    backend: &Backend,
    stale: LockGuard,
    name: &str,
    holder_ttl: Duration,
) {
    let client = backend.client();
    let info = client.lock_info(name).unwrap().expect("somebody holds it");
    let raw = backend.server().map(|server| raw_lock(server, name));
    let refused = stale.extend(Duration::from_secs(60));
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    assert!(stale.is_lost());
    let refused = stale.release();
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    let after = client.lock_info(name).unwrap().expect("still held");
    assert_eq!(
        (after.fencing_token, &after.holder),
        (info.fencing_token, &info.holder),
        "the holder's record changed"
    );
    if let Some(server) = backend.server() {
        assert_eq!(Some(raw_lock(server, name)), raw, "the raw record changed");
    }
    let ttl = after.remaining_ttl.expect("has a TTL");
    assert!(
        !ttl.is_zero() && ttl <= holder_ttl,
        "the holder's TTL became {ttl:?}"
    );
}

fn expired_guard_cannot_extend_or_release_the_next_holders_lock(backend: &Backend) {
    let (a, b) = (backend.client(), backend.client());
    let old = a
        .lock("job")
        .ttl(Duration::from_millis(200))
        .acquire()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let new = b
        .lock("job")
        .ttl(Duration::from_secs(10))
        .acquire()
        .expect("free after the TTL");
    assert!(new.fencing_token() > old.fencing_token());
    assert_stale_guard_changes_nothing(backend, old, "job", Duration::from_secs(10));
    assert!(new.is_held().unwrap());
    new.release().expect("new holder releases");
}

fn release_and_extend_by_a_non_owner_are_refused_and_change_nothing(backend: &Backend) {
    let (a, b) = (backend.client(), backend.client());
    let stale = a
        .lock("res")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    assert!(a.force_unlock("res").unwrap());
    let owner = b.lock("res").ttl(Duration::from_secs(5)).acquire().unwrap();
    assert!(!stale.is_held().unwrap());
    assert_eq!(stale.remaining_ttl().unwrap(), None);
    assert_stale_guard_changes_nothing(backend, stale, "res", Duration::from_secs(5));
    assert!(owner.is_held().unwrap());
}

fn dropping_a_guard_frees_the_lock_at_once(backend: &Backend) {
    let client = backend.client();
    let guard = client.lock("drop").acquire().unwrap();
    drop(guard);
    assert_eq!(client.lock_info("drop").unwrap(), None);
    assert!(client.lock("drop").try_acquire().unwrap().is_some());
}

fn watchdog_keeps_a_one_second_lock_for_four_seconds(backend: &Backend) {
    let (a, b) = (backend.client(), backend.client());
    let guard = a
        .lock("long")
        .ttl(Duration::from_secs(1))
        .watchdog()
        .acquire()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        assert!(
            b.lock("long").try_acquire().unwrap().is_none(),
            "lock lapsed"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(guard.is_held().unwrap());
    assert!(!guard.is_lost());
    drop(guard);
    assert!(
        b.lock("long").try_acquire().unwrap().is_some(),
        "not freed on drop"
    );
}

fn watchdog_reports_a_lock_taken_away(backend: &Backend) {
    let (a, b) = (backend.client(), backend.client());
    let lost = Arc::new(Mutex::new(Vec::new()));
    let seen = lost.clone();
    let guard = a
        .lock("taken")
        .ttl(Duration::from_millis(300))
        .on_lost(move |name| seen.lock().push(name.to_owned()))
        .acquire()
        .unwrap();
    assert!(b.force_unlock("taken").unwrap());
    let _thief = b
        .lock("taken")
        .ttl(Duration::from_secs(10))
        .acquire()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !guard.is_lost() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(guard.is_lost(), "watchdog did not notice");
    assert_eq!(*lost.lock(), vec!["taken".to_owned()]);
    assert!(matches!(
        guard.extend(Duration::from_secs(1)),
        Err(Error::NotHeld { .. })
    ));
}

#[test]
fn lock_of_a_killed_holder_process_frees_after_its_ttl() {
    let server = RedisServer::start();
    let (mut child, line) = spawn_helper(&["hold-lock", &server.url(), "crash", "1000"]);
    assert!(line.starts_with("granted "), "helper said {line:?}");
    let killed_at = Instant::now();
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();

    let client = client(&server);
    assert!(
        client.lock("crash").try_acquire().unwrap().is_none(),
        "freed without its TTL"
    );
    let guard = client
        .lock("crash")
        .wait(Duration::from_secs(5))
        .acquire()
        .expect("freed by TTL");
    let waited = killed_at.elapsed();
    assert!(
        waited < Duration::from_millis(1900),
        "took {waited:?} for a 1 s TTL"
    );
    let theirs: u64 = line["granted ".len()..].parse().unwrap();
    assert!(guard.fencing_token() > theirs);
}

fn fencing_tokens_strictly_increase_over_1000_grants_by_4_clients(backend: &Backend) {
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(1000)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = backend.client();
            let tokens = tokens.clone();
            thread::spawn(move || {
                for _ in 0..250 {
                    let guard = client
                        .lock("fenced")
                        .wait(Duration::from_secs(10))
                        .acquire()
                        .unwrap();
                    // Recorded inside the lock, so the list is in grant order.
                    tokens.lock().push(guard.fencing_token());
                    guard.release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let tokens = tokens.lock();
    assert_eq!(tokens.len(), 1000);
    for pair in tokens.windows(2) {
        assert!(
            pair[0] < pair[1],
            "token went from {} to {}",
            pair[0],
            pair[1]
        );
    }
}

fn fencing_token_keeps_growing_after_its_counter_expires(backend: &Backend) {
    // The counter outlives the lock by 1 ms only.
    let client = backend
        .builder()
        .fence_retention(Duration::from_millis(1))
        .build()
        .unwrap();
    let first = client
        .lock("f")
        .ttl(Duration::from_millis(100))
        .acquire()
        .unwrap();
    let token = first.fencing_token();
    first.release().unwrap();
    thread::sleep(Duration::from_millis(200));
    if let Some(server) = backend.server() {
        let exists: i64 = redis::cmd("EXISTS")
            .arg("tollgate:lock:{f}")
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(exists, 0, "the fencing counter did not expire");
    }
    let second = client.lock("f").acquire().unwrap();
    assert!(second.fencing_token() > token);
}

fn same_thread_asking_again_gets_would_deadlock(backend: &Backend) {
    let client = backend.client();
    let guard = client.lock("mine").acquire().unwrap();
    let again = client.lock("mine").wait(Duration::from_secs(5)).acquire();
    assert!(
        matches!(again, Err(Error::WouldDeadlock { .. })),
        "{again:?}"
    );
    // Another thread is an ordinary contender.
    let other = client.clone();
    let refused = thread::spawn(move || other.lock("mine").try_acquire().unwrap().is_none());
    assert!(refused.join().unwrap());
    guard.release().unwrap();
    assert!(client.lock("mine").try_acquire().unwrap().is_some());
}

fn with_lock_releases_after_the_work_and_after_a_panic(backend: &Backend) {
    let client = backend.client();
    let token = client
        .with_lock("w", LockOptions::new(), |g| g.fencing_token())
        .unwrap();
    assert!(token > 0);
    assert_eq!(client.lock_info("w").unwrap(), None);

    let c = client.clone();
    let panicked = thread::spawn(move || {
        c.with_lock("w", LockOptions::new(), |_| panic!("work failed"))
            .ok();
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(
        client.lock_info("w").unwrap(),
        None,
        "panic left the lock behind"
    );
}

fn lock_info_shows_holder_token_and_ttl_but_not_the_owner_token(backend: &Backend) {
    let client = backend.builder().client_name("billing").build().unwrap();
    assert_eq!(client.lock_info("inv").unwrap(), None);
    let guard = client
        .lock("inv")
        .ttl(Duration::from_secs(20))
        .acquire()
        .unwrap();
    let info = client.lock_info("inv").unwrap().expect("held");
    assert_eq!(info.name, "inv");
    assert_eq!(info.fencing_token, guard.fencing_token());
    assert!(info.holder.starts_with("billing pid "), "{}", info.holder);
    // Without a client name, the holder is named after the program (this
    // test binary, `integration-<hash>`).
    let unnamed = backend.client();
    let _other = unnamed.lock("inv-2").acquire().unwrap();
    let holder = unnamed.lock_info("inv-2").unwrap().expect("held").holder;
    assert!(holder.starts_with("integration"), "{holder}");
    let ttl = info.remaining_ttl.expect("has a TTL");
    assert!(ttl > Duration::from_secs(19) && ttl <= Duration::from_secs(20));
    assert!(client.force_unlock("inv").unwrap());
    assert!(!client.force_unlock("inv").unwrap());
    assert!(!guard.is_held().unwrap());
}

#[test]
fn every_key_a_lock_leaves_behind_expires() {
    let server = RedisServer::start();
    let client = client(&server);
    let holder = client.lock("k").acquire().unwrap();
    let c = client.clone();
    // A waiter that gives up leaves its marker; it must expire too.
    thread::spawn(move || {
        c.lock("k")
            .wait(Duration::from_millis(100))
            .try_acquire()
            .unwrap()
    })
    .join()
    .unwrap();
    holder.release().unwrap();
    let mut conn = server.conn();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(pttl > 0, "{key} has no TTL ({pttl})");
    }
}

fn bad_lock_input_gets_a_typed_error(backend: &Backend) {
    let client = backend.client();
    let invalid = |r: tollgate::Result<_>, what: &str| match r {
        Err(Error::InvalidArgument { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected invalid {what}, got {other:?}"),
    };
    invalid(client.lock("").acquire().map(drop), "lock name");
    invalid(
        client
            .lock("x".repeat(MAX_NAME_BYTES + 1))
            .acquire()
            .map(drop),
        "lock name",
    );
    invalid(
        client.lock("n").ttl(Duration::ZERO).acquire().map(drop),
        "ttl",
    );
    invalid(
        client
            .lock("n")
            .ttl(Duration::from_micros(500))
            .acquire()
            .map(drop),
        "ttl",
    );
    invalid(
        client
            .lock("n")
            .ttl(Duration::from_secs(25 * 3600))
            .acquire()
            .map(drop),
        "ttl",
    );
    invalid(
        client
            .lock("n")
            .wait(Duration::from_secs(7200))
            .acquire()
            .map(drop),
        "wait",
    );
    invalid(
        client
            .lock("n")
            .ttl(Duration::from_millis(50))
            .watchdog()
            .acquire()
            .map(drop),
        "ttl",
    );
    invalid(client.lock_info("").map(drop), "lock name");
    invalid(client.force_unlock("").map(drop), "lock name");
    let guard = client.lock("n").acquire().unwrap();
    invalid(guard.extend(Duration::ZERO), "ttl");
    invalid(guard.extend(Duration::MAX), "ttl");
    // The longest name is fine, and nothing above reached Redis.
    assert!(
        client
            .lock("x".repeat(MAX_NAME_BYTES))
            .try_acquire()
            .unwrap()
            .is_some()
    );
    assert!(guard.is_held().unwrap());
}

#[test]
fn foreign_values_under_lock_keys_give_wrong_type_and_stay_untouched() {
    let server = RedisServer::start();
    let client = client(&server);
    let mut conn = server.conn();
    let cases: [(&str, &[&str]); 4] = [
        ("str", &["SET", "tollgate:lock:{str}", "hello"]),
        ("hash", &["HSET", "tollgate:lock:{hash}", "a", "b"]),
        ("fence", &["SET", "tollgate:lock:{fence}", "abc"]),
        ("half", &["SET", "tollgate:lock:{half}", "12 34"]),
    ];
    for (name, plant) in cases {
        let mut cmd = redis::cmd(plant[0]);
        for arg in &plant[1..] {
            cmd.arg(*arg);
        }
        let _: () = cmd.query(&mut conn).unwrap();
        let dump = |conn: &mut redis::Connection| -> Vec<u8> {
            redis::cmd("DUMP").arg(plant[1]).query(conn).unwrap()
        };
        let before = dump(&mut conn);
        let err = client.lock(name).acquire().unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{name}: {err:?}");
        assert_eq!(dump(&mut conn), before, "{name}: the foreign value changed");
    }
    assert!(
        raw_lock(&server, "fence").is_none(),
        "lock granted over a bad counter"
    );
}

/// A release writes the released value first and puts back what it found
/// when the grant is not the caller's: these check that nothing it found
/// changes, its TTL included, and that no key is left where there was none.
#[test]
fn a_release_that_finds_a_foreign_value_gives_wrong_type_and_leaves_it_as_it_was() {
    let server = RedisServer::start();
    let client = client(&server);
    let mut conn = server.conn();
    let plants: [(&str, &[&str]); 3] = [
        ("str", &["SET", "hello", "PX", "60000"]),
        ("half", &["SET", "12 34", "PX", "60000"]),
        ("hash", &["HSET", "a", "b"]),
    ];
    for (name, plant) in plants {
        let key = format!("tollgate:lock:{{{name}}}");
        let guard = client.lock(name).acquire().unwrap();
        let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
        let _: () = redis::cmd(plant[0])
            .arg(&key)
            .arg(&plant[1..])
            .query(&mut conn)
            .unwrap();
        let dump = |conn: &mut redis::Connection| -> Vec<u8> {
            redis::cmd("DUMP").arg(&key).query(conn).unwrap()
        };
        let pttl = |conn: &mut redis::Connection| -> i64 {
            redis::cmd("PTTL").arg(&key).query(conn).unwrap()
        };
        let (before, ttl_before) = (dump(&mut conn), pttl(&mut conn));
        let err = guard.release().unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{name}: {err:?}");
        assert_eq!(dump(&mut conn), before, "{name}: the value changed");
        let ttl_after = pttl(&mut conn);
        assert!(
            (ttl_before < 0 && ttl_after == ttl_before)
                || (ttl_after > 0 && ttl_after <= ttl_before),
            "{name}: the TTL went from {ttl_before} to {ttl_after}"
        );
    }
}

#[test]
fn a_release_the_server_refuses_to_write_is_not_held_for_a_stale_guard_and_refused_for_the_holder()
{
    let server = RedisServer::start();
    let (a, b) = (client(&server), client(&server));
    let stale = a.lock("ro").acquire().unwrap();
    assert!(a.force_unlock("ro").unwrap());
    let holder = b.lock("ro").acquire().unwrap();
    let granted = raw_lock(&server, "ro").expect("granted");
    let mut conn = server.conn();
    // Every write refused from here on (NOREPLICAS): as a demoted master
    // (READONLY) or a full noeviction server (OOM) would.
    let set = |conn: &mut redis::Connection, replicas: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(replicas)
            .query(conn)
            .unwrap();
    };
    set(&mut conn, "1");
    let refused = stale.release();
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    let refused = holder.release();
    assert!(
        matches!(&refused, Err(Error::Refused { code, .. }) if code == "NOREPLICAS"),
        "{refused:?}"
    );
    set(&mut conn, "0");
    assert_eq!(raw_lock(&server, "ro"), Some(granted), "the record changed");
}

#[test]
fn a_release_after_the_lock_key_vanished_says_not_held_and_leaves_no_key() {
    let server = RedisServer::start();
    let client = client(&server);
    let mut conn = server.conn();
    let guard = client.lock("gone").acquire().unwrap();
    // As if evicted, or flushed by an operator.
    let _: () = redis::cmd("DEL")
        .arg("tollgate:lock:{gone}")
        .query(&mut conn)
        .unwrap();
    let refused = guard.release();
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[test]
fn a_release_after_the_ttl_says_not_held_though_nobody_took_the_lock() {
    let server = RedisServer::start();
    let client = client(&server);
    let guard = client
        .lock("late")
        .ttl(Duration::from_millis(200))
        .acquire()
        .unwrap();
    let granted = raw_lock(&server, "late").expect("granted");
    thread::sleep(Duration::from_millis(300));
    // The guard's own clock says its lease ended: the server's decides.
    let refused = guard.release();
    assert!(matches!(refused, Err(Error::NotHeld { .. })), "{refused:?}");
    assert_eq!(
        raw_lock(&server, "late"),
        Some(granted),
        "the record changed"
    );
    let next = client.lock("late").try_acquire().unwrap().expect("free");
    next.release().unwrap();
}

#[test]
fn scripts_are_reloaded_after_script_flush() {
    let server = RedisServer::start();
    let client = client(&server);
    client.lock("s").acquire().unwrap().release().unwrap();
    let mut conn = server.conn();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    client.lock("s").acquire().unwrap().release().unwrap();
}

fn different_names_do_not_exclude_each_other(backend: &Backend) {
    let client = backend.client();
    let a = client.lock("user:1").acquire().unwrap();
    let b = client.lock("user:2").try_acquire().unwrap();
    assert!(b.is_some(), "user:2 refused while user:1 was held");
    a.release().unwrap();
}

fn extend_on_a_watched_guard_sets_the_ttl_the_watchdog_renews_with(backend: &Backend) {
    let client = backend.client();
    let guard = client
        .lock("ext")
        .ttl(Duration::from_millis(300))
        .watchdog()
        .acquire()
        .unwrap();
    guard.extend(Duration::from_secs(6)).unwrap();
    thread::sleep(Duration::from_millis(2500)); // past the first renewal at 2 s
    let left = guard.remaining_ttl().unwrap().expect("held");
    assert!(
        left > Duration::from_secs(3),
        "watchdog renewed with the old TTL: {left:?} left"
    );
}

fn is_lost_turns_true_at_the_local_deadline_without_asking_redis(backend: &Backend) {
    let client = backend.client();
    let guard = client
        .lock("dl")
        .ttl(Duration::from_millis(200))
        .acquire()
        .unwrap();
    assert!(!guard.is_lost());
    thread::sleep(Duration::from_millis(250));
    assert!(guard.is_lost());
    assert!(!guard.is_held().unwrap());
}

/// Runs the helper's `thread-count-after-drop` on `url`: the `tollgate-*`
/// threads running while the client works, and those left after its drop.
fn threads_while_running_and_after_drop(url: &str) -> (usize, usize) {
    let output = Command::new(env!("CARGO_BIN_EXE_tollgate-test-helper"))
        .args(["thread-count-after-drop", url])
        .output()
        .expect("helper runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "helper failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let count = |prefix: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .parse()
            .unwrap()
    };
    (count("running "), count("left "))
}

#[test]
fn a_dropped_client_leaves_no_threads_behind() {
    let server = RedisServer::start();
    let (running, left) = threads_while_running_and_after_drop(&server.url());
    assert!(
        running >= 2,
        "expected notify and watchdog threads, saw {running}"
    );
    assert_eq!(
        left, 0,
        "threads still running after the client was dropped"
    );
}

#[test]
fn an_in_memory_client_runs_only_the_watchdog_threads() {
    let (running, left) = threads_while_running_and_after_drop("memory");
    assert_eq!(
        running, 2,
        "expected the watchdog's scheduling and renewing threads only"
    );
    assert_eq!(
        left, 0,
        "threads still running after the client was dropped"
    );
}

fn held_locks_can_be_listed_by_pattern(backend: &Backend) {
    let client = backend.client();
    let _a = client.lock("orders:1").acquire().unwrap();
    let _b = client.lock("orders:2").acquire().unwrap();
    let _c = client.lock("users:1").acquire().unwrap();
    let mut names: Vec<String> = client
        .locks("orders:*", 100)
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    assert_eq!(names, ["orders:1", "orders:2"]);
    assert_eq!(
        client.locks("*", 100).unwrap().len(),
        3,
        "fence and waiter keys are not locks"
    );
    assert_eq!(client.locks("*", 2).unwrap().len(), 2);
    assert!(client.locks("none:*", 100).unwrap().is_empty());
}
