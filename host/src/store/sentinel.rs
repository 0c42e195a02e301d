//! Asking Redis Sentinel where the master of a monitored set is.
//!
//! A client on a `redis+sentinel://` URL asks before every new connection,
//! so that the connections opened after a failover go to the new master;
//! the connections to the old one break, or answer `READONLY` once it is
//! demoted, and are dropped (see `pool.rs`), and the next ones ask again.
//! Sentinels are asked in turn, the one that answered last first, each
//! within the client's connect and response timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::ConnectionLike;

use super::connect::Target;
use super::wire::Connection;
use crate::error::{Error, Result};

/// The sentinels that monitor one master, and its name there.
pub(crate) struct Sentinels {
    nodes: Vec<(String, u16)>,
    master: String,
    /// The node that answered last: asked first next time.
    preferred: AtomicUsize,
}

/// The credentials a sentinel is asked with: the data nodes' own, when it
/// requires a password.
pub(crate) struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
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

    /// Where the master is now, as (host, port), by the first sentinel that
    /// knows. [`Error::Unavailable`] naming each sentinel's failure when
    /// none could say; [`Error::InvalidArgument`] when every sentinel
    /// answered that it monitors no master of that name.
    pub fn locate(
        &self,
        like: &redis::ConnectionInfo,
        credentials: &Credentials<'_>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<(String, u16)> {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::with_capacity(count);
        let (mut unknown, mut refused) = (0, 0);
        for index in (0..count).map(|i| (first + i) % count) {
            let (host, port) = &self.nodes[index];
            let asked = Target::at(like, host, *port).and_then(|sentinel| {
                self.ask(&sentinel, credentials, connect_timeout, response_timeout)
            });
            match asked {
                Ok(Some(master)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(master);
                }
                Ok(None) => {
                    unknown += 1;
                    failures.push(format!("{host}:{port} monitors no such master"));
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
        if unknown == count {
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

    /// One sentinel's answer: the master's address, or `None` when it does
    /// not monitor a master of that name.
    fn ask(
        &self,
        sentinel: &Target,
        credentials: &Credentials<'_>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Option<(String, u16)>> {
        let unreachable = |error: redis::RedisError| Error::Unavailable {
            reason: if error.is_connection_refusal() {
                "refused the connection".to_owned()
            } else if error.is_timeout() {
                format!(
                    "no answer within {connect_timeout:?} (connect) or {response_timeout:?} (reply)"
                )
            } else {
                error.to_string()
            },
        };
        let mut conn = Connection::open(&sentinel.bare, &sentinel.client, connect_timeout)
            .map_err(unreachable)?;
        conn.set_timeouts(response_timeout).map_err(unreachable)?;
        if let Some(password) = credentials.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = credentials.username {
                auth.arg(username);
            }
            match conn.req_command(auth.arg(password)) {
                // A sentinel without a password refuses AUTH: it needs none.
                Ok(redis::Value::ServerError(error))
                    if error
                        .details()
                        .is_some_and(|d| d.contains("without any password")) => {}
                Ok(redis::Value::ServerError(error)) => {
                    return Err(Error::Auth {
                        message: format!("sentinel: {}", redis::RedisError::from(error)),
                    });
                }
                Ok(_) => {}
                Err(error) => return Err(unreachable(error)),
            }
        }
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master)
            .query::<Option<(String, u16)>>(&mut conn)
            .map_err(|error| match error.code() {
                Some(code) => Error::Refused {
                    code: code.to_owned(),
                    message: format!(
                        "sentinel: {}",
                        error
                            .detail()
                            .unwrap_or("refused SENTINEL GET-MASTER-ADDR-BY-NAME")
                    ),
                },
                None => unreachable(error),
            })
    }
}
