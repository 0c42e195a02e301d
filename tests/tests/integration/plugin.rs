//! Real guests (`guest/plugins/test-plugin`, built for wasm32-wasip2) in the
//! real host against a real redis-server: isolation, limits, and that a
//! plugin never leaves a lock behind, however it ends.

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tollgate::Client;
use tollgate::plugin::{Plugin, PluginError, Policy, Runtime, TrapCause};
use tollgate_tests::RedisServer;
use tollgate_tests::guest::test_plugin;

use crate::client;

/// One runtime for the whole test binary, so the test plugin is compiled
/// once.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime starts"))
}

fn load(client: &Client, policy: Policy) -> Plugin {
    runtime()
        .load(client, test_plugin(), policy)
        .expect("test plugin loads")
}

fn policy(namespace: &str) -> Policy {
    Policy::new(namespace).unwrap()
}

/// Runs one command of the test plugin; its text output or the error.
fn run(plugin: &Plugin, command: &str) -> Result<String, PluginError> {
    plugin
        .run(command.as_bytes())
        .map(|out| String::from_utf8(out).expect("the test plugin answers text"))
}

/// Whether lock `name` is granted on `server`.
fn lock_key_exists(server: &RedisServer, name: &str) -> bool {
    crate::raw_lock(server, name).is_some()
}

#[test]
fn two_instances_contending_for_one_lock_are_never_both_inside() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("a"));
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| assert_eq!(run(&plugin, "critical shared 40 c").unwrap(), "ok"));
        }
    });
    // get + set inside the lock: exact only if the two never overlapped.
    assert_eq!(client.counter("a/c").get().unwrap(), 80);
}

#[test]
fn a_guest_panic_while_holding_a_lock_frees_it_when_the_call_returns() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a"));
    let err = run(&plugin, "panic-holding p").unwrap_err();
    match &err {
        PluginError::Panicked(message) => {
            assert!(
                message.contains("panic-holding: panicking while holding"),
                "{message}"
            );
            assert!(message.contains("src/lib.rs"), "where: {message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(
        !lock_key_exists(&server, "a/p"),
        "the lock outlived the trap"
    );
}

#[test]
fn a_plugin_instance_paused_past_its_lock_ttl_cannot_overwrite_the_next_holders_record() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("w"));
    let stale = thread::scope(|s| {
        // The instance takes the lock for 300 ms and is away for 800 ms.
        let paused = s.spawn(|| run(&plugin, "hold-sleep-put acct 300 800 acct/balance paused"));
        thread::sleep(Duration::from_millis(450));
        let next = client
            .lock("w/acct")
            .wait(Duration::from_secs(2))
            .acquire()
            .unwrap();
        next.put("w/acct/balance", b"next-holder").unwrap();
        paused.join().unwrap()
    });
    assert_eq!(stale.unwrap(), "error: stale-token");
    let entry = client.record("w/acct/balance").get().unwrap().unwrap();
    assert_eq!(entry.value, b"next-holder");
}

#[test]
fn fenced_records_are_namespaced_and_bounded_by_the_policy() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("r").max_record_size(8));
    assert_eq!(run(&plugin, "put cfg small 5").unwrap(), "put");
    assert_eq!(run(&plugin, "get-record cfg").unwrap(), "small 5");
    assert_eq!(
        client.record("r/cfg").get().unwrap().unwrap().value,
        b"small"
    );
    assert_eq!(
        run(&plugin, "put cfg older 4").unwrap(),
        "error: stale-token"
    );
    assert_eq!(
        run(&plugin, "put cfg far-too-long 6").unwrap(),
        "error: too-large"
    );
    assert_eq!(run(&plugin, "put {x} v 1").unwrap(), "error: access-denied");
    // Another plugin's record of the same name is another record.
    let other = load(&client, policy("s"));
    assert_eq!(run(&other, "get-record cfg").unwrap(), "none");
}

#[test]
fn plugin_instances_never_hold_more_permits_than_the_semaphore_has() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("q"));
    let replies: Vec<String> = thread::scope(|s| {
        let runs: Vec<_> = (0..6)
            .map(|_| s.spawn(|| run(&plugin, "permit-critical pool 2 150").unwrap()))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for reply in &replies {
        let inside: u32 = reply.strip_prefix("inside ").unwrap().parse().unwrap();
        assert!((1..=2).contains(&inside), "{replies:?}");
    }
    // Every permit came back when the instances ended.
    assert_eq!(client.semaphore("q/pool", 2).available().unwrap(), 2);
}

#[test]
fn plugin_instances_share_a_read_hold_but_never_a_write_hold() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("v"));
    let replies: Vec<String> = thread::scope(|s| {
        let runs: Vec<_> = ["read", "read", "write", "read", "write", "read"]
            .into_iter()
            .map(|mode| {
                let plugin = &plugin;
                s.spawn(move || (mode, run(plugin, &format!("rw table {mode} 120")).unwrap()))
            })
            .collect();
        runs.into_iter()
            .map(|r| {
                let (mode, reply) = r.join().unwrap();
                format!("{mode}: {reply}")
            })
            .collect()
    });
    for reply in &replies {
        let ok = match reply.split_once(": ").unwrap() {
            ("write", seen) => seen == "readers 0 writers 1",
            (_, seen) => seen.starts_with("readers ") && seen.ends_with(" writers 0"),
        };
        assert!(ok, "{replies:?}");
    }
    assert_eq!(
        run(&plugin, "read-then-write cfg").unwrap(),
        "error: would-deadlock"
    );
}

#[test]
fn a_plugin_built_against_coord_0_1_0_loads_and_runs_on_this_host() {
    // The test plugin as built before 0.1.1 added `fenced-record`: its
    // imports name `tollgate:coord/*@0.1.0`.
    let wasm = include_bytes!("../../fixtures/test-plugin-coord-0.1.0.wasm");
    let imports = String::from_utf8_lossy(wasm);
    assert!(imports.contains("tollgate:coord/lock@0.1.0"));
    assert!(!imports.contains("@0.1.1"));

    let server = RedisServer::start();
    let client = client(&server);
    let plugin = runtime()
        .load(&client, wasm, policy("legacy"))
        .expect("a 0.1.0 component loads");
    assert!(run(&plugin, "hold l").unwrap().starts_with("held "));
    assert_eq!(run(&plugin, "incr c 2").unwrap(), "value 2");
    assert_eq!(run(&plugin, "idem k 0 runs").unwrap(), "fresh result-of-k");
    assert!(matches!(
        run(&plugin, "panic-holding p"),
        Err(PluginError::Panicked(_))
    ));
    assert!(!lock_key_exists(&server, "legacy/p"));
}

#[test]
fn a_guest_trap_has_a_cause_to_match_on_and_frees_its_lock() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a"));
    let err = run(&plugin, "abort-holding t").unwrap_err();
    let PluginError::Trapped { cause, detail } = &err else {
        panic!("expected a trap, got {err:?}");
    };
    assert_eq!(*cause, TrapCause::Unreachable);
    assert!(detail.contains("unreachable"), "{detail}");
    assert_eq!(
        err.to_string(),
        "the plugin trapped: it aborted (wasm `unreachable`)"
    );
    assert!(
        !lock_key_exists(&server, "a/t"),
        "the lock outlived the trap"
    );

    let err = run(&plugin, "recurse").unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Trapped {
                cause: TrapCause::StackOverflow,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_guest_looping_forever_is_stopped_at_its_deadline_and_its_lock_freed() {
    let server = RedisServer::start();
    let plugin = load(
        &client(&server),
        policy("a").timeout(Duration::from_millis(500)),
    );
    let start = Instant::now();
    let err = run(&plugin, "loop-holding l").unwrap_err();
    let took = start.elapsed();
    // Its own code used the time: no wait to blame.
    assert!(
        matches!(err, PluginError::TimedOut { cut_wait: None, .. }),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
    assert!(
        !lock_key_exists(&server, "a/l"),
        "the lock outlived the timeout"
    );
}

#[test]
fn a_guest_waiting_in_a_host_call_is_stopped_at_its_deadline() {
    let server = RedisServer::start();
    // Held by another process (another client): the guest must wait.
    let other = client(&server);
    let _held = other
        .lock("a/busy")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let plugin = load(
        &client(&server),
        policy("a").timeout(Duration::from_millis(500)),
    );
    let start = Instant::now();
    let result = run(&plugin, "lock-wait busy 9000");
    let took = start.elapsed();
    // The wait ends at the deadline: the guest sees `timeout`, or is stopped.
    match result {
        Ok(text) => assert_eq!(text, "error: timeout"),
        // Stopped: the error says the time went into the lock wait.
        Err(err) => {
            let PluginError::TimedOut {
                cut_wait: Some(wait),
                ..
            } = &err
            else {
                panic!("expected a timeout naming the cut wait, got {err:?}");
            };
            assert_eq!(wait, r#"a wait for lock "busy" (asked up to 9s)"#);
            assert!(
                err.to_string().contains("which the deadline cut short"),
                "{err}"
            );
        }
    }
    assert!(
        took < Duration::from_millis(1500),
        "returned after {took:?}"
    );
}

#[test]
fn a_guest_allocating_a_gibibyte_runs_out_of_memory_and_the_host_serves_others() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a").max_memory(64 << 20));
    let err = run(&plugin, "alloc 1073741824").unwrap_err();
    match err {
        PluginError::OutOfMemory { requested, limit } => {
            assert_eq!(limit, 64 << 20);
            assert!(requested > limit, "{requested}");
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(run(&plugin, "hold after").unwrap().starts_with("held "));
    assert_eq!(run(&plugin, "alloc 1048576").unwrap(), "allocated");
}

#[test]
fn a_forgotten_guard_is_released_when_the_invocation_ends() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a"));
    assert!(run(&plugin, "forget f").unwrap().starts_with("forgot "));
    assert!(
        !lock_key_exists(&server, "a/f"),
        "a forgotten guard kept its lock"
    );
}

#[test]
fn plugins_cannot_reach_each_others_names_by_any_trick() {
    let server = RedisServer::start();
    let elsewhere = client(&server);
    let client = client(&server);
    // Plugin b's lock and counter, held elsewhere.
    let b_lock = elsewhere
        .lock("b/x")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    client.counter("b/c").set(7).unwrap();
    let a = load(&client, policy("a"));
    for name in [
        "x", "b/x", "../b/x", "/b/x", "b:x", ":b/x", "..", "a/../b/x",
    ] {
        let out = run(&a, &format!("try {name}")).unwrap();
        assert!(out.starts_with("granted "), "lock {name:?}: {out}");
        let out = run(&a, &format!("incr {name}c 1")).unwrap();
        assert_eq!(out, "value 1", "counter {name:?}c");
    }
    for name in ["{b/x}", "b}x", "{b}", "*"] {
        assert_eq!(
            run(&a, &format!("try {name}")).unwrap(),
            "error: access-denied",
            "{name:?}"
        );
    }
    let long = "y".repeat(300);
    assert_eq!(
        run(&a, &format!("try {long}")).unwrap(),
        "error: invalid-argument"
    );
    assert_eq!(run(&a, "get b/c").unwrap(), "value 0");
    // b's state is untouched.
    assert_eq!(client.counter("b/c").get().unwrap(), 7);
    assert!(lock_key_exists(&server, "b/x"));
    let info = client.lock_info("b/x").unwrap().expect("still held");
    assert_eq!(info.fencing_token, b_lock.fencing_token());
}

#[test]
fn a_quota_exceeded_reaches_the_guest_as_a_typed_error() {
    let server = RedisServer::start();
    let plugin = load(
        &client(&server),
        policy("a")
            .max_locks(3)
            .max_ttl(Duration::from_secs(60))
            .max_wait(Duration::from_secs(1))
            .max_result_size(1024),
    );
    assert_eq!(run(&plugin, "hold-many 3").unwrap(), "held 3");
    assert_eq!(
        run(&plugin, "hold-many 5").unwrap(),
        "error at 3: quota-exceeded"
    );
    assert_eq!(
        run(&plugin, "lock-ttl t 3600000").unwrap(),
        "error: quota-exceeded"
    );
    assert_eq!(
        run(&plugin, "lock-wait w 5000").unwrap(),
        "error: quota-exceeded"
    );
    assert_eq!(
        run(&plugin, "result-size 2048").unwrap(),
        "error: too-large"
    );
    // The held locks of the earlier invocations are all gone.
    for i in 0..5 {
        assert!(!lock_key_exists(&server, &format!("a/m{i}")));
    }
}

#[test]
fn an_idempotent_guest_action_run_by_eight_instances_executes_once() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("a"));
    let outputs: Vec<String> = thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| run(&plugin, "idem order-7 300 runs").unwrap()))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let fresh = outputs.iter().filter(|o| o.starts_with("fresh ")).count();
    let replayed = outputs
        .iter()
        .filter(|o| o.starts_with("replayed "))
        .count();
    assert_eq!((fresh, replayed), (1, 7), "{outputs:?}");
    assert!(
        outputs.iter().all(|o| o.ends_with("result-of-order-7")),
        "{outputs:?}"
    );
    assert_eq!(client.counter("a/runs").get().unwrap(), 1);
}

#[test]
fn guests_get_serial_numbers_and_once_in_their_namespace() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("a"));
    let first = run(&plugin, "seq orders ORD-{seq:04}").unwrap();
    let second = run(&plugin, "seq orders ORD-{seq:04}").unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("ORD-0001", "ORD-0002"));
    assert_eq!(run(&plugin, "once click-1 10000").unwrap(), "true");
    assert_eq!(run(&plugin, "once click-1 10000").unwrap(), "false");
    assert!(client.once("a/click-2", Duration::from_secs(10)).unwrap());
}

#[test]
fn a_component_that_is_not_a_plugin_is_refused_at_load() {
    let server = RedisServer::start();
    let err = runtime()
        .load(&client(&server), b"not wasm at all", policy("a"))
        .err()
        .expect("refused");
    assert!(matches!(err, PluginError::Load(_)), "{err:?}");
}

#[test]
fn a_guest_sleeping_past_its_deadline_is_stopped_and_its_renewed_lock_freed() {
    let server = RedisServer::start();
    let plugin = load(
        &client(&server),
        policy("a").timeout(Duration::from_millis(500)),
    );
    let start = Instant::now();
    let err = run(&plugin, "sleep-holding s 60000").unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(&err, PluginError::TimedOut { cut_wait: Some(wait), .. } if wait == "a sleep of 60s"),
        "{err:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "a 60 s sleep held the host for {took:?}"
    );
    assert!(
        !lock_key_exists(&server, "a/s"),
        "the renewed lock outlived the invocation"
    );
}

#[test]
fn a_claim_of_a_stopped_invocation_is_abandoned_at_once() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("a").timeout(Duration::from_millis(500)));
    let err = run(&plugin, "idem order-9 60000 runs").unwrap_err();
    assert!(matches!(err, PluginError::TimedOut { .. }), "{err:?}");
    // The next caller runs the action itself, without waiting out the lease.
    let patient = load(&client, policy("a"));
    let start = Instant::now();
    assert_eq!(
        run(&patient, "idem order-9 0 runs").unwrap(),
        "fresh result-of-order-9"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(client.counter("a/runs").get().unwrap(), 2);
}

#[test]
fn guards_dropped_during_an_invocation_free_their_quota() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a").max_locks(2));
    assert_eq!(run(&plugin, "drop-many 10").unwrap(), "dropped 10");
    for i in 0..10 {
        assert!(!lock_key_exists(&server, &format!("a/d{i}")));
    }
}

#[test]
fn idempotency_once_and_sequences_are_separate_per_plugin() {
    let server = RedisServer::start();
    let client = client(&server);
    let a = load(&client, policy("a"));
    let b = load(&client, policy("b"));
    assert_eq!(run(&a, "idem k 0 runs").unwrap(), "fresh result-of-k");
    assert_eq!(run(&b, "idem k 0 runs").unwrap(), "fresh result-of-k");
    assert_eq!(run(&a, "idem k 0 runs").unwrap(), "replayed result-of-k");
    assert_eq!(run(&a, "once x 10000").unwrap(), "true");
    assert_eq!(run(&b, "once x 10000").unwrap(), "true");
    assert_eq!(run(&a, "seq s -").unwrap(), "1");
    assert_eq!(run(&b, "seq s -").unwrap(), "1");
}

#[test]
fn guests_get_no_environment_arguments_or_files() {
    let server = RedisServer::start();
    let plugin = load(&client(&server), policy("a"));
    assert_eq!(run(&plugin, "env").unwrap(), "env 0 args 0");
    assert_eq!(run(&plugin, "file /etc/passwd").unwrap(), "no file access");
}

#[test]
fn policies_that_cannot_work_are_refused_at_load() {
    let server = RedisServer::start();
    let client = client(&server);
    for policy in [
        policy("a").timeout(Duration::ZERO),
        policy("a").timeout(Duration::from_secs(7200)),
        policy("a").max_memory(0),
    ] {
        let err = runtime()
            .load(&client, test_plugin(), policy)
            .err()
            .expect("refused");
        assert!(matches!(err, PluginError::Load(_)), "{err:?}");
    }
}

#[test]
fn a_guest_cannot_write_more_names_per_invocation_than_its_policy_allows() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("a").max_written_names(20));
    for kind in ["lock", "counter", "op", "once", "seq", "idem"] {
        let keys_before: u64 = redis::cmd("DBSIZE").query(&mut server.conn()).unwrap();
        let out = run(&plugin, &format!("write-many {kind} 25")).unwrap();
        // `op` writes to its counter too: 1 + 19 operation ids.
        let refused_at = if kind == "op" { 19 } else { 20 };
        assert!(
            out.starts_with(&format!("error at {refused_at}:")) && out.contains("quota-exceeded"),
            "{kind}: {out}"
        );
        let keys_after: u64 = redis::cmd("DBSIZE").query(&mut server.conn()).unwrap();
        // Each name leaves at most one key behind (a lock its fencing
        // counter, `op` the counter too): nothing past the quota.
        assert!(
            keys_after - keys_before <= 21,
            "{kind}: {} keys written",
            keys_after - keys_before
        );
        // Writing one name again does not count again.
        assert_eq!(run(&plugin, "write-many counter 20").unwrap(), "wrote 20");
    }
}

#[test]
fn a_guest_cannot_store_more_result_bytes_per_invocation_than_its_policy_allows() {
    let server = RedisServer::start();
    let plugin = load(
        &client(&server),
        policy("a")
            .max_result_size(64 << 10)
            .max_stored_bytes(256 << 10),
    );
    let out = run(&plugin, &format!("store-many 10 {}", 64 << 10)).unwrap();
    assert!(
        out.starts_with("error at 4:") && out.contains("quota-exceeded"),
        "{out}"
    );
    // The refused result was not stored: a failure record saying so is,
    // so that a repeat does not run the action again.
    let mut conn = server.conn();
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("tollgate:idem:*")
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored.len(), 5, "{stored:?}");
    let repeat = run(&plugin, &format!("store-many 5 {}", 64 << 10)).unwrap();
    assert!(
        repeat.contains("error at 4") && repeat.contains("stored-bytes quota"),
        "{repeat}"
    );
    // A new invocation starts with a fresh allowance.
    assert_eq!(run(&plugin, "store-many 4 1000").unwrap(), "stored 4");
}

#[test]
fn a_guest_is_stopped_within_a_tick_of_its_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_secs(2);
    let plugin = load(&client(&server), policy("a").timeout(timeout));
    let start = Instant::now();
    let err = run(&plugin, "loop-holding l").unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, PluginError::TimedOut { .. }), "{err:?}");
    assert!(took >= timeout, "stopped early, after {took:?}");
    // One 10 ms tick, plus room for a loaded machine; a deadline that
    // counted ticks ran about 20 % long here.
    assert!(
        took < timeout + Duration::from_millis(150),
        "stopped after {took:?}"
    );
}

#[test]
fn an_invocation_holding_locks_and_claims_returns_at_its_deadline_while_redis_is_stalled() {
    let server = RedisServer::start();
    let client = client(&server); // response timeout 1 s
    let timeout = Duration::from_millis(1500);
    let plugin = load(&client, policy("a").timeout(timeout));
    let started = Instant::now();
    let took = thread::scope(|scope| {
        let invocation = scope.spawn(|| {
            let err = run(&plugin, "hold-and-spin 4").unwrap_err();
            assert!(matches!(err, PluginError::TimedOut { .. }), "{err:?}");
            started.elapsed()
        });
        // Once the guest holds its 4 locks and 4 claims, Redis stalls.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !lock_key_exists(&server, "a/h3") {
            assert!(Instant::now() < deadline, "the guest took no locks");
            thread::sleep(Duration::from_millis(5));
        }
        server.pause();
        let took = invocation.join().unwrap();
        server.resume();
        took
    });
    // Releasing 8 holds one response timeout each would take 8 s more.
    assert!(
        took < timeout + Duration::from_millis(500),
        "returned after {took:?}"
    );
}

#[test]
fn misbehaving_guests_do_not_stop_another_plugin_from_being_served() {
    let server = RedisServer::start();
    let client = client(&server);
    let bad = load(
        &client,
        policy("bad")
            .timeout(Duration::from_millis(800))
            .max_memory(16 << 20)
            .max_written_names(100),
    );
    let good = load(&client, policy("good").timeout(Duration::from_secs(2)));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let served = thread::scope(|scope| {
        for command in [
            "panic-holding p",
            "loop-holding l",
            "alloc 1073741824",
            "write-many counter 5000",
            "hold-and-spin 4",
        ] {
            let (bad, stop) = (&bad, &stop);
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = run(bad, command);
                }
            });
        }
        let mut served = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let started = Instant::now();
            assert_eq!(
                run(&good, "incr served 1").unwrap(),
                format!("value {}", served + 1)
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            served += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        served
    });
    assert!(served > 10, "only {served} calls served");
    assert_eq!(client.counter("good/served").get().unwrap(), served);
}

/// A private temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cached_runtime(dir: &TempDir) -> Runtime {
    Runtime::builder().cache_dir(&dir.0).build().unwrap()
}

fn cache_entries(dir: &TempDir) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn a_plugin_compiled_once_loads_from_the_disk_cache_in_a_new_runtime() {
    let server = RedisServer::start();
    let client = client(&server);
    let dir = TempDir::new("cache");
    let first = cached_runtime(&dir);
    let plugin = first.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(run(&plugin, "noop").unwrap(), "ok");
    assert_eq!(first.stats().compiled, 1);
    assert_eq!(cache_entries(&dir).len(), 1, "one compiled entry");

    // A new runtime (as in a new process) compiles nothing.
    let second = cached_runtime(&dir);
    let plugin = second.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(run(&plugin, "incr n 2").unwrap(), "value 2");
    assert_eq!(second.stats().compiled, 0);
    assert_eq!(second.stats().from_disk, 1);
}

#[test]
fn a_damaged_cache_entry_is_compiled_again_not_loaded() {
    let server = RedisServer::start();
    let client = client(&server);
    let dir = TempDir::new("cache-damaged");
    cached_runtime(&dir)
        .load(&client, test_plugin(), policy("c"))
        .unwrap();
    let entry = cache_entries(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55; // one flipped byte in the compiled code
    std::fs::write(&entry, &bytes).unwrap();

    let runtime = cached_runtime(&dir);
    let plugin = runtime.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(run(&plugin, "incr n 1").unwrap(), "value 1");
    assert_eq!(
        runtime.stats().compiled,
        1,
        "the damaged entry was not used"
    );
    // It was written again, whole: the next runtime loads it.
    let next = cached_runtime(&dir);
    next.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(next.stats().from_disk, 1);

    // Cut short, too.
    std::fs::write(&entry, &bytes[..1000]).unwrap();
    let runtime = cached_runtime(&dir);
    runtime.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(runtime.stats().compiled, 1);
}

#[test]
fn a_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let server = RedisServer::start();
    let client = client(&server);
    let dir = TempDir::new("cache-open");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let runtime = cached_runtime(&dir);
    assert_eq!(runtime.cache_dir(), None);
    let plugin = runtime.load(&client, test_plugin(), policy("c")).unwrap();
    assert_eq!(run(&plugin, "noop").unwrap(), "ok");
    assert!(cache_entries(&dir).is_empty(), "nothing written there");
}

#[test]
fn a_pooled_runtime_runs_plugins_and_refuses_instances_past_its_pool() {
    let server = RedisServer::start();
    let client = client(&server);
    let runtime = Runtime::builder().pooled_instances(2).build().unwrap();
    let plugin = runtime.load(&client, test_plugin(), policy("p")).unwrap();
    for _ in 0..5 {
        assert_eq!(run(&plugin, "noop").unwrap(), "ok");
    }
    assert_eq!(run(&plugin, "incr n 3").unwrap(), "value 3");
    // Two invocations fill the pool; a third at the same time is refused
    // with a typed error, and the pool is whole again afterwards.
    let plugin = std::sync::Arc::new(plugin);
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let plugin = std::sync::Arc::clone(&plugin);
            thread::spawn(move || run(&plugin, &format!("sleep-holding p{i} 600")))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let third = run(&plugin, "noop");
    assert!(matches!(third, Err(PluginError::Host(_))), "{third:?}");
    for holder in holders {
        assert_eq!(holder.join().unwrap().unwrap(), "slept");
    }
    assert_eq!(run(&plugin, "noop").unwrap(), "ok");
}

#[test]
fn every_invocation_of_a_pooled_runtime_starts_with_fresh_memory() {
    let client = tollgate::Client::in_memory();
    // More invocations than a batch of slots given back at once.
    let runtime = Runtime::builder().pooled_instances(64).build().unwrap();
    let plugin = runtime.load(&client, test_plugin(), policy("f")).unwrap();
    for _ in 0..100 {
        assert_eq!(run(&plugin, "visits").unwrap(), "visit 1");
    }
    // One slot: every invocation runs where the one before it ran, so each
    // command meets what the same command left (a static it counted in, a
    // heap it wrote, 2 MiB it grew memory by and filled).
    let runtime = Runtime::builder().pooled_instances(1).build().unwrap();
    let plugin = runtime.load(&client, test_plugin(), policy("f")).unwrap();
    for _ in 0..20 {
        for _ in 0..2 {
            assert_eq!(run(&plugin, "visits").unwrap(), "visit 1");
        }
        for _ in 0..2 {
            assert_eq!(run(&plugin, "grow-fresh 32").unwrap(), "fresh");
        }
    }
}

#[test]
fn a_memory_limit_below_the_guests_initial_memory_is_reported_as_such() {
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("m").max_memory(64 * 1024));
    match run(&plugin, "noop") {
        Err(PluginError::OutOfMemory { limit, .. }) => assert_eq!(limit, 64 * 1024),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

#[test]
fn a_call_can_have_a_shorter_timeout_and_a_larger_input_is_refused_before_it_runs() {
    use tollgate::plugin::RunOptions;
    let server = RedisServer::start();
    let client = client(&server);
    let plugin = load(&client, policy("o").max_input(32));
    // The call's own limit, shorter than the policy's 5 s.
    let report = plugin.run_with(
        b"sleep-holding x 3000",
        RunOptions::new().timeout(Duration::from_millis(200)),
    );
    match report.result {
        Err(PluginError::TimedOut { limit, .. }) => assert_eq!(limit, Duration::from_millis(200)),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(
        client.lock("o/x").try_acquire().unwrap().is_some(),
        "released"
    );
    let err = plugin.run(&[b'x'; 33]).unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::InputTooLarge {
                size: 33,
                limit: 32
            }
        ),
        "{err:?}"
    );
    assert_eq!(run(&plugin, "noop").unwrap(), "ok");
}
