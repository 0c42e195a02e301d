//! A primary with a replica that gets promoted (a failover), with and
//! without synced grants (`ClientBuilder::wait_for_replicas`).

use std::thread;
use std::time::{Duration, Instant};

use tollgate::{Client, Error};
use tollgate_tests::{FaultProxy, RedisServer};

/// A primary and a replica of it that confirms the primary's writes.
///
/// "The link is up" on the replica is not enough: after a first sync,
/// Redis 7.0 streams writes (and `WAIT`'s acknowledgement requests) to the
/// replica only once the replica's periodic acknowledgement arrives, up to
/// a second later, so a `WAIT` in that second counts no replica.
pub(crate) fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica = RedisServer::builder()
        .args(["--replicaof", "127.0.0.1", &primary.port().to_string()])
        .start();
    let mut conn = primary.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        redis::cmd("SET")
            .arg("tollgate-test:replicated")
            .arg(1)
            .exec(&mut conn)
            .unwrap();
        let confirmed: usize = redis::cmd("WAIT").arg(1).arg(100).query(&mut conn).unwrap();
        if confirmed == 1 {
            return (primary, replica);
        }
        assert!(
            Instant::now() < deadline,
            "the replica never confirmed a write"
        );
    }
}

/// Retries `step` while it fails retryably, for up to 15 s.
pub(crate) fn once_served<T>(mut step: impl FnMut() -> tollgate::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match step() {
            Ok(value) => return value,
            Err(error) => assert!(error.is_retryable(), "{error:?}"),
        }
        assert!(Instant::now() < deadline, "never served");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Promotes `replica` (`REPLICAOF NO ONE`): the failover of a platform, or
/// a replica cut off from its primary and promoted (a split).
fn promote(replica: &RedisServer) {
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .exec(&mut replica.conn())
        .unwrap();
}

fn synced_client(server: &RedisServer) -> Client {
    Client::builder(server.url())
        .response_timeout(Duration::from_secs(2))
        .wait_for_replicas(1, Duration::from_millis(500))
        .build()
        .unwrap()
}

#[test]
fn a_synced_grant_is_on_the_replica_when_it_is_promoted() {
    let (primary, replica) = primary_and_replica();
    let guard = synced_client(&primary)
        .lock("job")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let claim = synced_client(&primary)
        .idempotency("pay")
        .key("k")
        .run(|| Ok::<_, std::io::Error>(b"charged".to_vec()))
        .unwrap();
    assert!(!claim.replayed);
    promote(&replica);
    let rival = Client::open(&replica.url()).unwrap();
    assert!(
        rival.lock("job").try_acquire().unwrap().is_none(),
        "the promoted replica had the grant"
    );
    let info = rival.lock_info("job").unwrap().unwrap();
    assert_eq!(info.fencing_token, guard.fencing_token());
    let repeat = rival
        .idempotency("pay")
        .key("k")
        .run(|| Ok::<_, std::io::Error>(b"twice".to_vec()))
        .unwrap();
    assert_eq!(
        (repeat.value.as_slice(), repeat.replayed),
        (&b"charged"[..], true)
    );
}

#[test]
fn a_grant_no_replica_confirms_is_given_back_with_a_typed_error() {
    let (primary, replica) = primary_and_replica();
    // The replica is cut off and promoted: the old primary has no replica.
    promote(&replica);
    let client = synced_client(&primary);
    let started = Instant::now();
    let err = client.lock("job").acquire().unwrap_err();
    assert_eq!(
        err,
        Error::NotReplicated {
            wanted: 1,
            confirmed: 0
        }
    );
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Nothing is held on the old primary.
    let plain = Client::open(&primary.url()).unwrap();
    assert!(
        plain.lock_info("job").unwrap().is_none(),
        "the grant was given back"
    );
    let begun = client.idempotency("pay").key("k").begin();
    assert!(
        matches!(begun, Err(Error::NotReplicated { .. })),
        "{begun:?}"
    );
    let record: bool = redis::cmd("EXISTS")
        .arg("tollgate:idem:{3:pay:k}")
        .query(&mut primary.conn())
        .unwrap();
    assert!(!record, "the claim was abandoned");
}

#[test]
fn without_synced_grants_a_split_can_give_one_lock_to_two_holders() {
    // The documented window: replication is asynchronous, so a grant the
    // replica never saw is not on it when it is promoted.
    let (primary, replica) = primary_and_replica();
    promote(&replica);
    let old = Client::open(&primary.url()).unwrap();
    let new = Client::open(&replica.url()).unwrap();
    let first = old.lock("job").acquire().unwrap();
    let second = new.lock("job").acquire().unwrap();
    assert!(first.is_held().unwrap() && second.is_held().unwrap());
    // Fencing tokens still order them (the floor is the server's clock):
    // a resource that refuses smaller tokens keeps the later holder's writes.
    assert!(second.fencing_token() > first.fencing_token());
}

#[test]
fn synced_mode_settings_are_checked() {
    let bad = |replicas, timeout| {
        Client::builder("redis://127.0.0.1/")
            .response_timeout(Duration::from_secs(1))
            .wait_for_replicas(replicas, timeout)
            .build()
            .unwrap_err()
    };
    assert!(matches!(
        bad(0, Duration::from_millis(100)),
        Error::InvalidArgument { .. }
    ));
    assert!(matches!(
        bad(1, Duration::ZERO),
        Error::InvalidArgument { .. }
    ));
    assert!(matches!(
        bad(1, Duration::from_secs(1)),
        Error::InvalidArgument { .. }
    ));
}

#[test]
fn a_primary_short_of_the_replicas_it_requires_refuses_with_a_retryable_error() {
    // min-replicas-to-write: the primary refuses writes while fewer replicas
    // are connected, as around a failover; a retry may succeed.
    let primary = RedisServer::builder()
        .args(["--min-replicas-to-write", "1"])
        .start();
    let client = Client::open(&primary.url()).unwrap();
    let err = client.lock("job").try_acquire().unwrap_err();
    assert!(
        matches!(err, Error::Refused { ref code, .. } if code == "NOREPLICAS"),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn after_a_failover_behind_one_address_release_notices_come_from_the_new_primary() {
    let (primary, replica) = primary_and_replica();
    // One address for the primary (a DNS name or virtual IP).
    let address = FaultProxy::start(primary.port());
    let connect = || {
        Client::builder(address.url())
            .response_timeout(Duration::from_secs(1))
            .poll_interval(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let (client, holder) = (connect(), connect());
    // A waiter of `client` has started its notification listener.
    crate::start_listening(&client, &holder, "job");

    // The platform promotes the replica, moves the address to it and cuts
    // the old primary's clients; the old primary itself lives on, and so
    // does the listening connection to it (pub/sub clients were not cut).
    promote(&replica);
    address.retarget(replica.port());
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .exec(&mut primary.conn())
        .unwrap();
    once_served(|| client.counter("calls").incr(1));

    // A release on the new primary wakes the waiter at once: the listener
    // followed its client to the new server.
    let held = once_served(|| holder.lock("job").acquire());
    crate::assert_woken_by_release(&client, "job", held, Duration::from_millis(1500));
}
