//! Faults of real deployments: evicting servers, lost replies, a full
//! server, wrong credentials, ACLs without channel access, foreign data, a
//! restarted server. Each test fails on a version of tollgate that gets the
//! fault wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tollgate::{Client, Duplicate, Error, LockGuard, Notifications, RunError};
use tollgate_tests::{FaultProxy, RedisServer, ReplyFault};

use crate::{client, raw_lock};

/// The SHA1 by which tollgate calls one of its scripts.
fn script_sha(source: &str) -> String {
    redis::Script::new(source).get_hash().to_owned()
}

fn release_sha() -> String {
    crate::lock_script_sha(include_str!("../../../host/src/store/lock_release.lua"))
}

fn claim_finish_sha() -> String {
    script_sha(include_str!("../../../host/src/store/claim_finish.lua"))
}

fn dbsize(server: &RedisServer) -> u64 {
    redis::cmd("DBSIZE").query(&mut server.conn()).unwrap()
}

/// A client through `proxy` with test timeouts.
fn proxied(proxy: &FaultProxy) -> Client {
    Client::builder(proxy.url())
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

#[test]
fn a_server_that_may_evict_keys_is_refused_before_anything_is_written() {
    for policy in [
        "allkeys-lru",
        "volatile-lru",
        "allkeys-random",
        "volatile-ttl",
    ] {
        let server = RedisServer::builder()
            .args(["--maxmemory", "100mb", "--maxmemory-policy", policy])
            .start();
        let client = client(&server);
        let err = client.lock("orders:42").acquire().unwrap_err();
        assert_eq!(
            err,
            Error::EvictionPolicy {
                policy: policy.to_owned()
            }
        );
        assert!(!err.is_retryable());
        let err = client.counter("views").incr(1).unwrap_err();
        assert!(matches!(err, Error::EvictionPolicy { .. }), "{err:?}");
        assert_eq!(dbsize(&server), 0, "{policy}: nothing may be written");
    }
}

#[test]
fn an_evicting_server_is_used_only_when_accepted_knowingly() {
    let server = RedisServer::builder()
        .args(["--maxmemory-policy", "allkeys-lru"])
        .start();
    let client = Client::builder(server.url())
        .accept_eviction()
        .build()
        .unwrap();
    let guard = client.lock("orders:42").acquire().unwrap();
    assert!(guard.is_held().unwrap());
}

/// Switches `server` to an evicting policy while it runs.
fn switch_to_evicting(server: &RedisServer) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lfu")
        .exec(&mut server.conn())
        .unwrap();
}

fn assert_refused_as_evicting(err: Error) {
    assert!(
        matches!(err, Error::EvictionPolicy { ref policy } if policy == "allkeys-lfu"),
        "{err:?}"
    );
}

#[test]
fn a_policy_changed_to_evicting_is_refused_on_the_next_connection() {
    let server = RedisServer::start();
    let client = client(&server);
    assert_eq!(client.counter("c").incr(1).unwrap(), 1);
    switch_to_evicting(&server);
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .exec(&mut server.conn())
        .unwrap();
    thread::sleep(Duration::from_millis(150)); // past the health-check idle time
    assert_refused_as_evicting(client.counter("c").incr(1).unwrap_err());
}

#[test]
fn a_policy_changed_to_evicting_is_refused_within_seconds_on_busy_connections() {
    let server = RedisServer::start();
    let client = client(&server);
    assert_eq!(client.counter("c").incr(1).unwrap(), 1);
    switch_to_evicting(&server);
    // The connection stays open and busy (never idle long enough for a
    // health check): the periodic re-read must catch the change.
    let switched = Instant::now();
    let err = loop {
        match client.counter("c").incr(1) {
            Ok(_) => assert!(
                switched.elapsed() < Duration::from_secs(7),
                "still used 7 s after the switch"
            ),
            Err(err) => break err,
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_refused_as_evicting(err);
    assert!(
        client.lock("job").try_acquire().is_err(),
        "refused for every call"
    );
}

#[test]
fn a_stalled_server_fails_a_call_after_one_response_timeout_not_two() {
    let server = RedisServer::start();
    let client = client(&server); // 1 s response timeout
    client.counter("c").incr(1).unwrap();
    thread::sleep(Duration::from_millis(150)); // past the health-check idle time
    server.pause();
    let started = Instant::now();
    let err = client.counter("c").get().unwrap_err();
    let took = started.elapsed();
    server.resume();
    assert!(err.is_retryable(), "{err:?}");
    // The health check's PING waits the response timeout; a new
    // connection's handshake used to wait it again.
    assert!(
        took < Duration::from_millis(1_600),
        "{took:?} for a 1 s response timeout: {err:?}"
    );
    assert_eq!(client.counter("c").get().unwrap(), 1, "served once resumed");
}

/// A lock "job" with `ttl`, held through a proxy that loses the reply to
/// the next release; the proxy is returned to keep it alive.
fn held_with_release_reply_lost(server: &RedisServer, ttl: Duration) -> (FaultProxy, LockGuard) {
    let proxy = FaultProxy::start(server.port());
    let client = proxied(&proxy);
    // Both scripts loaded, so that the lost reply is the release's answer.
    client.lock("warm").acquire().unwrap().release().unwrap();
    let guard = client.lock("job").ttl(ttl).acquire().unwrap();
    proxy.fault_replies(release_sha(), ReplyFault::Drop, 1);
    (proxy, guard)
}

#[test]
fn a_release_whose_reply_was_lost_is_resent_and_frees_the_lock_at_once() {
    let server = RedisServer::start();
    let (proxy, guard) = held_with_release_reply_lost(&server, Duration::from_secs(30));
    guard
        .release()
        .expect("the resent release reports the lock released");
    assert_eq!(proxy.faults_applied(), 1, "the first reply was dropped");
    assert!(raw_lock(&server, "job").is_none());
    assert!(client(&server).lock("job").try_acquire().unwrap().is_some());
}

#[test]
fn a_dropped_guard_whose_release_reply_was_lost_frees_the_lock_at_once() {
    let server = RedisServer::start();
    let (proxy, guard) = held_with_release_reply_lost(&server, Duration::from_secs(30));
    drop(guard);
    assert_eq!(proxy.faults_applied(), 1);
    assert!(raw_lock(&server, "job").is_none());
}

#[test]
fn a_release_that_finds_its_lock_taken_over_still_says_not_held() {
    let server = RedisServer::start();
    let (_proxy, guard) = held_with_release_reply_lost(&server, Duration::from_millis(100));
    thread::sleep(Duration::from_millis(150));
    let _theirs = client(&server).lock("job").acquire().unwrap();
    assert!(matches!(guard.release(), Err(Error::NotHeld { .. })));
    assert!(raw_lock(&server, "job").is_some(), "the rival's lock stays");
}

#[test]
fn a_stored_result_whose_replies_were_lost_while_renewals_fell_due_is_reported_stored() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.port());
    let client = proxied(&proxy);
    // A 100 ms lease is renewed every 33 ms: renewals fall due while the
    // lost replies to the store are resent.
    let idem = client.idempotency("pay").lease(Duration::from_millis(100));
    idem.key("warm")
        .run(|| Ok::<_, std::io::Error>(Vec::new()))
        .unwrap();
    let runs = AtomicUsize::new(0);
    proxy.fault_replies(claim_finish_sha(), ReplyFault::Drop, 4);
    let out = idem
        .key("k")
        .run(|| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(b"charged".to_vec())
        })
        .expect("the result is stored, and the call says so");
    assert_eq!(proxy.faults_applied(), 4);
    assert_eq!(out.value, b"charged");
    assert!(!out.replayed);
    thread::sleep(Duration::from_millis(250)); // past the lease
    let again = idem
        .key("k")
        .run(|| Ok::<_, std::io::Error>(b"twice".to_vec()));
    assert_eq!(again.unwrap().value, b"charged");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Sets the server's `maxmemory` (0: no limit). Under `noeviction`, a
/// limit far below what the server uses makes every write that could grow
/// memory fail with OOM, while commands that cannot (`PEXPIRE`, reads) work.
fn set_maxmemory(url: &str, bytes: u64) {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .exec(&mut conn)
        .unwrap();
}

#[test]
fn a_result_refused_with_oom_is_stored_once_memory_frees_and_the_action_runs_once() {
    let server = RedisServer::builder()
        .args(["--maxmemory-policy", "noeviction"])
        .start();
    let client = client(&server);
    let idem = client
        .idempotency("pay")
        .lease(Duration::from_millis(300))
        .store_retry(Duration::from_secs(5));
    let runs = AtomicUsize::new(0);
    let url = server.url();
    let full_for = Duration::from_millis(700);
    let started = Instant::now();
    let out = idem
        .key("k")
        .run(|| {
            runs.fetch_add(1, Ordering::SeqCst);
            set_maxmemory(&url, 1); // the server is full from now on
            // Memory frees after a while (an operator, keys expiring),
            // longer than the lease: renewals must keep it.
            let url = url.clone();
            thread::spawn(move || {
                thread::sleep(full_for);
                set_maxmemory(&url, 0);
            });
            Ok::<_, std::io::Error>(b"charged".to_vec())
        })
        .expect("stored once memory freed");
    assert!(!out.replayed);
    assert!(
        started.elapsed() >= full_for,
        "stored while the server was still full?"
    );
    let again = idem
        .key("k")
        .run(|| Ok::<_, std::io::Error>(b"twice".to_vec()));
    assert_eq!(again.unwrap().value, b"charged");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn a_result_refused_with_oom_past_the_retry_says_so_and_keeps_repeats_out_during_the_lease() {
    let server = RedisServer::builder()
        .args(["--maxmemory-policy", "noeviction"])
        .start();
    let client = client(&server);
    let idem = client
        .idempotency("pay")
        .lease(Duration::from_secs(2))
        .store_retry(Duration::from_millis(300));
    let err = idem
        .key("k")
        .run(|| {
            set_maxmemory(&server.url(), 1); // full from now on
            Ok::<_, std::io::Error>(b"charged".to_vec())
        })
        .unwrap_err();
    match &err {
        RunError::NotStored { value, error } => {
            assert_eq!(value, b"charged");
            assert!(
                matches!(error, Error::Refused { code, .. } if code == "OOM"),
                "{error:?}"
            );
        }
        other => panic!("expected NotStored, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("the action ran") && text.contains("not stored"),
        "{text}"
    );
    // The lease still stands: a repeat does not run the action now.
    let repeat = idem
        .key("k")
        .run(|| Ok::<_, std::io::Error>(b"twice".to_vec()));
    assert!(
        matches!(repeat, Err(RunError::Tollgate(Error::InProgress { .. }))),
        "{repeat:?}"
    );
}

#[test]
fn wrong_credentials_are_an_auth_error_at_once_with_the_servers_message() {
    let server = RedisServer::builder().requirepass("s3cret").start();
    let port = server.port();
    let cases = [
        (format!("redis://:wrong@127.0.0.1:{port}/"), "WRONGPASS"),
        (
            format!("redis://nobody:s3cret@127.0.0.1:{port}/"),
            "WRONGPASS",
        ),
        (format!("redis://127.0.0.1:{port}/"), "NOAUTH"),
    ];
    for (url, code) in cases {
        let client = Client::builder(url.as_str())
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let err = client.lock("x").acquire().unwrap_err();
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{url}: took {:?}",
                started.elapsed()
            );
            match &err {
                Error::Auth { message } => assert!(message.contains(code), "{url}: {message}"),
                other => panic!("{url}: expected Error::Auth, got {other:?}"),
            }
            assert!(!err.is_retryable());
        }
    }
    // The right password works.
    let client = Client::open(&server.url()).unwrap();
    assert!(client.lock("x").try_acquire().unwrap().is_some());
}

#[test]
fn a_refused_connection_is_unavailable_at_once() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server);
    let client = Client::builder(url)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.counter("c").incr(1).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_is_not_redis_is_named_as_such() {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in listener.incoming().flatten() {
            let mut request = [0u8; 512];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let client = Client::builder(format!("redis://127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = client.counter("c").incr(1).unwrap_err();
    match &err {
        Error::Unavailable { reason } => assert!(
            reason.contains("does not answer in the Redis protocol")
                && reason.contains("HTTP/1.1 400 Bad Request"),
            "{reason}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_url_naming_a_database_the_server_lacks_is_a_configuration_error() {
    let server = RedisServer::start();
    let client = Client::builder(format!("{}99", server.url()))
        .build()
        .unwrap();
    let err = client.counter("c").incr(1).unwrap_err();
    match &err {
        Error::InvalidArgument { what, reason } => {
            assert_eq!(*what, "redis url");
            assert!(reason.contains("no database 99"), "{reason}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

/// A server with an ACL user `limited` (password `pw`) that may run every
/// command on every key but use no pub/sub channel.
fn server_without_channel_access() -> (RedisServer, String) {
    let server = RedisServer::start();
    redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "limited",
                "on",
                ">pw",
                "~*",
                "resetchannels",
                "+@all",
            ][..],
        )
        .exec(&mut server.conn())
        .unwrap();
    let url = format!("redis://limited:pw@127.0.0.1:{}/", server.port());
    (server, url)
}

#[test]
fn without_channel_access_a_release_reports_what_it_did_and_waiters_poll() {
    let (_server, url) = server_without_channel_access();
    let client = Client::builder(url.as_str())
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let guard = client.lock("job").acquire().unwrap();
    let waiter = {
        let client = client.clone();
        thread::spawn(move || {
            client
                .lock("job")
                .wait(Duration::from_secs(5))
                .acquire()
                .map(|guard| guard.fencing_token())
        })
    };
    // The waiter's subscription was refused.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(client.notifications(), Notifications::Refused { .. }) {
        assert!(Instant::now() < deadline, "{:?}", client.notifications());
        thread::sleep(Duration::from_millis(10));
    }
    // The release's SPUBLISH, which gives the waiter's client its turn, is
    // refused too.
    guard
        .release()
        .expect("the lock was deleted, and release says so");
    assert!(
        waiter.join().unwrap().is_ok(),
        "the waiter got the lock by polling"
    );
    match client.notifications() {
        Notifications::Refused { reason } => assert!(reason.contains("NOPERM"), "{reason}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn without_sorted_set_rights_waiting_clients_get_the_lock_by_polling() {
    let server = RedisServer::start();
    redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "nozset",
                "on",
                ">pw",
                "~*",
                "&*",
                "+@all",
                "-@sortedset",
            ][..],
        )
        .exec(&mut server.conn())
        .unwrap();
    let url = format!("redis://nozset:pw@127.0.0.1:{}/", server.port());
    let client = || {
        Client::builder(url.as_str())
            .poll_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let (holder, waiting) = (client(), client());
    let guard = holder.lock("job").acquire().unwrap();
    // A waiter in another client (its turn cannot be queued) and one in
    // the holder's own (the lock may be handed to it).
    let waiters: Vec<_> = [waiting, holder.clone()]
        .into_iter()
        .map(|client| {
            thread::spawn(move || {
                let guard = client.lock("job").wait(Duration::from_secs(10)).acquire()?;
                thread::sleep(Duration::from_millis(50));
                guard.release()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300)); // both asked, were refused and wait
    guard
        .release()
        .expect("released, though its turn could not be given");
    for waiter in waiters {
        waiter
            .join()
            .unwrap()
            .expect("granted, though no turn could be queued");
    }
}

#[test]
fn without_channel_access_storing_a_result_for_a_waiting_duplicate_succeeds() {
    let (_server, url) = server_without_channel_access();
    let client = Client::builder(url.as_str())
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let idem = client.idempotency("pay");
    let claim = match idem.key("k").begin().unwrap() {
        tollgate::Begin::Fresh(claim) => claim,
        other => panic!("{other:?}"),
    };
    let duplicate = {
        let idem = idem.clone();
        thread::spawn(move || {
            idem.key("k")
                .on_duplicate(Duplicate::Wait(Duration::from_secs(5)))
                .run(|| Ok::<_, std::io::Error>(b"second".to_vec()))
        })
    };
    thread::sleep(Duration::from_millis(300)); // the duplicate waits and is marked
    claim
        .complete(b"first")
        .expect("stored, and complete says so");
    let out = duplicate.join().unwrap().unwrap();
    assert_eq!(out.value, b"first");
    assert!(out.replayed);
}

#[test]
fn foreign_data_under_a_waiters_key_is_left_untouched() {
    let server = RedisServer::start();
    let client = client(&server);
    let mut conn = server.conn();
    let plants = [
        ("tollgate:lock:{job}:waiters", "lock"),
        ("tollgate:idem:{3:pay:k}:waiters", "claim"),
    ];
    for (key, _) in plants {
        redis::cmd("HSET")
            .arg(key)
            .arg("a")
            .arg("b")
            .exec(&mut conn)
            .unwrap();
    }
    let dump = |conn: &mut redis::Connection, key: &str| -> Vec<u8> {
        redis::cmd("DUMP").arg(key).query(conn).unwrap()
    };
    let before: Vec<Vec<u8>> = plants.iter().map(|(key, _)| dump(&mut conn, key)).collect();

    let _held = client.lock("job").acquire().unwrap();
    let rival = thread::spawn({
        let client = client.clone();
        move || {
            client
                .lock("job")
                .wait(Duration::from_millis(200))
                .acquire()
                .map(drop)
        }
    });
    // Locks never read or write it (their wake-ups go to a channel of
    // that name): the rival just waits, and times out.
    let err = rival.join().unwrap();
    assert!(matches!(err, Err(Error::Timeout { .. })), "{err:?}");

    let claim = client.idempotency("pay").key("k").begin().unwrap();
    let duplicate = client
        .idempotency("pay")
        .key("k")
        .on_duplicate(Duplicate::Wait(Duration::from_millis(200)))
        .begin();
    assert!(
        matches!(duplicate, Err(Error::WrongType { .. })),
        "{duplicate:?}"
    );
    drop(claim);

    for ((key, what), before) in plants.iter().zip(before) {
        assert_eq!(
            dump(&mut conn, key),
            before,
            "{what}: the foreign value changed"
        );
    }
}

#[test]
fn every_guard_knows_its_lock_may_be_gone_as_soon_as_the_client_sees_a_restarted_server() {
    let mut server = RedisServer::start();
    let client = client(&server);
    let lost = Arc::new(AtomicUsize::new(0));
    let watched = {
        let lost = Arc::clone(&lost);
        client
            .lock("a")
            .ttl(Duration::from_secs(3))
            .on_lost(move |_| {
                lost.fetch_add(1, Ordering::SeqCst);
            })
            .acquire()
            .unwrap()
    };
    let plain = client
        .lock("b")
        .ttl(Duration::from_secs(3))
        .acquire()
        .unwrap();
    server.restart();
    // Any call of the client meets the new server...
    assert_eq!(client.lock_info("c").unwrap(), None);
    // ... and from then on every guard says its lock may be gone.
    assert!(watched.is_lost());
    assert!(plain.is_lost());
    // The watchdog checked its locks at once, not at its next renewal (1 s).
    let deadline = Instant::now() + Duration::from_millis(300);
    while lost.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "on_lost was not called within 300 ms"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert!(!plain.is_held().unwrap());
}

#[test]
fn a_release_resent_to_a_restarted_server_that_gave_the_lock_away_says_not_held() {
    let mut server = RedisServer::start();
    // No health check: the release meets its dead pooled connection and is
    // resent on a new one, to the new server.
    let holder = Client::builder(server.url())
        .health_check_after(Duration::from_secs(3600))
        .build()
        .unwrap();
    let guard = holder
        .lock("job")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    server.restart();
    let _theirs = client(&server).lock("job").acquire().unwrap();
    let released = guard.release();
    assert!(
        matches!(released, Err(Error::NotHeld { .. })),
        "{released:?}"
    );
    assert!(
        raw_lock(&server, "job").is_some(),
        "the new holder's lock stays"
    );
}

/// A client through a proxy, whose replies may take up to 5 s, and that
/// proxy, set to delay by [`LATE_REPLY`] the reply to the next request
/// naming `pattern`. `warm` runs first (connecting, loading the scripts),
/// so that the late reply is the grant's.
fn late_reply_to(
    server: &RedisServer,
    pattern: &str,
    warm: impl FnOnce(&Client),
) -> (FaultProxy, Client) {
    let proxy = FaultProxy::start(server.port());
    let slow = Client::builder(proxy.url())
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    warm(&slow);
    proxy.fault_replies(pattern, ReplyFault::Delay(LATE_REPLY), 1);
    (proxy, slow)
}

/// How much later than the lease or TTL (300 ms) a slow reply arrives, and
/// when, meanwhile, a rival asks for the same object.
const LEASE: Duration = Duration::from_millis(300);
const LATE_REPLY: Duration = Duration::from_millis(1_300);
const RIVAL_ASKS: Duration = Duration::from_millis(600);

#[test]
fn an_idempotent_action_whose_claim_arrives_after_its_lease_runs_once() {
    let server = RedisServer::start();
    let (proxy, slow) = late_reply_to(&server, "{3:pay:k}", |slow| {
        slow.idempotency("pay")
            .key("warm")
            .run(|| Ok::<_, std::io::Error>(Vec::new()))
            .unwrap();
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let slow_call = {
        let runs = Arc::clone(&runs);
        thread::spawn(move || {
            slow.idempotency("pay")
                .lease(LEASE)
                .key("k")
                .wait(Duration::from_secs(5))
                .run(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(b"slow".to_vec())
                })
        })
    };
    // The slow caller's claim has run out on the server by now; its reply
    // has not arrived yet.
    thread::sleep(RIVAL_ASKS);
    let rival = client(&server)
        .idempotency("pay")
        .lease(LEASE)
        .key("k")
        .run(|| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(b"rival".to_vec())
        })
        .unwrap();
    assert!(!rival.replayed);
    let slow_outcome = slow_call.join().unwrap().unwrap();
    assert_eq!(proxy.faults_applied(), 1, "the claim's reply was late");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the action ran twice");
    assert_eq!(
        (slow_outcome.value.as_slice(), slow_outcome.replayed),
        (&b"rival"[..], true),
        "the slow caller, asking again, replays the rival's result"
    );
}

#[test]
fn a_lock_grant_that_arrives_after_its_ttl_is_given_back_not_used() {
    let server = RedisServer::start();
    let (proxy, slow) = late_reply_to(&server, "{job}", |slow| {
        slow.lock("warm").acquire().unwrap().release().unwrap();
    });
    let slow_call = thread::spawn(move || slow.lock("job").ttl(LEASE).try_acquire());
    thread::sleep(RIVAL_ASKS);
    let rival = client(&server)
        .lock("job")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .unwrap()
        .expect("the slow caller's grant has expired on the server");
    let err = slow_call
        .join()
        .unwrap()
        .map(|guard| guard.is_some())
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert_eq!(proxy.faults_applied(), 1, "the grant's reply was late");
    assert!(
        rival.is_held().unwrap(),
        "giving back a late grant spared the rival's"
    );
}

#[test]
fn a_permit_granted_after_its_ttl_ran_out_is_given_back() {
    let server = RedisServer::start();
    let (proxy, slow) = late_reply_to(&server, "{pool}", |slow| {
        drop(slow.semaphore("warm", 1).acquire().unwrap());
    });
    let slow_call = thread::spawn(move || slow.semaphore("pool", 1).ttl(LEASE).try_acquire());
    let err = slow_call
        .join()
        .unwrap()
        .map(|permit| permit.is_some())
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(proxy.faults_applied(), 1, "the grant's reply was late");
    // Given back: the only permit is free at once, not after a TTL.
    let rival = client(&server).semaphore("pool", 1).try_acquire().unwrap();
    assert!(rival.is_some(), "the late grant was not given back");
}

/// Waits up to `limit` for `condition`, failing with `what` otherwise.
fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A server, a client of it, a proxy in front of it, and a client through
/// the proxy whose notification listener is up: it waited briefly for a
/// lock the first client held. It polls only every 10 s, so a quick grant
/// after a release comes from a notification.
fn listening_through_a_proxy() -> (RedisServer, Client, FaultProxy, Client) {
    let server = RedisServer::start();
    let holder = client(&server);
    let proxy = FaultProxy::start(server.port());
    let waiter = Client::builder(proxy.url())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .poll_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    crate::start_listening(&waiter, &holder, "partitioned");
    wait_for(Duration::from_secs(5), "the listener is up", || {
        waiter.notifications() == Notifications::Listening
    });
    (server, holder, proxy, waiter)
}

#[test]
fn a_notification_connection_cut_off_silently_is_noticed_and_resumes_when_the_network_heals() {
    let (_server, holder, proxy, waiter) = listening_through_a_proxy();
    // A waiter watches the lock through the partition, so that its channel
    // is not dropped as unwatched before the listener notices.
    let held = holder.lock("partitioned").acquire().unwrap();
    let watching = {
        let waiter = waiter.clone();
        thread::spawn(move || {
            let granted = waiter
                .lock("partitioned")
                .wait(Duration::from_secs(4))
                .acquire();
            assert!(granted.is_err(), "the lock stays held");
        })
    };
    thread::sleep(Duration::from_millis(300));

    proxy.partition();
    // A second of quiet, then a PING unanswered for half a second.
    wait_for(
        Duration::from_secs(5),
        "the listener notices that its node stopped answering",
        || !matches!(waiter.notifications(), Notifications::Listening),
    );
    proxy.heal();
    wait_for(
        Duration::from_secs(10),
        "the listener reconnects once the network heals",
        || waiter.notifications() == Notifications::Listening,
    );

    watching.join().unwrap();

    // Release notices flow again: a waiter is granted at once, not at its
    // next poll.
    crate::assert_woken_by_release(&waiter, "partitioned", held, Duration::from_millis(300));
}

#[test]
fn the_notification_thread_of_a_dropped_client_ends_while_its_node_is_unreachable() {
    let (_server, _holder, proxy, waiter) = listening_through_a_proxy();
    assert!(proxy.open_connections() > 0);

    proxy.partition();
    drop(waiter);
    // The pool's connections close with the client; the listener's closes
    // when its thread ends, though the node never answers again.
    wait_for(
        Duration::from_secs(5),
        "every connection of the dropped client is closed",
        || proxy.open_connections() == 0,
    );
}

#[test]
fn a_heartbeat_refused_while_a_script_runs_does_not_count_as_notifications_refused() {
    let server = RedisServer::builder()
        .args(["--busy-reply-threshold", "100"])
        .start();
    let holder = client(&server);
    let waiter = Client::builder(server.url())
        .response_timeout(Duration::from_secs(5))
        .poll_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    crate::start_listening(&waiter, &holder, "job");
    // A script busy for 2.5 s: meanwhile the listener's heartbeats are
    // answered BUSY.
    let mut conn = server.conn();
    let busy = thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("EVAL")
            .arg(
                "local t = redis.call('TIME') \
                 while true do \
                   local n = redis.call('TIME') \
                   if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 2500000 then break end \
                 end",
            )
            .arg(0)
            .exec(&mut conn);
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let status = waiter.notifications();
        assert!(
            !matches!(status, Notifications::Refused { .. }),
            "a refused PING is not a refusal to notify: {status:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    busy.join().unwrap();
    assert_eq!(waiter.notifications(), Notifications::Listening);
    let held = holder.lock("job").acquire().unwrap();
    crate::assert_woken_by_release(&waiter, "job", held, Duration::from_millis(300));
}
