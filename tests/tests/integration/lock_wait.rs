//! Waiting for a held lock: woken by the release, by the holder's expiry, or
//! (when a notification is lost) by the fallback poll.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::{Client, Error};
use tollgate_tests::RedisServer;

use crate::{Backend, command_calls, conformance, reset_stats};

// Run against both stores; the `#[test]`s in this file need Redis itself.
conformance![
    waiter_is_woken_by_the_release_not_by_polling,
    waiter_is_woken_when_the_holder_ttl_runs_out,
    waiter_is_woken_by_force_unlock,
    a_wait_that_ends_without_a_grant_is_a_timeout,
    many_waiters_each_get_the_lock_once,
    waiters_of_one_client_are_served_in_arrival_order,
];

/// A client whose fallback poll is slow (2 s, jittered to 1–2 s), so a
/// waiter granted well under a second after the release was woken by the
/// notification or the holder's TTL, not by polling.
fn slow_polling_client(backend: &Backend) -> Client {
    backend
        .builder()
        .poll_interval(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Starts a thread that waits up to `wait` for `name` and reports when it got it.
fn waiter(client: &Client, name: &str, wait: Duration) -> thread::JoinHandle<Instant> {
    let (client, name) = (client.clone(), name.to_owned());
    thread::spawn(move || {
        let guard = client
            .lock(name)
            .wait(wait)
            .acquire()
            .expect("granted within the wait");
        let granted = Instant::now();
        guard.release().unwrap();
        granted
    })
}

fn waiter_is_woken_by_the_release_not_by_polling(backend: &Backend) {
    let (a, b) = (slow_polling_client(backend), slow_polling_client(backend));
    let holder = a.lock("q").ttl(Duration::from_secs(30)).acquire().unwrap();
    let waiting = waiter(&b, "q", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500)); // the waiter is asleep by now
    let released = Instant::now();
    holder.release().unwrap();
    let latency = waiting.join().unwrap() - released;
    assert!(
        latency < Duration::from_millis(500),
        "woken {latency:?} after the release"
    );
}

fn waiter_is_woken_when_the_holder_ttl_runs_out(backend: &Backend) {
    let (a, b) = (slow_polling_client(backend), slow_polling_client(backend));
    let _holder = a
        .lock("t")
        .ttl(Duration::from_millis(500))
        .acquire()
        .unwrap();
    let start = Instant::now();
    let granted = waiter(&b, "t", Duration::from_secs(5)).join().unwrap();
    let waited = granted - start;
    assert!(
        waited < Duration::from_millis(950),
        "granted after {waited:?} for a 500 ms TTL (polling alone: 1 s at the earliest)"
    );
}

fn waiter_is_woken_by_force_unlock(backend: &Backend) {
    let (a, b) = (slow_polling_client(backend), slow_polling_client(backend));
    let _holder = a.lock("f").ttl(Duration::from_secs(30)).acquire().unwrap();
    let waiting = waiter(&b, "f", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    let unlocked = Instant::now();
    assert!(a.force_unlock("f").unwrap());
    let latency = waiting.join().unwrap() - unlocked;
    assert!(
        latency < Duration::from_millis(500),
        "woken {latency:?} after force_unlock"
    );
}

#[test]
fn a_lost_notification_costs_only_the_fallback_poll() {
    let server = RedisServer::start();
    let a = Client::open(&server.url()).unwrap();
    let b = Client::builder(server.url())
        .poll_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let _holder = a
        .lock("lost")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let waiting = waiter(&b, "lost", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(200));
    // Free the lock behind tollgate's back: no notification is sent.
    let mut conn = server.conn();
    let _: () = redis::cmd("DEL")
        .arg("tollgate:lock:{lost}")
        .query(&mut conn)
        .unwrap();
    let freed = Instant::now();
    let latency = waiting.join().unwrap() - freed;
    assert!(
        latency < Duration::from_millis(1000),
        "polled after {latency:?}"
    );
}

fn a_wait_that_ends_without_a_grant_is_a_timeout(backend: &Backend) {
    let (a, b) = (
        backend.builder().build().unwrap(),
        backend.builder().build().unwrap(),
    );
    let _holder = a
        .lock("busy")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let start = Instant::now();
    let err = b
        .lock("busy")
        .wait(Duration::from_millis(300))
        .acquire()
        .unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_timeout());
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(b.lock("busy").try_acquire().unwrap().is_none());
}

fn many_waiters_each_get_the_lock_once(backend: &Backend) {
    let client = slow_polling_client(backend);
    let holder = client
        .lock("line")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let waiters: Vec<_> = (0..8)
        .map(|_| waiter(&client, "line", Duration::from_secs(10)))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let released = Instant::now();
    holder.release().unwrap();
    let mut grants: Vec<Instant> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    grants.sort();
    // Each hand-over is woken by the previous release, not by polling.
    let total = *grants.last().unwrap() - released;
    assert!(
        total < Duration::from_secs(1),
        "8 hand-overs took {total:?}"
    );
}

fn waiters_of_one_client_are_served_in_arrival_order(backend: &Backend) {
    let client = slow_polling_client(backend);
    let holder = client
        .lock("fifo")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..5)
        .map(|i| {
            let (client, order) = (client.clone(), Arc::clone(&order));
            let waiting = thread::spawn(move || {
                let guard = client
                    .lock("fifo")
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .expect("granted within the wait");
                order.lock().push(i);
                thread::sleep(Duration::from_millis(5));
                guard.release().unwrap();
            });
            thread::sleep(Duration::from_millis(100)); // lined up before the next
            waiting
        })
        .collect();
    // The holder releases and asks again at once: it lines up behind the
    // five waiters instead of taking the lock past them.
    holder.release().unwrap();
    let again = client
        .lock("fifo")
        .wait(Duration::from_secs(10))
        .acquire()
        .unwrap();
    order.lock().push(5);
    drop(again);
    for waiting in waiters {
        waiting.join().unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_release_wakes_one_waiter_of_a_process_not_all() {
    let server = RedisServer::start();
    let (a, b) = (
        Client::open(&server.url()).unwrap(),
        Client::builder(server.url())
            .poll_interval(Duration::from_secs(20))
            .build()
            .unwrap(),
    );
    let holder = a
        .lock("herd")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| waiter(&b, "herd", Duration::from_secs(10)))
        .collect();
    thread::sleep(Duration::from_millis(300)); // all four asleep
    reset_stats(&server);
    holder.release().unwrap();
    for waiting in waiters {
        waiting.join().unwrap();
    }
    // Five releases and four grants. Waking every waiter at each release
    // would add a refused attempt per other waiter: 3 + 2 + 1 more.
    let attempts = command_calls(&server, "evalsha") - 5;
    assert!(attempts <= 5, "{attempts} acquire attempts for 4 grants");
}

#[test]
fn a_release_hands_the_lock_to_the_next_waiter_of_its_client_in_one_step() {
    let server = RedisServer::start();
    let client = Client::builder(server.url())
        .poll_interval(Duration::from_secs(20))
        .build()
        .unwrap();
    let holder = client
        .lock("relay")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let first = holder.fencing_token();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || {
                let guard = client
                    .lock("relay")
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .unwrap();
                let token = guard.fencing_token();
                guard.release().unwrap();
                token
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300)); // all four asleep
    reset_stats(&server);
    holder.release().unwrap();
    let mut tokens: Vec<u64> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    // Five releases and nothing else: each of the first four granted the
    // lock to the next waiter as it released it.
    assert_eq!(command_calls(&server, "evalsha"), 5);
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "every hand-over issued a new token");
    assert!(tokens[0] > first);
    assert!(
        client.lock("relay").try_acquire().unwrap().is_some(),
        "free at the end"
    );
}

/// A client on `server` whose fallback poll comes every `poll` (jittered
/// to half of it at the earliest).
fn polling_every(server: &RedisServer, poll: Duration) -> Client {
    Client::builder(server.url())
        .poll_interval(poll)
        .build()
        .unwrap()
}

/// A client that only a notification (or a 30 s poll) wakes.
fn unpolled(server: &RedisServer) -> Client {
    polling_every(server, Duration::from_secs(30))
}

/// Lock `name`, held for 30 s.
fn held(client: &Client, name: &str) -> tollgate::LockGuard {
    client
        .lock(name)
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap()
}

/// A thread that waits up to 20 s for lock `name`, runs `work` holding
/// it, and releases it.
fn served(
    client: &Client,
    name: &'static str,
    work: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<()> {
    let client = client.clone();
    thread::spawn(move || {
        let guard = client
            .lock(name)
            .wait(Duration::from_secs(20))
            .acquire()
            .unwrap();
        work();
        guard.release().unwrap();
    })
}

fn turns_queued(server: &RedisServer, name: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("tollgate:lock:{{{name}}}:turns"))
        .query(&mut server.conn())
        .unwrap()
}

/// A client that waited `wait` for lock `name` (held by another) and gave
/// up, and its id in the lock's queue of waiting clients (taken while it
/// was queued).
fn gave_up_waiting(server: &RedisServer, name: &'static str, wait: Duration) -> (Client, String) {
    let client = unpolled(server);
    let gave_up = {
        let client = client.clone();
        thread::spawn(move || {
            client
                .lock(name)
                .wait(wait)
                .try_acquire()
                .unwrap()
                .is_none()
        })
    };
    until("the waiting client queued", || {
        turns_queued(server, name) == 1
    });
    let id: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("tollgate:lock:{{{name}}}:turns"))
        .arg(0)
        .arg(0)
        .query(&mut server.conn())
        .unwrap();
    assert!(gave_up.join().unwrap(), "it got the lock");
    (client, id.into_iter().next().expect("queued"))
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn waiting_clients_take_turns_in_arrival_order_and_a_release_wakes_one() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "turns");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    // Three clients (three processes, as far as Redis can tell), lined up
    // one after the other.
    for i in 0..3 {
        let client = unpolled(&server);
        let order = Arc::clone(&order);
        waiters.push(thread::spawn(move || {
            let guard = client
                .lock("turns")
                .wait(Duration::from_secs(20))
                .acquire()
                .unwrap();
            order.lock().push(i);
            thread::sleep(Duration::from_millis(20));
            guard.release().unwrap();
        }));
        until("the waiter lined up", || {
            turns_queued(&server, "turns") == i + 1
        });
    }
    reset_stats(&server);
    let started = Instant::now();
    guard.release().unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*order.lock(), [0, 1, 2], "served out of turn");
    // Four releases and three acquires: had every release woken every
    // waiting client, each would have asked (3 + 2 + 1 acquires).
    assert_eq!(command_calls(&server, "evalsha"), 7);
    assert!(started.elapsed() < Duration::from_secs(5), "woken by polls");
    assert_eq!(turns_queued(&server, "turns"), 0);
}

#[test]
fn a_client_whose_waiter_gave_up_leaves_its_turn_to_the_next() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "q");
    let impatient = unpolled(&server);
    let gave_up = thread::spawn(move || {
        impatient
            .lock("q")
            .wait(Duration::from_secs(2))
            .try_acquire()
            .unwrap()
            .is_none()
    });
    until("the impatient waiter lined up", || {
        turns_queued(&server, "q") == 1
    });
    let patient = unpolled(&server);
    let served = thread::spawn(move || {
        let asked = Instant::now();
        let guard = patient.lock("q").wait(Duration::from_secs(20)).acquire();
        (guard.map(drop), asked)
    });
    until("the patient waiter lined up", || {
        turns_queued(&server, "q") == 2
    });
    assert!(gave_up.join().unwrap(), "the impatient waiter got the lock");
    assert_eq!(
        turns_queued(&server, "q"),
        1,
        "the impatient client stayed queued"
    );
    let released = Instant::now();
    guard.release().unwrap();
    let (granted, _) = served.join().unwrap();
    granted.unwrap();
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "the turn went to the client that left: {:?}",
        released.elapsed()
    );
}

#[test]
fn a_client_whose_waiter_failed_leaves_its_turn() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "f");
    // Its grants must be confirmed by a replica this server does not have:
    // the grant its turn brings is given back, and the waiter fails.
    let unconfirmed = Client::builder(server.url())
        .poll_interval(Duration::from_secs(30))
        .wait_for_replicas(1, Duration::from_millis(50))
        .build()
        .unwrap();
    let failed = thread::spawn(move || {
        unconfirmed
            .lock("f")
            .wait(Duration::from_secs(20))
            .acquire()
            .map(drop)
    });
    until("the failing waiter queued", || {
        turns_queued(&server, "f") == 1
    });
    let (granted, go_on) = (mpsc::channel(), mpsc::channel::<()>());
    let next = served(&unpolled(&server), "f", move || {
        granted.0.send(()).unwrap();
        go_on.1.recv().unwrap();
    });
    until("the next waiter queued", || turns_queued(&server, "f") == 2);
    guard.release().unwrap();
    assert!(
        matches!(failed.join().unwrap(), Err(Error::NotReplicated { .. })),
        "the waiter was not failed by its replicas"
    );
    granted
        .1
        .recv_timeout(Duration::from_secs(10))
        .expect("the give-back woke the next waiter");
    // Had it stayed queued, its turn would come next with nobody to take
    // it, and a later waiter would wait for its poll.
    assert_eq!(
        turns_queued(&server, "f"),
        0,
        "the failed client stayed queued"
    );
    go_on.0.send(()).unwrap();
    next.join().unwrap();
}

#[test]
fn a_turn_that_reaches_a_client_whose_waiter_just_left_passes_to_the_next() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "p");
    let (left, id) = gave_up_waiting(&server, "p", Duration::from_millis(500));
    assert_eq!(turns_queued(&server, "p"), 0, "it left the queue");
    // Its turn was on the way as it left: the client is back in line,
    // first, with nobody left to take the turn (but still listening).
    redis::cmd("ZADD")
        .arg("tollgate:lock:{p}:turns")
        .arg(0)
        .arg(&id)
        .exec(&mut server.conn())
        .unwrap();
    let next = unpolled(&server);
    let served = thread::spawn(move || {
        next.lock("p")
            .wait(Duration::from_secs(20))
            .acquire()
            .map(drop)
    });
    until("the next client queued", || turns_queued(&server, "p") == 2);
    let released = Instant::now();
    guard.release().unwrap();
    served.join().unwrap().unwrap();
    // Lost, the turn would have left the next client to its 30 s poll.
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "{:?}",
        released.elapsed()
    );
    drop(left);
}

#[test]
fn a_turn_is_passed_on_only_while_the_release_that_gave_it_is_the_last() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "s");
    // A client that waited and gave up: still listening, nobody waits there.
    let (left, left_id) = gave_up_waiting(&server, "s", Duration::from_millis(300));
    let next = unpolled(&server);
    let (served_tx, served) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let got = next.lock("s").wait(Duration::from_secs(20)).acquire();
        let _ = served_tx.send(got.map(drop));
    });
    until("the next client queued", || turns_queued(&server, "s") == 1);
    // The lock is freed behind everyone's back (no announcement), leaving
    // token `fence`.
    let value: String = redis::cmd("GET")
        .arg("tollgate:lock:{s}")
        .query(&mut server.conn())
        .unwrap();
    let fence: u64 = value.split(' ').next().unwrap().parse().unwrap();
    redis::cmd("SET")
        .arg("tollgate:lock:{s}")
        .arg(fence.to_string())
        .arg("KEEPTTL")
        .exec(&mut server.conn())
        .unwrap();
    let announce = |fence: u64| {
        redis::cmd("SPUBLISH")
            .arg("tollgate:lock:{s}:waiters")
            .arg(format!("tollgate:lock:{{s}}\n{}:{fence}", left_id))
            .exec(&mut server.conn())
            .unwrap();
    };
    // A turn from an earlier release (the lock was granted since): the
    // client that cannot take it does not pass it on.
    announce(fence - 1);
    assert!(
        served.recv_timeout(Duration::from_millis(300)).is_err(),
        "a stale turn was passed on"
    );
    assert_eq!(
        turns_queued(&server, "s"),
        1,
        "the next client kept its place"
    );
    // The turn of the release that left the lock as it is now: passed on.
    announce(fence);
    served
        .recv_timeout(Duration::from_secs(5))
        .expect("the turn was not passed on")
        .unwrap();
    drop(guard);
    drop(left);
}

#[test]
fn the_turn_of_a_process_that_died_costs_its_followers_one_poll() {
    let server = RedisServer::start();
    let holder = unpolled(&server);
    let guard = held(&holder, "d");
    // A process that queued and died: its entry is first in line.
    redis::cmd("ZADD")
        .arg("tollgate:lock:{d}:turns")
        .arg(0)
        .arg("0123456789abcdef")
        .exec(&mut server.conn())
        .unwrap();
    let follower = polling_every(&server, Duration::from_millis(400));
    let served = thread::spawn(move || {
        follower
            .lock("d")
            .wait(Duration::from_secs(20))
            .acquire()
            .map(drop)
    });
    until("the follower lined up", || turns_queued(&server, "d") == 2);
    let released = Instant::now();
    guard.release().unwrap();
    served.join().unwrap().unwrap();
    // The dead process got the turn; the follower's next poll (at most
    // 400 ms after its last attempt) found the lock free.
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "{:?}",
        released.elapsed()
    );
}

#[test]
fn a_client_keeps_the_lock_past_anothers_turn_at_most_four_times_in_a_row() {
    let server = RedisServer::start();
    let (busy, other) = (unpolled(&server), unpolled(&server));
    let guard = held(&busy, "k");
    let order = Arc::new(Mutex::new(Vec::new()));
    let wait_in_line = |client: &Client, who: &'static str| {
        let order = Arc::clone(&order);
        served(client, "k", move || order.lock().push(who))
    };
    // The other client's turn comes first; the busy one queues behind it
    // with six waiters.
    let mut waiters = vec![wait_in_line(&other, "other")];
    until("the other client queued", || {
        turns_queued(&server, "k") == 1
    });
    for _ in 0..6 {
        waiters.push(wait_in_line(&busy, "busy"));
    }
    until("the busy client queued", || turns_queued(&server, "k") == 2);
    thread::sleep(Duration::from_secs(1)); // all six asleep
    guard.release().unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    let order = order.lock();
    assert_eq!(
        order.iter().position(|who| *who == "other"),
        Some(4),
        "{order:?}"
    );
}

#[test]
fn a_client_whose_last_waiter_was_served_out_of_turn_leaves_the_queue() {
    let server = RedisServer::start();
    let (busy, other, last) = (unpolled(&server), unpolled(&server), unpolled(&server));
    let guard = held(&busy, "s");
    let take = |client: &Client| served(client, "s", || thread::sleep(Duration::from_millis(10)));
    // Queued in this order: other, busy (two waiters), last.
    let mut waiters = vec![take(&other)];
    until("other queued", || turns_queued(&server, "s") == 1);
    waiters.push(take(&busy));
    waiters.push(take(&busy));
    until("busy queued", || turns_queued(&server, "s") == 2);
    waiters.push(take(&last));
    until("last queued", || turns_queued(&server, "s") == 3);
    thread::sleep(Duration::from_secs(1)); // all asleep
    let released = Instant::now();
    // The busy client serves both its waiters past the other's turn; had
    // it stayed queued, its turn would come with nobody to take it and the
    // last client would wait for its 30 s poll.
    guard.release().unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "{:?}",
        released.elapsed()
    );
    assert_eq!(turns_queued(&server, "s"), 0);
}
