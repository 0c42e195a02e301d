//! Waiting for a held lock: woken by the release, by the holder's expiry, or
//! (when a notification is lost) by the fallback poll.

use std::thread;
use std::time::{Duration, Instant};

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
    use std::sync::{Arc, Mutex};
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
                order.lock().unwrap().push(i);
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
    order.lock().unwrap().push(5);
    drop(again);
    for waiting in waiters {
        waiting.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
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
