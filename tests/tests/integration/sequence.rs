//! Serial numbers: unique across processes, formatted, restarting on the
//! server's new day without a race, reserved in blocks.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tollgate::{Error, MAX_NAME_BYTES, Reset};
use tollgate_tests::RedisServer;

use crate::{Backend, client, command_calls, conformance, reset_stats};

// Run against both stores; the `#[test]`s in this file need Redis itself.
conformance![
    numbers_restart_at_one_on_the_servers_new_day,
    the_date_comes_from_the_servers_clock_in_utc,
    a_block_is_not_used_past_the_servers_midnight,
    block_mode_hands_out_every_number_once_with_one_incrby_per_block,
    numbers_without_a_block_are_consecutive_across_handles,
    bad_sequence_input_gets_a_typed_error,
    last_reserved_reads_without_handing_out_a_number,
];

/// 2026-11-22T23:59:59Z and 2026-11-23T00:00:01Z, as unix seconds.
const BEFORE_MIDNIGHT: u64 = 1_795_391_999;
const AFTER_MIDNIGHT: u64 = 1_795_392_001;

fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut server.conn())
        .expect("PTTL")
}

/// `true` when `number` is `ORD-YYYYMMDD-NNNNNN` (at least six digits).
fn is_order_number(number: &str) -> bool {
    let Some(rest) = number.strip_prefix("ORD-") else {
        return false;
    };
    let Some((date, seq)) = rest.split_once('-') else {
        return false;
    };
    date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && seq.len() >= 6
        && seq.bytes().all(|b| b.is_ascii_digit())
        && seq != "000000"
}

#[test]
fn four_processes_in_block_mode_hand_out_unique_well_formed_numbers() {
    const PER_PROCESS: usize = 10_000;
    let server = RedisServer::start();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_tollgate-test-helper"))
                .args(["serial-numbers", &server.url(), "orders"])
                .args([PER_PROCESS.to_string(), "1000".to_owned()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("helper starts")
        })
        .collect();
    let mut seen = HashSet::new();
    for child in children {
        let output = child.wait_with_output().expect("helper runs");
        assert!(output.status.success(), "{:?}", output.status);
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let numbers: Vec<&str> = stdout.lines().collect();
        assert_eq!(numbers.len(), PER_PROCESS);
        for number in numbers {
            assert!(is_order_number(number), "badly formatted: {number:?}");
            assert!(seen.insert(number.to_owned()), "{number} handed out twice");
        }
    }
    assert_eq!(seen.len(), 4 * PER_PROCESS);
}

fn numbers_restart_at_one_on_the_servers_new_day(backend: &Backend) {
    let client = backend.client();
    let day = |now| {
        client
            .sequence("orders")
            .format("ORD-{date}-{seq:06}")
            .unwrap()
            .reset(Reset::Daily)
            .server_time_override(now)
    };
    let before = day(BEFORE_MIDNIGHT);
    assert_eq!(before.next().unwrap(), "ORD-20261122-000001");
    assert_eq!(before.next().unwrap(), "ORD-20261122-000002");
    let after = day(AFTER_MIDNIGHT);
    assert_eq!(after.next().unwrap(), "ORD-20261123-000001");
    assert_eq!(after.next_raw().unwrap(), 2);
    // A late caller still on the old day continues the old day's count.
    assert_eq!(before.next().unwrap(), "ORD-20261122-000003");

    // One hash with the server's current and previous day, kept about 48 h
    // from the day's first number; no plain key.
    if let Some(server) = backend.server() {
        let key = "tollgate:seq:{orders}:daily";
        let ttl = pttl(server, key);
        assert!(
            (47 * 3600 * 1000..=48 * 3600 * 1000).contains(&ttl),
            "{key}: {ttl}"
        );
        let days: Vec<String> = redis::cmd("HKEYS")
            .arg(key)
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(days.len(), 2, "{days:?}");
        assert_eq!(pttl(server, "tollgate:seq:{orders}"), -2);
    }
    // Two days on, the days before yesterday are forgotten.
    let later = client
        .sequence("orders")
        .format("ORD-{date}-{seq:06}")
        .unwrap()
        .reset(Reset::Daily)
        .server_time_override(AFTER_MIDNIGHT + 2 * 86_400);
    assert_eq!(later.next().unwrap(), "ORD-20261125-000001");
    if let Some(server) = backend.server() {
        let days: Vec<String> = redis::cmd("HKEYS")
            .arg("tollgate:seq:{orders}:daily")
            .query(&mut server.conn())
            .unwrap();
        assert_eq!(days, ["20261125"]);
    }
}

fn the_date_comes_from_the_servers_clock_in_utc(backend: &Backend) {
    let client = backend.client();
    let dated = client.sequence("d").format("{date}/{seq}").unwrap();
    let cases = [
        (0, "19700101"),
        (951_782_400, "20000229"),
        (1_798_761_599, "20261231"),
        (1_798_761_600, "20270101"),
        (1_835_438_400, "20280229"),
        (4_107_542_400, "21000301"),
    ];
    for (now, date) in cases {
        let seq = client
            .sequence(format!("d{now}"))
            .format("{date}/{seq}")
            .unwrap()
            .server_time_override(now);
        assert_eq!(seq.next().unwrap(), format!("{date}/1"), "at {now}");
    }
    // Without the override, the day is the server's TIME, or this machine's
    // clock in memory (checked on both sides, in case the test runs across
    // midnight).
    let server_day = || {
        let days = backend.now_secs() / 86_400;
        client
            .sequence(format!("probe{days}"))
            .format("{date}/{seq}")
            .unwrap()
            .server_time_override(days * 86_400)
            .next()
            .unwrap()
            .replace("/1", "")
    };
    let (first, number, last) = (server_day(), dated.next().unwrap(), server_day());
    let date = number.strip_suffix("/1").unwrap();
    assert!(date == first || date == last, "{date} vs {first}..{last}");
}

fn a_block_is_not_used_past_the_servers_midnight(backend: &Backend) {
    let client = backend.client();
    // One second before the server's midnight: the block of 100 must be
    // dropped after a second, however much of it is left.
    let orders = client
        .sequence("late")
        .format("{date}-{seq}")
        .unwrap()
        .reset(Reset::Daily)
        .block(100)
        .server_time_override(BEFORE_MIDNIGHT);
    assert_eq!(orders.next().unwrap(), "20261122-1");
    assert_eq!(orders.next().unwrap(), "20261122-2");
    thread::sleep(Duration::from_millis(1_100));
    // A new reservation (the seam keeps the old day, so it continues at 101).
    assert_eq!(orders.next().unwrap(), "20261122-101");
}

fn block_mode_hands_out_every_number_once_with_one_incrby_per_block(backend: &Backend) {
    // The naive version wraps INCR in a spin lock (SET NX in a loop, unlock
    // by GET then DEL). INCRBY is atomic by itself: eight threads sharing a
    // block of 100 cost exactly one INCRBY per 100 numbers and nothing else.
    let client = backend.client();
    let orders = Arc::new(client.sequence("orders").block(100));
    if let Some(server) = backend.server() {
        reset_stats(server);
    }
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let orders = orders.clone();
            thread::spawn(move || {
                let numbers: Vec<u64> = (0..1_000).map(|_| orders.next_raw().unwrap()).collect();
                assert!(numbers.windows(2).all(|w| w[0] < w[1]), "not increasing");
                numbers
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("worker"))
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=8_000).collect::<Vec<u64>>(),
        "not unique or with gaps"
    );
    if let Some(server) = backend.server() {
        assert_eq!(command_calls(server, "incrby"), 80);
        for naive in ["set", "setnx", "del", "watch", "multi"] {
            assert_eq!(command_calls(server, naive), 0, "{naive} was used");
        }
    }
}

fn numbers_without_a_block_are_consecutive_across_handles(backend: &Backend) {
    let (a, b) = (backend.client(), backend.client());
    let invoices_a = a.sequence("invoices").format("INV-{seq:08}").unwrap();
    let invoices_b = b.sequence("invoices").format("INV-{seq:08}").unwrap();
    assert_eq!(invoices_a.next().unwrap(), "INV-00000001");
    assert_eq!(invoices_b.next().unwrap(), "INV-00000002");
    assert_eq!(invoices_a.next_raw().unwrap(), 3);
    assert_eq!(invoices_a.name(), "invoices");
    // A sequence without a reset never expires.
    if let Some(server) = backend.server() {
        assert_eq!(pttl(server, "tollgate:seq:{invoices}"), -1);
    }
}

fn last_reserved_reads_without_handing_out_a_number(backend: &Backend) {
    let client = backend.client();
    let plain = client.sequence("tickets");
    assert_eq!(plain.last_reserved().unwrap(), None);
    plain.next().unwrap();
    plain.next().unwrap();
    assert_eq!(plain.last_reserved().unwrap(), Some(2));
    assert_eq!(
        plain.last_reserved().unwrap(),
        Some(2),
        "reading is not drawing"
    );
    assert_eq!(plain.next_raw().unwrap(), 3);

    let day = |now| {
        client
            .sequence("daily")
            .reset(Reset::Daily)
            .server_time_override(now)
    };
    assert_eq!(day(BEFORE_MIDNIGHT).last_reserved().unwrap(), None);
    day(BEFORE_MIDNIGHT).next_raw().unwrap();
    assert_eq!(day(BEFORE_MIDNIGHT).last_reserved().unwrap(), Some(1));
    // The new day has reserved nothing yet, and reading does not start it.
    assert_eq!(day(AFTER_MIDNIGHT).last_reserved().unwrap(), None);
    assert_eq!(day(AFTER_MIDNIGHT).next_raw().unwrap(), 1);
}

#[test]
fn a_lost_reservation_reply_leaves_a_gap_never_a_duplicate() {
    let server = RedisServer::start();
    let client = tollgate::Client::builder(server.url())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let seq = client.sequence("gap");
    assert_eq!(seq.next_raw().unwrap(), 1);
    server.pause();
    let err = seq.next_raw().unwrap_err();
    server.resume();
    assert!(err.is_outcome_unknown(), "{err:?}");
    thread::sleep(Duration::from_millis(200));
    // Number 2 went to the lost reply; it is skipped, not handed out again.
    assert_eq!(seq.next_raw().unwrap(), 3);
}

#[test]
fn a_sequence_key_holding_text_gives_wrong_type() {
    let server = RedisServer::start();
    let client = client(&server);
    redis::cmd("SET")
        .arg(&["tollgate:seq:{text}", "hello"][..])
        .exec(&mut server.conn())
        .unwrap();
    let err = client.sequence("text").next().unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
    let value: String = redis::cmd("GET")
        .arg("tollgate:seq:{text}")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(value, "hello");
}

fn bad_sequence_input_gets_a_typed_error(backend: &Backend) {
    let client = backend.client();
    if let Some(server) = backend.server() {
        reset_stats(server);
    }
    let invalid = |result: tollgate::Result<String>, what: &str| match result {
        Err(Error::InvalidArgument { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected invalid {what}, got {other:?}"),
    };
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    invalid(client.sequence("").next(), "sequence name");
    invalid(client.sequence(long).next(), "sequence name");
    for format in [
        "",
        "ORD-",
        "{seq",
        "{seq}}",
        "{seq:6}",
        "{seq:0}",
        "{id}",
        "{seq}{seq}",
    ] {
        let result = client.sequence("s").format(format).map(|_| String::new());
        invalid(result, "sequence format");
    }
    invalid(client.sequence("s").block(0).next(), "block size");
    invalid(client.sequence("s").block(1_000_001).next(), "block size");
    invalid(
        client.sequence("s").reset(Reset::Daily).next(),
        "sequence format",
    );
    invalid(
        client
            .sequence("s")
            .server_time_override(253_402_300_800)
            .next(),
        "server time override",
    );
    if let Some(server) = backend.server() {
        assert_eq!(command_calls(server, "evalsha"), 0);
    }
}

#[test]
fn counter_and_sequence_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    fn syncable<T: Send + Sync>() {}
    shareable::<tollgate::Counter>();
    syncable::<tollgate::Sequence>();
}
