//! Integration tests against real `redis-server` processes started by the
//! kit, and against the in-process store.
//!
//! Tests of what the store does (its semantics) are written once, as
//! `fn name(backend: &Backend)`, listed in a [`conformance!`] call, and run
//! against both stores: a private Redis server started for the test
//! (`…::on_redis::name`) and a fresh in-memory store (`…::in_memory::name`),
//! so the two cannot drift apart. Tests that need a Redis process itself (pausing, killing or restarting it, killing
//! connections, reading its keys or command statistics, planting foreign
//! values) are plain `#[test]`s that start their own server.

mod benchmark;
mod chaos;
mod cli;
mod client;
mod cluster;
mod counter;
mod faults;
mod guest_native;
mod idempotency;
mod kit;
mod lock;
// The host's script assembly (not public API): tests name a script by the
// digest the client sends.
mod lock_wait;
#[path = "../../../host/src/store/lua_library.rs"]
mod lua_library;
mod metrics;
mod plugin;
mod record;
mod redlock;
mod replicas;
mod rwlock;
mod semaphore;
mod sentinel;
mod sequence;
mod setup;

use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use tollgate::{Client, ClientBuilder, LockGuard};
use tollgate_tests::{RedisCluster, RedisServer};

/// Runs test bodies against both stores: for each `fn name(backend:
/// &Backend)` listed, the tests `on_redis::name` and `in_memory::name` call
/// it with a fresh backend of that kind. A body left out of the list is
/// dead code, which the lints refuse.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        /// The conformance tests of this module, each on its own Redis server.
        mod on_redis {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::Backend::redis());
                }
            )*
        }

        /// The conformance tests of this module on the shared Redis Cluster,
        /// each under its own key prefix.
        mod on_cluster {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::Backend::cluster());
                }
            )*
        }

        /// The conformance tests of this module, each on a fresh in-process store.
        mod in_memory {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::Backend::memory());
                }
            )*
        }
    };
}
pub(crate) use conformance;

/// The store a conformance test runs against.
pub(crate) enum Backend {
    Redis(RedisServer),
    /// The shared cluster, and this test's key prefix on it.
    Cluster(&'static RedisCluster, String),
    /// Clients built from clones of this builder share one store.
    Memory(ClientBuilder),
}

impl Backend {
    fn redis() -> Backend {
        Backend::Redis(RedisServer::start())
    }

    fn cluster() -> Backend {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix = format!("t{}:", NEXT.fetch_add(1, Ordering::Relaxed));
        Backend::Cluster(RedisCluster::shared(), prefix)
    }

    fn memory() -> Backend {
        Backend::Memory(ClientBuilder::in_memory())
    }

    /// A builder for another client on this backend's store, with default
    /// settings: several clients play several processes.
    fn builder(&self) -> ClientBuilder {
        match self {
            Backend::Redis(server) => Client::builder(server.url()),
            Backend::Cluster(cluster, prefix) => {
                Client::builder(cluster.url()).key_prefix(prefix.as_str())
            }
            Backend::Memory(builder) => builder.clone(),
        }
    }

    /// A client with timeouts short enough for tests.
    fn client(&self) -> Client {
        self.builder()
            .connect_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .build()
            .expect("client builds")
    }

    /// The key prefix of this backend's clients.
    fn key_prefix(&self) -> &str {
        match self {
            Backend::Cluster(_, prefix) => prefix,
            Backend::Redis(_) | Backend::Memory(_) => tollgate::DEFAULT_KEY_PREFIX,
        }
    }

    /// The Redis server, for checks only Redis can answer (raw keys and
    /// TTLs, command statistics); `None` on the in-process store.
    fn server(&self) -> Option<&RedisServer> {
        match self {
            Backend::Redis(server) => Some(server),
            Backend::Cluster(..) | Backend::Memory(_) => None,
        }
    }

    /// Unix seconds by the store's clock: Redis's `TIME`, or this machine's.
    fn now_secs(&self) -> u64 {
        match self {
            Backend::Redis(server) => {
                let time: Vec<u64> = redis::cmd("TIME").query(&mut server.conn()).expect("TIME");
                time[0]
            }
            Backend::Cluster(cluster, _) => {
                let mut conn = cluster.nodes()[0].conn();
                let time: Vec<u64> = redis::cmd("TIME").query(&mut conn).expect("TIME");
                time[0]
            }
            Backend::Memory(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs(),
        }
    }
}

/// A client on `server` with timeouts short enough for tests.
fn client(server: &RedisServer) -> Client {
    Client::builder(server.url())
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .build()
        .expect("client builds")
}

/// The raw record of lock `name` as Redis stores it while granted
/// (`FENCE EXPIRES OWNER HOLDER`); `None` when absent or released (a
/// released lock keeps only its fencing counter).
fn raw_lock(server: &RedisServer, name: &str) -> Option<String> {
    let mut conn = server.conn();
    let value: Option<String> = redis::cmd("GET")
        .arg(format!("tollgate:lock:{{{name}}}"))
        .query(&mut conn)
        .expect("GET");
    value.filter(|v| v.contains(' '))
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

/// A helper process that took a lock, printed `granted TOKEN` and was then
/// stopped with SIGSTOP; [`resume`](PausedHolder::resume) lets it go on.
struct PausedHolder {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    /// The fencing token it was granted.
    token: u64,
}

impl PausedHolder {
    /// Starts the test helper with `args` (a `hold-then-…` command), waits
    /// for its grant and stops it.
    fn start(args: &[&str]) -> PausedHolder {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate-test-helper"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("helper starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines.next().expect("a first line").expect("readable");
        let token = first
            .strip_prefix("granted ")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("expected `granted TOKEN`, got {first:?}"));
        // SAFETY: a plain syscall on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGSTOP) };
        PausedHolder {
            child,
            lines,
            token,
        }
    }

    /// Continues it (SIGCONT and a line on its stdin) and returns the lines
    /// it printed until it exited successfully.
    fn resume(mut self) -> Vec<String> {
        use std::io::Write;
        // SAFETY: as in `start`.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
        writeln!(self.child.stdin.as_mut().expect("piped")).expect("helper reads");
        let rest: Vec<String> = self.lines.map(|line| line.expect("readable")).collect();
        assert!(
            self.child.wait().expect("helper exits").success(),
            "{rest:?}"
        );
        rest
    }
}

/// The SHA1 by which tollgate calls the lock script `body`: sent after
/// those of the helpers every grant script shares and the lock's own that
/// it uses (assembled by the host's own code, included here).
fn lock_script_sha(body: &str) -> String {
    let library = [
        include_str!("../../../host/src/store/grant_common.lua"),
        "\n",
        include_str!("../../../host/src/store/lock_record.lua"),
    ]
    .concat();
    let source = lua_library::script_using(&library, body);
    redis::Script::new(&source).get_hash().to_owned()
}

/// How many times the server ran `command` without an error since its
/// stats were last reset (`CONFIG RESETSTAT`), counting commands run inside
/// scripts; an `EVALSHA` answered `NOSCRIPT` (a script's first use) does
/// not count.
fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let mut conn = server.conn();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:");
    let Some(stats) = info.lines().find_map(|line| line.strip_prefix(&prefix)) else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        stats
            .split(',')
            .find_map(|f| f.strip_prefix(name))
            .map_or(0, |n| n.parse().expect("a count is a number"))
    };
    field("calls=") - field("failed_calls=")
}

/// Resets the server's command statistics.
fn reset_stats(server: &RedisServer) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(&mut server.conn())
        .expect("CONFIG RESETSTAT");
}

/// Starts `waiter`'s notification listener: it waits briefly for lock
/// `name` while `holder` holds it.
pub(crate) fn start_listening(waiter: &Client, holder: &Client, name: &str) {
    let held = holder.lock(name).acquire().unwrap();
    let busy = waiter.lock(name).wait(Duration::from_millis(200)).acquire();
    assert!(busy.is_err(), "the lock is held");
    held.release().unwrap();
}

/// Releases `held` (a guard on lock `name`) `after` a waiter of `waiter`
/// started waiting for it, and checks that the waiter was granted at once:
/// `waiter` must poll only every 10 s or more, so a grant within 5 s came
/// from the release notice.
pub(crate) fn assert_woken_by_release(
    waiter: &Client,
    name: &str,
    held: LockGuard,
    after: Duration,
) {
    let waiting = {
        let (waiter, name) = (waiter.clone(), name.to_owned());
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let granted = waiter.lock(name).wait(Duration::from_secs(8)).acquire();
            (
                granted.map(|guard| guard.fencing_token()),
                started.elapsed(),
            )
        })
    };
    std::thread::sleep(after);
    held.release().unwrap();
    let (granted, waited) = waiting.join().unwrap();
    assert!(granted.is_ok(), "{granted:?}");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the release notice, not by a poll 10 s on: waited {waited:?}"
    );
}
