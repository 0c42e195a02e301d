//! Opening a connection: the TCP (or TLS, or Unix socket) connect, and the
//! handshake tollgate runs itself so that every failure gets its own type.
//!
//! The handshake authenticates (`AUTH`), selects the database and, for
//! connections that carry tollgate's writes, reads `INFO server` and
//! `INFO memory` once per new connection (the first contact with a server
//! and every reconnect):
//! - `maxmemory_policy` must be `noeviction` unless the client accepted
//!   eviction: a server that evicts keys under memory pressure can drop a
//!   live lock (and grant it again), a stored result (and run its action
//!   again), a counter or a sequence;
//! - `run_id` changes when the server restarted or another server took its
//!   place (a failover): every lease granted before may be gone, so the
//!   client's watchdog checks them all at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{ConnectionLike, ErrorKind, RedisError};

use super::pool::PoolConfig;
use super::sentinel::{Credentials, Limits, Sentinels};
use super::wire::Connection;
use crate::error::{Error, Result};

/// The only `maxmemory-policy` under which Redis never drops a key by itself.
const SAFE_POLICY: &str = "noeviction";

/// How often the connections of a pool read the server's eviction policy
/// and run id again (besides at every new connection), so that a policy
/// switched to evicting on a running server is refused within this long.
pub(crate) const SERVER_RECHECK: Duration = Duration::from_secs(5);

/// Called when a connection finds a server other than the one seen before.
pub(crate) type ServerChanged = Box<dyn Fn() + Send + Sync>;

/// Where a connector's connections go: one server.
pub(crate) struct Target {
    /// `host:port`, for messages.
    pub address: String,
    /// The server's address and TLS settings, without credentials or
    /// database: tollgate sends `AUTH` and `SELECT` itself to tell their
    /// failures apart.
    pub bare: redis::ConnectionInfo,
    /// Opens `bare`'s TLS connections.
    pub client: redis::Client,
}

impl Target {
    /// The server at `host:port`, with the scheme and TLS settings of `like`.
    pub fn at(like: &redis::ConnectionInfo, host: &str, port: u16) -> Result<Target> {
        let addr = match like.addr() {
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let bare = like.clone().set_addr(addr);
        let client = redis::Client::open(bare.clone())
            .map_err(|e| Error::invalid("redis url", e.to_string()))?;
        Ok(Target {
            address: format!("{host}:{port}"),
            bare,
            client,
        })
    }
}

/// Opens connections to one Redis server (or to the master its sentinels
/// name) and runs tollgate's handshake.
pub(crate) struct Connector {
    /// The server connections go to; with sentinels, the master they named
    /// last.
    target: Mutex<Arc<Target>>,
    /// Asked before each new connection where the master is, when set.
    sentinels: Option<Sentinels>,
    /// Bumped when connections to the target must not be used any more
    /// (the sentinels named another master, or it is not a master now).
    target_epoch: AtomicU64,
    /// The sentinels named a master once: when none can be reached later,
    /// the last one named is used while it says it is a master.
    located: AtomicBool,
    /// What the sentinels said last: when they last answered, the master
    /// their announcement replaced and when, and whether their silence was
    /// logged.
    heard: Mutex<Heard>,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    connect_timeout: Duration,
    response_timeout: Duration,
    accept_eviction: bool,
    seen: Mutex<Seen>,
    /// When the server was last checked, in ms after `created`.
    created: Instant,
    checked_ms: AtomicU64,
    /// The last check found a policy that may evict (and it is not
    /// accepted): every call checks again until one finds it safe.
    refusing: AtomicBool,
    /// Bumped each time a connection meets a server with a new run id
    /// (shared by the connectors of one cluster's nodes).
    generation: Arc<AtomicU64>,
    on_server_changed: Arc<Mutex<Option<ServerChanged>>>,
}

/// How long the master the sentinels named last serves while none of them
/// answers; past it, calls fail until one does (a client cut off from its
/// sentinels may be on the wrong side of a split).
const SENTINELS_SILENT_GRACE: Duration = Duration::from_secs(30);

/// How long, after the sentinels announced a new master, an answer naming
/// the one it replaced is taken for a sentinel that has not heard yet.
const ANNOUNCED_SWITCH_HOLDS: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Heard {
    /// When a sentinel last named the master.
    answered: Option<Instant>,
    /// The master an announcement replaced, and when.
    replaced: Option<(String, Instant)>,
    /// That no sentinel answers was logged (once per silence).
    warned_silent: bool,
}

#[derive(Default)]
struct Seen {
    run_id: Option<String>,
    /// The evicting policy that was accepted and warned about, so the
    /// warning is logged once per policy, not once per connection.
    warned_policy: Option<String>,
    /// The warning that INFO is refused was logged.
    warned_no_info: bool,
}

/// Whether a connection will carry tollgate's reads and writes (and must
/// meet the server checks) or only listen for notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Commands,
    Notifications,
}

impl Connector {
    /// A connector for the server of `client` (credentials and database are
    /// taken out of it and sent by the handshake).
    pub fn new(client: &redis::Client, config: &PoolConfig) -> Result<Connector> {
        let (connect_timeout, response_timeout, accept_eviction) = (
            config.connect_timeout,
            config.response_timeout,
            config.accept_eviction,
        );
        let info = client.get_connection_info().clone();
        let settings = info.redis_settings();
        let username = settings.username().map(str::to_owned);
        let password = settings.password().map(str::to_owned);
        let db = settings.db();
        let address = info.addr().to_string();
        // RESP2 always: RESP3 would send HELLO before our AUTH, and the
        // listener reads RESP2 pub/sub replies.
        let bare = redis::RedisConnectionInfo::default()
            .set_protocol(redis::ProtocolVersion::RESP2)
            .set_skip_set_lib_name();
        let bare = info
            .set_redis_settings(bare)
            .set_tcp_settings(tls_tcp_settings());
        let client = redis::Client::open(bare.clone())
            .map_err(|e| Error::invalid("redis url", e.to_string()))?;
        Ok(Connector {
            target: Mutex::new(Arc::new(Target {
                address,
                bare,
                client,
            })),
            sentinels: None,
            target_epoch: AtomicU64::new(0),
            located: AtomicBool::new(false),
            heard: Mutex::default(),
            username,
            password,
            db,
            connect_timeout,
            response_timeout,
            accept_eviction,
            seen: Mutex::default(),
            created: Instant::now(),
            checked_ms: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            generation: Arc::new(AtomicU64::new(0)),
            on_server_changed: Arc::default(),
        })
    }

    /// A connector for another node of the same deployment (a cluster
    /// node), at `host:port`: same credentials, database, TLS settings and
    /// timeouts, and the same server generation and callback.
    pub fn for_node(&self, host: &str, port: u16) -> Result<Connector> {
        let target = Target::at(&self.target().bare, host, port)?;
        Ok(Connector {
            target: Mutex::new(Arc::new(target)),
            sentinels: None,
            target_epoch: AtomicU64::new(0),
            located: AtomicBool::new(false),
            heard: Mutex::default(),
            username: self.username.clone(),
            password: self.password.clone(),
            db: self.db,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            accept_eviction: self.accept_eviction,
            seen: Mutex::default(),
            created: Instant::now(),
            checked_ms: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            generation: Arc::clone(&self.generation),
            on_server_changed: Arc::clone(&self.on_server_changed),
        })
    }

    /// Makes every new connection go to the master that `sentinels` name
    /// then (the address this connector was made with is a sentinel's).
    pub fn follow_sentinels(mut self, sentinels: Sentinels) -> Self {
        self.sentinels = Some(sentinels);
        self
    }

    /// The server connections go to now.
    fn target(&self) -> Arc<Target> {
        Arc::clone(&self.target.lock())
    }

    /// The address of the server connections go to now, for messages.
    fn address(&self) -> String {
        self.target.lock().address.clone()
    }

    /// Which target connections opened now go to: a connection opened at
    /// an older epoch must not be used (see [`Connector::connect`]).
    pub fn target_epoch(&self) -> u64 {
        self.target_epoch.load(Ordering::Acquire)
    }

    /// Connections to the current target must not be used any more.
    fn retire_target(&self) {
        self.target_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The server a new connection goes to: with sentinels, the master they
    /// name now, asked by `deadline`.
    fn locate(&self, deadline: Instant) -> Result<Arc<Target>> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(self.target());
        };
        let current = self.target();
        let credentials = Credentials {
            username: self.username.as_deref(),
            password: self.password.as_deref(),
        };
        let limits = Limits {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            deadline,
        };
        let (host, port) = match sentinels.locate(&current.bare, &credentials, &limits) {
            Ok(found) => found,
            Err(Error::Unavailable { reason }) => {
                // No sentinel answers: the master they named last serves
                // for a while, as long as it says it is one (the role check).
                let mut heard = self.heard.lock();
                let recently = heard
                    .answered
                    .is_some_and(|at| at.elapsed() < SENTINELS_SILENT_GRACE);
                if !recently {
                    return Err(Error::Unavailable { reason });
                }
                if !std::mem::replace(&mut heard.warned_silent, true) {
                    tracing::warn!(%reason, master = %current.address, "tollgate: no sentinel answers; using the master they named last for up to {SENTINELS_SILENT_GRACE:?}");
                }
                return Ok(self.target());
            }
            Err(error) => return Err(error),
        };
        {
            let mut heard = self.heard.lock();
            heard.answered = Some(Instant::now());
            heard.warned_silent = false;
            let address = format!("{host}:{port}");
            let stale = heard
                .replaced
                .as_ref()
                .is_some_and(|(old, at)| *old == address && at.elapsed() < ANNOUNCED_SWITCH_HOLDS);
            if stale {
                // A sentinel that has not heard of the switch yet (or an
                // answer that crossed it): keep the announced master.
                return Ok(self.target());
            }
        }
        let target = self.switch_to(&host, port)?;
        self.located.store(true, Ordering::Release);
        Ok(target)
    }

    /// The sentinels announced `host:port` as the master: switch to it, and
    /// take answers naming the one it replaced for stale for a while.
    fn announced(&self, host: &str, port: u16) -> Result<Arc<Target>> {
        let replaced = self.target().address.clone();
        if replaced != format!("{host}:{port}") {
            // Before the switch: an answer that crosses it is then stale.
            self.heard.lock().replaced = Some((replaced, Instant::now()));
        }
        self.switch_to(host, port)
    }

    /// Makes `host:port` the target (with sentinels), retiring every
    /// connection to the one before.
    fn switch_to(&self, host: &str, port: u16) -> Result<Arc<Target>> {
        let mut target = self.target.lock();
        let current = Arc::clone(&target);
        if current.address == format!("{host}:{port}") {
            return Ok(current);
        }
        let located = Arc::new(Target::at(&current.bare, host, port)?);
        if self.located.load(Ordering::Acquire) {
            tracing::warn!(
                from = %current.address,
                to = %located.address,
                "tollgate: the sentinels switched the master"
            );
        }
        *target = Arc::clone(&located);
        drop(target);
        self.retire_target();
        Ok(located)
    }

    /// With sentinels: starts a thread that listens to them for the
    /// master's switch (`+switch-master`) and moves every connection at
    /// once, rather than at the next periodic check. It ends when the
    /// connector is dropped (within a second). Over TLS it does not start.
    pub fn watch_sentinels(self: &Arc<Self>) {
        let Some(sentinels) = &self.sentinels else {
            return;
        };
        let credentials = Credentials {
            username: self.username.as_deref(),
            password: self.password.as_deref(),
        };
        let watcher = sentinels.watcher(
            &self.target().bare,
            &credentials,
            self.connect_timeout,
            self.response_timeout,
        );
        let connector = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("tollgate-sentinel".into())
            .spawn(move || {
                watcher.run(|switched| {
                    let Some(connector) = connector.upgrade() else {
                        return false;
                    };
                    if let Some((host, port)) = switched
                        && let Err(error) = connector.announced(host, port)
                    {
                        tracing::warn!(%error, "tollgate: cannot follow the sentinels' switch");
                    }
                    true
                });
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "tollgate: cannot watch the sentinels; following them at each check");
        }
    }

    /// The longest wait for a connection to open.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The counter bumped each time a new server (run id) is met.
    pub fn server_generation(&self) -> &Arc<AtomicU64> {
        &self.generation
    }

    /// Sets what to call when a connection meets a new server.
    pub fn on_server_changed(&self, callback: ServerChanged) {
        *self.on_server_changed.lock() = Some(callback);
    }

    /// Opens a connection for tollgate's commands: every read and write is
    /// bounded by the response timeout, and the handshake (with the server
    /// checks) has run; all of it within `budget` too, when one is given (a
    /// caller's deadline). With sentinels, asking them comes first, within
    /// one connect and one response timeout (and the budget). Also returns
    /// the target epoch it was opened at: the connection is good while
    /// [`Connector::target_epoch`] stays the same.
    pub fn connect(&self, budget: Option<Duration>) -> Result<(Connection, u64)> {
        self.establish(Purpose::Commands, budget)
    }

    /// Opens a connection that will only listen for notifications, with the
    /// same reader, handshake and timeouts as a command connection.
    pub fn connect_listener(&self) -> Result<Connection> {
        self.establish(Purpose::Notifications, None)
            .map(|(conn, _epoch)| conn)
    }

    /// The longest wait for a reply.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    fn establish(&self, purpose: Purpose, budget: Option<Duration>) -> Result<(Connection, u64)> {
        let started = std::time::Instant::now();
        let asking = started + self.connect_timeout + self.response_timeout;
        let target = self.locate(budget.map_or(asking, |b| asking.min(started + b)))?;
        // Read after locating: a switch from here on retires the connection.
        let epoch = self.target_epoch();
        let connect_timeout = budget.map_or(self.connect_timeout, |b| {
            b.saturating_sub(started.elapsed())
                .min(self.connect_timeout)
                .max(Duration::from_millis(1))
        });
        let mut conn = Connection::open(&target.bare, &target.client, connect_timeout)
            .map_err(|e| self.connect_error(&e))?;
        let handshake_timeout = match budget {
            Some(budget) => budget
                .saturating_sub(started.elapsed())
                .min(self.response_timeout)
                .max(Duration::from_millis(1)),
            None => self.response_timeout,
        };
        conn.set_timeouts(handshake_timeout)
            .map_err(|e| self.connect_error(&e))?;
        self.handshake(&mut conn, purpose)?;
        if handshake_timeout != self.response_timeout {
            conn.set_timeouts(self.response_timeout)
                .map_err(|e| self.connect_error(&e))?;
        }
        Ok((conn, epoch))
    }

    fn handshake(&self, conn: &mut dyn ConnectionLike, purpose: Purpose) -> Result<()> {
        if let Some(password) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &self.username {
                auth.arg(username);
            }
            auth.arg(password)
                .exec(conn)
                .map_err(|e| self.handshake_error(&e))?;
        }
        if self.db != 0 {
            redis::cmd("SELECT")
                .arg(self.db)
                .exec(conn)
                .map_err(|e| match e.detail() {
                    // The URL names a database the server does not have.
                    Some(detail) if e.code() == Some("ERR") && detail.contains("out of range") => {
                        Error::invalid(
                            "redis url",
                            format!("{} has no database {}: {detail}", self.address(), self.db),
                        )
                    }
                    _ => self.handshake_error(&e),
                })?;
        }
        if purpose == Purpose::Notifications {
            return Ok(());
        }
        self.check_server(conn)
    }

    /// Whether the server is due for another check ([`SERVER_RECHECK`]);
    /// `true` to one caller only, which must then run [`Self::recheck`]
    /// (to every caller while the last check refused the policy).
    pub fn claim_recheck(&self) -> bool {
        if self.refusing.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.since_created_ms();
        let last = self.checked_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= SERVER_RECHECK.as_millis() as u64
            && self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Reads the server's eviction policy and run id again on an open
    /// connection: [`Error::EvictionPolicy`] if it may evict now (and that
    /// is not accepted); a restart or replacement is noted as at connect.
    /// With sentinels, asks them again first: when they name another
    /// master, every connection to the old one is retired.
    pub fn recheck(&self, conn: &mut dyn ConnectionLike) -> Result<()> {
        if self.sentinels.is_some() {
            let epoch = self.target_epoch();
            self.locate(Instant::now() + self.connect_timeout + self.response_timeout)?;
            if self.target_epoch() != epoch {
                return Err(Error::Unavailable {
                    reason: "the sentinels name another master".to_owned(),
                });
            }
        }
        self.check_server(conn)
    }

    fn since_created_ms(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    /// The checks a connection for commands passes: the eviction policy,
    /// the run id (a restart or failover marks leases lost) and, with
    /// sentinels, that the server is a master.
    fn check_server(&self, conn: &mut dyn ConnectionLike) -> Result<()> {
        self.checked_ms
            .fetch_max(self.since_created_ms(), Ordering::Relaxed);
        let mut ask = redis::cmd("INFO");
        ask.arg("server").arg("memory");
        if self.sentinels.is_some() {
            ask.arg("replication");
        }
        let info: String = match ask.query(conn) {
            Ok(info) => info,
            // Eviction accepted: the policy need not be read, but without
            // the run id a restart goes unnoticed (said once).
            Err(e) if self.accept_eviction && e.code() == Some("NOPERM") => {
                let mut seen = self.seen.lock();
                if !seen.warned_no_info {
                    seen.warned_no_info = true;
                    tracing::warn!(server = %self.address(), "tollgate: INFO is not permitted: restarts and failovers of this server will not mark guards lost (grant +info to the user)");
                }
                drop(seen);
                if self.sentinels.is_some() {
                    let role = role_by_command(conn).map_err(|e| self.handshake_error(&e))?;
                    self.check_role(&role)?;
                }
                return Ok(());
            }
            Err(e) => return Err(self.handshake_error(&e)),
        };
        if info_field(&info, "redis_mode") == Some("sentinel") {
            let address = self.address();
            return Err(Error::invalid(
                "redis url",
                format!(
                    "{address} is a Redis Sentinel, not the server: name the master through it, \
                     redis+sentinel://{address}/MASTER"
                ),
            ));
        }
        if self.sentinels.is_some() {
            self.check_role(info_field(&info, "role").unwrap_or("unknown"))?;
        }
        let policy = self.check_policy(info_field(&info, "maxmemory_policy"));
        self.refusing.store(policy.is_err(), Ordering::Relaxed);
        policy?;
        if let Some(run_id) = info_field(&info, "run_id") {
            self.saw_server(run_id);
        }
        Ok(())
    }

    /// With sentinels: a server that is not a master now (the sentinels
    /// named it a moment ago, or before a failover) is refused, every
    /// connection to it retired, and the sentinel that named it asked last
    /// next time.
    fn check_role(&self, role: &str) -> Result<()> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(());
        };
        if role == "master" {
            return Ok(());
        }
        self.retire_target();
        sentinels.distrust_last_answer();
        Err(Error::Unavailable {
            reason: format!(
                "{}, named master of {:?} by its sentinels, is not a master (role:{role}; a failover may be under way)",
                self.address(),
                sentinels.master_name()
            ),
        })
    }

    fn check_policy(&self, policy: Option<&str>) -> Result<()> {
        let policy = policy.unwrap_or("unknown (INFO memory has no maxmemory_policy)");
        if policy == SAFE_POLICY {
            return Ok(());
        }
        if !self.accept_eviction {
            return Err(Error::EvictionPolicy {
                policy: policy.to_owned(),
            });
        }
        let mut seen = self.seen.lock();
        if seen.warned_policy.as_deref() != Some(policy) {
            seen.warned_policy = Some(policy.to_owned());
            tracing::warn!(
                server = %self.address(),
                policy,
                "tollgate: the Redis server may evict keys (maxmemory-policy is not noeviction); \
                 accepted by ClientBuilder::accept_eviction: locks, results and counters can vanish under memory pressure"
            );
        }
        Ok(())
    }

    fn saw_server(&self, run_id: &str) {
        let changed = {
            let mut seen = self.seen.lock();
            let changed = seen.run_id.as_deref().is_some_and(|old| old != run_id);
            if seen.run_id.as_deref() != Some(run_id) {
                seen.run_id = Some(run_id.to_owned());
            }
            changed
        };
        if changed {
            tracing::warn!(
                server = %self.address(),
                "tollgate: the Redis server restarted or was replaced (new run id); leases granted before may be gone"
            );
            self.server_changed();
        }
    }

    /// Records that the server (or, in a cluster, a master) was replaced:
    /// every lease granted before may be gone.
    pub fn server_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(callback) = &*self.on_server_changed.lock() {
            callback();
        }
    }

    /// Errors of the connect itself: nothing was sent.
    fn connect_error(&self, error: &RedisError) -> Error {
        if error.kind() == ErrorKind::AuthenticationFailed {
            return Error::Auth {
                message: error.to_string(),
            };
        }
        let reason = if error.is_connection_refusal() {
            format!("{} refused the connection", self.address())
        } else if error.is_timeout() {
            format!(
                "no connection to {} within {:?}",
                self.address(),
                self.connect_timeout
            )
        } else {
            format!("cannot connect to {}: {error}", self.address())
        };
        Error::Unavailable { reason }
    }

    /// Errors of the handshake: nothing of the caller's was sent yet.
    fn handshake_error(&self, error: &RedisError) -> Error {
        let detail = error.detail().unwrap_or_default();
        if detail.contains("max number of clients") {
            // `maxclients` reached: the server takes no new connection now.
            return Error::Unavailable {
                reason: format!("{} refused the connection: {detail}", self.address()),
            };
        }
        match error.code() {
            Some(code @ ("WRONGPASS" | "NOAUTH")) => Error::Auth {
                message: format!("{code} {detail} (from {})", self.address()),
            },
            Some(code @ "NOPERM") => Error::Refused {
                code: code.to_owned(),
                message: format!(
                    "{detail} (tollgate reads INFO on each new connection to check maxmemory-policy: \
                     allow +info for this user, or accept eviction with ClientBuilder::accept_eviction)"
                ),
            },
            Some(code) if !error.is_io_error() => Error::Refused {
                code: code.to_owned(),
                message: detail.to_owned(),
            },
            _ if error.kind() == ErrorKind::Parse => Error::Unavailable {
                reason: format!(
                    "{} does not answer in the Redis protocol (is it a Redis server?): {}",
                    self.address(),
                    error.detail().unwrap_or_default()
                ),
            },
            _ => Error::Unavailable {
                reason: format!("{} did not complete the handshake: {error}", self.address()),
            },
        }
    }
}

/// The server's role by `ROLE` (for users not allowed `INFO`): `master`,
/// `slave` or `sentinel`.
fn role_by_command(conn: &mut dyn ConnectionLike) -> redis::RedisResult<String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(conn)?;
    match reply.into_iter().next() {
        Some(role) => redis::from_redis_value(role).map_err(Into::into),
        None => Ok("unknown".to_owned()),
    }
}

/// The value of `field` in an `INFO` reply (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(str::trim))
}

/// TCP settings for the connections the `redis` crate opens (TLS): no
/// Nagle delay, and keepalive probes, because a TLS listening connection
/// waits on its socket without a read timeout (see
/// [`Connection::set_quiet_timeout`]): a peer that vanished without closing
/// is noticed within about half a minute (on Linux also while a request
/// is unacknowledged).
fn tls_tcp_settings() -> redis::io::tcp::TcpSettings {
    let keepalive = redis::io::tcp::socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2));
    let settings = redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    // Keepalive probes wait while sent data is unacknowledged (a request
    // sent into a partition): this bounds that wait too.
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(20));
    settings
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info = "# Server\r\nrun_id:abc\r\n# Memory\r\nmaxmemory_policy:allkeys-lru\r\nmaxmemory_policy_x:no\r\n";
        assert_eq!(info_field(info, "run_id"), Some("abc"));
        assert_eq!(info_field(info, "maxmemory_policy"), Some("allkeys-lru"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
