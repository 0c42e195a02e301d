//! Pooled blocking connections with connect and response timeouts, and the
//! mapping of `redis` errors onto [`Error`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult};
use scheduled_thread_pool::{OnPoolDropBehavior, ScheduledThreadPool};

use crate::error::{Error, Result};

/// How connections are opened and kept.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_connections: u32,
    pub health_check_after: Duration,
}

/// Opens one connection whose every read and write is bounded by
/// `response_timeout` (the `redis` crate bounds only the connect by itself).
pub(crate) fn open_connection(
    client: &redis::Client,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(connect_timeout)?;
    conn.set_read_timeout(Some(response_timeout))?;
    conn.set_write_timeout(Some(response_timeout))?;
    Ok(conn)
}

/// A pooled connection and what the pool needs to know about it.
pub(crate) struct PooledConnection {
    inner: redis::Connection,
    last_used: Instant,
    /// Set after an I/O error: a late reply may still be in flight, so the
    /// connection must never carry another request.
    broken: bool,
}

struct Manager {
    client: redis::Client,
    config: PoolConfig,
    /// When a health check last failed: while Redis is stalled, the other idle
    /// connections are discarded at once instead of each waiting for its PING.
    failed_check: Mutex<Option<Instant>>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConnection;
    type Error = RedisError;

    fn connect(&self) -> RedisResult<PooledConnection> {
        let inner = open_connection(
            &self.client,
            self.config.connect_timeout,
            self.config.response_timeout,
        )?;
        Ok(PooledConnection {
            inner,
            last_used: Instant::now(),
            broken: false,
        })
    }

    /// A connection idle for a while is pinged first, so that a Redis restart
    /// while the client was idle costs a reconnect, not a failed call.
    fn is_valid(&self, conn: &mut PooledConnection) -> RedisResult<()> {
        if conn.last_used.elapsed() < self.config.health_check_after {
            return Ok(());
        }
        let failed_recently = self
            .failed_check
            .lock()
            .is_some_and(|at| at.elapsed() < self.config.response_timeout);
        if failed_recently {
            return Err(RedisError::from((
                ErrorKind::Io,
                "discarded: another idle connection just failed its health check",
            )));
        }
        match redis::cmd("PING").query::<()>(&mut conn.inner) {
            Ok(()) => {
                conn.last_used = Instant::now();
                Ok(())
            }
            Err(error) => {
                *self.failed_check.lock() = Some(Instant::now());
                Err(error)
            }
        }
    }

    fn has_broken(&self, conn: &mut PooledConnection) -> bool {
        conn.broken || !conn.inner.is_open()
    }
}

#[derive(Debug)]
struct LogPoolErrors;

impl r2d2::HandleError<RedisError> for LogPoolErrors {
    fn handle_error(&self, error: RedisError) {
        tracing::warn!(%error, "tollgate: could not open a Redis connection");
    }
}

/// A bounded pool of blocking connections shared by all clones of a client.
pub(crate) struct Pool {
    pool: r2d2::Pool<Manager>,
    response_timeout: Duration,
}

impl Pool {
    /// Builds the pool without connecting: the first call connects.
    pub fn new(client: redis::Client, config: PoolConfig) -> Pool {
        let response_timeout = config.response_timeout;
        // r2d2 opens connections on these threads; they end with the pool.
        let threads = ScheduledThreadPool::builder()
            .num_threads(2)
            .thread_name_pattern("tollgate-pool-{}")
            .on_drop_behavior(OnPoolDropBehavior::DiscardPendingScheduled)
            .build();
        let pool = r2d2::Pool::builder()
            .max_size(config.max_connections)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(LogPoolErrors))
            .thread_pool(Arc::new(threads))
            .build_unchecked(Manager {
                client,
                config,
                failed_check: Mutex::new(None),
            });
        Pool {
            pool,
            response_timeout,
        }
    }

    /// Runs one request on a pooled connection. `key` names the object in
    /// errors. A connection that saw an I/O error is discarded, never reused.
    pub fn run<T>(
        &self,
        key: &str,
        request: impl FnOnce(&mut redis::Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let mut conn = self.pool.get().map_err(|e| Error::Unavailable {
            reason: e.to_string(),
        })?;
        match request(&mut conn.inner) {
            Ok(value) => {
                conn.last_used = Instant::now();
                Ok(value)
            }
            Err(error) => {
                let (error, breaks) = classify(error, key, self.response_timeout);
                if breaks {
                    conn.broken = true;
                } else {
                    conn.last_used = Instant::now();
                }
                Err(error)
            }
        }
    }
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
