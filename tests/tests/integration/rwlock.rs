//! Read-write locks: many readers or one writer; writers not starved by a
//! stream of readers; no waiting for oneself.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tollgate::Error;

use crate::{Backend, conformance};

conformance![
    readers_share_and_a_writer_excludes_everyone,
    a_writer_gets_in_within_a_bound_while_eight_threads_keep_reading,
    asking_again_on_the_same_thread_is_refused_not_a_deadlock,
    a_writer_that_gives_up_does_not_keep_readers_out,
    a_crashed_holders_hold_ends_at_its_ttl,
    every_hold_gets_a_larger_token_and_a_stale_writer_is_refused_by_a_record,
    the_watchdog_keeps_a_hold_past_its_ttl,
    a_reader_held_back_by_a_wish_to_write_is_woken_when_the_writer_gives_up,
];

fn a_reader_held_back_by_a_wish_to_write_is_woken_when_the_writer_gives_up(backend: &Backend) {
    let holder = backend.client();
    let reading = holder.rw_lock("g").read().unwrap();
    // A reader of a client that would poll only every 30 s.
    let reader = backend
        .builder()
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let writer = backend.client();
    thread::scope(|s| {
        let waiting_writer =
            s.spawn(|| writer.rw_lock("g").wait(Duration::from_millis(800)).write());
        thread::sleep(Duration::from_millis(200)); // its wish is in
        let started = Instant::now();
        let read = reader
            .rw_lock("g")
            .wait(Duration::from_secs(20))
            .read()
            .expect("the reader gets in once the writer gives up");
        let waited = started.elapsed();
        assert!(matches!(
            waiting_writer.join().unwrap(),
            Err(Error::Timeout { .. })
        ));
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
        drop(read);
    });
    drop(reading);
}

fn readers_share_and_a_writer_excludes_everyone(backend: &Backend) {
    // `state`: the number of readers inside, or -1 while a writer is.
    let state = AtomicI32::new(0);
    let most_readers = AtomicI32::new(0);
    let (reads, writes) = (AtomicUsize::new(0), AtomicUsize::new(0));
    thread::scope(|s| {
        for t in 0..6 {
            let (state, most_readers, reads, writes) = (&state, &most_readers, &reads, &writes);
            s.spawn(move || {
                let client = backend.client();
                let lock = client.rw_lock("table").wait(Duration::from_secs(20));
                for i in 0..20 {
                    if (t + i) % 4 == 0 {
                        let guard = lock.write().unwrap();
                        let before = state.swap(-1, Ordering::SeqCst);
                        assert_eq!(before, 0, "a writer went in with {before} inside");
                        thread::sleep(Duration::from_millis(1));
                        assert_eq!(state.swap(0, Ordering::SeqCst), -1);
                        writes.fetch_add(1, Ordering::SeqCst);
                        guard.release().unwrap();
                    } else {
                        let guard = lock.read().unwrap();
                        let now = state.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now >= 1, "a reader went in with a writer inside");
                        most_readers.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(2));
                        state.fetch_sub(1, Ordering::SeqCst);
                        reads.fetch_add(1, Ordering::SeqCst);
                        guard.release().unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(
        reads.load(Ordering::SeqCst) + writes.load(Ordering::SeqCst),
        120
    );
    assert_eq!(writes.load(Ordering::SeqCst), 30);
    assert!(
        most_readers.load(Ordering::SeqCst) >= 2,
        "readers never shared"
    );
}

fn a_writer_gets_in_within_a_bound_while_eight_threads_keep_reading(backend: &Backend) {
    // Eight readers whose holds overlap without a gap: a writer that only
    // waits for "no reader" would never get in.
    let stop = AtomicBool::new(false);
    let inside = AtomicI32::new(0);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let client = backend.client();
                let lock = client.rw_lock("hot").wait(Duration::from_secs(20));
                while !stop.load(Ordering::SeqCst) {
                    let guard = lock.read().unwrap();
                    inside.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                }
            });
        }
        thread::sleep(Duration::from_millis(300)); // the readers are going
        let client = backend.client();
        let started = Instant::now();
        let writer = client.rw_lock("hot").wait(Duration::from_secs(10)).write();
        let waited = started.elapsed();
        let readers_inside = inside.load(Ordering::SeqCst);
        // Stopped before any assertion, so that a failure cannot leave the
        // readers running.
        stop.store(true, Ordering::SeqCst);
        drop(writer.expect("the writer gets in"));
        assert_eq!(readers_inside, 0, "a reader was inside with the writer");
        // Bounded by the readers inside finishing (20 ms each) and the
        // wake-ups, far below the 10 s wait.
        assert!(
            waited < Duration::from_secs(3),
            "the writer waited {waited:?}"
        );
    });
}

fn asking_again_on_the_same_thread_is_refused_not_a_deadlock(backend: &Backend) {
    let client = backend.client();
    let lock = client.rw_lock("cfg").wait(Duration::from_secs(5));
    let read = lock.read().unwrap();
    let started = Instant::now();
    assert!(matches!(lock.write(), Err(Error::WouldDeadlock { .. })));
    assert!(matches!(lock.read(), Err(Error::WouldDeadlock { .. })));
    assert!(started.elapsed() < Duration::from_secs(1), "it waited");
    drop(read);
    let write = lock.write().unwrap();
    assert!(matches!(lock.try_read(), Err(Error::WouldDeadlock { .. })));
    write.release().unwrap();
    // Another thread is another holder: it waits, then gets in.
    let read = lock.read().unwrap();
    let other = thread::scope(|s| s.spawn(|| lock.try_read().map(|g| g.is_some())).join());
    assert!(other.unwrap().unwrap());
    drop(read);
}

fn a_writer_that_gives_up_does_not_keep_readers_out(backend: &Backend) {
    let client = backend.client();
    let reader = client.rw_lock("r").read().unwrap();
    let writer = backend.client();
    let gave_up = thread::scope(|s| {
        s.spawn(|| writer.rw_lock("r").wait(Duration::from_millis(300)).write())
            .join()
            .unwrap()
    });
    assert!(matches!(gave_up, Err(Error::Timeout { .. })));
    // Its wish to write was withdrawn: a new reader goes in at once.
    let other = backend.client();
    assert!(other.rw_lock("r").try_read().unwrap().is_some());
    drop(reader);
}

fn a_crashed_holders_hold_ends_at_its_ttl(backend: &Backend) {
    let client = backend.client();
    let crashed = client.rw_lock("c").ttl(Duration::from_millis(200));
    std::mem::forget(crashed.write().unwrap());
    let other = backend.client();
    assert!(other.rw_lock("c").try_read().unwrap().is_none());
    let started = Instant::now();
    let read = other
        .rw_lock("c")
        .wait(Duration::from_secs(5))
        .read()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(read);
}

fn every_hold_gets_a_larger_token_and_a_stale_writer_is_refused_by_a_record(backend: &Backend) {
    let client = backend.client();
    let first = client
        .rw_lock("t")
        .ttl(Duration::from_millis(150))
        .write()
        .unwrap();
    first.put("t/value", b"first").unwrap();
    thread::sleep(Duration::from_millis(250)); // its hold ends
    let other = backend.client();
    let read = other.rw_lock("t").read().unwrap();
    assert!(read.fencing_token() > first.fencing_token());
    drop(read);
    let second = other.rw_lock("t").write().unwrap();
    assert!(second.fencing_token() > first.fencing_token());
    second.put("t/value", b"second").unwrap();
    assert!(matches!(
        first.put("t/value", b"stale"),
        Err(Error::StaleToken { .. })
    ));
    assert!(matches!(first.release(), Err(Error::NotHeld { .. })));
    assert_eq!(
        other.record("t/value").get().unwrap().unwrap().value,
        b"second"
    );
}

fn the_watchdog_keeps_a_hold_past_its_ttl(backend: &Backend) {
    let write = backend
        .client()
        .rw_lock("w")
        .ttl(Duration::from_millis(300))
        .watchdog()
        .write()
        .unwrap();
    thread::sleep(Duration::from_millis(1000));
    assert!(write.is_held().unwrap());
    assert!(backend.client().rw_lock("w").try_read().unwrap().is_none());
    write.release().unwrap();
}
