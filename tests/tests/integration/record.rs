//! Fenced records: a write is accepted only with a token at least as high
//! as any the record has accepted, so a holder whose lock expired while it
//! was paused cannot overwrite the next holder's value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use tollgate::Error;
use tollgate_tests::RedisServer;

use crate::{Backend, PausedHolder, client, conformance};

conformance![
    a_write_with_an_older_token_is_refused_and_changes_nothing,
    the_same_token_may_write_again_and_a_newer_one_takes_over,
    a_delete_is_fenced_and_keeps_stale_writers_from_bringing_the_value_back,
    a_guard_writes_with_its_own_token_and_refuses_once_it_knows_its_lock_is_lost,
    tokens_beyond_two_to_the_53_compare_exactly,
    values_are_stored_byte_for_byte_within_the_size_limit,
    a_record_with_a_ttl_expires_and_forgets_its_token,
    concurrent_writers_with_rising_tokens_leave_the_highest_tokens_value,
    a_delete_where_there_was_no_record_leaves_a_tombstone_that_expires,
];

fn a_delete_where_there_was_no_record_leaves_a_tombstone_that_expires(backend: &Backend) {
    let record = backend
        .client()
        .record("gone")
        .ttl(Duration::from_millis(200));
    assert!(!record.delete(5).unwrap());
    assert_eq!(stale(record.put(b"late", 4)), (4, 5));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        record.highest_token().unwrap(),
        None,
        "the tombstone expired"
    );
    // Without a TTL on the handle, the tombstone lives for the fence
    // retention: never for ever.
    let plain = backend.client().record("gone-too");
    assert!(!plain.delete(5).unwrap());
    if let Some(server) = backend.server() {
        let pttl: i64 = redis::cmd("PTTL")
            .arg("tollgate:rec:{gone-too}")
            .query(&mut server.conn())
            .unwrap();
        assert!(pttl > 0, "PTTL {pttl}");
    }
}

fn stale(result: tollgate::Result<impl std::fmt::Debug>) -> (u64, u64) {
    match result {
        Err(Error::StaleToken { token, highest, .. }) => (token, highest),
        other => panic!("expected StaleToken, got {other:?}"),
    }
}

fn a_write_with_an_older_token_is_refused_and_changes_nothing(backend: &Backend) {
    let record = backend.client().record("balance");
    assert_eq!(record.get().unwrap(), None);
    record.put(b"100", 7).unwrap();
    assert_eq!(stale(record.put(b"0", 6)), (6, 7));
    let entry = record.get().unwrap().unwrap();
    assert_eq!((entry.value.as_slice(), entry.token), (&b"100"[..], 7));
    assert_eq!(entry.remaining_ttl, None);
}

fn the_same_token_may_write_again_and_a_newer_one_takes_over(backend: &Backend) {
    let record = backend.client().record("r");
    record.put(b"a", 5).unwrap();
    record.put(b"b", 5).unwrap(); // one holder, several writes
    record.put(b"c", 9).unwrap();
    assert_eq!(stale(record.put(b"d", 5)), (5, 9));
    assert_eq!(record.get().unwrap().unwrap().value, b"c");
    assert_eq!(record.highest_token().unwrap(), Some(9));
}

fn a_delete_is_fenced_and_keeps_stale_writers_from_bringing_the_value_back(backend: &Backend) {
    let record = backend.client().record("r");
    record.put(b"v", 3).unwrap();
    assert_eq!(stale(record.delete(2)), (2, 3));
    assert!(record.delete(4).unwrap(), "a value was deleted");
    assert_eq!(record.get().unwrap(), None);
    assert_eq!(
        record.highest_token().unwrap(),
        Some(4),
        "the tombstone keeps it"
    );
    assert_eq!(stale(record.put(b"zombie", 3)), (3, 4));
    assert!(!record.delete(4).unwrap(), "nothing left to delete");
    // Deleting a record never written also fences it.
    let fresh = backend.client().record("never");
    assert!(!fresh.delete(10).unwrap());
    assert_eq!(stale(fresh.put(b"x", 9)), (9, 10));
}

fn a_guard_writes_with_its_own_token_and_refuses_once_it_knows_its_lock_is_lost(backend: &Backend) {
    let client = backend.client();
    let first = client
        .lock("wallet")
        .ttl(Duration::from_millis(200))
        .acquire()
        .unwrap();
    first.put("wallet/balance", b"10").unwrap();
    thread::sleep(Duration::from_millis(300)); // its lock expires
    let other = backend.client();
    let second = other.lock("wallet").acquire().unwrap();
    assert!(second.fencing_token() > first.fencing_token());
    second.put("wallet/balance", b"20").unwrap();
    // The first holder wakes and writes: refused by the record.
    assert_eq!(
        stale(first.put("wallet/balance", b"0")),
        (first.fencing_token(), second.fencing_token())
    );
    assert_eq!(
        client
            .record("wallet/balance")
            .get()
            .unwrap()
            .unwrap()
            .value,
        b"20"
    );
    // Once the guard has learnt that its lock is gone, it does not even try.
    assert!(!first.is_held().unwrap());
    assert!(matches!(
        first.put("elsewhere", b"x"),
        Err(Error::NotHeld { .. })
    ));
    assert_eq!(client.record("elsewhere").get().unwrap(), None);
}

fn tokens_beyond_two_to_the_53_compare_exactly(backend: &Backend) {
    let record = backend.client().record("big");
    let high = (1u64 << 53) + 1; // a float would round it to 2^53
    record.put(b"a", high).unwrap();
    assert_eq!(stale(record.put(b"b", high - 1)), (high - 1, high));
    record.put(b"c", u64::MAX).unwrap();
    assert_eq!(record.get().unwrap().unwrap().token, u64::MAX);
    assert_eq!(stale(record.put(b"d", 999)), (999, u64::MAX));
}

fn values_are_stored_byte_for_byte_within_the_size_limit(backend: &Backend) {
    let record = backend.client().record("bytes").max_size(300);
    let bytes: Vec<u8> = (0..=255).collect();
    record.put(&bytes, 1).unwrap();
    assert_eq!(record.get().unwrap().unwrap().value, bytes);
    record.put(b"", 1).unwrap();
    assert_eq!(record.get().unwrap().unwrap().value, b"");
    assert!(matches!(
        record.put(&[0; 301], 2),
        Err(Error::TooLarge {
            size: 301,
            limit: 300,
            ..
        })
    ));
    assert_eq!(
        record.highest_token().unwrap(),
        Some(1),
        "nothing was written"
    );
    assert!(matches!(
        backend.client().record("").get(),
        Err(Error::InvalidArgument { .. })
    ));
}

fn a_record_with_a_ttl_expires_and_forgets_its_token(backend: &Backend) {
    let record = backend
        .client()
        .record("short")
        .ttl(Duration::from_millis(200));
    record.put(b"v", 5).unwrap();
    let ttl = record.get().unwrap().unwrap().remaining_ttl.unwrap();
    assert!(ttl <= Duration::from_millis(200), "{ttl:?}");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(record.get().unwrap(), None);
    assert_eq!(record.highest_token().unwrap(), None);
}

fn concurrent_writers_with_rising_tokens_leave_the_highest_tokens_value(backend: &Backend) {
    // 8 writers send 50 writes each with tokens from one rising counter, in
    // any order: the record must end on the highest token's value, and
    // every refusal must name a token above the refused one.
    let next = AtomicU64::new(1);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let record = backend.client().record("race");
                for _ in 0..50 {
                    let token = next.fetch_add(1, Ordering::SeqCst);
                    match record.put(token.to_string().as_bytes(), token) {
                        Ok(()) => {}
                        Err(Error::StaleToken {
                            token: t, highest, ..
                        }) => {
                            assert!(highest > t, "{t} refused for {highest}");
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let entry = backend.client().record("race").get().unwrap().unwrap();
    assert_eq!(entry.token, 400);
    assert_eq!(entry.value, b"400");
}

#[test]
fn a_record_key_holding_other_data_gives_wrong_type_and_is_left_alone() {
    let server = RedisServer::start();
    let client = client(&server);
    let _: () = redis::cmd("SET")
        .arg("tollgate:rec:{r}")
        .arg("not a record")
        .query(&mut server.conn())
        .unwrap();
    assert!(matches!(
        client.record("r").get(),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        client.record("r").put(b"x", 1),
        Err(Error::WrongType { .. })
    ));
    let kept: String = redis::cmd("GET")
        .arg("tollgate:rec:{r}")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(kept, "not a record");
}

#[test]
fn a_holder_sigstopped_past_its_ttl_wakes_and_its_write_is_refused() {
    let server = RedisServer::start();
    let paused = PausedHolder::start(&[
        "hold-then-put",
        &server.url(),
        "ledger",
        "300",
        "ledger/balance",
    ]);
    let paused_token = paused.token;
    thread::sleep(Duration::from_millis(400)); // past its 300 ms TTL

    let client = client(&server);
    let next = client
        .lock("ledger")
        .wait(Duration::from_secs(2))
        .acquire()
        .unwrap();
    assert!(next.fencing_token() > paused_token);
    next.put("ledger/balance", b"next-holder").unwrap();

    let rest = paused.resume();
    assert_eq!(
        rest[0],
        format!("put stale {paused_token} {}", next.fencing_token()),
        "{rest:?}"
    );
    let entry = client.record("ledger/balance").get().unwrap().unwrap();
    assert_eq!(entry.value, b"next-holder");
    assert_eq!(entry.token, next.fencing_token());
}
