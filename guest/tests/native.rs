//! The SDK off wasm: plugin code under `cargo test`, with the host's rules.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tollgate_guest::testing::{Policy, Sandbox};
use tollgate_guest::{Error, Failure, Plugin, RunError, counter, idempotent, lock, once, sequence};

#[test]
fn each_test_thread_starts_with_an_empty_store() {
    assert_eq!(counter("visits").incr(5).unwrap(), 5);
    let other_thread = std::thread::spawn(|| counter("visits").get().unwrap());
    assert_eq!(other_thread.join().unwrap(), 0);
    assert_eq!(counter("visits").get().unwrap(), 5);
}

#[test]
fn names_are_checked_as_the_host_checks_them() {
    assert!(matches!(
        lock("a{b}").try_acquire(),
        Err(Error::AccessDenied(_))
    ));
    assert!(matches!(
        counter("").incr(1),
        Err(Error::InvalidArgument(_))
    ));
    let long = "x".repeat(257);
    assert!(matches!(
        sequence(long).next(),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_plugins_names_live_in_its_namespace() {
    let sandbox = Sandbox::with_policy(Policy::new("shop").unwrap());
    sandbox.invoke(|| counter("orders").incr(3)).unwrap();
    assert_eq!(sandbox.client().counter("shop/orders").get().unwrap(), 3);
    assert_eq!(sandbox.client().counter("orders").get().unwrap(), 0);
    // A guard knows its lock by the name the plugin gave, and its token is
    // the grant's.
    let client = sandbox.client();
    let (name, token, held) = sandbox
        .invoke(|| {
            let guard = lock("till").acquire()?;
            let held = client.lock_info("shop/till").unwrap().expect("held");
            Ok::<_, Error>((guard.name().to_owned(), guard.fencing_token(), held))
        })
        .unwrap();
    assert_eq!(name, "till");
    assert_eq!(token, held.fencing_token);
}

#[test]
fn the_lock_quota_counts_locks_held_at_once() {
    let sandbox = Sandbox::with_policy(Policy::new("p").unwrap().max_locks(1));
    sandbox.invoke(|| {
        let first = lock("a").acquire().unwrap();
        assert!(matches!(lock("b").acquire(), Err(Error::QuotaExceeded(_))));
        first.release().unwrap();
        let _second = lock("b").acquire().unwrap();
    });
}

#[test]
fn taking_a_lock_this_invocation_holds_is_refused() {
    let _held = lock("twice").acquire().unwrap();
    assert_eq!(
        lock("twice").try_acquire().unwrap_err(),
        Error::WouldDeadlock
    );
}

#[test]
fn a_wait_ends_at_the_invocations_deadline() {
    let sandbox = Sandbox::with_policy(
        Policy::new("p")
            .unwrap()
            .timeout(Duration::from_millis(300)),
    );
    let held = sandbox.invoke(|| lock("busy").acquire().unwrap());
    let started = Instant::now();
    let waited = std::thread::scope(|s| {
        s.spawn(|| sandbox.invoke(|| lock("busy").wait(Duration::from_secs(10)).acquire()))
            .join()
            .unwrap()
    });
    assert_eq!(waited.unwrap_err(), Error::Timeout);
    // The policy's 10 s wait limit would allow the full wait; the 300 ms
    // deadline cut it.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn invocations_on_one_sandbox_exclude_each_other_under_a_lock() {
    const THREADS: usize = 8;
    const ROUNDS: i64 = 50;
    let sandbox = Sandbox::new();
    let inside = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    sandbox
                        .invoke(|| {
                            let guard = lock("ledger").wait(Duration::from_secs(10)).acquire()?;
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                            // A read-modify-write that loses updates without the lock.
                            let total = counter("total");
                            let value = total.get()?;
                            std::thread::yield_now();
                            total.set(value + 1)?;
                            inside.fetch_sub(1, Ordering::SeqCst);
                            guard.release()
                        })
                        .unwrap();
                }
            });
        }
    });
    let total = sandbox.invoke(|| counter("total").get()).unwrap();
    assert_eq!(total, THREADS as i64 * ROUNDS);
}

#[test]
fn an_idempotent_action_runs_once_and_a_failed_one_runs_again() {
    let runs = AtomicUsize::new(0);
    let action = || {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(b"receipt".to_vec())
    };
    let first = idempotent("pay/1").run(action).unwrap();
    let again = idempotent("pay/1").run(action).unwrap();
    assert_eq!((first.replayed, again.replayed), (false, true));
    assert_eq!(again.value, b"receipt");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // `?` turns any Display error into the action's failure; nothing is
    // cached, so the next call runs the action.
    let failed = idempotent("pay/2").run(|| {
        let amount: u32 = "12x".parse()?;
        Ok(amount.to_be_bytes().to_vec())
    });
    assert_eq!(
        failed.unwrap_err(),
        RunError::Action("invalid digit found in string".into())
    );
    let retried = idempotent("pay/2").run(|| Ok(b"ok".to_vec())).unwrap();
    assert!(!retried.replayed);
}

#[test]
fn a_result_over_the_size_limit_is_refused_and_not_run_again() {
    let sandbox = Sandbox::with_policy(Policy::new("p").unwrap().max_result_size(8));
    let runs = Arc::new(AtomicUsize::new(0));
    let call = || {
        let runs = Arc::clone(&runs);
        sandbox.invoke(move || {
            idempotent("big").run(move || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(vec![0; 64])
            })
        })
    };
    assert!(matches!(
        call(),
        Err(RunError::NotStored {
            error: Error::TooLarge(_),
            ..
        })
    ));
    assert!(matches!(call(), Err(RunError::EarlierFailure(_))));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn once_is_true_only_for_the_first_call_in_its_window() {
    assert!(once("submit", Duration::from_secs(10)).unwrap());
    assert!(!once("submit", Duration::from_secs(10)).unwrap());
}

struct Echo;

impl Plugin for Echo {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let text = std::str::from_utf8(&input)?;
        if text.is_empty() {
            return Err("empty input".into());
        }
        Ok(text.to_uppercase().into_bytes())
    }
}

#[test]
fn a_sandbox_runs_a_plugin_and_reports_its_failure_as_text() {
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run::<Echo>(b"hi").unwrap(), b"HI");
    assert_eq!(sandbox.run::<Echo>(b"").unwrap_err(), "empty input");
    assert_eq!(
        sandbox.run::<Echo>([0xff]).unwrap_err(),
        "invalid utf-8 sequence of 1 bytes from index 0"
    );
}

#[test]
fn never_more_than_n_invocations_hold_a_semaphores_permits() {
    use tollgate_guest::semaphore;
    let sandbox = Sandbox::new();
    let inside = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..10 {
                    sandbox
                        .invoke(|| {
                            let permit = semaphore("pool", 2)
                                .wait(Duration::from_secs(10))
                                .acquire()?;
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 2, "{now} holders of 2 permits");
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                            permit.release()
                        })
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        sandbox.invoke(|| semaphore("pool", 2).available()).unwrap(),
        2
    );
}

#[test]
fn a_semaphore_refuses_impossible_requests_and_counts_against_the_quota() {
    use tollgate_guest::semaphore;
    assert!(matches!(
        semaphore("s", 2).try_acquire_many(3),
        Err(Error::InvalidArgument(_))
    ));
    let sandbox = Sandbox::with_policy(Policy::new("p").unwrap().max_permits(1));
    sandbox.invoke(|| {
        let _first = semaphore("a", 5).acquire().unwrap();
        assert!(matches!(
            semaphore("b", 5).acquire(),
            Err(Error::QuotaExceeded(_))
        ));
    });
}

#[test]
fn a_read_write_lock_never_lets_a_writer_in_with_anyone_else() {
    use std::sync::atomic::AtomicI32;
    use tollgate_guest::rw_lock;
    let sandbox = Sandbox::new();
    let state = AtomicI32::new(0); // readers inside, or -1 for a writer
    std::thread::scope(|s| {
        for t in 0..6 {
            let (sandbox, state) = (&sandbox, &state);
            s.spawn(move || {
                for i in 0..15 {
                    sandbox
                        .invoke(|| {
                            let lock = rw_lock("table").wait(Duration::from_secs(10));
                            if (t + i) % 3 == 0 {
                                let guard = lock.write()?;
                                assert_eq!(state.swap(-1, Ordering::SeqCst), 0);
                                std::thread::yield_now();
                                state.store(0, Ordering::SeqCst);
                                guard.release()
                            } else {
                                let guard = lock.read()?;
                                assert!(state.fetch_add(1, Ordering::SeqCst) >= 0);
                                std::thread::yield_now();
                                state.fetch_sub(1, Ordering::SeqCst);
                                guard.release()
                            }
                        })
                        .unwrap();
                }
            });
        }
    });
}

#[test]
fn upgrading_a_read_hold_to_write_is_refused_at_once() {
    use tollgate_guest::rw_lock;
    let lock = rw_lock("cfg").wait(Duration::from_secs(5));
    let read = lock.read().unwrap();
    let started = Instant::now();
    assert_eq!(lock.write().unwrap_err(), Error::WouldDeadlock);
    assert!(started.elapsed() < Duration::from_secs(1));
    read.release().unwrap();
    assert!(lock.write().unwrap().is_write());
}
