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
    /// `until`. Returns whether notifications are flowing.
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
        self.status.lock().subscribed = subscribed;
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
    loop {
        match pubsub.get_message() {
            Ok(message) => {
                let key = String::from_utf8_lossy(message.get_payload_bytes());
                shared.board.wake(&key);
            }
            Err(error) if error.is_timeout() => {
                if shared.is_shutdown() {
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
}
