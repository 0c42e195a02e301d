//! Self-tests of the real-Redis test kit.

use std::time::{Duration, Instant};

use tollgate_tests::{KitError, RedisServer};

fn ping(conn: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(conn)
}

fn config_get(conn: &mut redis::Connection, key: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query(conn)
        .unwrap();
    pair.get(1)
        .cloned()
        .unwrap_or_else(|| panic!("CONFIG GET {key} returned {pair:?}"))
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn server_answers_ping_on_its_own_port() {
    let server = RedisServer::start();
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/", server.port())
    );
    let mut conn = server.conn();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    assert_eq!(config_get(&mut conn, "port"), server.port().to_string());
}

#[test]
fn persistence_is_off() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    assert_eq!(config_get(&mut conn, "save"), "");
    assert_eq!(config_get(&mut conn, "appendonly"), "no");
}

#[test]
fn paused_server_times_out_reads_and_answers_after_resume() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();

    server.pause();
    let started = Instant::now();
    let err = ping(&mut conn).expect_err("PING must not be answered while paused");
    assert!(err.is_timeout(), "expected a timeout, got {err}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    server.resume();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
}

#[test]
fn restart_keeps_the_port_and_forgets_data() {
    let mut server = RedisServer::start();
    let (port, old_pid) = (server.port(), server.pid());
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .exec(&mut server.conn())
        .unwrap();

    server.restart();

    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    assert!(!alive(old_pid));
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(value, None);
}

#[test]
fn restart_waits_for_a_briefly_busy_port() {
    let mut server = RedisServer::start();
    server.kill();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(squatter);
    });
    server.restart();
    release.join().unwrap();
    assert_eq!(ping(&mut server.conn()).unwrap(), "PONG");
}

#[test]
fn restart_after_kill_works() {
    let mut server = RedisServer::start();
    server.kill();
    server.restart();
    assert_eq!(ping(&mut server.conn()).unwrap(), "PONG");
}

#[test]
fn killed_server_refuses_connections() {
    let mut server = RedisServer::start();
    let pid = server.pid();
    server.kill();
    server.kill(); // idempotent
    assert!(!alive(pid));
    let result = redis::Client::open(server.url())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(1));
    let err = result
        .err()
        .expect("connecting to a killed server must fail");
    assert!(
        err.is_connection_refusal(),
        "expected connection refused, got {err}"
    );
}

#[test]
fn missing_binary_error_says_how_to_install() {
    let err = RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .try_start()
        .expect_err("a missing binary must be an error");
    assert!(matches!(err, KitError::BinaryNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "/nonexistent/redis-server",
        "apt-get install redis-server",
        "brew install redis",
        "REDIS_SERVER_BIN",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[test]
fn bad_argument_fails_with_the_server_log() {
    let err = RedisServer::builder()
        .arg("--no-such-directive")
        .arg("x")
        .try_start()
        .expect_err("an unknown directive must fail startup");
    assert!(matches!(err, KitError::Startup { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-directive"), "{err}");
}

#[test]
fn two_servers_run_side_by_side() {
    let (a, b) = (RedisServer::start(), RedisServer::start());
    assert_ne!(a.port(), b.port());
    redis::cmd("SET")
        .arg("k")
        .arg("a")
        .exec(&mut a.conn())
        .unwrap();
    let in_b: Option<String> = redis::cmd("GET").arg("k").query(&mut b.conn()).unwrap();
    assert_eq!(in_b, None);
    let in_a: Option<String> = redis::cmd("GET").arg("k").query(&mut a.conn()).unwrap();
    assert_eq!(in_a.as_deref(), Some("a"));
}

#[test]
fn drop_stops_the_server() {
    let server = RedisServer::start();
    let pid = server.pid();
    assert!(alive(pid));
    drop(server);
    assert!(!alive(pid));
}

#[test]
fn drop_stops_a_paused_server() {
    let server = RedisServer::start();
    let pid = server.pid();
    server.pause();
    drop(server);
    assert!(!alive(pid));
}

#[test]
fn extra_args_reach_the_server() {
    let server = RedisServer::builder()
        .arg("--maxmemory")
        .arg("10mb")
        .start();
    assert_eq!(
        config_get(&mut server.conn(), "maxmemory"),
        (10 * 1024 * 1024).to_string()
    );
}

#[test]
fn requirepass_puts_the_password_in_the_url() {
    let server = RedisServer::builder().requirepass("s3cr/t").start();
    assert_eq!(
        server.url(),
        format!("redis://:s3cr%2Ft@127.0.0.1:{}/", server.port())
    );
    assert_eq!(ping(&mut server.conn()).unwrap(), "PONG");

    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let mut anon = redis::Client::open(plain)
        .unwrap()
        .get_connection()
        .unwrap();
    let err = ping(&mut anon).expect_err("unauthenticated PING must fail");
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

#[test]
fn log_shows_the_server_output() {
    let server = RedisServer::start();
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
}
