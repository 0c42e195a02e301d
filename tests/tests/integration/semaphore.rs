//! Semaphores: never more than N permits out; each grant a lease with its
//! own token and TTL; waiters woken by releases.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tollgate::{Client, Error};

use crate::{Backend, conformance};

conformance![
    never_more_than_n_permits_are_out_under_contention,
    a_crashed_holders_permits_come_back_at_their_ttl,
    an_expired_permit_cannot_release_or_extend_and_touches_no_other_grant,
    every_grant_gets_a_larger_fencing_token,
    lowering_the_permits_keeps_grants_out_and_holds_new_requests,
    asking_for_no_permits_or_more_than_exist_is_invalid,
    a_release_wakes_waiters_without_their_fallback_poll,
    a_release_of_several_permits_lets_as_many_waiters_in,
    the_watchdog_keeps_a_permit_past_its_ttl,
    holders_and_available_show_what_is_out,
    counting_near_u32_max_never_lets_more_than_the_permits_in,
];

fn counting_near_u32_max_never_lets_more_than_the_permits_in(backend: &Backend) {
    let client = backend.client();
    let huge = client.semaphore("huge", u32::MAX);
    let all = huge.acquire_many(u32::MAX).unwrap();
    // u32::MAX + 1 permits must not fit (a saturating sum would say so).
    assert!(
        backend
            .client()
            .semaphore("huge", u32::MAX)
            .try_acquire()
            .unwrap()
            .is_none()
    );
    assert_eq!(huge.available().unwrap(), 0);
    all.release().unwrap();
    assert_eq!(huge.available().unwrap(), u32::MAX);
}

/// A client whose waiters would poll only every 30 s: a grant that comes
/// sooner came from a wake-up.
fn slow_polling(backend: &Backend) -> Client {
    backend
        .builder()
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn never_more_than_n_permits_are_out_under_contention(backend: &Backend) {
    const PERMITS: usize = 3;
    let inside = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let grants = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let client = backend.client();
                let pool = client
                    .semaphore("pool", PERMITS as u32)
                    .wait(Duration::from_secs(20));
                for _ in 0..15 {
                    let permit = pool.acquire().unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= PERMITS, "{now} holders of {PERMITS} permits");
                    most.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(1));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    grants.fetch_add(1, Ordering::SeqCst);
                    permit.release().unwrap();
                }
            });
        }
    });
    assert_eq!(grants.load(Ordering::SeqCst), 8 * 15);
    assert_eq!(
        most.load(Ordering::SeqCst),
        PERMITS,
        "the permits were used"
    );
}

fn a_crashed_holders_permits_come_back_at_their_ttl(backend: &Backend) {
    let client = backend.client();
    let crashed = client.semaphore("s", 2).ttl(Duration::from_millis(200));
    std::mem::forget(crashed.acquire_many(2).unwrap()); // never released
    let other = backend.client().semaphore("s", 2);
    assert!(other.try_acquire().unwrap().is_none());
    let started = Instant::now();
    let permit = other.wait(Duration::from_secs(5)).acquire().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    permit.release().unwrap();
}

fn an_expired_permit_cannot_release_or_extend_and_touches_no_other_grant(backend: &Backend) {
    let client = backend.client();
    let first = client
        .semaphore("s", 1)
        .ttl(Duration::from_millis(100))
        .acquire()
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    let second = backend.client().semaphore("s", 1).acquire().unwrap();
    assert!(matches!(
        first.extend(Duration::from_secs(5)),
        Err(Error::NotHeld { .. })
    ));
    assert!(!first.is_held().unwrap());
    assert!(matches!(first.release(), Err(Error::NotHeld { .. })));
    assert!(second.is_held().unwrap());
    assert_eq!(backend.client().semaphore("s", 1).available().unwrap(), 0);
}

fn every_grant_gets_a_larger_fencing_token(backend: &Backend) {
    let sem = backend.client().semaphore("s", 2);
    let a = sem.acquire().unwrap();
    let b = sem.acquire().unwrap();
    assert!(b.fencing_token() > a.fencing_token());
    drop(a);
    let c = sem.acquire().unwrap();
    assert!(c.fencing_token() > b.fencing_token());
    // The token goes to a fenced record like a lock's.
    c.put("s/state", b"c").unwrap();
    assert!(matches!(
        b.put("s/state", b"b"),
        Err(Error::StaleToken { .. })
    ));
}

fn lowering_the_permits_keeps_grants_out_and_holds_new_requests(backend: &Backend) {
    let client = backend.client();
    let wide = client.semaphore("s", 3);
    let held = wide.acquire_many(3).unwrap();
    // A caller that counts 1 permit: 3 are out, none fits.
    let narrow = backend.client().semaphore("s", 1);
    assert!(narrow.try_acquire().unwrap().is_none());
    assert_eq!(narrow.available().unwrap(), 0);
    // The grants out keep their permits: nothing was taken back.
    assert!(held.is_held().unwrap());
    // Raising the number lets a request in at once.
    let raised = backend.client().semaphore("s", 4).try_acquire().unwrap();
    assert!(raised.is_some());
    drop(raised);
    held.release().unwrap();
    assert!(narrow.try_acquire().unwrap().is_some());
}

fn asking_for_no_permits_or_more_than_exist_is_invalid(backend: &Backend) {
    let client = backend.client();
    for (permits, asked) in [(2, 0), (2, 3), (0, 1)] {
        let result = client.semaphore("s", permits).try_acquire_many(asked);
        assert!(
            matches!(result, Err(Error::InvalidArgument { .. })),
            "{asked} of {permits}: {result:?}"
        );
    }
    assert!(matches!(
        client.semaphore("", 1).try_acquire(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        client.semaphore("s", 1).ttl(Duration::ZERO).try_acquire(),
        Err(Error::InvalidArgument { .. })
    ));
}

fn a_release_wakes_waiters_without_their_fallback_poll(backend: &Backend) {
    let holder = backend.client().semaphore("s", 1).acquire().unwrap();
    let waiter = slow_polling(backend);
    thread::scope(|s| {
        let waiting = s.spawn(|| {
            let started = Instant::now();
            let permit = waiter
                .semaphore("s", 1)
                .wait(Duration::from_secs(20))
                .acquire()
                .unwrap();
            (started.elapsed(), permit)
        });
        thread::sleep(Duration::from_millis(200));
        holder.release().unwrap();
        let (waited, _permit) = waiting.join().unwrap();
        assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
    });
}

fn a_release_of_several_permits_lets_as_many_waiters_in(backend: &Backend) {
    let big = backend.client().semaphore("s", 3).acquire_many(3).unwrap();
    let waiter = slow_polling(backend);
    let granted = AtomicU32::new(0);
    thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let started = Instant::now();
                    let permit = waiter
                        .semaphore("s", 3)
                        .wait(Duration::from_secs(20))
                        .acquire()
                        .unwrap();
                    granted.fetch_add(1, Ordering::SeqCst);
                    let waited = started.elapsed();
                    // Held until all three are in, so none frees a permit
                    // for the next.
                    while granted.load(Ordering::SeqCst) < 3 {
                        thread::sleep(Duration::from_millis(5));
                    }
                    drop(permit);
                    waited
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(200));
        big.release().unwrap();
        for waiter in waiters {
            let waited = waiter.join().unwrap();
            assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
        }
    });
}

fn the_watchdog_keeps_a_permit_past_its_ttl(backend: &Backend) {
    let permit = backend
        .client()
        .semaphore("s", 1)
        .ttl(Duration::from_millis(300))
        .watchdog()
        .acquire()
        .unwrap();
    thread::sleep(Duration::from_millis(1000));
    assert!(permit.is_held().unwrap());
    assert!(
        backend
            .client()
            .semaphore("s", 1)
            .try_acquire()
            .unwrap()
            .is_none()
    );
    permit.release().unwrap();
}

fn holders_and_available_show_what_is_out(backend: &Backend) {
    let sem = backend.client().semaphore("s", 5);
    assert_eq!(sem.available().unwrap(), 5);
    let two = sem.acquire_many(2).unwrap();
    let one = sem.acquire().unwrap();
    let holders = sem.holders().unwrap();
    assert_eq!(holders.len(), 2);
    assert_eq!(
        holders.iter().map(|h| h.count).collect::<Vec<_>>(),
        [2, 1],
        "in token order"
    );
    assert_eq!(holders[0].fencing_token, two.fencing_token());
    assert!(holders[1].holder.contains("pid"), "{:?}", holders[1].holder);
    assert!(holders[1].remaining_ttl <= Duration::from_secs(30));
    assert_eq!(sem.available().unwrap(), 2);
    drop(one);
    assert_eq!(sem.available().unwrap(), 3);
}
