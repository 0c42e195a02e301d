//! Sharded pub/sub listeners that turn release announcements into wake-ups
//! on the [`WakeBoard`].
//!
//! A release publishes the object's key on the sharded channel named like
//! the object's waiters key (`SPUBLISH`, Redis 7), on the node that holds
//! the object; a cluster does not copy it to other nodes. A waiter
//! subscribes (`SSUBSCRIBE`) to that channel on that node before it sleeps:
//! one listening connection per node, started by the first wait there,
//! holding the channels somebody waits on. Channels nobody waits on any
//! more are dropped every few seconds.
//!
//! A listener waits on its socket; to take a new channel it is woken by a
//! `PUBLISH` on its own control channel, to which it subscribes first.
//! After a second without a message it sends a `PING` (a node may refuse
//! it, while a script runs, say: an answer all the same), and a node that
//! does not answer within the response timeout counts as lost: a node that
//! vanished without closing the connection (a partition, a crashed host, a
//! stalled server) is noticed, and the thread of a dropped client ends even
//! when its node cannot be reached. (Over TLS, read by the `redis` crate,
//! the listener waits without a timeout and TCP keepalive notices a
//! vanished peer instead.) A connection that breaks is opened again with
//! backoff, its channels subscribed again, and every waiter woken (messages
//! sent meanwhile are lost). So is a connection opened before the client's
//! command connections met another server (a failover): the node it
//! listens on may be a replica now, and releases are published elsewhere.
//! A channel that its node drops (`sunsubscribe`: its slot moved to another
//! node) or refuses wakes its waiters, which poll; the next wait subscribes
//! again, on the node that serves the slot then.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::Value;

use super::heartbeat::{HEARTBEAT, Heartbeat, Quiet};
use super::wire::Connection;
use crate::error::Error;
use crate::notify::{TurnPasser, WakeBoard};

/// Channels nobody waits on are dropped at most this often (when the
/// listener next wakes).
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Opens a connection to one node.
pub(crate) type ConnectFn = Box<dyn Fn() -> Result<Connection, Error> + Send + Sync>;

/// The node that serves a channel: a name for it, and how to connect to it.
pub(crate) type NodeOf = Box<dyn Fn(&str) -> Result<(String, ConnectFn), Error> + Send + Sync>;

/// Publishes an empty message on a classic channel through node `node`'s
/// command connections (to wake a listener there).
pub(crate) type PokeFn = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Whether waiters of a client are woken by release notifications, or rely
/// on polling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notifications {
    /// Nobody has waited yet, so nothing listens (it starts on the first wait).
    NotStarted,
    /// Listening: a release wakes its waiters at once.
    Listening,
    /// A connection is being opened or was lost: waiters poll meanwhile.
    Connecting {
        /// Why the last attempt failed, when one did.
        reason: Option<String>,
    },
    /// Redis refused to deliver notifications (e.g. the ACL user may not
    /// subscribe to tollgate's channels): waiters poll at the client's poll
    /// interval. Tried again with backoff.
    Refused {
        /// The server's message.
        reason: String,
    },
}

/// The listeners of one client, by node.
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
}

struct Shared {
    board: Arc<WakeBoard>,
    node_of: NodeOf,
    poke: PokeFn,
    /// The client's key prefix, which control channels start with too.
    prefix: String,
    /// How long a node may take to answer a heartbeat.
    response_timeout: Duration,
    /// Bumped when the client's connections meet another server.
    server_generation: Arc<AtomicU64>,
    listeners: Mutex<HashMap<String, Arc<Listener>>>,
    status: Mutex<Status>,
    /// Set when the client goes; read without any other lock held or taken.
    shutdown: AtomicBool,
}

#[derive(Default)]
struct Status {
    /// The last failure of any listener, cleared when one listens again.
    last_error: Option<Error>,
    /// The refusal already logged as a warning (logged once, not per retry).
    warned: Option<Error>,
    /// That the node refuses heartbeats was logged.
    warned_ping: bool,
}

/// One node's listening connection.
struct Listener {
    node: String,
    /// The classic channel that wakes this listener.
    control: String,
    connect: ConnectFn,
    state: Mutex<Channels>,
    changed: Condvar,
    /// Its connection reads with a quiet timeout, so it sees a shutdown
    /// within a heartbeat without being poked.
    wakes_itself: AtomicBool,
}

#[derive(Default)]
struct Channels {
    /// Channel → the object key its messages carry.
    wanted: HashMap<String, String>,
    /// Wanted, not yet asked for on the current connection.
    pending: Vec<String>,
    /// Subscribed on the current connection.
    confirmed: HashSet<String>,
    connected: bool,
    /// The last connection attempt failed: waiters should not wait for the
    /// next one.
    failing: bool,
    /// The server refuses our subscriptions (ACL): waiters should not wait.
    refused: bool,
}

impl Subscriber {
    /// `pass_turn` passes on the turns of locks nobody here can take (see
    /// [`WakeBoard::pass_turns_with`]); a node that does not answer a
    /// heartbeat within `response_timeout` counts as lost, and a connection
    /// opened before `server_generation` last moved is opened again.
    pub fn new(
        node_of: NodeOf,
        poke: PokeFn,
        pass_turn: TurnPasser,
        prefix: String,
        response_timeout: Duration,
        server_generation: Arc<AtomicU64>,
    ) -> Self {
        let board = WakeBoard::default();
        board.pass_turns_with(pass_turn);
        Subscriber {
            shared: Arc::new(Shared {
                board: Arc::new(board),
                node_of,
                poke,
                prefix,
                response_timeout,
                server_generation,
                listeners: Mutex::default(),
                status: Mutex::default(),
                shutdown: AtomicBool::new(false),
            }),
        }
    }

    pub fn board(&self) -> &Arc<WakeBoard> {
        &self.shared.board
    }

    /// What the listeners are doing now.
    pub fn status(&self) -> Notifications {
        let listeners: Vec<Arc<Listener>> =
            self.shared.listeners.lock().values().cloned().collect();
        if listeners.is_empty() {
            return Notifications::NotStarted;
        }
        // Copied out: no listener's state is locked while `status` is.
        let last_error = self.shared.status.lock().last_error.clone();
        match &last_error {
            Some(Error::Refused { code, message }) => {
                return Notifications::Refused {
                    reason: format!("{code}: {message}"),
                };
            }
            Some(error @ Error::Auth { .. }) => {
                return Notifications::Refused {
                    reason: error.to_string(),
                };
            }
            _ => {}
        }
        // A listener nobody waits on (its node failed over, say) does not
        // count.
        let healthy = listeners.iter().all(|listener| {
            let state = listener.state.lock();
            state.connected || state.wanted.is_empty()
        });
        if healthy {
            Notifications::Listening
        } else {
            Notifications::Connecting {
                reason: last_error.as_ref().map(Error::to_string),
            }
        }
    }

    /// Starts listening for announcements about `key` (on its channel, on
    /// its node) and waits until subscribed or `until`, but not at all while
    /// the node cannot be reached or refuses. Returns whether announcements
    /// are flowing.
    pub fn listen_for(&self, key: &str, until: Instant) -> bool {
        let channel = crate::keys::waiters_of(key);
        let Some(listener) = self.listener_for(&channel) else {
            return false;
        };
        let mut state = listener.state.lock();
        if !state.wanted.contains_key(&channel) {
            state.wanted.insert(channel.clone(), key.to_owned());
            state.pending.push(channel.clone());
            if state.connected {
                drop(state);
                (self.shared.poke)(&listener.node, &listener.control);
                state = listener.state.lock();
            }
        }
        while !state.confirmed.contains(&channel) {
            if state.failing || state.refused {
                return false;
            }
            if listener.changed.wait_until(&mut state, until).timed_out() {
                return state.confirmed.contains(&channel);
            }
        }
        true
    }

    /// The listener of the node that serves `channel`, started if new.
    fn listener_for(&self, channel: &str) -> Option<Arc<Listener>> {
        let (node, connect) = match (self.shared.node_of)(channel) {
            Ok(found) => found,
            Err(error) => {
                self.shared.failed(&error);
                return None;
            }
        };
        let mut listeners = self.shared.listeners.lock();
        if let Some(listener) = listeners.get(&node) {
            return Some(Arc::clone(listener));
        }
        let listener = Arc::new(Listener {
            control: format!(
                "{}notify-poke:{}",
                self.shared.prefix,
                uuid::Uuid::new_v4().simple()
            ),
            node: node.clone(),
            connect,
            state: Mutex::default(),
            changed: Condvar::new(),
            wakes_itself: AtomicBool::new(false),
        });
        let (shared, running) = (Arc::clone(&self.shared), Arc::clone(&listener));
        let spawned = thread::Builder::new()
            .name("tollgate-notify".into())
            .spawn(move || run(&shared, &running));
        if let Err(error) = spawned {
            tracing::warn!(%error, "tollgate: cannot start a notification thread; waiters will poll");
            return None;
        }
        listeners.insert(node, Arc::clone(&listener));
        Some(listener)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        let listeners: Vec<Arc<Listener>> =
            self.shared.listeners.lock().values().cloned().collect();
        for listener in listeners {
            listener.changed.notify_all();
            // Wakes one that waits on its socket without a timeout (TLS),
            // so that its thread ends.
            let waits_for_ever = !listener.wakes_itself.load(Ordering::Acquire);
            if waits_for_ever && listener.state.lock().connected {
                (self.shared.poke)(&listener.node, &listener.control);
            }
        }
    }
}

impl Shared {
    fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Records why listening failed; a refusal is logged as a warning once
    /// (until notifications flow again), anything else at debug level.
    fn failed(&self, error: &Error) {
        let refused = matches!(error, Error::Refused { .. } | Error::Auth { .. });
        let mut status = self.status.lock();
        status.last_error = Some(error.clone());
        if refused && status.warned.as_ref() != Some(error) {
            status.warned = Some(error.clone());
            drop(status);
            tracing::warn!(%error, "tollgate: Redis refused release notifications; waiters poll instead (see Client::notifications)");
        } else {
            drop(status);
            tracing::debug!(%error, "tollgate: notification connection lost; waiters poll until it is back");
        }
    }

    fn listening(&self) {
        let mut status = self.status.lock();
        status.last_error = None;
        status.warned = None;
    }
}

fn run(shared: &Shared, listener: &Listener) {
    let mut backoff = MIN_BACKOFF;
    while !shared.is_shutdown() {
        let mut connected = false;
        if let Err(error) = listen(shared, listener, &mut connected) {
            shared.failed(&error);
        }
        {
            let mut state = listener.state.lock();
            state.connected = false;
            state.confirmed.clear();
            state.failing = !connected;
            // Everything wanted is asked for again on the next connection.
            state.pending = state.wanted.keys().cloned().collect();
        }
        listener.changed.notify_all();
        // Announcements may have been missed: every waiter asks again.
        shared.board.wake_all();
        if connected {
            backoff = MIN_BACKOFF;
        }
        sleep_unless_shutdown(shared, listener, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn sleep_unless_shutdown(shared: &Shared, listener: &Listener, pause: Duration) {
    let until = Instant::now() + pause;
    let mut state = listener.state.lock();
    while !shared.is_shutdown() && !listener.changed.wait_until(&mut state, until).timed_out() {}
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

/// A request on the listening connection that awaits its reply; replies,
/// errors included, come in the order the requests were sent.
enum Asked {
    Subscribe(String),
    Unsubscribe(String),
    Ping,
}

fn listen(shared: &Shared, listener: &Listener, connected: &mut bool) -> Result<(), Error> {
    let generation = shared.server_generation.load(Ordering::Acquire);
    let mut conn = (listener.connect)()?;
    let heartbeats = conn
        .set_quiet_timeout(HEARTBEAT.min(shared.response_timeout))
        .map_err(listen_error)?;
    listener.wakes_itself.store(heartbeats, Ordering::Release);
    send(&mut conn, redis::cmd("SUBSCRIBE").arg(&listener.control))?;
    // The first reply answers SUBSCRIBE (a refusal is an error reply).
    let mut confirmed = false;
    let mut asked = VecDeque::new();
    let mut last_sweep = Instant::now();
    let mut heartbeat = Heartbeat::new(shared.response_timeout);
    loop {
        if shared.is_shutdown() {
            return Ok(());
        }
        if shared.server_generation.load(Ordering::Acquire) != generation {
            return Err(Error::Unavailable {
                reason: "the client met another server (a failover?): listening again".into(),
            });
        }
        if confirmed {
            let (subscribe, unsubscribe) = next_requests(shared, listener, &mut last_sweep);
            for channel in subscribe {
                send(&mut conn, redis::cmd("SSUBSCRIBE").arg(&channel))?;
                asked.push_back(Asked::Subscribe(channel));
            }
            for channel in unsubscribe {
                send(&mut conn, redis::cmd("SUNSUBSCRIBE").arg(&channel))?;
                asked.push_back(Asked::Unsubscribe(channel));
            }
        }
        let message = match conn.next_message() {
            Ok(Some(message)) => message,
            Ok(None) if !heartbeats => continue,
            Ok(None) => {
                // Quiet: after a heartbeat's time ask whether the node is
                // there, and give up on an ask unanswered for too long.
                match heartbeat.quiet() {
                    Quiet::Lost => {
                        return Err(Error::Unavailable {
                            reason: format!(
                                "the notification connection got no answer to PING within {:?}",
                                shared.response_timeout
                            ),
                        });
                    }
                    Quiet::Ping => {
                        send(&mut conn, &redis::cmd("PING"))?;
                        asked.push_back(Asked::Ping);
                    }
                    Quiet::Wait => {}
                }
                continue;
            }
            Err(error) => return Err(listen_error(error)),
        };
        // Anything the node sends shows it is there.
        heartbeat.heard();
        if !confirmed {
            if let Value::ServerError(error) = message {
                return Err(listen_error(error.into()));
            }
            confirmed = true;
            {
                let mut state = listener.state.lock();
                state.connected = true;
                state.failing = false;
            }
            *connected = true;
            shared.listening();
            listener.changed.notify_all();
            continue;
        }
        match message {
            Value::ServerError(error) => {
                answered_with_error(shared, listener, asked.pop_front(), error.into());
            }
            message => handle(shared, listener, message, &mut asked),
        }
    }
}

/// A request was refused. A refused subscription (an ACL without the
/// channel, or a node that no longer serves its slot) leaves its waiters
/// to poll; a refused heartbeat (`BUSY` while a script runs, or a user
/// without `PING`) still shows the node is there.
fn answered_with_error(
    shared: &Shared,
    listener: &Listener,
    asked: Option<Asked>,
    error: redis::RedisError,
) {
    match asked {
        Some(Asked::Subscribe(channel)) => refused(shared, listener, &channel, listen_error(error)),
        Some(Asked::Ping) if error.code() == Some("NOPERM") => {
            let mut status = shared.status.lock();
            if !status.warned_ping {
                status.warned_ping = true;
                drop(status);
                tracing::warn!(%error, "tollgate: Redis refuses PING on the notification connection, so a node that vanishes silently is not noticed there (grant +ping)");
            }
        }
        _ => tracing::debug!(%error, "tollgate: notification request refused"),
    }
}

/// The channels to subscribe now, and those nobody waits on any more.
fn next_requests(
    shared: &Shared,
    listener: &Listener,
    last_sweep: &mut Instant,
) -> (Vec<String>, Vec<String>) {
    let mut state = listener.state.lock();
    let subscribe = std::mem::take(&mut state.pending);
    let mut unsubscribe = Vec::new();
    if last_sweep.elapsed() >= SWEEP_EVERY {
        *last_sweep = Instant::now();
        let idle: Vec<String> = state
            .wanted
            .iter()
            .filter(|(channel, key)| {
                state.confirmed.contains(*channel) && !shared.board.is_watched(key)
            })
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in idle {
            state.wanted.remove(&channel);
            state.confirmed.remove(&channel);
            unsubscribe.push(channel);
        }
    }
    (subscribe, unsubscribe)
}

fn send(conn: &mut Connection, cmd: &redis::Cmd) -> Result<(), Error> {
    conn.send_only(cmd).map_err(listen_error)
}

/// Acts on one message or reply of the listening connection; a reply
/// takes its request off `asked`.
fn handle(shared: &Shared, listener: &Listener, value: Value, asked: &mut VecDeque<Asked>) {
    let Value::Array(parts) = value else {
        return;
    };
    let text = |i: usize| match parts.get(i) {
        Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Value::SimpleString(text)) => text.clone(),
        _ => String::new(),
    };
    match text(0).as_str() {
        "smessage" => {
            shared.board.announced(&text(2));
        }
        "ssubscribe" => {
            let channel = text(1);
            if matches!(asked.front(), Some(Asked::Subscribe(c)) if *c == channel) {
                asked.pop_front();
            }
            let mut state = listener.state.lock();
            state.confirmed.insert(channel);
            state.refused = false;
            drop(state);
            shared.listening();
            listener.changed.notify_all();
        }
        "sunsubscribe" => {
            // Asked for by the sweep, or the node gave the slot away: its
            // waiters poll until their next wait subscribes again.
            let channel = text(1);
            if matches!(asked.front(), Some(Asked::Unsubscribe(c)) if *c == channel) {
                asked.pop_front();
            }
            let mut state = listener.state.lock();
            state.confirmed.remove(&channel);
            if let Some(key) = state.wanted.remove(&channel) {
                drop(state);
                shared.board.wake_every(&key);
            }
        }
        "pong" => {
            if matches!(asked.front(), Some(Asked::Ping)) {
                asked.pop_front();
            }
        }
        _ => {} // "message" on the control channel only wakes us
    }
}

/// The subscription to `channel` was refused (an ACL without the channel,
/// or a node that no longer serves its slot): its waiters poll. Only a
/// refusal by permission is reported as such; a redirect means the slot
/// moved, and the next wait subscribes on its new node.
fn refused(shared: &Shared, listener: &Listener, channel: &str, error: Error) {
    let mut state = listener.state.lock();
    let key = state.wanted.remove(channel);
    let moved = matches!(&error, Error::Refused { code, .. } if code == "MOVED" || code == "ASK");
    if matches!(&error, Error::Refused { code, .. } if code == "NOPERM") {
        state.refused = true;
    }
    drop(state);
    if !moved {
        shared.failed(&error);
    }
    listener.changed.notify_all();
    if let Some(key) = key {
        shared.board.wake_every(&key);
    }
}
