//! A private `redis-server` process per test.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const INSTALL_HINT: &str = "Install it with `sudo apt-get install redis-server` (Debian/Ubuntu) \
     or `brew install redis`, or set REDIS_SERVER_BIN=/path/to/redis-server";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
const PORT_ATTEMPTS: usize = 5;
const RESTART_RETRY_FOR: Duration = Duration::from_secs(3);

/// Ports owned by live `RedisServer`s of this process (kept while killed, so
/// `restart()` can get its port back).
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why the kit could not provide a `redis-server`.
#[derive(Debug)]
pub enum KitError {
    /// No usable `redis-server` binary; the message says how to install one.
    BinaryNotFound {
        /// Where we looked, e.g. "$REDIS_SERVER_BIN and PATH".
        looked_at: String,
    },
    /// An OS operation (temp dir, socket, spawn, ...) failed.
    Io {
        /// What the kit was doing.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The server process was spawned but never became ready.
    Startup {
        /// The port it was started on.
        port: u16,
        /// What went wrong (early exit, timeout, ...).
        reason: String,
        /// The server's log output, for diagnosis.
        log: String,
    },
}

impl fmt::Display for KitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KitError::BinaryNotFound { looked_at } => {
                write!(
                    f,
                    "redis-server not found (looked at {looked_at}). {INSTALL_HINT}"
                )
            }
            KitError::Io { what, source } => write!(f, "{what}: {source}"),
            KitError::Startup { port, reason, log } => write!(
                f,
                "redis-server on 127.0.0.1:{port} failed to start: {reason}\n--- server log ---\n{log}"
            ),
        }
    }
}

impl std::error::Error for KitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> KitError {
    let what = what.into();
    move |source| KitError::Io { what, source }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Locates `redis-server`: `$REDIS_SERVER_BIN` if set, else the first match on `PATH`.
pub fn redis_server_bin() -> Result<PathBuf, KitError> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if is_executable(&bin) {
            return Ok(bin);
        }
        let looked_at = format!(
            "$REDIS_SERVER_BIN={}, not an executable file",
            bin.display()
        );
        return Err(KitError::BinaryNotFound { looked_at });
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| is_executable(p))
        .ok_or_else(|| KitError::BinaryNotFound {
            looked_at: "$REDIS_SERVER_BIN and PATH".into(),
        })
}

/// Picks a free loopback port (never 6379, never one reserved by this process) and reserves it.
fn reserve_free_port() -> Result<u16, KitError> {
    for _ in 0..50 {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("binding 127.0.0.1:0"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("reading the bound port"))?
            .port();
        if port != 6379 && RESERVED_PORTS.lock().insert(port) {
            return Ok(port);
        }
    }
    Err(KitError::Io {
        what: "finding a free loopback port".into(),
        source: io::Error::new(io::ErrorKind::AddrInUse, "no free port after 50 tries"),
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Configures a [`RedisServer`] before starting it.
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    binary: Option<PathBuf>,
    args: Vec<OsString>,
    password: Option<String>,
    config: Option<String>,
}

impl RedisServerBuilder {
    /// Appends one extra `redis-server` argument, e.g. `.arg("--maxmemory").arg("10mb")`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several extra `redis-server` arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the server with a configuration file of this text (written to
    /// its directory, where the server may rewrite it, as Sentinel does).
    pub fn config_file(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Requires this password (`--requirepass`); [`RedisServer::url`] then includes it.
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Uses this `redis-server` binary instead of looking it up with [`redis_server_bin`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts the server, panicking with a clear message on failure.
    pub fn start(self) -> RedisServer {
        self.try_start()
            .unwrap_or_else(|e| panic!("could not start a test redis-server: {e}"))
    }

    /// Starts the server on a free port and waits until it answers PING.
    pub fn try_start(mut self) -> Result<RedisServer, KitError> {
        let binary = match self.binary.take() {
            Some(bin) if is_executable(&bin) => bin,
            Some(bin) => {
                return Err(KitError::BinaryNotFound {
                    looked_at: bin.display().to_string(),
                });
            }
            None => redis_server_bin()?,
        };
        if let Some(pw) = &self.password {
            self.args.extend(["--requirepass".into(), pw.into()]);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = reserve_free_port()?;
            let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("tollgate-redis-{}-{port}-{n}", std::process::id()));
            let mut server = RedisServer {
                binary: binary.clone(),
                args: self.args.clone(),
                password: self.password.clone(),
                config: self.config.is_some(),
                port,
                dir,
                pid: 0,
                child: None,
            };
            // `server` owns the port and dir from here on, so dropping it cleans up.
            let _ = fs::remove_dir_all(&server.dir);
            fs::create_dir_all(&server.dir)
                .map_err(io_err(format!("creating {}", server.dir.display())))?;
            if let Some(text) = &self.config {
                fs::write(server.config_path(), text).map_err(io_err(format!(
                    "writing {}",
                    server.config_path().display()
                )))?;
            }
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) if e.port_busy && attempt < PORT_ATTEMPTS => continue,
                Err(e) => return Err(e.err),
            }
        }
    }
}

struct SpawnError {
    err: KitError,
    port_busy: bool,
}

/// A private `redis-server` on a free loopback port, persistence off, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    args: Vec<OsString>,
    password: Option<String>,
    /// Started with the configuration file in its directory.
    config: bool,
    port: u16,
    dir: PathBuf,
    pid: u32,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with default settings; panics with a clear message on failure.
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// Returns a builder for servers with extra args, a password or an explicit binary.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`, or `redis://:PASSWORD@127.0.0.1:PORT/` with `requirepass`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{}@127.0.0.1:{}/", url_encode(pw), self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The pid of the current (or, after [`kill`](Self::kill), the last) server process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing is answered.
    ///
    /// # Panics
    /// If the server has been killed.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP, "pause");
    }

    /// Unfreezes a paused server with SIGCONT.
    ///
    /// # Panics
    /// If the server has been killed.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT, "resume");
    }

    /// Kills the server with SIGKILL and reaps it; does nothing if already killed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscalls; the child is not yet reaped, so the pid is still ours.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGCONT);
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL without waiting for it or touching
    /// shared state: for process-exit hooks, where a `Drop` does not run.
    pub fn kill_for_exit(&self) {
        if self.child.is_some() {
            // SAFETY: plain syscall on our own child's pid.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Connects like [`conn`](Self::conn), but returns the error instead
    /// of panicking (for a node that may be down).
    pub fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        self.connect(ADMIN_TIMEOUT)
    }

    /// Kills the server if running and starts it again on the same port with the same
    /// args (retrying for a few seconds while the port is busy); data is gone afterwards.
    ///
    /// # Panics
    /// If the server cannot be started again.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + RESTART_RETRY_FOR;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.port_busy && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("could not restart the test redis-server: {}", e.err),
            }
        }
    }

    /// An admin connection (5 s connect/read/write timeouts) for assertions in tests.
    ///
    /// # Panics
    /// If the server cannot be reached; the message includes the server log.
    pub fn conn(&self) -> redis::Connection {
        self.connect(ADMIN_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "cannot connect to test redis-server at {}: {e}\n--- server log ---\n{}",
                self.url(),
                self.log()
            )
        })
    }

    /// The server's log file (plus anything it wrote to stderr), for failure messages.
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            log.push_str("--- stderr ---\n");
            log.push_str(&stderr);
        }
        log
    }

    fn signal(&self, sig: libc::c_int, what: &str) {
        assert!(
            self.child.is_some(),
            "RedisServer::{what}() called on a killed server (port {})",
            self.port
        );
        // SAFETY: plain syscall; the child is not yet reaped, so the pid is still ours.
        if unsafe { libc::kill(self.pid as libc::pid_t, sig) } != 0 {
            panic!(
                "RedisServer::{what}() failed: {}",
                io::Error::last_os_error()
            );
        }
    }

    fn connect(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let conn = redis::Client::open(self.url())?.get_connection_with_timeout(timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        Ok(conn)
    }

    /// PINGs the server and checks that it is our child answering, not a port thief.
    fn probe(&self) -> Result<(), String> {
        let mut conn = self
            .connect(Duration::from_millis(500))
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|e| e.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .map(str::trim);
        if pid == Some(self.pid.to_string().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "port answered by another process (process_id {pid:?})"
            ))
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let port = self.port;
        let fail = move |reason: String, log: String, port_busy| SpawnError {
            err: KitError::Startup { port, reason, log },
            port_busy,
        };
        let io_fail = |what: &str, e: io::Error| SpawnError {
            err: io_err(what)(e),
            port_busy: false,
        };
        let log_path = self.dir.join("redis.log");
        let log_start = fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .map_err(|e| io_fail("creating stderr.log", e))?;
        let mut command = Command::new(&self.binary);
        if self.config {
            // The file must come first.
            command.arg(self.config_path());
        }
        let child = command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            // A replica's first sync starts at once, not after the 5 s a
            // master waits by default for more replicas to share it.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log_path)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| io_fail(&format!("spawning {}", self.binary.display()), e))?;
        self.pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let log = self.log();
                let busy = log
                    .get(log_start..)
                    .unwrap_or(&log)
                    .contains("Address already in use");
                return Err(fail(format!("process exited early ({status})"), log, busy));
            }
            let last_err = match self.probe() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.kill();
                let reason =
                    format!("no PING reply within {READY_TIMEOUT:?} (last error: {last_err})");
                return Err(fail(reason, self.log(), false));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
        RESERVED_PORTS.lock().remove(&self.port);
    }
}
