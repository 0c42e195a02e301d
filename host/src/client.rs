//! The client: connection settings, limits, and the state its clones share.

use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::store::{MemoryStore, Notifications, PoolConfig, RedisStore, Sentinels, Store};
use crate::watchdog::Watchdog;

/// Default for [`ClientBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`ClientBuilder::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`ClientBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
/// Default for [`ClientBuilder::key_prefix`].
pub const DEFAULT_KEY_PREFIX: &str = "tollgate:";

/// A handle to tollgate on one Redis server, or on a store inside this
/// process ([`Client::in_memory`]).
///
/// Cheap to clone; clones share one connection pool, one notification
/// connection and one watchdog (a scheduling thread, and renewing threads
/// as renewals need them). `Send + Sync`: share it between
/// threads freely. Every call is blocking and bounded: it waits at most the
/// connect timeout for a connection and the response timeout for each reply
/// (plus, for lock acquisition, the wait the caller asked for).
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

pub(crate) struct ClientInner {
    pub store: Arc<dyn Store>,
    pub keyspace: Keyspace,
    pub settings: Settings,
    pub watchdog: Watchdog,
    /// Locks held through this client, by name and acquiring thread.
    pub held: crate::held::HeldByThread,
    /// Read-write locks held through this client, by name and thread.
    pub held_rw: crate::held::HeldByThread,
}

pub(crate) struct Settings {
    pub client_name: String,
    pub max_ttl: Duration,
    pub max_wait: Duration,
    pub fence_retention: Duration,
    pub poll_interval: Duration,
}

impl ClientInner {
    /// Who holds a lock, for operators: client name, process and thread.
    pub fn holder_description(&self) -> String {
        thread_local! {
            /// " pid P thread T" of this thread, made once (a `getpid` and
            /// a format each time cost more than the rest of a request).
            static WHERE: String = {
                let current = thread::current();
                let thread = match current.name() {
                    Some(name) => name.to_owned(),
                    None => format!("{:?}", current.id()),
                };
                format!(" pid {} thread {}", std::process::id(), thread)
            };
        }
        WHERE.with(|place| {
            let mut holder = String::with_capacity(self.settings.client_name.len() + place.len());
            holder.push_str(&self.settings.client_name);
            holder.push_str(place);
            holder
        })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_name", &self.inner.settings.client_name)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens a client on a Redis URL: `redis://[:password@]host[:port][/db]`,
    /// `rediss://…` for TLS (with the `tls` feature), or
    /// `redis+unix:///path/to/socket`; for a Redis Cluster,
    /// `redis+cluster://[user:password@]host:port,host:port,…/` (or
    /// `rediss+cluster://`) with any of its nodes as seeds; for a primary
    /// whose failovers Redis Sentinel runs,
    /// `redis+sentinel://[user:password@]host:port,host:port,…/MASTER[/db]`
    /// (or `rediss+sentinel://`) with its sentinels (port 26379 by default)
    /// and the master's name in their configuration: connections go to the
    /// master they name, with the URL's credentials (also sent to
    /// sentinels that require a password), and move when a thread of the
    /// client hears them switch it. Connects lazily: the first call
    /// connects.
    ///
    /// ```no_run
    /// let client = tollgate::Client::open("redis://127.0.0.1:6379/0")?;
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn open(url: &str) -> Result<Client> {
        Client::builder(url).build()
    }

    /// Opens a client on the URL in the `REDIS_URL` environment variable.
    pub fn from_env() -> Result<Client> {
        let url = std::env::var("REDIS_URL").map_err(|e| {
            Error::invalid(
                "REDIS_URL",
                format!("{e} (set it to e.g. redis://127.0.0.1:6379/)"),
            )
        })?;
        Client::open(&url)
    }

    /// Starts building a client with non-default settings.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(Backend::Redis(url.into()))
    }

    /// A client on a new, empty store inside this process, with default
    /// settings: no Redis, no connection, no thread but the watchdog's (and
    /// that only once something is watched). The same API with the same
    /// semantics as on Redis — TTLs, owner tokens, fencing tokens, waits
    /// woken by releases, idempotency states, counters, sequences — for one
    /// process: for tests (of a plugin, say) and for programs that run alone.
    ///
    /// What differs is where the state lives: only in this process's memory,
    /// gone when the last client on the store is dropped, never persisted,
    /// invisible to other processes, so a lock here excludes nobody outside
    /// this process. TTLs, leases and windows run on the monotonic clock; the
    /// wall clock takes the place of Redis's `TIME`: the floor of fencing
    /// tokens (microseconds since 1970) and the day of daily sequences.
    /// Several clients on one store (with their own settings) come from one
    /// [`ClientBuilder::in_memory`] and its clones.
    ///
    /// ```
    /// let client = tollgate::Client::in_memory();
    /// let guard = client.lock("orders:42").acquire()?;
    /// assert!(client.lock_info("orders:42")?.is_some());
    /// guard.release()?;
    /// assert_eq!(client.counter("views").incr(1)?, 1);
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn in_memory() -> Client {
        let store = Arc::new(MemoryStore::new());
        // The default settings are valid: nothing to check.
        ClientBuilder::new(Backend::Memory(Arc::clone(&store))).assemble(store)
    }

    /// Whether lock waiters of this client are woken by release
    /// notifications, or poll (at the [`poll_interval`](ClientBuilder::poll_interval))
    /// because Redis refused them or the connection is down. For health
    /// checks: waits stay correct either way, only slower.
    pub fn notifications(&self) -> Notifications {
        self.inner.store.notifications()
    }

    pub(crate) fn inner(&self) -> &ClientInner {
        &self.inner
    }
}

/// Settings of a [`Client`]; every one has a default.
///
/// ```no_run
/// use std::time::Duration;
/// let client = tollgate::Client::builder("redis://127.0.0.1/")
///     .response_timeout(Duration::from_millis(500))
///     .client_name("billing-worker")
///     .build()?;
/// # Ok::<(), tollgate::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build()"]
pub struct ClientBuilder {
    backend: Backend,
    connect_timeout: Duration,
    response_timeout: Duration,
    max_connections: u32,
    health_check_after: Duration,
    key_prefix: String,
    client_name: String,
    max_ttl: Duration,
    max_wait: Duration,
    fence_retention: Duration,
    poll_interval: Duration,
    accept_eviction: bool,
    synced: Option<(u32, Duration)>,
    #[cfg(feature = "tls")]
    tls_root_certificates: Option<Vec<u8>>,
}

/// Where a client's state lives.
#[derive(Debug, Clone)]
enum Backend {
    /// A Redis server's URL.
    Redis(String),
    /// A store in this process, shared by the clients built from one builder.
    Memory(Arc<MemoryStore>),
}

/// This program's file name, for holder texts: `tollgate` when it cannot
/// be read; control characters become `?`. Read once per process.
fn program_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let name = std::env::current_exe()
            .ok()
            .and_then(|path| Some(path.file_stem()?.to_string_lossy().into_owned()))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "tollgate".to_owned());
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    })
    .clone()
}

impl ClientBuilder {
    /// Starts building a client on a new, empty store inside this process
    /// (see [`Client::in_memory`]). Every client built from this builder or
    /// its clones shares that store, as clients of one Redis server share
    /// it: give each its own settings (`poll_interval`, `key_prefix`,
    /// `client_name`, limits) to play several processes in a test. The
    /// connection settings (`connect_timeout`, `response_timeout`,
    /// `max_connections`, `health_check_after`) have nothing to act on and
    /// are only checked.
    ///
    /// ```
    /// use std::time::Duration;
    /// let store = tollgate::ClientBuilder::in_memory();
    /// let a = store.clone().client_name("worker-a").build()?;
    /// let b = store.poll_interval(Duration::from_millis(50)).build()?;
    /// let guard = a.lock("job").acquire()?;
    /// assert!(b.lock("job").try_acquire()?.is_none());
    /// # drop(guard);
    /// # Ok::<(), tollgate::Error>(())
    /// ```
    pub fn in_memory() -> Self {
        ClientBuilder::new(Backend::Memory(Arc::new(MemoryStore::new())))
    }

    fn new(backend: Backend) -> Self {
        ClientBuilder {
            backend,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            health_check_after: Duration::from_millis(100),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            client_name: program_name(),
            max_ttl: Duration::from_secs(24 * 3600),
            max_wait: Duration::from_secs(3600),
            fence_retention: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
            accept_eviction: false,
            synced: None,
            #[cfg(feature = "tls")]
            tls_root_certificates: None,
        }
    }

    /// Longest wait for a connection, new or pooled (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest wait for each reply, and for each write (default 2 s). When it
    /// passes the call fails with [`Error::OutcomeUnknown`] and the connection
    /// is discarded.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Most pooled connections open at once (default 16); a call waits for a
    /// free one up to the connect timeout.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// A pooled connection idle for longer than this is checked with `PING`
    /// before reuse (default 100 ms), so a Redis restart while the client was
    /// idle costs a reconnect, not a failed call.
    pub fn health_check_after(mut self, idle: Duration) -> Self {
        self.health_check_after = idle;
        self
    }

    /// Prefix of every key and channel (default `tollgate:`). Clients that
    /// should see each other's locks must use the same prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Name shown to operators as part of a lock's holder (default: this
    /// program's file name, e.g. `billing-worker`; `tollgate` when it
    /// cannot be read).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// Largest TTL a caller may ask for (default 24 h).
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self
    }

    /// Largest wait a caller may ask for (default 1 h).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// How long a name's fencing counter outlives its lock (default 1 h).
    /// See the [`lock`](crate::lock) module docs for what it protects.
    pub fn fence_retention(mut self, retention: Duration) -> Self {
        self.fence_retention = retention;
        self
    }

    /// Longest a lock waiter sleeps before asking again when no release
    /// notification arrives (default 1 s, jittered to 50–100 %). It only
    /// matters when a notification is lost.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Uses a Redis server whose `maxmemory-policy` may evict keys, which
    /// tollgate otherwise refuses with [`Error::EvictionPolicy`]. Under
    /// memory pressure such a server can delete a live lock (a second holder
    /// gets it while the first still works), a stored result (the action runs
    /// again), a `once` marker, a counter or a sequence. Each new connection
    /// logs a warning the first time it sees such a policy.
    ///
    /// Without this option, every new connection (the first contact with a
    /// server, and each reconnect) reads `INFO memory` and refuses any policy
    /// but `noeviction`; the ACL user needs the `INFO` command for that. A
    /// policy changed on a running server is seen within 5 s: every
    /// connection pool reads it again that often.
    pub fn accept_eviction(mut self) -> Self {
        self.accept_eviction = true;
        self
    }

    /// Synced mode, for a primary with replicas (or a cluster's masters):
    /// after each lock grant, idempotency claim and stored result, wait
    /// until `replicas` replicas confirm the write (`WAIT`, on the
    /// connection and node that wrote it), for at most `timeout`. When fewer
    /// confirm, a grant is given back (a claim abandoned) and the call fails
    /// with [`Error::NotReplicated`], so a failover to a replica cannot hand
    /// the same lock to a second holder. A result that replicas did not
    /// confirm stays stored on the primary and is reported the same way
    /// (storing is retried within `Idempotency::store_retry`). Renewals and
    /// releases are not waited for. Costs one `WAIT` round trip per grant.
    /// A replica that has just finished its first sync confirms nothing
    /// until its first periodic acknowledgement reaches the primary (up to
    /// a second on Redis 7.0), so calls in that window fail with the
    /// retryable [`Error::NotReplicated`]. After a failover the promoted
    /// replica has no replica of its own until another one has synced
    /// from it (the old primary, once demoted, resyncs in full): with
    /// `replicas` = 1, keep at least two replicas.
    /// Counters and sequences are not synced: an increment acknowledged in
    /// the moments before a failover can be missing on the promoted
    /// replica.
    /// `timeout` must be shorter than the response timeout. The in-process
    /// store has no replicas and ignores it.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.synced = Some((replicas, timeout));
        self
    }

    /// For `rediss://` URLs: trust only these root certificates (PEM) instead
    /// of the system's, e.g. a private CA's. Needs the `tls` feature (on by
    /// default).
    #[cfg(feature = "tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificates = Some(pem.into());
        self
    }

    /// Checks the settings and builds the client. Does not connect.
    pub fn build(self) -> Result<Client> {
        let positive = |what: &'static str, d: Duration| {
            if d.is_zero() {
                Err(Error::invalid(what, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        positive("connect timeout", self.connect_timeout)?;
        positive("response timeout", self.response_timeout)?;
        positive("poll interval", self.poll_interval)?;
        positive("max ttl", self.max_ttl)?;
        // Upper bounds keep every deadline computable (`Instant + Duration`).
        const HOUR: Duration = Duration::from_secs(3600);
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let at_most = |what: &'static str, d: Duration, max: Duration| {
            if d > max {
                Err(Error::invalid(
                    what,
                    format!("{d:?} is above the limit of {max:?}"),
                ))
            } else {
                Ok(())
            }
        };
        at_most("connect timeout", self.connect_timeout, HOUR)?;
        at_most("response timeout", self.response_timeout, HOUR)?;
        at_most("poll interval", self.poll_interval, HOUR)?;
        at_most("health check interval", self.health_check_after, YEAR)?;
        at_most("max ttl", self.max_ttl, YEAR)?;
        at_most("max wait", self.max_wait, YEAR)?;
        at_most("fence retention", self.fence_retention, YEAR)?;
        if let Some((replicas, timeout)) = self.synced {
            if replicas == 0 {
                return Err(Error::invalid("replicas", "synced mode needs at least 1"));
            }
            if timeout.is_zero() || timeout >= self.response_timeout {
                return Err(Error::invalid(
                    "replica timeout",
                    format!(
                        "{timeout:?} must be above zero and shorter than the response timeout ({:?})",
                        self.response_timeout
                    ),
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(Error::invalid("max connections", "must be at least 1"));
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err(Error::invalid(
                "key prefix",
                "must not contain '{' or '}' (they are used as hash tags)",
            ));
        }
        let store: Arc<dyn Store> = match &self.backend {
            Backend::Memory(store) => Arc::clone(store) as Arc<dyn Store>,
            Backend::Redis(url) => {
                let config = PoolConfig {
                    connect_timeout: self.connect_timeout,
                    response_timeout: self.response_timeout,
                    max_connections: self.max_connections,
                    health_check_after: self.health_check_after,
                    accept_eviction: self.accept_eviction,
                    synced: self.synced,
                };
                let prefix = &self.key_prefix;
                Arc::new(
                    match (
                        cluster_seeds(url).transpose()?,
                        sentinel_target(url).transpose()?,
                    ) {
                        (Some((first, seeds)), _) => {
                            RedisStore::cluster(&self.redis_client(&first)?, seeds, config, prefix)?
                        }
                        (None, Some((first, nodes, master))) => RedisStore::with_sentinels(
                            &self.redis_client(&first)?,
                            Sentinels::new(nodes, master),
                            config,
                            prefix,
                        )?,
                        (None, None) => RedisStore::new(&self.redis_client(url)?, config, prefix)?,
                    },
                )
            }
        };
        Ok(self.assemble(store))
    }

    /// The client on `store`, from settings already checked.
    fn assemble(self, store: Arc<dyn Store>) -> Client {
        let keyspace = Keyspace::new(self.key_prefix);
        let watchdog = Watchdog::new(Arc::clone(&store));
        store.on_server_changed(watchdog.renew_all_now_hook());
        Client {
            inner: Arc::new(ClientInner {
                watchdog,
                store,
                keyspace,
                settings: Settings {
                    client_name: self.client_name,
                    max_ttl: self.max_ttl,
                    max_wait: self.max_wait,
                    fence_retention: self.fence_retention,
                    poll_interval: self.poll_interval,
                },
                held: Default::default(),
                held_rw: Default::default(),
            }),
        }
    }

    #[cfg(feature = "tls")]
    fn redis_client(&self, url: &str) -> Result<redis::Client> {
        let tls = url.starts_with("rediss:");
        if tls {
            // rustls needs a process-wide crypto provider. This fails, harmlessly,
            // when the embedding program installed its own first. rustls
            // 0.23.48 deprecates its ring provider (no post-quantum key
            // exchange); ring builds without the C toolchain and CMake that
            // aws-lc needs, and a program that wants the latter installs it.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = match (&self.tls_root_certificates, tls) {
            (Some(pem), true) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            (Some(_), false) => {
                return Err(Error::invalid(
                    "redis url",
                    "TLS root certificates were given, but the URL is not rediss://",
                ));
            }
            (None, _) => redis::Client::open(url),
        };
        client.map_err(|e| url_error(url, &e))
    }

    #[cfg(not(feature = "tls"))]
    fn redis_client(&self, url: &str) -> Result<redis::Client> {
        if url.starts_with("rediss:") {
            return Err(Error::invalid(
                "redis url",
                "rediss:// needs tollgate's `tls` feature",
            ));
        }
        redis::Client::open(url).map_err(|e| url_error(url, &e))
    }
}

/// A URL the `redis` crate refused, with a hint when it lacks a scheme.
fn url_error(url: &str, error: &redis::RedisError) -> Error {
    let hint = if url.contains("://") {
        String::new()
    } else {
        format!(
            "; a Redis URL starts with a scheme: redis://{url}/ (or rediss://, redis+unix://, redis+cluster://, redis+sentinel://)"
        )
    };
    Error::invalid(
        "redis url",
        format!(
            "{url:?} did not parse: {}{hint}",
            error.detail().unwrap_or("invalid URL")
        ),
    )
}

/// The seeds of a cluster URL: the URL of the first (as a plain Redis URL)
/// and every seed's (host, port).
type ClusterSeeds = (String, Vec<(String, u16)>);

/// For a cluster URL (`redis+cluster://[auth@]host:port,…[/path]`, or
/// `rediss+cluster://`): the URL of its first seed, with the same scheme
/// (without `+cluster`), credentials and path, and every seed as (host,
/// port). `None` for any other URL.
fn cluster_seeds(url: &str) -> Option<Result<ClusterSeeds>> {
    Some(hosts_of(url, "cluster", 6379)?.map(|hosts| (hosts.first_url(&hosts.path), hosts.hosts)))
}

/// What a sentinel URL names: the URL of its first sentinel with the
/// master's credentials and database, every sentinel's (host, port), and
/// the master's name.
type SentinelTarget = (String, Vec<(String, u16)>, String);

/// For a sentinel URL (`redis+sentinel://[auth@]host:port,…/MASTER[/DB]`,
/// or `rediss+sentinel://`; port 26379 by default). `None` for any other
/// URL.
fn sentinel_target(url: &str) -> Option<Result<SentinelTarget>> {
    let hosts = match hosts_of(url, "sentinel", 26379)? {
        Ok(hosts) => hosts,
        Err(error) => return Some(Err(error)),
    };
    let (master, db) = hosts.path.split_once('/').unwrap_or((&hosts.path, ""));
    if master.is_empty() {
        return Some(Err(Error::invalid(
            "redis url",
            "a sentinel URL names the master after the sentinels: redis+sentinel://host:26379,host:26380/mymaster",
        )));
    }
    Some(Ok((
        hosts.first_url(db),
        hosts.hosts.clone(),
        master.to_owned(),
    )))
}

/// A URL with several hosts:
/// `SCHEME+KIND://[auth@]host:port,…[/path][?query][#fragment]`.
struct Hosts {
    scheme: &'static str,
    auth: Option<String>,
    /// Host names without brackets (an IPv6 address is bare).
    hosts: Vec<(String, u16)>,
    path: String,
    /// `?query` and `#fragment` (`#insecure` for TLS), as written.
    suffix: String,
}

impl Hosts {
    /// A plain URL of the first host, with the credentials, `path` and the
    /// query and fragment.
    fn first_url(&self, path: &str) -> String {
        let (host, port) = &self.hosts[0];
        let auth = self
            .auth
            .as_ref()
            .map(|auth| format!("{auth}@"))
            .unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        format!(
            "{}://{auth}{host}:{port}/{path}{}",
            self.scheme, self.suffix
        )
    }
}

/// `host:port`, `host`, `[v6]:port` or `[v6]` as (host, port), the host
/// without brackets.
fn host_and_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            match after {
                "" => (host, None),
                after => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The hosts of a `redis+KIND://` or `rediss+KIND://` URL, at least one;
/// `None` for a URL of another scheme.
fn hosts_of(url: &str, kind: &str, default_port: u16) -> Option<Result<Hosts>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix(&format!("redis+{kind}://")) {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix(&format!("rediss+{kind}://"))?)
    };
    let (rest, suffix) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, list) = match authority.rsplit_once('@') {
        Some((auth, list)) => (Some(auth.to_owned()), list),
        None => (None, authority),
    };
    let mut hosts = Vec::new();
    for host in list.split(',').filter(|host| !host.is_empty()) {
        match host_and_port(host, default_port) {
            Some(host) => hosts.push(host),
            None => {
                return Some(Err(Error::invalid(
                    "redis url",
                    format!("{kind} address {host:?} is not host:port"),
                )));
            }
        }
    }
    if hosts.is_empty() {
        return Some(Err(Error::invalid(
            "redis url",
            format!("a {kind} URL needs at least one address: redis+{kind}://host:port,host:port/"),
        )));
    }
    Some(Ok(Hosts {
        scheme,
        auth,
        hosts,
        path: path.to_owned(),
        suffix: suffix.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{cluster_seeds, sentinel_target};

    #[test]
    fn cluster_urls_give_the_first_seed_and_every_seed() {
        let (first, seeds) = cluster_seeds("redis+cluster://u:p@h1:7000,h2:7001/")
            .unwrap()
            .unwrap();
        assert_eq!(first, "redis://u:p@h1:7000/");
        assert_eq!(seeds, [("h1".to_owned(), 7000), ("h2".to_owned(), 7001)]);
        let (first, _) = cluster_seeds("rediss+cluster://h1").unwrap().unwrap();
        assert_eq!(first, "rediss://h1:6379/");
        assert!(cluster_seeds("redis://h1:7000/").is_none());
        assert!(cluster_seeds("redis+cluster:///").unwrap().is_err());
        assert!(cluster_seeds("redis+cluster://h1:x/").unwrap().is_err());
    }

    #[test]
    fn sentinel_urls_give_the_first_sentinel_every_sentinel_and_the_master() {
        let (first, nodes, master) =
            sentinel_target("redis+sentinel://u:p@s1:26379,s2:26380/mymaster/2")
                .unwrap()
                .unwrap();
        assert_eq!(first, "redis://u:p@s1:26379/2");
        assert_eq!(nodes, [("s1".to_owned(), 26379), ("s2".to_owned(), 26380)]);
        assert_eq!(master, "mymaster");
        let (first, nodes, master) = sentinel_target("rediss+sentinel://s1/m").unwrap().unwrap();
        assert_eq!(first, "rediss://s1:26379/");
        assert_eq!(nodes, [("s1".to_owned(), 26379)]);
        assert_eq!(master, "m");
        assert!(sentinel_target("redis+cluster://h1:7000/").is_none());
        assert!(
            sentinel_target("redis+sentinel://s1:26379/")
                .unwrap()
                .is_err()
        );
        assert!(sentinel_target("redis+sentinel:///m").unwrap().is_err());
    }

    #[test]
    fn multi_host_urls_take_ipv6_hosts_and_keep_query_and_fragment() {
        let (first, nodes, master) =
            sentinel_target("rediss+sentinel://[::1]:26379,[fe80::2],h3/m/1#insecure")
                .unwrap()
                .unwrap();
        assert_eq!(first, "rediss://[::1]:26379/1#insecure");
        assert_eq!(
            nodes,
            [
                ("::1".to_owned(), 26379),
                ("fe80::2".to_owned(), 26379),
                ("h3".to_owned(), 26379)
            ]
        );
        assert_eq!(master, "m");
        let (first, seeds) = cluster_seeds("redis+cluster://[::1]:7000/?protocol=resp2")
            .unwrap()
            .unwrap();
        assert_eq!(first, "redis://[::1]:7000/?protocol=resp2");
        assert_eq!(seeds, [("::1".to_owned(), 7000)]);
        for bad in [
            "redis+sentinel://[::1/m",
            "redis+sentinel://[::1]x/m",
            "redis+sentinel://:1/m",
        ] {
            assert!(sentinel_target(bad).unwrap().is_err(), "{bad}");
        }
    }
}
