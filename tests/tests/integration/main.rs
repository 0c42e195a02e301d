//! Integration tests against real `redis-server` processes started by the kit.
//! Each test starts its own server, so tests can pause, kill and restart it.

mod cli;
mod client;
mod counter;
mod idempotency;
mod kit;
mod lock;
mod lock_wait;
mod plugin;
mod sequence;

use std::time::Duration;

use tollgate::Client;
use tollgate_tests::RedisServer;

/// A client on `server` with timeouts short enough for tests.
fn client(server: &RedisServer) -> Client {
    Client::builder(server.url())
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .build()
        .expect("client builds")
}

/// The raw hash of lock `name` as Redis stores it (empty when free).
fn raw_lock(server: &RedisServer, name: &str) -> Vec<(String, String)> {
    let mut conn = server.conn();
    redis::cmd("HGETALL")
        .arg(format!("tollgate:lock:{{{name}}}"))
        .query(&mut conn)
        .expect("HGETALL")
}

/// The remaining TTL in ms of lock `name` (-2: no key).
fn raw_pttl(server: &RedisServer, name: &str) -> i64 {
    let mut conn = server.conn();
    redis::cmd("PTTL")
        .arg(format!("tollgate:lock:{{{name}}}"))
        .query(&mut conn)
        .expect("PTTL")
}

/// Starts the test helper binary with `args` and returns it with the first
/// line it printed (once it is holding what it was asked to hold).
fn spawn_helper(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-test-helper"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("helper starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("helper prints a line");
    (child, line.trim().to_owned())
}

/// How many times the server ran `command` since its stats were last reset
/// (`CONFIG RESETSTAT`), counting commands run inside scripts.
fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let mut conn = server.conn();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("calls is a number"))
}

/// Resets the server's command statistics.
fn reset_stats(server: &RedisServer) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut server.conn())
        .expect("CONFIG RESETSTAT");
}
