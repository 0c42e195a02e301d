//! Redis Cluster beyond the conformance suite (which runs every store test
//! on the shared cluster too): names that could break a hash tag, operator
//! calls over every master, the plugin host and the command on a cluster,
//! a slot migrated under contention, and a master failing over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tollgate::plugin::{Policy, Runtime};
use tollgate::{Client, Reset};
use tollgate_tests::fenced::{
    FencedResource, FencedWrite, check_mutual_exclusion, increment_under,
};
use tollgate_tests::guest::test_plugin;
use tollgate_tests::{RedisCluster, RedisServer};

/// A client on `cluster` under its own prefix, with test timeouts.
fn cluster_client(cluster: &RedisCluster, prefix: &str) -> Client {
    Client::builder(cluster.url())
        .key_prefix(prefix)
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[test]
fn names_with_braces_keep_every_key_of_an_object_in_one_slot() {
    let client = cluster_client(RedisCluster::shared(), "braces:");
    for name in ["{", "}", "{}", "}{", "}x", "a}b{c", "%7D"] {
        let guard = client
            .lock(name)
            .wait(Duration::from_secs(1))
            .acquire()
            .unwrap_or_else(|e| panic!("lock {name:?}: {e}"));
        guard.release().unwrap();
        let counter = client.counter(name).bounds(0..=10);
        assert!(counter.incr_once("op", 1).unwrap().applied, "{name:?}");
        let out = client
            .idempotency(name)
            .key(name)
            .run(|| Ok::<_, std::io::Error>(b"v".to_vec()))
            .unwrap_or_else(|e| panic!("idempotency {name:?}: {e}"));
        assert_eq!(out.value, b"v");
        assert!(
            client.once(name, Duration::from_secs(5)).unwrap(),
            "{name:?}"
        );
        let daily = client.sequence(name).reset(Reset::Daily);
        assert_eq!(daily.next_raw().unwrap(), 1, "{name:?}");
    }
    // Two names that differ only by escaping stay apart.
    let _percent = client.lock("%7D").acquire().unwrap();
    assert!(client.lock("}").try_acquire().unwrap().is_some());
}

#[test]
fn operator_calls_cover_every_master() {
    let cluster = RedisCluster::shared();
    let client = cluster_client(cluster, "operators:");
    let names: Vec<String> = (0..30).map(|i| format!("job-{i}")).collect();
    let guards: Vec<_> = names
        .iter()
        .map(|name| client.lock(name.as_str()).acquire().unwrap())
        .collect();
    let ports: std::collections::HashSet<u16> = names
        .iter()
        .map(|name| {
            let slot = cluster.slot_of(&format!("operators:lock:{{{name}}}"));
            cluster.owner_of(slot).port()
        })
        .collect();
    assert_eq!(
        ports.len(),
        cluster.masters(),
        "the names span every master"
    );
    let mut listed: Vec<String> = client
        .locks("job-*", 100)
        .unwrap()
        .into_iter()
        .map(|info| info.name)
        .collect();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(client.force_unlock("job-7").unwrap());
    assert!(client.lock_info("job-7").unwrap().is_none());
    drop(guards);
}

#[test]
fn plugins_run_on_a_cluster_with_exclusion_and_exact_counts() {
    let cluster = RedisCluster::shared();
    let client = cluster_client(cluster, "plugins:");
    let runtime = Runtime::new().unwrap();
    let plugin = runtime
        .load(&client, test_plugin(), Policy::new("p").unwrap())
        .unwrap();
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let out = plugin.run(b"critical shared 25 c").unwrap();
                assert_eq!(out, b"ok");
            });
        }
    });
    assert_eq!(client.counter("p/c").get().unwrap(), 50);
    let out = plugin.run(b"idem k 0 runs").unwrap();
    assert_eq!(out, b"fresh result-of-k");
    let out = plugin.run(b"idem k 0 runs").unwrap();
    assert_eq!(out, b"replayed result-of-k");
}

#[test]
fn the_command_takes_a_cluster_url() {
    let cluster = RedisCluster::shared();
    let client = Client::open(&cluster.url()).unwrap();
    let _guard = client.lock("cli-held").acquire().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-cli"))
        .args(["locks", "cli-*", "--redis", &cluster.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("cli-held"), "{stdout}");
}

/// The node ids of a cluster's nodes, by port.
fn node_id(node: &RedisServer) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut node.conn())
        .unwrap()
}

/// Moves `slot` from `from` to `to` key by key, as `redis-cli --cluster
/// reshard` does, then tells every master.
fn migrate_slot(cluster: &RedisCluster, slot: u16, from: &RedisServer, to: &RedisServer) {
    let (from_id, to_id) = (node_id(from), node_id(to));
    let setslot = |node: &RedisServer, state: &str, id: &str| {
        redis::cmd("CLUSTER")
            .arg(["SETSLOT", &slot.to_string(), state, id].as_slice())
            .exec(&mut node.conn())
            .unwrap();
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);
    let mut source = from.conn();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(50)
            .query(&mut source)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        // In batches with pauses, so that clients meet the slot half moved
        // (ASK for moved keys, TRYAGAIN for scripts over both halves).
        redis::cmd("MIGRATE")
            .arg(["127.0.0.1", &to.port().to_string(), ""].as_slice())
            .arg(0)
            .arg(5000)
            .arg("REPLACE")
            .arg("KEYS")
            .arg(&keys)
            .exec(&mut source)
            .unwrap_or_else(|e| panic!("MIGRATE: {e}"));
        thread::sleep(Duration::from_millis(10));
    }
    setslot(to, "NODE", &to_id);
    setslot(from, "NODE", &to_id);
    for node in cluster.nodes().iter().take(cluster.masters()) {
        let _ = redis::cmd("CLUSTER")
            .arg(["SETSLOT", &slot.to_string(), "NODE", &to_id].as_slice())
            .exec(&mut node.conn());
    }
}

#[test]
fn a_slot_migrated_under_contention_keeps_one_holder_and_exact_counts() {
    let cluster = RedisCluster::with_shape(3, 0);
    let resource = FencedResource::start();
    let url = cluster.url();
    // The lock and the counter share a tag, so they share the slot.
    let lock_name = "hot";
    let slot = cluster.slot_of("tollgate:lock:{hot}");
    assert_eq!(slot, cluster.slot_of("tollgate:counter:{hot}"));
    let stop = AtomicBool::new(false);
    let holds = Mutex::new(Vec::new());
    let (overlaps, increments, errors) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|scope| {
        for _ in 0..8 {
            let (url, stop, holds, overlaps, errors, resource) =
                (&url, &stop, &holds, &overlaps, &errors, &resource);
            scope.spawn(move || {
                let client = Client::builder(url.as_str())
                    .response_timeout(Duration::from_secs(2))
                    .poll_interval(Duration::from_millis(20))
                    .build()
                    .unwrap();
                let mut conn = resource.conn();
                while !stop.load(Ordering::SeqCst) {
                    let acquired = client
                        .lock(lock_name)
                        .ttl(Duration::from_secs(5))
                        .wait(Duration::from_secs(5))
                        .acquire();
                    let Ok(guard) = acquired else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let turn =
                        increment_under(guard, Instant::now(), &mut conn, "v", Duration::ZERO);
                    if turn.write != FencedWrite::Ok {
                        overlaps.fetch_add(1, Ordering::Relaxed);
                    }
                    if turn.release.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    holds.lock().push(turn.hold);
                }
            });
        }
        for worker in 0..4 {
            let (url, stop, increments) = (&url, &stop, &increments);
            scope.spawn(move || {
                let client = Client::open(url).unwrap();
                let counter = client.counter("hot");
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let op = format!("{worker}-{n}");
                    loop {
                        match counter.incr_once(&op, 1) {
                            Ok(_) => break,
                            Err(e) if e.is_retryable() => thread::sleep(Duration::from_millis(5)),
                            Err(e) => panic!("incr_once during migration: {e}"),
                        }
                    }
                    increments.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        thread::sleep(Duration::from_millis(300)); // contention under way
        let from = cluster.owner_of(slot);
        let to = cluster
            .nodes()
            .iter()
            .find(|node| node.port() != from.port())
            .unwrap();
        migrate_slot(&cluster, slot, from, to);
        assert_eq!(cluster.owner_of(slot).port(), to.port(), "the slot moved");
        thread::sleep(Duration::from_millis(500)); // and on, after the move
        stop.store(true, Ordering::SeqCst);
    });
    let holds = holds.into_inner();
    check_mutual_exclusion(&holds).unwrap();
    assert_eq!(
        overlaps.load(Ordering::Relaxed),
        0,
        "a write was stale or overlapped"
    );
    let client = Client::open(&url).unwrap();
    assert_eq!(
        client.counter("hot").get().unwrap(),
        i64::try_from(increments.load(Ordering::Relaxed)).unwrap(),
        "exact count"
    );
    assert!(
        holds.iter().filter(|h| h.confirmed).count() > 10,
        "too few holds"
    );
    eprintln!(
        "reliability: cluster-slot-migration clients=8+4 holds={} increments={} lock_errors={}",
        holds.len(),
        increments.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}

#[test]
fn a_failed_master_gives_typed_errors_in_time_and_its_replica_serves_after() {
    let mut cluster = RedisCluster::with_shape(3, 1);
    let client = cluster_client(&cluster, "tollgate:");
    let watched = client
        .lock("job")
        .ttl(Duration::from_secs(10))
        .watchdog()
        .acquire()
        .unwrap();
    client.counter("job").incr(1).unwrap();
    let slot = cluster.slot_of("tollgate:lock:{job}");
    let port = cluster.owner_of(slot).port();
    let index = cluster
        .nodes()
        .iter()
        .position(|node| node.port() == port)
        .unwrap();
    // Replication is asynchronous: wait until a replica has the counter, so
    // that the failover keeps it. A young cluster's replicas may still be
    // in their first sync: the wait allows as long as the kit allows a
    // cluster to form.
    let replicated = Instant::now();
    while !cluster.nodes().iter().any(|node| {
        node.port() != port && {
            let mut conn = node.conn();
            let _ = redis::cmd("READONLY").exec(&mut conn);
            redis::cmd("GET")
                .arg("tollgate:counter:{job}")
                .query::<Option<String>>(&mut conn)
                .is_ok_and(|v| v.as_deref() == Some("1"))
        }
    }) {
        assert!(
            replicated.elapsed() < Duration::from_secs(30),
            "not replicated"
        );
        thread::sleep(Duration::from_millis(10));
    }
    cluster.nodes_mut()[index].kill();
    let killed = Instant::now();
    let mut errors = 0;
    let served = loop {
        let started = Instant::now();
        match client.counter("job").incr(1) {
            Ok(value) => break value,
            Err(error) => {
                assert!(error.is_retryable(), "{error:?}");
                assert!(
                    started.elapsed() < Duration::from_millis(1500),
                    "a call took {:?}",
                    started.elapsed()
                );
                errors += 1;
            }
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no failover");
        thread::sleep(Duration::from_millis(50));
    };
    // The replica had the counter (asynchronous replication may lose the
    // very last write; this one was long done).
    assert_eq!(served, 2);
    assert!(errors > 0, "the failed master was noticed");
    // The lock was replicated before the failover: the watchdog, which
    // checks every lease when a replica takes over, finds it still held.
    assert!(watched.is_held().unwrap());
    assert_eq!(
        client.lock_info("job").unwrap().unwrap().fencing_token,
        watched.fencing_token()
    );
    eprintln!(
        "reliability: cluster-failover masters=3 replicas=1 errors_before_served={errors} served_after_ms={}",
        killed.elapsed().as_millis()
    );
    drop(watched);
}

#[test]
fn wake_ups_use_the_sharded_channel_on_the_objects_node_only() {
    let cluster = RedisCluster::shared();
    let client = Client::builder(cluster.url())
        .key_prefix("sharded:")
        .poll_interval(Duration::from_secs(10)) // a wake-up can only come from the release
        .build()
        .unwrap();
    let holder = client
        .lock("w")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let waiting = {
        let client = client.clone();
        thread::spawn(move || {
            let guard = client
                .lock("w")
                .wait(Duration::from_secs(5))
                .acquire()
                .unwrap();
            let granted = Instant::now();
            drop(guard);
            granted
        })
    };
    let channel = "sharded:lock:{w}:waiters";
    let owner = cluster.owner_of(cluster.slot_of(channel)).port();
    let subscribers = |node: &RedisServer| -> i64 {
        let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query(&mut node.conn())
            .unwrap();
        match counts.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("{other:?}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while subscribers(cluster.owner_of(cluster.slot_of(channel))) == 0 {
        assert!(Instant::now() < deadline, "the waiter never subscribed");
        thread::sleep(Duration::from_millis(10));
    }
    for node in cluster.nodes().iter().take(cluster.masters()) {
        let expected = i64::from(node.port() == owner);
        assert_eq!(subscribers(node), expected, "node {}", node.port());
    }
    let released = Instant::now();
    holder.release().unwrap();
    let latency = waiting.join().unwrap() - released;
    assert!(
        latency < Duration::from_millis(500),
        "woken {latency:?} after the release"
    );
}

#[test]
fn a_lock_is_released_and_taken_again_while_its_slot_is_migrating() {
    // A migration under way whose keys have not moved yet (a slow
    // reshard): lock scripts declare only the lock as a key, so the source
    // serves them; naming the channel and turn queue, which do not exist,
    // made every call TRYAGAIN for the whole window.
    let cluster = RedisCluster::with_shape(3, 0);
    let client = Client::builder(cluster.url())
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let guard = client.lock("job").acquire().unwrap();
    let slot = cluster.slot_of("tollgate:lock:{job}");
    let from = cluster.owner_of(slot);
    let to = cluster
        .nodes()
        .iter()
        .take(cluster.masters())
        .find(|node| node.port() != from.port())
        .unwrap();
    for (node, state, peer) in [(to, "IMPORTING", from), (from, "MIGRATING", to)] {
        redis::cmd("CLUSTER")
            .arg(["SETSLOT", &slot.to_string(), state, &node_id(peer)].as_slice())
            .exec(&mut node.conn())
            .unwrap();
    }
    guard.release().expect("released during the migration");
    let again = client
        .lock("job")
        .try_acquire()
        .unwrap()
        .expect("free again after the release");
    assert!(again.is_held().unwrap());
    again.release().unwrap();
}
