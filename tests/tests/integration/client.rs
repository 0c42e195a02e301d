//! The client under failure: restarts, a stopped server, bad settings.

use std::time::{Duration, Instant};

use tollgate::{Client, Error};
use tollgate_tests::{RedisServer, TestCertificates};

use crate::{client, raw_lock};

#[test]
fn idle_client_works_again_after_redis_restarts() {
    let mut server = RedisServer::start();
    let client = client(&server);
    client.lock("r").acquire().unwrap().release().unwrap();
    server.restart();
    let guard = client
        .lock("r")
        .acquire()
        .expect("the next call reconnects");
    assert!(guard.is_held().unwrap());
}

#[test]
fn calls_while_redis_is_down_fail_with_unavailable_and_recover() {
    let mut server = RedisServer::start();
    let client = client(&server);
    client.lock("d").acquire().unwrap().release().unwrap();
    server.kill();
    let start = Instant::now();
    let err = client.lock("d").acquire().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unavailable { .. } | Error::OutcomeUnknown { .. }
        ),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    server.restart();
    let guard = client
        .lock("d")
        .acquire()
        .expect("works once Redis is back");
    guard.release().unwrap();
}

#[test]
fn a_call_to_a_stopped_redis_times_out_within_its_deadline() {
    let server = RedisServer::start();
    let client = Client::builder(server.url())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let guard = client
        .lock("p")
        .ttl(Duration::from_secs(30))
        .acquire()
        .unwrap();
    server.pause();
    let start = Instant::now();
    let err = guard.is_held().unwrap_err();
    let took = start.elapsed();
    assert!(err.is_timeout() && err.is_outcome_unknown(), "{err:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");

    // A call that needs a new connection is bounded by the connect timeout.
    let start = Instant::now();
    let err = client.lock("other").acquire().unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            Error::Unavailable { .. } | Error::OutcomeUnknown { .. }
        ),
        "{err:?}"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");

    server.resume();
    assert!(guard.is_held().expect("answers again after SIGCONT"));
}

#[test]
fn bad_client_settings_get_a_typed_error() {
    let invalid = |r: tollgate::Result<Client>, what: &str| match r {
        Err(Error::InvalidArgument { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected invalid {what}, got {other:?}"),
    };
    invalid(Client::open("http://example.com"), "redis url");
    invalid(Client::open("not a url"), "redis url");
    let url = "redis://127.0.0.1:1/";
    invalid(
        Client::builder(url).connect_timeout(Duration::ZERO).build(),
        "connect timeout",
    );
    invalid(
        Client::builder(url)
            .response_timeout(Duration::ZERO)
            .build(),
        "response timeout",
    );
    invalid(
        Client::builder(url).max_connections(0).build(),
        "max connections",
    );
    invalid(
        Client::builder(url).key_prefix("a{b}:").build(),
        "key prefix",
    );
    invalid(
        Client::builder(url).poll_interval(Duration::ZERO).build(),
        "poll interval",
    );
}

#[test]
fn password_and_database_come_from_the_url() {
    let server = RedisServer::builder().requirepass("s3cret").start();
    let url = format!("{}3", server.url()); // .../3: database 3
    let client = Client::open(&url).unwrap();
    let _guard = client.lock("db").acquire().unwrap();
    let mut conn = server.conn();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut conn).unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg("tollgate:lock:{db}")
        .query(&mut conn)
        .unwrap();
    assert!(exists);

    let wrong = server.url().replace("s3cret", "wrong");
    let err = Client::open(&wrong)
        .unwrap()
        .lock("db")
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
}

#[test]
fn rediss_url_connects_over_tls_and_checks_the_certificate() {
    let certs = TestCertificates::generate();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let server = RedisServer::builder()
        .args([
            "--tls-port",
            &tls_port.to_string(),
            "--tls-auth-clients",
            "no",
        ])
        .args(["--tls-cert-file", &path(certs.server_cert())])
        .args(["--tls-key-file", &path(certs.server_key())])
        .args(["--tls-ca-cert-file", &path(certs.ca_cert())])
        .start();
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let ca = std::fs::read(certs.ca_cert()).unwrap();
    let client = Client::builder(&url)
        .tls_root_certificates(ca)
        .build()
        .unwrap();
    let guard = client.lock("tls").acquire().expect("lock over TLS");
    assert!(
        raw_lock(&server, "tls").is_some(),
        "not visible on the server"
    );
    guard.release().unwrap();

    // A client that does not trust the private CA is refused, with a typed error.
    let untrusting = Client::builder(&url)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = untrusting.lock("tls").acquire().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[test]
fn unix_socket_url_carries_locks_and_megabyte_records() {
    let socket = std::env::temp_dir().join(format!(
        "tollgate-test-{}-{}.sock",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let server = RedisServer::builder()
        .args(["--unixsocket", &socket.to_string_lossy()])
        .start();
    let url = format!("redis+unix://{}", socket.display());
    let over_socket = Client::open(&url).unwrap();
    let over_tcp = Client::open(&server.url()).unwrap();

    let guard = over_socket
        .lock("sock")
        .acquire()
        .expect("lock over a Unix socket");
    assert!(
        raw_lock(&server, "sock").is_some(),
        "not visible on the server"
    );
    assert!(over_tcp.lock("sock").try_acquire().unwrap().is_none());
    guard.release().unwrap();

    // Replies far larger than one read buffer, in both directions, on both
    // transports; each connection serves small replies afterwards.
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (token, (writer, reader)) in [(&over_socket, &over_tcp), (&over_tcp, &over_socket)]
        .into_iter()
        .enumerate()
    {
        let token = token as u64 + 1;
        writer.record("big").put(&big, token).unwrap();
        let entry = reader.record("big").get().unwrap().expect("the record");
        assert!(entry.value == big, "the value came back changed");
        assert_eq!(entry.token, token);
        assert_eq!(reader.counter("after").incr(1).unwrap(), token as i64);
        assert_eq!(reader.record("big").highest_token().unwrap(), Some(token));
    }
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn from_env_reads_redis_url_and_says_what_is_missing() {
    let server = RedisServer::start();
    let helper = env!("CARGO_BIN_EXE_tollgate-test-helper");
    let with_url = std::process::Command::new(helper)
        .arg("from-env")
        .env("REDIS_URL", server.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&with_url.stdout);
    assert!(
        with_url.status.success() && stdout.starts_with("granted "),
        "{stdout}"
    );

    let without = std::process::Command::new(helper)
        .arg("from-env")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&without.stdout);
    assert!(!without.status.success());
    assert!(stdout.contains("invalid REDIS_URL"), "{stdout}");
}

#[test]
fn client_and_guard_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    fn sendable<T: Send>() {}
    shareable::<Client>();
    sendable::<tollgate::LockGuard>();
    sendable::<Error>();
}

#[test]
fn a_url_without_a_scheme_says_how_to_write_one() {
    let err = Client::open("127.0.0.1:6379").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "redis url",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("redis://127.0.0.1:6379/"), "{text}");
}

#[test]
fn counter_bounds_read_as_rust_ranges_in_messages() {
    let client = Client::in_memory();
    let err = client.counter("c").bounds(0..).incr(-1).unwrap_err();
    let text = err.to_string();
    assert!(text.ends_with("would leave 0.."), "{text}");
    assert!(!text.contains("9223372036854775807"), "{text}");
    #[allow(clippy::reversed_empty_ranges)] // the mistake under test
    let empty = 10..5;
    let err = client.counter("c").bounds(empty).get().unwrap_err();
    assert!(err.to_string().contains("10..5 is empty"), "{err}");
}
