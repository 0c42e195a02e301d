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
use redis::RedisResult;

use super::pool::open_connection;
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

struct Shared {
    board: Arc<WakeBoard>,
    client: redis::Client,
    channel: String,
    connect_timeout: Duration,
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
    shutdown: bool,
}

impl Subscriber {
    pub fn new(client: redis::Client, channel: String, connect_timeout: Duration) -> Self {
        Subscriber {
            shared: Arc::new(Shared {
                board: Arc::new(WakeBoard::default()),
                client,
                channel,
                connect_timeout,
                status: Mutex::new(Status::default()),
                changed: Condvar::new(),
            }),
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
        if let Err(error) = listen(shared, &mut subscribed) {
            tracing::debug!(%error, "tollgate: notification connection lost; waiters poll until it is back");
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

fn listen(shared: &Shared, subscribed: &mut bool) -> RedisResult<()> {
    let mut conn = open_connection(
        &shared.client,
        shared.connect_timeout,
        shared.connect_timeout,
    )?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(&shared.channel)?;
    pubsub.set_read_timeout(Some(SHUTDOWN_CHECK))?;
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
                    pubsub.ping::<redis::Value>()?;
                    quiet_checks = 0;
                }
            }
            Err(error) => return Err(error),
        }
        if shared.is_shutdown() {
            return Ok(());
        }
    }
}
