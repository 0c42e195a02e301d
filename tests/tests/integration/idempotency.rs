//! Idempotent execution and the duplicate-submission guard (SCENARIOS jobs 1
//! and 4): each test names the naive version's bug it rules out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::{Begin, Duplicate, Error, MAX_NAME_BYTES, RecordState, RunError};
use tollgate_tests::RedisServer;

use crate::{Backend, client, conformance, spawn_helper};

// Run against both stores; the `#[test]`s in this file need Redis itself.
conformance![
    thirty_two_threads_over_200_keys_run_each_action_once_and_agree,
    a_repeat_gets_the_first_result_marked_replayed,
    an_action_three_times_longer_than_its_lease_runs_once,
    the_same_key_with_another_payload_is_a_mismatch_not_the_old_result,
    a_failure_frees_the_key_unless_failures_are_cached,
    a_panicking_action_leaves_neither_a_lock_nor_a_result,
    after_the_result_ttl_the_action_runs_again,
    duplicate_fail_returns_in_progress_at_once,
    duplicate_wait_gets_the_first_callers_result_when_it_lands,
    results_are_stored_byte_for_byte,
    another_payload_while_the_first_still_runs_is_a_mismatch,
    a_waiting_duplicate_gets_a_cached_failure_or_runs_after_an_uncached_one,
    a_result_over_the_size_limit_is_not_stored_and_not_run_again,
    bad_idempotency_input_gets_a_typed_error,
    once_is_true_for_the_first_submission_only_for_the_whole_window,
    once_under_a_burst_of_double_clicks_admits_exactly_one,
    inspect_shows_a_record_as_running_completed_or_failed_and_changes_nothing,
];

fn inspect_shows_a_record_as_running_completed_or_failed_and_changes_nothing(backend: &Backend) {
    let client = backend.client();
    let payments = client
        .idempotency("pay")
        .result_ttl(Duration::from_secs(60));
    assert_eq!(payments.inspect("k").unwrap(), None);

    let Begin::Fresh(claim) = payments.key("k").fingerprint(b"42").begin().unwrap() else {
        panic!("a fresh key");
    };
    let running = payments.inspect("k").unwrap().expect("a record");
    assert_eq!(running.state, RecordState::Running);
    assert!(running.fingerprinted);
    assert!(
        running
            .remaining_ttl
            .is_some_and(|ttl| ttl <= Duration::from_secs(30))
    );
    claim.complete(b"receipt").unwrap();

    let done = payments.inspect("k").unwrap().expect("a record");
    assert_eq!(done.state, RecordState::Completed(b"receipt".to_vec()));
    assert!(
        done.remaining_ttl
            .is_some_and(|ttl| ttl > Duration::from_secs(30))
    );
    // Inspecting claimed nothing: a repeat replays.
    let out = payments
        .key("k")
        .fingerprint(b"42")
        .run(|| ok(b"again"))
        .unwrap();
    assert!(out.replayed);

    let failing = client.idempotency("pay").cache_failures();
    let failed = failing.key("f").run(|| Err::<Vec<u8>, _>("card declined"));
    assert!(failed.is_err());
    let record = failing.inspect("f").unwrap().expect("a cached failure");
    assert!(
        matches!(&record.state, RecordState::Failed(text) if text.contains("card declined")),
        "{record:?}"
    );
    assert!(matches!(
        payments.inspect(""),
        Err(Error::InvalidArgument { .. })
    ));
}

type Never = std::convert::Infallible;

fn ok(bytes: &[u8]) -> Result<Vec<u8>, Never> {
    Ok(bytes.to_vec())
}

fn thirty_two_threads_over_200_keys_run_each_action_once_and_agree(backend: &Backend) {
    let clients: Vec<_> = (0..4).map(|_| backend.client()).collect();
    let runs: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let answers: Arc<Mutex<HashMap<usize, Vec<Vec<u8>>>>> = Arc::default();
    let start = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let orders = clients[t % 4].idempotency("orders");
            let (runs, answers, start) = (runs.clone(), answers.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                // Every thread takes the keys in the same order, so for each
                // key 32 callers arrive together and race to claim it.
                for key in 0..200 {
                    let out = orders
                        .key(format!("order-{key}"))
                        .on_duplicate(Duplicate::Wait(Duration::from_secs(30)))
                        .run(|| {
                            *runs.lock().entry(key).or_default() += 1;
                            thread::sleep(Duration::from_millis(2)); // keep the race open
                            ok(format!("result of {key} by thread {t}").as_bytes())
                        })
                        .unwrap_or_else(|e| panic!("key {key}: {e}"));
                    answers.lock().entry(key).or_default().push(out.value);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread");
    }
    let runs = runs.lock();
    assert_eq!(runs.len(), 200);
    assert!(
        runs.values().all(|&n| n == 1),
        "some action ran twice: {runs:?}"
    );
    for (key, values) in answers.lock().iter() {
        assert_eq!(values.len(), 32);
        assert!(
            values.iter().all(|v| v == &values[0]),
            "callers of {key} disagree"
        );
    }
}

fn a_repeat_gets_the_first_result_marked_replayed(backend: &Backend) {
    let payments = backend.client().idempotency("payments");
    let first = payments.key("pay-1").run(|| ok(b"ch_1")).unwrap();
    assert_eq!(
        (first.value.as_slice(), first.replayed),
        (&b"ch_1"[..], false)
    );
    let again = payments.key("pay-1").run(|| ok(b"ch_2")).unwrap();
    assert_eq!(
        (again.value.as_slice(), again.replayed),
        (&b"ch_1"[..], true)
    );
}

#[test]
fn a_crashed_caller_blocks_its_key_only_until_the_lease_ends() {
    let server = RedisServer::start();
    let (mut child, line) =
        spawn_helper(&["claim-and-hang", &server.url(), "payments", "pay-9", "600"]);
    assert_eq!(line, "claimed");
    thread::sleep(Duration::from_millis(900)); // its watchdog keeps the lease alive
    let payments = client(&server).idempotency("payments");
    let busy = payments.key("pay-9").run(|| ok(b"too early"));
    assert!(
        matches!(busy, Err(RunError::Tollgate(Error::InProgress { .. }))),
        "{busy:?}"
    );

    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL: no abandon, no renewal
    child.wait().unwrap();
    let runs = AtomicUsize::new(0);
    let out = payments
        .key("pay-9")
        .on_duplicate(Duplicate::Wait(Duration::from_secs(5)))
        .run(|| {
            runs.fetch_add(1, Ordering::SeqCst);
            ok(b"charged once")
        })
        .unwrap();
    assert!(!out.replayed);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(
        killed.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        killed.elapsed()
    );
}

fn an_action_three_times_longer_than_its_lease_runs_once(backend: &Backend) {
    let client = backend.client();
    let jobs = client.idempotency("jobs").lease(Duration::from_millis(300));
    let runs = Arc::new(AtomicUsize::new(0));
    let long = {
        let (jobs, runs) = (jobs.clone(), runs.clone());
        thread::spawn(move || {
            jobs.key("rebuild")
                .run(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(900));
                    ok(b"built")
                })
                .unwrap()
        })
    };
    thread::sleep(Duration::from_millis(600)); // twice the lease
    let duplicate = jobs.key("rebuild").run(|| {
        runs.fetch_add(1, Ordering::SeqCst);
        ok(b"second build")
    });
    assert!(
        matches!(duplicate, Err(RunError::Tollgate(Error::InProgress { .. }))),
        "{duplicate:?}"
    );
    assert!(!long.join().unwrap().replayed);
    let after = jobs.key("rebuild").run(|| ok(b"third build")).unwrap();
    assert_eq!(
        (after.value.as_slice(), after.replayed),
        (&b"built"[..], true)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn the_same_key_with_another_payload_is_a_mismatch_not_the_old_result(backend: &Backend) {
    let payments = backend.client().idempotency("payments");
    payments
        .key("pay-2")
        .fingerprint(b"amount=10")
        .run(|| ok(b"ch_10"))
        .unwrap();
    let other = payments
        .key("pay-2")
        .fingerprint(b"amount=99")
        .run(|| ok(b"ch_99"));
    assert!(
        matches!(
            other,
            Err(RunError::Tollgate(Error::PayloadMismatch { .. }))
        ),
        "{other:?}"
    );
    let none = payments.key("pay-2").run(|| ok(b"no fingerprint"));
    assert!(
        matches!(none, Err(RunError::Tollgate(Error::PayloadMismatch { .. }))),
        "{none:?}"
    );
    let same = payments
        .key("pay-2")
        .fingerprint(b"amount=10")
        .run(|| ok(b"x"))
        .unwrap();
    assert_eq!(
        (same.value.as_slice(), same.replayed),
        (&b"ch_10"[..], true)
    );
}

fn a_failure_frees_the_key_unless_failures_are_cached(backend: &Backend) {
    let client = backend.client();
    let plain = client.idempotency("plain");
    let failed = plain.key("k").run(|| Err::<Vec<u8>, _>("card declined"));
    assert!(matches!(failed, Err(RunError::Action("card declined"))));
    let retried = plain.key("k").run(|| ok(b"approved")).unwrap();
    assert_eq!(
        (retried.value.as_slice(), retried.replayed),
        (&b"approved"[..], false)
    );

    let cached = client.idempotency("cached").cache_failures();
    let failed = cached.key("k").run(|| Err::<Vec<u8>, _>("card declined"));
    assert!(matches!(failed, Err(RunError::Action(_))));
    let repeat = cached.key("k").run(|| ok(b"approved"));
    match repeat {
        Err(RunError::EarlierFailure(text)) => assert_eq!(text, "card declined"),
        other => panic!("expected the cached failure, got {other:?}"),
    }
}

fn a_panicking_action_leaves_neither_a_lock_nor_a_result(backend: &Backend) {
    let jobs = backend.client().idempotency("jobs");
    let j = jobs.clone();
    let panicked = thread::spawn(move || {
        j.key("p")
            .run(|| -> Result<Vec<u8>, Never> { panic!("boom") })
    })
    .join();
    assert!(panicked.is_err());
    let out = jobs.key("p").run(|| ok(b"ran after the panic")).unwrap();
    assert!(!out.replayed);
}

fn after_the_result_ttl_the_action_runs_again(backend: &Backend) {
    let jobs = backend
        .client()
        .idempotency("jobs")
        .result_ttl(Duration::from_millis(200));
    assert!(!jobs.key("t").run(|| ok(b"one")).unwrap().replayed);
    assert!(jobs.key("t").run(|| ok(b"two")).unwrap().replayed);
    thread::sleep(Duration::from_millis(300));
    let out = jobs.key("t").run(|| ok(b"three")).unwrap();
    assert_eq!((out.value.as_slice(), out.replayed), (&b"three"[..], false));
}

/// Starts a first caller whose action blocks until `go` receives.
fn blocked_first_caller(
    idem: &tollgate::Idempotency,
    key: &'static str,
) -> (thread::JoinHandle<tollgate::Outcome>, mpsc::Sender<()>) {
    let (go, wait) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let idem = idem.clone();
    let first = thread::spawn(move || {
        idem.key(key)
            .run(|| {
                started_tx.send(()).unwrap();
                wait.recv().unwrap();
                ok(b"first result")
            })
            .unwrap()
    });
    started.recv().unwrap();
    (first, go)
}

fn duplicate_fail_returns_in_progress_at_once(backend: &Backend) {
    let idem = backend.client().idempotency("dup");
    let (first, go) = blocked_first_caller(&idem, "k");
    let start = Instant::now();
    let duplicate = idem
        .key("k")
        .on_duplicate(Duplicate::Fail)
        .run(|| ok(b"second"));
    assert!(
        matches!(duplicate, Err(RunError::Tollgate(Error::InProgress { .. }))),
        "{duplicate:?}"
    );
    assert!(start.elapsed() < Duration::from_millis(200));
    go.send(()).unwrap();
    assert!(!first.join().unwrap().replayed);
}

fn duplicate_wait_gets_the_first_callers_result_when_it_lands(backend: &Backend) {
    let first_client = backend.client();
    // The duplicate polls rarely, so only the completion notification can
    // wake it quickly.
    let second_client = backend
        .builder()
        .poll_interval(Duration::from_secs(2))
        .build()
        .unwrap();
    let (first, go) = blocked_first_caller(&first_client.idempotency("dup"), "k");
    let waiter = thread::spawn(move || {
        let out = second_client
            .idempotency("dup")
            .key("k")
            .on_duplicate(Duplicate::Wait(Duration::from_secs(10)))
            .run(|| ok(b"second"))
            .unwrap();
        (out, Instant::now())
    });
    thread::sleep(Duration::from_millis(300));
    let released = Instant::now();
    go.send(()).unwrap();
    let (out, got) = waiter.join().unwrap();
    assert_eq!(
        (out.value.as_slice(), out.replayed),
        (&b"first result"[..], true)
    );
    assert!(
        got - released < Duration::from_millis(500),
        "woken {:?} after completion",
        got - released
    );
    first.join().unwrap();
}

#[test]
fn a_caller_whose_lease_was_taken_over_cannot_overwrite_the_newer_result() {
    let server = RedisServer::start();
    let client = client(&server);
    let idem = client.idempotency("slow");
    let Begin::Fresh(stale) = idem.key("k").begin().unwrap() else {
        panic!("expected a fresh claim")
    };
    // As if the stale caller froze past its lease: the record expires.
    let mut conn = server.conn();
    let _: () = redis::cmd("DEL")
        .arg("tollgate:idem:{4:slow:k}")
        .query(&mut conn)
        .unwrap();
    let newer = idem.key("k").run(|| ok(b"newer")).unwrap();
    assert!(!newer.replayed);
    let err = stale.complete(b"stale").unwrap_err();
    assert!(matches!(err, Error::NotHeld { .. }), "{err:?}");
    let seen = idem.key("k").run(|| ok(b"again")).unwrap();
    assert_eq!(seen.value, b"newer");
}

#[test]
fn a_stale_claim_abandoned_or_dropped_does_not_free_the_newer_claim() {
    let server = RedisServer::start();
    let client = client(&server);
    let idem = client.idempotency("slow");
    let mut conn = server.conn();
    for abandon_explicitly in [true, false] {
        let key = format!("k{abandon_explicitly}");
        let record = format!("tollgate:idem:{{4:slow:{key}}}");
        let Begin::Fresh(stale) = idem.key(&key).begin().unwrap() else {
            panic!("expected a fresh claim")
        };
        let _: () = redis::cmd("DEL").arg(&record).query(&mut conn).unwrap();
        let Begin::Fresh(newer) = idem.key(&key).begin().unwrap() else {
            panic!("expected the key to be free after the stale lease ended")
        };
        if abandon_explicitly {
            assert!(matches!(stale.abandon(), Err(Error::NotHeld { .. })));
        } else {
            drop(stale);
        }
        let busy = idem.key(&key).run(|| ok(b"third"));
        assert!(
            matches!(busy, Err(RunError::Tollgate(Error::InProgress { .. }))),
            "{busy:?}"
        );
        newer.complete(b"newer").unwrap();
    }
}

fn results_are_stored_byte_for_byte(backend: &Backend) {
    let idem = backend.client().idempotency("bytes");
    let value: Vec<u8> = (0..=255u8).chain([0, 0, 0xff, 0xfe]).collect();
    let first = idem.key("k").run(|| Ok::<_, Never>(value.clone())).unwrap();
    let again = idem.key("k").run(|| ok(b"other")).unwrap();
    assert!(again.replayed);
    assert_eq!(again.value, value);
    assert_eq!(first.value, value);
    let empty = idem.key("empty").run(|| ok(b"")).unwrap();
    assert!(empty.value.is_empty());
    assert!(idem.key("empty").run(|| ok(b"x")).unwrap().replayed);
}

fn another_payload_while_the_first_still_runs_is_a_mismatch(backend: &Backend) {
    let idem = backend.client().idempotency("pay");
    let Begin::Fresh(claim) = idem.key("k").fingerprint(b"amount=1").begin().unwrap() else {
        panic!("expected a fresh claim")
    };
    let other = idem
        .key("k")
        .fingerprint(b"amount=2")
        .on_duplicate(Duplicate::Wait(Duration::from_secs(5)))
        .run(|| ok(b"x"));
    assert!(
        matches!(
            other,
            Err(RunError::Tollgate(Error::PayloadMismatch { .. }))
        ),
        "{other:?}"
    );
    claim.complete(b"one").unwrap();
}

fn a_waiting_duplicate_gets_a_cached_failure_or_runs_after_an_uncached_one(backend: &Backend) {
    let client = backend.client();
    for cached in [true, false] {
        let idem = if cached {
            client.idempotency("f").cache_failures()
        } else {
            client.idempotency("f")
        };
        let key = format!("k{cached}");
        let Begin::Fresh(first) = idem.key(&key).begin().unwrap() else {
            panic!("expected a fresh claim")
        };
        let waiter = {
            let (idem, key) = (idem.clone(), key.clone());
            thread::spawn(move || {
                idem.key(key)
                    .on_duplicate(Duplicate::Wait(Duration::from_secs(5)))
                    .run(|| ok(b"ran after the failure"))
            })
        };
        thread::sleep(Duration::from_millis(200));
        if cached {
            first.fail("declined").unwrap();
        } else {
            first.abandon().unwrap();
        }
        match (cached, waiter.join().unwrap()) {
            (true, Err(RunError::EarlierFailure(text))) => assert_eq!(text, "declined"),
            (false, Ok(out)) => assert_eq!(
                (out.value.as_slice(), out.replayed),
                (&b"ran after the failure"[..], false)
            ),
            (cached, other) => panic!("cached={cached}: {other:?}"),
        }
    }
}

fn a_result_over_the_size_limit_is_not_stored_and_not_run_again(backend: &Backend) {
    let idem = backend.client().idempotency("big").max_result_size(1024);
    let runs = AtomicUsize::new(0);
    let big = idem.key("k").run(|| {
        runs.fetch_add(1, Ordering::SeqCst);
        ok(&[7u8; 1025])
    });
    match big {
        Err(RunError::NotStored { value, error }) => {
            assert_eq!(value.len(), 1025, "the caller keeps the value");
            assert!(
                matches!(
                    error,
                    Error::TooLarge {
                        size: 1025,
                        limit: 1024,
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        other => panic!("expected NotStored, got {other:?}"),
    }
    let repeat = idem.key("k").run(|| {
        runs.fetch_add(1, Ordering::SeqCst);
        ok(b"small")
    });
    assert!(
        matches!(repeat, Err(RunError::EarlierFailure(ref t)) if t.contains("1025 bytes")),
        "{repeat:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the action ran again");
    // A cached failure text over the limit is cut to fit, not refused.
    let cached = backend
        .client()
        .idempotency("big2")
        .max_result_size(8)
        .cache_failures();
    let failed = cached
        .key("k")
        .run(|| Err::<Vec<u8>, _>("a very long error text"));
    assert!(matches!(failed, Err(RunError::Action(_))));
    let repeat = cached.key("k").run(|| ok(b"x"));
    assert!(
        matches!(repeat, Err(RunError::EarlierFailure(ref t)) if t == "a very l"),
        "{repeat:?}"
    );
}

#[test]
fn foreign_data_under_an_idempotency_key_is_wrong_type_and_untouched() {
    let server = RedisServer::start();
    let idem = client(&server).idempotency("x");
    let mut conn = server.conn();
    let _: () = redis::cmd("SET")
        .arg("tollgate:idem:{1:x:k}")
        .arg("text")
        .query(&mut conn)
        .unwrap();
    let err = idem.key("k").run(|| ok(b"v"));
    assert!(
        matches!(err, Err(RunError::Tollgate(Error::WrongType { .. }))),
        "{err:?}"
    );
    let value: String = redis::cmd("GET")
        .arg("tollgate:idem:{1:x:k}")
        .query(&mut conn)
        .unwrap();
    assert_eq!(value, "text");
}

fn bad_idempotency_input_gets_a_typed_error(backend: &Backend) {
    let client = backend.client();
    let invalid = |r: Result<Begin, Error>, what: &str| match r {
        Err(Error::InvalidArgument { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected invalid {what}, got {other:?}"),
    };
    invalid(
        client.idempotency("").key("k").begin(),
        "idempotency namespace",
    );
    invalid(client.idempotency("n").key("").begin(), "idempotency key");
    invalid(
        client
            .idempotency("n")
            .key("k".repeat(MAX_NAME_BYTES + 1))
            .begin(),
        "idempotency key",
    );
    invalid(
        client
            .idempotency("n")
            .lease(Duration::ZERO)
            .key("k")
            .begin(),
        "lease",
    );
    invalid(
        client
            .idempotency("n")
            .lease(Duration::from_millis(10))
            .key("k")
            .begin(),
        "lease",
    );
    invalid(
        client
            .idempotency("n")
            .result_ttl(Duration::ZERO)
            .key("k")
            .begin(),
        "result ttl",
    );
    let far = Duplicate::Wait(Duration::from_secs(7200));
    invalid(
        client.idempotency("n").key("k").on_duplicate(far).begin(),
        "wait",
    );
    assert!(matches!(
        client.once("", Duration::from_secs(1)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        client.once("k", Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
}

fn once_is_true_for_the_first_submission_only_for_the_whole_window(backend: &Backend) {
    let client = backend.client();
    let window = Duration::from_millis(500);
    assert!(client.once("submit:user42:9f2c", window).unwrap());
    // The first submission has finished; the window still holds.
    assert!(!client.once("submit:user42:9f2c", window).unwrap());
    thread::sleep(Duration::from_millis(300));
    assert!(!client.once("submit:user42:9f2c", window).unwrap());
    // Other users and other payloads are not held up.
    assert!(client.once("submit:user43:9f2c", window).unwrap());
    assert!(client.once("submit:user42:aa01", window).unwrap());
    thread::sleep(Duration::from_millis(300));
    assert!(client.once("submit:user42:9f2c", window).unwrap());
}

fn once_under_a_burst_of_double_clicks_admits_exactly_one(backend: &Backend) {
    let client = backend.client();
    let admitted = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (client, admitted, start) = (client.clone(), admitted.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                if client
                    .once("submit:u1:form", Duration::from_secs(10))
                    .unwrap()
                {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 1);
    if let Some(server) = backend.server() {
        let pttl: i64 = redis::cmd("PTTL")
            .arg("tollgate:once:{submit:u1:form}")
            .query(&mut server.conn())
            .unwrap();
        assert!(
            pttl > 0 && pttl <= 10_000,
            "the marker must carry its window atomically: {pttl}"
        );
    }
}
