//! Asking Redis Sentinel where the master of a monitored set is.
//!
//! A client on a `redis+sentinel://` URL asks before every new connection
//! and again at each periodic server check (every few seconds while it is
//! busy), so that connections go to the master the sentinels name now:
//! when they name another one, every pooled connection to the old one is
//! dropped. Sentinels are asked in turn, the one that answered last first;
//! one whose answer turned out not to be a master is asked last next time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::{ConnectionLike, Value};

use super::connect::Target;
use super::heartbeat::{HEARTBEAT, Heartbeat, Quiet};
use super::wire::Connection;
use crate::error::{Error, Result};

/// The sentinels that monitor one master, and its name there.
pub(crate) struct Sentinels {
    nodes: Vec<(String, u16)>,
    master: String,
    /// The node that answered last: asked first next time.
    preferred: AtomicUsize,
}

/// The credentials a sentinel is asked with when it requires a password:
/// the data nodes' own.
pub(crate) struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// The limits of one round of questions.
pub(crate) struct Limits {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The whole round ends by then.
    pub deadline: Instant,
}

impl Limits {
    /// `limit`, cut to the time left; `None` when none is left.
    fn within(&self, limit: Duration) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| limit.min(left))
    }
}

/// How one sentinel answered.
enum Answer {
    Master(String, u16),
    /// It monitors no master of that name.
    Unknown,
    /// It is not a sentinel (a plain Redis server, say).
    NotASentinel(String),
}

impl Sentinels {
    /// `nodes` must not be empty.
    pub fn new(nodes: Vec<(String, u16)>, master: String) -> Self {
        Sentinels {
            nodes,
            master,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The master's name in the sentinels' configuration.
    pub fn master_name(&self) -> &str {
        &self.master
    }

    /// The last answer named a server that is not a master: the sentinel
    /// that gave it is asked last next time.
    pub fn distrust_last_answer(&self) {
        let next = (self.preferred.load(Ordering::Relaxed) + 1) % self.nodes.len();
        self.preferred.store(next, Ordering::Relaxed);
    }

    /// Where the master is now, as (host, port), by the first sentinel that
    /// knows. [`Error::Unavailable`] naming each sentinel's failure when
    /// none could say; [`Error::Auth`] when every sentinel refused the
    /// credentials; [`Error::InvalidArgument`] when every one answered that
    /// it monitors no such master, or is not a sentinel.
    pub fn locate(
        &self,
        like: &redis::ConnectionInfo,
        credentials: &Credentials<'_>,
        limits: &Limits,
    ) -> Result<(String, u16)> {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::with_capacity(count);
        let (mut misnamed, mut refused) = (0, 0);
        for index in (0..count).map(|i| (first + i) % count) {
            let (host, port) = &self.nodes[index];
            let asked = Target::at(like, host, *port)
                .and_then(|sentinel| ask(&self.master, &sentinel, credentials, limits))
                .map(|(_conn, answer)| answer);
            match asked {
                Ok(Answer::Master(host, port)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok((host, port));
                }
                Ok(Answer::Unknown) => {
                    misnamed += 1;
                    failures.push(format!("{host}:{port} monitors no such master"));
                }
                Ok(Answer::NotASentinel(reply)) => {
                    misnamed += 1;
                    failures.push(format!("{host}:{port} is not a sentinel ({reply})"));
                }
                Err(error) => {
                    if matches!(error, Error::Auth { .. }) {
                        refused += 1;
                    }
                    failures.push(format!("{host}:{port}: {error}"));
                }
            }
        }
        let failures = failures.join("; ");
        if refused == count {
            return Err(Error::Auth {
                message: format!("every sentinel refused the credentials: {failures}"),
            });
        }
        if misnamed == count {
            return Err(Error::invalid(
                "redis url",
                format!(
                    "no sentinel monitors a master named {:?} ({failures})",
                    self.master
                ),
            ));
        }
        Err(Error::Unavailable {
            reason: format!(
                "no sentinel said where master {:?} is: {failures}",
                self.master
            ),
        })
    }
}

/// One sentinel's answer about `master`, and the connection it came on.
/// The question goes first without credentials; they are sent only when
/// the sentinel asks for them (`NOAUTH`), as a sentinel without a password
/// refuses a user name.
fn ask(
    master: &str,
    sentinel: &Target,
    credentials: &Credentials<'_>,
    limits: &Limits,
) -> Result<(Connection, Answer)> {
    let out_of_time = || Error::Unavailable {
        reason: "no time left to ask".to_owned(),
    };
    let unreachable = |error: redis::RedisError| Error::Unavailable {
        reason: if error.is_connection_refusal() {
            "refused the connection".to_owned()
        } else if error.is_timeout() {
            "no answer in time".to_owned()
        } else {
            error.to_string()
        },
    };
    let connect_timeout = limits
        .within(limits.connect_timeout)
        .ok_or_else(out_of_time)?;
    let mut conn =
        Connection::open(&sentinel.bare, &sentinel.client, connect_timeout).map_err(unreachable)?;
    let request = |conn: &mut Connection, cmd: &redis::Cmd| -> Result<Value> {
        let timeout = limits
            .within(limits.response_timeout)
            .ok_or_else(out_of_time)?;
        conn.set_timeouts(timeout).map_err(unreachable)?;
        conn.req_command(cmd).map_err(unreachable)
    };
    let mut question = redis::cmd("SENTINEL");
    question.arg("GET-MASTER-ADDR-BY-NAME").arg(master);
    let mut answer = request(&mut conn, &question)?;
    if matches!(&answer, Value::ServerError(e) if e.code() == "NOAUTH") {
        let Some(password) = credentials.password else {
            return Err(Error::Auth {
                message: "the sentinel requires a password; the URL has none".to_owned(),
            });
        };
        let mut auth = redis::cmd("AUTH");
        if let Some(username) = credentials.username {
            auth.arg(username);
        }
        if let Value::ServerError(error) = request(&mut conn, auth.arg(password))? {
            return Err(Error::Auth {
                message: format!("sentinel: {}", redis::RedisError::from(error)),
            });
        }
        answer = request(&mut conn, &question)?;
    }
    let answer = match answer {
        Value::Nil => Answer::Unknown,
        Value::Array(parts) => {
            match redis::from_redis_value::<(String, u16)>(Value::Array(parts)) {
                Ok((host, port)) => Answer::Master(host, port),
                Err(error) => {
                    return Err(Error::UnexpectedReply(format!("sentinel: {error}")));
                }
            }
        }
        Value::ServerError(error)
            if error
                .details()
                .is_some_and(|d| d.contains("unknown command")) =>
        {
            Answer::NotASentinel(redis::RedisError::from(error).to_string())
        }
        Value::ServerError(error) => {
            return Err(Error::Refused {
                code: error.code().to_owned(),
                message: format!("sentinel: {}", error.details().unwrap_or_default()),
            });
        }
        other => return Err(Error::UnexpectedReply(format!("sentinel: {other:?}"))),
    };
    Ok((conn, answer))
}

const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the sentinels' announcement watcher needs: where they are and how
/// to talk to them.
pub(crate) struct Watcher {
    nodes: Vec<(String, u16)>,
    master: String,
    like: redis::ConnectionInfo,
    username: Option<String>,
    password: Option<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl Sentinels {
    /// A watcher of these sentinels' announcements.
    pub fn watcher(
        &self,
        like: &redis::ConnectionInfo,
        credentials: &Credentials<'_>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Watcher {
        Watcher {
            nodes: self.nodes.clone(),
            master: self.master.clone(),
            like: like.clone(),
            username: credentials.username.map(str::to_owned),
            password: credentials.password.map(str::to_owned),
            connect_timeout,
            response_timeout,
        }
    }
}

impl Watcher {
    /// Listens to one sentinel at a time for `+switch-master` announcements
    /// of the master and calls `heard(Some((host, port)))` with its new
    /// address at once; calls `heard(None)` at least every second. Returns
    /// when `heard` returns `false` (the client is gone), or at once over
    /// TLS. A sentinel that goes quiet and does not answer a `PING` is left
    /// for the next one.
    pub fn run(&self, heard: impl Fn(Option<(&str, u16)>) -> bool) {
        let mut backoff = Duration::from_millis(50);
        for index in (0..self.nodes.len()).cycle() {
            let (host, port) = &self.nodes[index];
            match self.listen(host, *port, &heard) {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, sentinel = %format!("{host}:{port}"), "tollgate: not listening to this sentinel");
                }
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if !heard(None) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100).min(backoff));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Listens to one sentinel until it fails (`Err`) or `heard` says stop.
    fn listen(
        &self,
        host: &str,
        port: u16,
        heard: &impl Fn(Option<(&str, u16)>) -> bool,
    ) -> Result<()> {
        let failed = |error: redis::RedisError| Error::Unavailable {
            reason: error.to_string(),
        };
        let sentinel = Target::at(&self.like, host, port)?;
        let credentials = Credentials {
            username: self.username.as_deref(),
            password: self.password.as_deref(),
        };
        let limits = Limits {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            deadline: Instant::now() + self.connect_timeout + self.response_timeout,
        };
        // Only a sentinel that monitors the master is worth listening to.
        let (mut conn, answer) = ask(&self.master, &sentinel, &credentials, &limits)?;
        if !matches!(answer, Answer::Master(..)) {
            return Err(Error::Unavailable {
                reason: "monitors no such master".to_owned(),
            });
        }
        conn.set_timeouts(self.response_timeout).map_err(failed)?;
        let mut subscribe = redis::cmd("SUBSCRIBE");
        subscribe.arg("+switch-master");
        if let Value::ServerError(error) = conn.req_command(&subscribe).map_err(failed)? {
            return Err(failed(error.into()));
        }
        if !conn.set_quiet_timeout(HEARTBEAT).map_err(failed)? {
            // TLS, read by the `redis` crate: it would wait without a
            // timeout and outlive its client. The periodic checks remain.
            return Ok(());
        }
        let mut heartbeat = Heartbeat::new(self.response_timeout);
        loop {
            if !heard(None) {
                return Ok(());
            }
            let Some(message) = conn.next_message().map_err(failed)? else {
                match heartbeat.quiet() {
                    Quiet::Lost => {
                        return Err(Error::Unavailable {
                            reason: "no answer to PING".to_owned(),
                        });
                    }
                    Quiet::Ping => conn.send_only(&redis::cmd("PING")).map_err(failed)?,
                    Quiet::Wait => {}
                }
                continue;
            };
            heartbeat.heard();
            if let Some((host, port)) = self.switched(message)
                && !heard(Some((&host, port)))
            {
                return Ok(());
            }
        }
    }

    /// The master's new address in a `+switch-master` message
    /// (`<name> <old ip> <old port> <new ip> <new port>`), when it is about
    /// this master.
    fn switched(&self, message: Value) -> Option<(String, u16)> {
        let Value::Array(parts) = message else {
            return None;
        };
        let payload = match parts.as_slice() {
            [Value::BulkString(kind), _, Value::BulkString(payload)] if kind == b"message" => {
                String::from_utf8_lossy(payload).into_owned()
            }
            _ => return None,
        };
        match payload.split(' ').collect::<Vec<_>>()[..] {
            [name, _, _, host, port] if name == self.master => {
                Some((host.to_owned(), port.parse().ok()?))
            }
            _ => None,
        }
    }
}
