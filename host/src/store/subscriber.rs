//! The one pub/sub connection per client that turns release announcements
//! into wake-ups on the [`WakeBoard`].
//!
//! It starts on the first wait, reconnects with backoff when the connection
//! breaks, and wakes every waiter after a (re)subscription, since messages
//! sent while it was away are lost.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;
use crate::notify::WakeBoard;

/// How often a listening thread looks up from its socket to see whether the
/// client is gone.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(250);
/// After this many quiet [`SHUTDOWN_CHECK`]s the connection is pinged, so a
/// half-open connection is noticed (about every 5 s).
const PING_AFTER_QUIET_CHECKS: u32 = 20;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Listens on one channel for the client's lifetime.
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
}

/// Opens a connection to listen on (to any node of a cluster).
pub(crate) type ConnectFn = Box<dyn Fn() -> Result<redis::Connection, Error> + Send + Sync>;

struct Shared {
    board: Arc<WakeBoard>,
    connect: ConnectFn,
    channel: String,
    status: Mutex<Status>,
    changed: Condvar,
}

#[derive(Default)]
struct Status {
    started: bool,
    subscribed: bool,
    /// The last attempt to subscribe failed: waiters should not wait for the
    /// next one.
    failing: bool,
    /// Why the last attempt failed, if it did.
    last_error: Option<Error>,
    /// The refusal already logged as a warning (logged once, not per retry).
    warned: Option<Error>,
    shutdown: bool,
}

/// Whether waiters of a client are woken by release notifications, or rely
/// on polling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notifications {
    /// Nobody has waited yet, so nothing listens (it starts on the first wait).
    NotStarted,
    /// Subscribed: a release wakes its waiters at once.
    Listening,
    /// The connection is being opened or was lost: waiters poll meanwhile.
    Connecting {
        /// Why the last attempt failed, when one did.
        reason: Option<String>,
    },
    /// Redis refused to deliver notifications (e.g. the ACL user may not
    /// `SUBSCRIBE` to the channel): waiters poll at the client's poll
    /// interval until it is allowed. Retried with backoff.
    Refused {
        /// The server's message.
        reason: String,
    },
}

impl Subscriber {
    pub fn new(connect: ConnectFn, channel: String) -> Self {
        Subscriber {
            shared: Arc::new(Shared {
                board: Arc::new(WakeBoard::default()),
                connect,
                channel,
                status: Mutex::new(Status::default()),
                changed: Condvar::new(),
            }),
        }
    }

    /// What the notification connection is doing now.
    pub fn status(&self) -> Notifications {
        let status = self.shared.status.lock();
        if !status.started {
            return Notifications::NotStarted;
        }
        if status.subscribed {
            return Notifications::Listening;
        }
        match &status.last_error {
            Some(Error::Refused { code, message }) => Notifications::Refused {
                reason: format!("{code}: {message}"),
            },
            Some(error @ Error::Auth { .. }) => Notifications::Refused {
                reason: error.to_string(),
            },
            other => Notifications::Connecting {
                reason: other.as_ref().map(Error::to_string),
            },
        }
    }

    pub fn board(&self) -> &Arc<WakeBoard> {
        &self.shared.board
    }

    /// Starts listening if not yet started and waits until subscribed or
    /// `until`, but not at all while reconnecting after a failure. Returns
    /// whether notifications are flowing.
    pub fn ensure_listening(&self, until: Instant) -> bool {
        let mut status = self.shared.status.lock();
        if !status.started {
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name("tollgate-notify".into())
                .spawn(move || run(&shared));
            match spawned {
                Ok(_) => status.started = true,
                Err(error) => {
                    tracing::warn!(%error, "tollgate: cannot start the notification thread; waiters will poll");
                    return false;
                }
            }
        }
        while !status.subscribed {
            if status.failing {
                return false;
            }
            if self
                .shared
                .changed
                .wait_until(&mut status, until)
                .timed_out()
            {
                return status.subscribed;
            }
        }
        true
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.status.lock().shutdown = true;
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn set_subscribed(&self, subscribed: bool) {
        {
            let mut status = self.status.lock();
            status.subscribed = subscribed;
            status.failing = false;
            if subscribed {
                status.last_error = None;
                status.warned = None;
            }
        }
        self.changed.notify_all();
        // Subscribed: releases may have been missed before. Unsubscribed:
        // waiters should fall back to polling now, not at their next timeout.
        self.board.wake_all();
    }

    fn is_shutdown(&self) -> bool {
        self.status.lock().shutdown
    }

    /// Sleeps for `pause` unless the client goes away first.
    fn sleep(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut status = self.status.lock();
        while !status.shutdown && !self.changed.wait_until(&mut status, until).timed_out() {}
    }
}

fn run(shared: &Shared) {
    let mut backoff = MIN_BACKOFF;
    while !shared.is_shutdown() {
        let mut subscribed = false;
        let ended = listen(shared, &mut subscribed);
        if let Err(error) = &ended {
            shared.failed(error);
        }
        if !subscribed {
            shared.status.lock().failing = true;
            shared.changed.notify_all();
        }
        if subscribed {
            shared.set_subscribed(false);
            backoff = MIN_BACKOFF;
        }
        shared.sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Shared {
    /// Records why listening failed; a refusal is logged as a warning once
    /// (until notifications flow again), anything else at debug level.
    fn failed(&self, error: &Error) {
        let refused = matches!(error, Error::Refused { .. } | Error::Auth { .. });
        let mut status = self.status.lock();
        status.last_error = Some(error.clone());
        if refused && status.warned.as_ref() != Some(error) {
            status.warned = Some(error.clone());
            drop(status);
            tracing::warn!(%error, channel = %self.channel, "tollgate: Redis refused release notifications; lock waiters poll instead (see Client::notifications)");
        } else {
            drop(status);
            tracing::debug!(%error, "tollgate: notification connection lost; waiters poll until it is back");
        }
    }
}

/// Maps an error on the listening connection onto ours.
fn listen_error(error: redis::RedisError) -> Error {
    match error.code() {
        Some(code) if !error.is_io_error() => Error::Refused {
            code: code.to_owned(),
            message: error.detail().unwrap_or_default().to_owned(),
        },
        _ => Error::Unavailable {
            reason: error.to_string(),
        },
    }
}

fn listen(shared: &Shared, subscribed: &mut bool) -> Result<(), Error> {
    let mut conn = (shared.connect)()?;
    // Subscribed by hand: the pub/sub wrapper's own `subscribe` does not
    // report a refusal (an ACL without the channel answers NOPERM).
    redis::cmd("SUBSCRIBE")
        .arg(&shared.channel)
        .query::<redis::Value>(&mut conn)
        .map_err(listen_error)?;
    let mut pubsub = conn.as_pubsub();
    pubsub
        .set_read_timeout(Some(SHUTDOWN_CHECK))
        .map_err(listen_error)?;
    *subscribed = true;
    shared.set_subscribed(true);
    let mut quiet_checks = 0;
    loop {
        match pubsub.get_message() {
            Ok(message) => {
                let key = String::from_utf8_lossy(message.get_payload_bytes());
                shared.board.wake(&key);
                quiet_checks = 0;
            }
            Err(error) if error.is_timeout() => {
                quiet_checks += 1;
                if quiet_checks >= PING_AFTER_QUIET_CHECKS {
                    pubsub.ping::<redis::Value>().map_err(listen_error)?;
                    quiet_checks = 0;
                }
            }
            Err(error) => return Err(listen_error(error)),
        }
        if shared.is_shutdown() {
            return Ok(());
        }
    }
}
