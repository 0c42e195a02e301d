//! A primary with a replica and a Redis Sentinel that fails it over: a
//! `redis+sentinel://` client follows the master the sentinels name.

use std::time::{Duration, Instant};

use tollgate::{Client, Error};
use tollgate_tests::{RedisSentinel, RedisServer, role_of};

use crate::replicas::{once_served, primary_and_replica};

/// A client that polls for a lock only every 10 s: a quick grant after a
/// release comes from a notification.
fn client_of(url: &str) -> Client {
    Client::builder(url)
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Gives `server` a user `app` (password `s3cret`) with every right but
/// `denied`, starts a sentinel monitoring it (without a password of its
/// own), and returns the sentinel and a URL for `app` through it.
fn app_user_behind_a_sentinel(server: &RedisServer, denied: &[&str]) -> (RedisSentinel, String) {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg(&["on", ">s3cret", "~*", "&*", "+@all"])
        .arg(denied)
        .exec(&mut server.conn())
        .unwrap();
    let sentinel = RedisSentinel::watching(server);
    let url = format!(
        "redis+sentinel://app:s3cret@127.0.0.1:{}/mymaster",
        sentinel.port()
    );
    (sentinel, url)
}

/// A primary, its replica, a sentinel monitoring the primary, and a
/// client through the sentinel that counted `views` to 5.
fn counted_to_five_through_a_sentinel() -> (RedisServer, RedisServer, RedisSentinel, Client) {
    let (primary, replica) = primary_and_replica();
    let sentinel = RedisSentinel::watching(&primary);
    let client = client_of(&sentinel.url());
    for _ in 0..5 {
        client.counter("views").incr(1).unwrap();
    }
    (primary, replica, sentinel, client)
}

/// The counter `views` as stored on `server`.
fn views_on(server: &RedisServer) -> Option<i64> {
    redis::cmd("GET")
        .arg("tollgate:counter:{views}")
        .query(&mut server.conn())
        .unwrap()
}

#[test]
fn a_sentinel_url_follows_its_master_through_a_failover() {
    let (primary, replica, sentinel, client) = counted_to_five_through_a_sentinel();
    let views = client.counter("views");
    assert_eq!(views_on(&primary), Some(5), "written to the master");
    let guard = client.lock("report").acquire().unwrap();
    // A waiter of `client` has started its notification listener.
    let holder = client_of(&sentinel.url());
    crate::start_listening(&client, &holder, "job");
    let confirmed: usize = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut primary.conn())
        .unwrap();
    assert_eq!(confirmed, 1, "the replica has the counter and the lock");

    sentinel.fail_over(&primary, &replica);

    // Calls fail retryably while the old master steps down, then land on
    // the promoted replica, which had the counter at 5.
    let deadline = Instant::now() + Duration::from_secs(15);
    let value = loop {
        let value = once_served(|| views.incr(1));
        if views_on(&replica) == Some(value) {
            break value;
        }
        // The old master took it, before it stepped down.
        assert!(
            Instant::now() < deadline,
            "the client stayed on the old master"
        );
    };
    assert!(value >= 6, "the promoted replica had 5: {value}");
    assert!(
        guard.is_lost(),
        "a guard may be lost once the client met another server"
    );
    let token = guard.fencing_token();
    guard
        .release()
        .expect("the promoted replica had the lock, and releases it");
    let next = client.lock("report").acquire().unwrap();
    assert!(
        next.fencing_token() > token,
        "the fencing counter moved over"
    );

    // Release notices come from the new master: the listener moved too.
    let held = once_served(|| holder.lock("job").acquire());
    crate::assert_woken_by_release(&client, "job", held, Duration::from_millis(300));
}

#[test]
fn a_server_a_sentinel_names_master_that_is_not_one_is_not_used() {
    let (_primary, replica) = primary_and_replica();
    // A sentinel told to monitor the replica names it master (as one may
    // for a moment around a failover); the client checks the role itself.
    let sentinel = RedisSentinel::watching(&replica);
    let err = client_of(&sentinel.url())
        .counter("views")
        .get()
        .unwrap_err();
    match &err {
        Error::Unavailable { reason } => {
            assert!(reason.contains("is not a master (role:slave"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[test]
fn the_role_is_checked_by_role_when_info_is_not_allowed() {
    let (_primary, replica) = primary_and_replica();
    let (_sentinel, url) = app_user_behind_a_sentinel(&replica, &["-info"]);
    // Without INFO the eviction policy cannot be read: accepted here.
    let client = Client::builder(url).accept_eviction().build().unwrap();
    let err = client.counter("views").get().unwrap_err();
    match &err {
        Error::Unavailable { reason } => {
            assert!(reason.contains("is not a master (role:slave"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_master_name_no_sentinel_monitors_is_a_configuration_error() {
    let master = RedisServer::start();
    let sentinel = RedisSentinel::watching(&master);
    // A sentinel that does not know the name, and a Redis server that is
    // not a sentinel at all.
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/elsewhere",
        sentinel.port(),
        master.port()
    );
    let err = client_of(&url).counter("views").incr(1).unwrap_err();
    match &err {
        Error::InvalidArgument { what, reason } => {
            assert_eq!(*what, "redis url");
            assert!(reason.contains("\"elsewhere\""), "{reason}");
            assert!(reason.contains("is not a sentinel"), "{reason}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn the_sentinels_switch_announcement_moves_the_client_before_the_old_master_steps_down() {
    // The client's first periodic check comes 5 s after this, at the
    // earliest; the old primary stays a master for seconds after the
    // switch. Only the announcement can move the client before both.
    let started = Instant::now();
    let (primary, replica, sentinel, client) = counted_to_five_through_a_sentinel();
    let views = client.counter("views");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sentinel.subscribed_clients() == 0 {
        assert!(Instant::now() < deadline, "the client's watcher subscribed");
        std::thread::sleep(Duration::from_millis(20));
    }
    sentinel.start_failover(&replica);
    let switched = Instant::now();
    loop {
        let value = once_served(|| views.incr(1));
        if views_on(&replica) == Some(value) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            switched.elapsed() < Duration::from_secs(2),
            "still writing to the old master {:?} after the switch",
            switched.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "moved {:?} after the client started: the periodic check may have done it",
        started.elapsed()
    );
    assert_eq!(
        role_of(&primary),
        "role:master",
        "the old master had not stepped down: the announcement moved the client"
    );
}

#[test]
fn a_plain_url_to_a_sentinel_says_how_to_name_the_master() {
    let master = RedisServer::start();
    let sentinel = RedisSentinel::watching(&master);
    let url = format!("redis://127.0.0.1:{}/", sentinel.port());
    let err = client_of(&url).counter("views").incr(1).unwrap_err();
    match &err {
        Error::InvalidArgument { what, reason } => {
            assert_eq!(*what, "redis url");
            assert!(reason.contains("is a Redis Sentinel"), "{reason}");
            assert!(reason.contains("redis+sentinel://"), "{reason}");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn the_master_named_last_serves_while_no_sentinel_answers() {
    let master = RedisServer::start();
    let sentinel = RedisSentinel::watching(&master);
    let client = client_of(&sentinel.url());
    let views = client.counter("views");
    assert_eq!(views.incr(1).unwrap(), 1);
    drop(sentinel);
    // New connections too: the master cuts the client's.
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .exec(&mut master.conn())
        .unwrap();
    assert_eq!(once_served(|| views.incr(1)), 2);
    assert_eq!(views.incr(1).unwrap(), 3);
}

#[test]
fn pooled_connections_leave_a_master_the_sentinels_no_longer_name() {
    let (primary, replica, sentinel, client) = counted_to_five_through_a_sentinel();
    let views = client.counter("views");
    // A split: the replica is promoted and the sentinel names it, while
    // the old primary stays a master its clients can reach (nobody demotes
    // it or cuts its connections).
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .exec(&mut replica.conn())
        .unwrap();
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{}/", sentinel.port()))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SENTINEL")
        .arg("REMOVE")
        .arg("mymaster")
        .exec(&mut admin)
        .unwrap();
    redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg("mymaster")
        .arg("127.0.0.1")
        .arg(replica.port())
        .arg(1)
        .exec(&mut admin)
        .unwrap();
    assert_eq!(sentinel.master_port(), replica.port());

    // Within a periodic check (5 s) the busy client's connections move.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = once_served(|| views.incr(1));
        if views_on(&replica) == Some(value) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client kept writing to the master the sentinels dropped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left_on_primary = views_on(&primary);
    views.incr(1).unwrap();
    assert_eq!(
        views_on(&primary),
        left_on_primary,
        "nothing more goes there"
    );
}

#[test]
fn a_user_name_is_not_sent_to_sentinels_without_passwords() {
    let master = RedisServer::start();
    let (_sentinel, url) = app_user_behind_a_sentinel(&master, &[]);
    assert_eq!(client_of(&url).counter("views").incr(1).unwrap(), 1);
}

#[test]
fn sentinels_that_cannot_be_reached_are_unavailable_naming_each() {
    let (first, second) = (RedisServer::start(), RedisServer::start());
    let url = format!(
        "redis+sentinel://127.0.0.1:{},127.0.0.1:{}/mymaster",
        first.port(),
        second.port()
    );
    drop((first, second));
    let err = client_of(&url).counter("views").incr(1).unwrap_err();
    match &err {
        Error::Unavailable { reason } => {
            assert!(reason.contains("no sentinel said where master"), "{reason}");
            // One failure for each ("a: …; b: …"), whatever took the
            // freed ports meanwhile.
            assert_eq!(reason.matches("; ").count(), 1, "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[test]
fn the_urls_password_reaches_the_master_and_the_sentinels_that_ask_for_one() {
    let master = RedisServer::builder().requirepass("s3cret").start();
    for asks_too in [false, true] {
        let sentinel = RedisSentinel::watching_protected(&master, "s3cret", asks_too);
        let url = format!(
            "redis+sentinel://:s3cret@127.0.0.1:{}/mymaster",
            sentinel.port()
        );
        let client = client_of(&url);
        assert_eq!(
            client.counter("views").incr(1).unwrap(),
            if asks_too { 2 } else { 1 }
        );
        let wrong = format!(
            "redis+sentinel://:wrong@127.0.0.1:{}/mymaster",
            sentinel.port()
        );
        let err = client_of(&wrong).counter("views").incr(1).unwrap_err();
        match &err {
            Error::Auth { message } => assert!(message.contains("127.0.0.1:"), "{message}"),
            other => panic!("expected Auth, got {other:?}"),
        }
        assert!(!err.is_retryable());
    }
}
