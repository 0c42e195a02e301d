//! Pooled blocking connections with connect and response timeouts, and the
//! mapping of `redis` errors onto [`Error`].
//!
//! A call takes an idle connection (pinging it first when it was idle for a
//! while), or opens one in the calling thread when fewer than the maximum are
//! open, or waits for one to come back, up to the connect timeout. A failed
//! connect is reported at once with its own type (refused, timed out, bad
//! credentials, an evicting server), never retried until the timeout hides
//! what went wrong.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult};

use super::connect::Connector;
use super::wire::Connection;
use crate::error::{Error, Result};

thread_local! {
    /// The end of the caller's time on this thread (see [`within_deadline`]).
    static CALL_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `work` with every Redis request it makes on this thread bounded by
/// `deadline` as well as by the client's timeouts: a request is not sent
/// once the deadline passed ([`Error::Unavailable`]), and its reply is waited
/// for until the deadline at most ([`Error::OutcomeUnknown`]). Nested calls
/// keep the earlier deadline. The plugin host bounds each invocation so.
#[cfg_attr(not(feature = "plugin"), allow(dead_code))]
pub(crate) fn within_deadline<T>(deadline: Instant, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CALL_DEADLINE.set(self.0);
        }
    }
    let previous = CALL_DEADLINE.get();
    let _restore = Restore(previous);
    CALL_DEADLINE.set(Some(previous.map_or(deadline, |p| p.min(deadline))));
    work()
}

/// The deadline [`within_deadline`] set on this thread, if any.
pub(crate) fn current_deadline() -> Option<Instant> {
    CALL_DEADLINE.get()
}

/// How connections are opened and kept.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_connections: u32,
    pub health_check_after: Duration,
    /// Use a server whose `maxmemory-policy` may evict keys (with a warning).
    pub accept_eviction: bool,
    /// Synced mode: replicas that must confirm each grant, claim and stored
    /// result, and how long to wait for them.
    pub synced: Option<(u32, Duration)>,
}

/// A pooled connection and when it last answered.
struct PooledConnection {
    inner: Connection,
    last_used: Instant,
    /// The connector's target epoch when it was opened.
    epoch: u64,
}

#[derive(Default)]
struct Slots {
    idle: Vec<PooledConnection>,
    /// Connections open now: idle, in use, or being opened.
    open: u32,
}

/// A bounded pool of blocking connections shared by all clones of a client.
pub(crate) struct Pool {
    connector: Arc<Connector>,
    config: PoolConfig,
    slots: Mutex<Slots>,
    returned: Condvar,
    /// When a health check last failed: while Redis is stalled, the other idle
    /// connections are discarded at once instead of each waiting for its PING.
    failed_check: Mutex<Option<Instant>>,
}

impl Pool {
    /// Builds the pool without connecting: the first call connects.
    pub fn new(connector: Arc<Connector>, config: PoolConfig) -> Pool {
        Pool {
            connector,
            config,
            slots: Mutex::default(),
            returned: Condvar::new(),
            failed_check: Mutex::new(None),
        }
    }

    /// Runs one request on a pooled connection. `key` names the object in
    /// errors. A connection that saw an I/O error is discarded, never reused:
    /// a late reply may still be in flight on it.
    pub fn run<T>(
        &self,
        key: &str,
        request: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let deadline = CALL_DEADLINE.get();
        time_left(deadline)?;
        let mut conn = self.checkout(deadline)?;
        // The checkout may have used some of the time left.
        let left = match time_left(deadline) {
            Ok(left) => left,
            Err(error) => {
                self.checkin(Some(conn));
                return Err(error);
            }
        };
        // A deadline nearer than the response timeout bounds this request.
        let timeout = match left {
            Some(left) if left < self.config.response_timeout => {
                bound_request(&conn.inner, left);
                left
            }
            _ => self.config.response_timeout,
        };
        // Frees the slot if `request` panics (the connection is dropped).
        let slot = SlotGuard(self);
        let answer = request(&mut conn.inner);
        std::mem::forget(slot);
        if timeout != self.config.response_timeout {
            bound_request(&conn.inner, self.config.response_timeout);
        }
        match answer {
            Ok(value) => {
                conn.last_used = Instant::now();
                self.checkin(Some(conn));
                Ok(value)
            }
            Err(error) => {
                let (error, breaks) = classify(error, key, timeout);
                if breaks || !conn.inner.is_open() {
                    self.checkin(None);
                } else {
                    conn.last_used = Instant::now();
                    self.checkin(Some(conn));
                }
                Err(error)
            }
        }
    }

    /// A connection: an idle one (checked first if unused for a while), a
    /// new one, or one given back while this waits, at most the connect
    /// timeout from when the wait starts and never past `caller_deadline`.
    fn checkout(&self, caller_deadline: Option<Instant>) -> Result<PooledConnection> {
        let left_now = || caller_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // When to stop waiting for a connection, and for how long that is:
        // reckoned at the first wait (most checkouts find one idle).
        let mut give_up: Option<(Instant, Duration)> = None;
        let mut slots = self.slots.lock();
        loop {
            if let Some(mut conn) = slots.idle.pop() {
                drop(slots);
                let health = self.check_health(&mut conn, left_now);
                if health == Health::Stalled {
                    // The whole response timeout is spent: a new
                    // connection's handshake would wait as long again.
                    self.checkin(None);
                    return Err(Error::Unavailable {
                        reason: format!(
                            "no reply to a health check within {:?}: Redis is stalled or \
                             unreachable",
                            self.config.response_timeout
                        ),
                    });
                }
                if health == Health::Fine {
                    if !self.connector.claim_recheck() {
                        return Ok(conn);
                    }
                    // The server's policy may have changed since it was
                    // last read (a new connection reads it anyway).
                    match self.connector.recheck(&mut conn.inner) {
                        Ok(()) => return Ok(conn),
                        Err(error @ Error::EvictionPolicy { .. }) => {
                            self.checkin(Some(conn));
                            return Err(error);
                        }
                        Err(_) => {}
                    }
                }
                self.checkin(None);
                slots = self.slots.lock();
                continue;
            }
            if slots.open < self.config.max_connections {
                slots.open += 1;
                drop(slots);
                return match self.connector.connect(left_now()) {
                    Ok((inner, epoch)) => Ok(PooledConnection {
                        inner,
                        last_used: Instant::now(),
                        epoch,
                    }),
                    Err(error) => {
                        self.checkin(None);
                        Err(error)
                    }
                };
            }
            let (deadline, wait) = *give_up.get_or_insert_with(|| {
                let connect_timeout = self.config.connect_timeout;
                let wait = left_now().map_or(connect_timeout, |left| left.min(connect_timeout));
                (Instant::now() + wait, wait)
            });
            if self.returned.wait_until(&mut slots, deadline).timed_out() {
                return Err(Error::Unavailable {
                    reason: format!(
                        "all {} connections stayed busy for {wait:?}",
                        self.config.max_connections
                    ),
                });
            }
        }
    }

    /// Gives a connection back, or (`None`) frees its slot.
    fn checkin(&self, conn: Option<PooledConnection>) {
        let mut slots = self.slots.lock();
        match conn {
            Some(conn) => slots.idle.push(conn),
            None => slots.open = slots.open.saturating_sub(1),
        }
        drop(slots);
        self.returned.notify_one();
    }

    /// A connection idle for a while is pinged first, so that a Redis restart
    /// while the client was idle costs a reconnect, not a failed call.
    /// `left`: the caller's time left, asked only when a check is due.
    fn check_health(
        &self,
        conn: &mut PooledConnection,
        left: impl FnOnce() -> Option<Duration>,
    ) -> Health {
        // Broken, or to a server that is not the one to use any more.
        if !conn.inner.is_open() || conn.epoch != self.connector.target_epoch() {
            return Health::Broken;
        }
        if conn.last_used.elapsed() < self.config.health_check_after {
            return Health::Fine;
        }
        let failed_recently = self
            .failed_check
            .lock()
            .is_some_and(|at| at.elapsed() < self.config.response_timeout);
        if failed_recently {
            return Health::Broken;
        }
        let bounded = left().filter(|left| *left < self.config.response_timeout);
        if let Some(left) = bounded {
            bound_request(&conn.inner, left.max(Duration::from_millis(1)));
        }
        match redis::cmd("PING").query::<()>(&mut conn.inner) {
            Ok(()) => {
                if bounded.is_some() {
                    bound_request(&conn.inner, self.config.response_timeout);
                }
                conn.last_used = Instant::now();
                Health::Fine
            }
            Err(error) => {
                // Only a check that had the whole response timeout says the
                // server is stalled.
                if bounded.is_none() {
                    *self.failed_check.lock() = Some(Instant::now());
                    if error.is_timeout() {
                        return Health::Stalled;
                    }
                }
                Health::Broken
            }
        }
    }
}

/// What a connection's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Usable.
    Fine,
    /// Closed or failed: drop it and use another.
    Broken,
    /// No reply to its `PING` within the whole response timeout.
    Stalled,
}

/// The time left before the caller's `deadline`, if it set one;
/// [`Error::Unavailable`] (nothing was sent) once it has passed.
fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|left| left.is_zero()) {
        return Err(Error::Unavailable {
            reason: "the caller's deadline passed before the request was sent".to_owned(),
        });
    }
    Ok(left)
}

/// Frees a checked-out connection's slot when dropped: only reached when a
/// request panics, since every other path gives the slot back itself.
struct SlotGuard<'p>(&'p Pool);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.checkin(None);
    }
}

/// Bounds each read and write on `conn` by `timeout`. A failure leaves the
/// old bound, which is never longer than the response timeout.
fn bound_request(conn: &Connection, timeout: Duration) {
    let _ = conn.set_timeouts(timeout);
}

/// Maps a `redis` error onto ours; the flag says whether the connection must
/// be dropped.
fn classify(error: RedisError, key: &str, response_timeout: Duration) -> (Error, bool) {
    if error.is_timeout() {
        let reason = format!("Redis did not answer within {response_timeout:?}");
        return (
            Error::OutcomeUnknown {
                reason,
                timed_out: true,
            },
            true,
        );
    }
    if error.is_io_error() || error.is_connection_dropped() {
        let reason = error.to_string();
        return (
            Error::OutcomeUnknown {
                reason,
                timed_out: false,
            },
            true,
        );
    }
    match error.kind() {
        ErrorKind::Parse => return (Error::UnexpectedReply(error.to_string()), true),
        ErrorKind::UnexpectedReturnType => {
            return (Error::UnexpectedReply(error.to_string()), false);
        }
        _ => {}
    }
    let detail = error.detail().unwrap_or_default().to_owned();
    match error.code() {
        Some(code @ ("NOAUTH" | "WRONGPASS")) => (
            Error::Auth {
                message: format!("{code} {detail}"),
            },
            false,
        ),
        // A primary demoted to a replica: a new connection may reach the new
        // primary (DNS or a proxy moved), this one never will.
        Some(code @ "READONLY") => (
            Error::Refused {
                code: code.to_owned(),
                message: detail,
            },
            true,
        ),
        Some("WRONGTYPE") => (
            Error::WrongType {
                key: key.to_owned(),
                detail,
            },
            false,
        ),
        Some(code) => (
            Error::Refused {
                code: code.to_owned(),
                message: detail,
            },
            false,
        ),
        None => (
            Error::Refused {
                code: error.category().to_owned(),
                message: error.to_string(),
            },
            false,
        ),
    }
}
