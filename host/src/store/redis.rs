//! The store on a Redis server: every step is one Lua script, sent by SHA
//! (`EVALSHA`) and loaded again by the `redis` crate when the server answers
//! `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cluster::ClusterRouter;
use super::connect::Connector;
use super::lua::LuaScript;
use super::lua_library::script_using;
use super::pool::{Pool, PoolConfig};
use super::sentinel::Sentinels;
use super::subscriber::{ConnectFn, Notifications, Subscriber};
use super::wire::Connection;
use super::{
    Acquired, Changed, ClaimRecord, ClaimRequest, ClaimState, CounterChange, FencedWrite, Finish,
    HeldGrant, LockRecord, LockRequest, NextOwner, PermitAcquired, PermitRecord, PermitRequest,
    Released, Reserved, RwRequest, Store, StoredRecord,
};
use crate::error::{Error, Result};
use crate::keys::{ClaimKeys, GrantKeys, LockKeys};
use crate::limits::millis;
use crate::notify::{TurnPasser, WakeBoard, Watch};

/// Locks (and later the other primitives) on one Redis server.
pub(crate) struct RedisStore {
    connector: Arc<Connector>,
    /// Replicas that must confirm a grant, and the wait in milliseconds.
    synced: Option<(u32, u64)>,
    route: Route,
    subscriber: Subscriber,
    scripts: Scripts,
    connect_timeout: Duration,
}

struct Scripts {
    acquire: LuaScript,
    extend: LuaScript,
    release: LuaScript,
    release_owner: LuaScript,
    release_to: LuaScript,
    owned_ttl: LuaScript,
    inspect: LuaScript,
    force_unlock: LuaScript,
    claim_inspect: LuaScript,
    record_get: LuaScript,
    semaphore_acquire: LuaScript,
    semaphore_release: LuaScript,
    semaphore_extend: LuaScript,
    semaphore_inspect: LuaScript,
    rw_acquire: LuaScript,
    rw_release: LuaScript,
    rw_extend: LuaScript,
    record_write: LuaScript,
    claim_begin: LuaScript,
    claim_extend: LuaScript,
    claim_finish: LuaScript,
    claim_abandon: LuaScript,
    counter_change: LuaScript,
    counter_set: LuaScript,
    sequence_reserve: LuaScript,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            acquire: lock_script(include_str!("lock_acquire.lua")),
            extend: lock_script(include_str!("lock_extend.lua")),
            release: lock_script(include_str!("lock_release.lua")),
            release_owner: lock_script(include_str!("lock_release_owner.lua")),
            release_to: lock_script(include_str!("lock_release_to.lua")),
            owned_ttl: lock_script(include_str!("lock_owned_ttl.lua")),
            inspect: lock_script(include_str!("lock_inspect.lua")),
            force_unlock: lock_script(include_str!("lock_force_unlock.lua")),
            claim_inspect: LuaScript::new(include_str!("claim_inspect.lua")),
            record_get: LuaScript::new(include_str!("record_get.lua")),
            semaphore_acquire: semaphore_script(include_str!("semaphore_acquire.lua")),
            semaphore_release: semaphore_script(include_str!("semaphore_release.lua")),
            semaphore_extend: semaphore_script(include_str!("semaphore_extend.lua")),
            semaphore_inspect: semaphore_script(include_str!("semaphore_inspect.lua")),
            rw_acquire: rw_script(include_str!("rw_acquire.lua")),
            rw_release: rw_script(include_str!("rw_release.lua")),
            rw_extend: rw_script(include_str!("rw_extend.lua")),
            record_write: LuaScript::new(include_str!("record_write.lua")),
            claim_begin: LuaScript::new(concat!(
                include_str!("waiters.lua"),
                include_str!("claim_begin.lua")
            )),
            claim_extend: LuaScript::new(include_str!("claim_extend.lua")),
            claim_finish: LuaScript::new(include_str!("claim_finish.lua")),
            claim_abandon: LuaScript::new(include_str!("claim_abandon.lua")),
            counter_change: LuaScript::new(include_str!("counter_incr.lua")),
            counter_set: LuaScript::new(include_str!("counter_set.lua")),
            sequence_reserve: LuaScript::new(include_str!("sequence_reserve.lua")),
        }
    }
}

/// A script of a lock, semaphore or read-write lock: those of the shared
/// helpers (clock, tokens, lifetimes) and the object's own that `body`
/// uses, then `body`.
fn grant_script(helpers: &str, body: &str) -> LuaScript {
    let library = [include_str!("grant_common.lua"), "\n", helpers].concat();
    LuaScript::new(&script_using(&library, body))
}

/// A lock script, after the helpers that read and write the lock's record.
fn lock_script(body: &str) -> LuaScript {
    grant_script(include_str!("lock_record.lua"), body)
}

/// A semaphore script, after the helpers that read and write its hash.
fn semaphore_script(body: &str) -> LuaScript {
    grant_script(include_str!("semaphore_record.lua"), body)
}

/// A read-write lock script, after the helpers that read its hash.
fn rw_script(body: &str) -> LuaScript {
    grant_script(include_str!("rw_record.lua"), body)
}

impl RedisStore {
    /// Runs a granting `script` call on `key`'s node; when the reply is a
    /// grant (`granted`) in synced mode, has that node's replicas confirm
    /// it on the same connection, and gives a grant they did not confirm
    /// back (`give_back`) before failing with [`Error::NotReplicated`]: no
    /// replica promoted later may lack a grant we hold. A failed give-back
    /// leaves the grant to its TTL.
    fn grant<T>(
        &self,
        key: &str,
        script: impl Fn(&mut Connection) -> redis::RedisResult<T>,
        granted: impl Fn(&T) -> bool,
        give_back: impl FnOnce() -> Result<bool>,
    ) -> Result<T> {
        let (reply, confirmed) = self.route.run(key, |conn| {
            let reply = script(conn)?;
            let confirmed = match granted(&reply) {
                true => self.replicas_confirming(conn)?,
                false => None,
            };
            Ok((reply, confirmed))
        })?;
        if let Err(error) = self.check_replicated(confirmed) {
            let _ = give_back();
            return Err(error);
        }
        Ok(reply)
    }

    /// Runs a lock release script for `held`, which gives the turn to the
    /// process first in line (`has_waiters`: this one queues again if it is
    /// not that process). Replies `(released, turn)`, turn 0 when no
    /// process waits, 1 when this one has the turn, 2 when another has it.
    fn release_taking_turns(
        &self,
        keys: &LockKeys,
        held: &HeldGrant<'_>,
        has_waiters: bool,
    ) -> Result<(i64, i64)> {
        let process = self.subscriber.board().process();
        // Written only when this process has waiters (an absent argument
        // is nil to the script).
        let waiters = has_waiters.then_some(("1", TURN_KEPT_MS));
        let pattern = held.fence.map(|fence| grant_pattern(fence, held.owner));
        let reply: i64 = self.route.run(&keys.lock, |conn| {
            let call = match (&pattern, held.fence) {
                (Some(pattern), Some(fence)) => self
                    .scripts
                    .release
                    .key(&keys.lock)
                    .arg(pattern)
                    .arg(fence)
                    .arg(if held.live { "1" } else { "0" }),
                _ => self.scripts.release_owner.key(&keys.lock).arg(held.owner),
            };
            call.arg(process).arg(waiters).invoke(conn)
        })?;
        // 0: not held; 1 + turn when released.
        Ok(if reply > 0 { (1, reply - 1) } else { (0, 0) })
    }

    /// Frees the lock, whose holder found a waiter here to offer it to
    /// (synced mode, where it is not handed over). Says whether the turn
    /// went to another process, so that the waiter waits for its own.
    fn release_for_waiter(&self, keys: &LockKeys, held: &HeldGrant<'_>) -> Result<Released> {
        let board = self.subscriber.board();
        // The waiter is woken by its offer's settlement, never by the
        // announcement of this release.
        let expected = board.expect_release(&keys.lock);
        let reply = self.release_taking_turns(keys, held, true);
        if expected && !matches!(reply, Ok((1, 1))) {
            board.cancel_expected(&keys.lock);
        }
        Ok(match reply? {
            (1, 2) => Released::FreedForAnother,
            (1, _) => Released::Freed,
            _ => Released::NotHeld,
        })
    }

    /// Runs a semaphore's or read-write lock's release `script` for
    /// `owner`.
    fn end_grant(
        &self,
        script: &LuaScript,
        keys: &GrantKeys,
        owner: &str,
        fence_retention_ms: u64,
    ) -> Result<bool> {
        self.announced_release(&keys.key, || {
            self.route.run(&keys.key, |conn| {
                script
                    .key(&keys.key)
                    .arg(owner)
                    .arg(&keys.key)
                    .arg(fence_retention_ms)
                    .arg(&keys.waiters)
                    .invoke(conn)
            })
        })
    }

    /// Runs `release`, which announces a release of `key` on success. A
    /// waiter in this process is woken at once, not by the server's
    /// announcement (which it then skips).
    fn announced_release(&self, key: &str, release: impl FnOnce() -> Result<bool>) -> Result<bool> {
        let board = self.subscriber.board();
        let expected = board.expect_release(key);
        let released = release();
        if expected {
            board.released_here(key, matches!(released, Ok(true)));
        }
        released
    }

    /// Runs a semaphore's or read-write lock's extend `script` for `owner`:
    /// the grant's remaining TTL, `None` when it holds nothing.
    fn extend_grant(
        &self,
        script: &LuaScript,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>> {
        let left: i64 = self.route.run(&keys.key, |conn| {
            script
                .key(&keys.key)
                .arg(owner)
                .arg(ttl_ms)
                .arg(fence_retention_ms)
                .invoke(conn)
        })?;
        Ok(ttl_from_millis(left))
    }

    /// Builds the store on one server without connecting; `prefix` is the
    /// client's key prefix (notification control channels use it too).
    pub fn new(client: &redis::Client, config: PoolConfig, prefix: &str) -> Result<Self> {
        let connector = Connector::new(client, &config)?;
        Ok(Self::single(connector, config, prefix))
    }

    /// Builds the store on the master that `sentinels` name (asked again
    /// before each new connection), whose first sentinel is `client`'s
    /// address; credentials and database are the master's.
    pub fn with_sentinels(
        client: &redis::Client,
        sentinels: Sentinels,
        config: PoolConfig,
        prefix: &str,
    ) -> Result<Self> {
        let connector = Connector::new(client, &config)?.follow_sentinels(sentinels);
        let store = Self::single(connector, config, prefix);
        store.connector.watch_sentinels();
        Ok(store)
    }

    fn single(connector: Connector, config: PoolConfig, prefix: &str) -> Self {
        let connector = Arc::new(connector);
        let synced = config.synced;
        let pool = Arc::new(Pool::new(Arc::clone(&connector), config));
        let listening = Arc::clone(&connector);
        let poking = Arc::clone(&pool);
        let route = Route::Single(pool);
        let subscriber = Subscriber::new(
            Box::new(move |_channel| {
                let connector = Arc::clone(&listening);
                let connect: ConnectFn = Box::new(move || connector.connect_listener());
                Ok((String::new(), connect))
            }),
            Box::new(move |_node, channel| poke(&poking, channel)),
            turn_passer(route.clone()),
            prefix.to_owned(),
            connector.response_timeout(),
            Arc::clone(connector.server_generation()),
        );
        Self::assemble(connector, route, subscriber, synced)
    }

    /// Builds the store on the Redis Cluster whose first seed is `client`
    /// and whose seeds are `seeds` (`host`, `port`), without connecting.
    pub fn cluster(
        client: &redis::Client,
        seeds: Vec<(String, u16)>,
        config: PoolConfig,
        prefix: &str,
    ) -> Result<Self> {
        let connector = Arc::new(Connector::new(client, &config)?);
        let synced = config.synced;
        let router = Arc::new(ClusterRouter::new(Arc::clone(&connector), seeds, config));
        let (listening, poking) = (Arc::clone(&router), Arc::clone(&router));
        let subscriber = Subscriber::new(
            Box::new(move |channel| listening.node_of(channel)),
            Box::new(move |node, channel| {
                if let Ok(pool) = poking.pool_at(node) {
                    poke(&pool, channel);
                }
            }),
            turn_passer(Route::Cluster(Arc::clone(&router))),
            prefix.to_owned(),
            connector.response_timeout(),
            Arc::clone(connector.server_generation()),
        );
        Ok(Self::assemble(
            connector,
            Route::Cluster(router),
            subscriber,
            synced,
        ))
    }

    fn assemble(
        connector: Arc<Connector>,
        route: Route,
        subscriber: Subscriber,
        synced: Option<(u32, Duration)>,
    ) -> Self {
        RedisStore {
            synced: synced.map(|(replicas, timeout)| (replicas, millis(timeout))),
            connect_timeout: connector.connect_timeout(),
            connector,
            route,
            subscriber,
            scripts: Scripts::new(),
        }
    }

    /// In synced mode, after a write on `conn`: how many replicas confirmed
    /// it (`WAIT`, which counts this connection's writes); `None` when not
    /// synced.
    fn replicas_confirming(&self, conn: &mut Connection) -> redis::RedisResult<Option<u32>> {
        match self.synced {
            None => Ok(None),
            Some((replicas, timeout_ms)) => redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout_ms)
                .query(conn)
                .map(Some),
        }
    }

    /// [`Error::NotReplicated`] when fewer replicas confirmed than asked.
    fn check_replicated(&self, confirmed: Option<u32>) -> Result<()> {
        match (self.synced, confirmed) {
            (Some((wanted, _)), Some(confirmed)) if confirmed < wanted => {
                Err(Error::NotReplicated { wanted, confirmed })
            }
            _ => Ok(()),
        }
    }

    /// Adds the held locks on `master` whose keys match `key_glob` to
    /// `found`, up to `limit` in all.
    fn scan_locks(
        &self,
        master: &Pool,
        key_glob: &str,
        limit: usize,
        found: &mut Vec<(String, LockRecord)>,
    ) -> Result<()> {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = master.run(key_glob, |conn| {
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(key_glob)
                    .arg("COUNT")
                    .arg(1000)
                    .query(conn)
            })?;
            for key in keys {
                if found.len() >= limit {
                    return Ok(());
                }
                let lock = LockKeys {
                    lock: key.clone(),
                    waiters: String::new(),
                };
                // A lock may be released between SCAN and here: skip it.
                match self.lock_record(&lock) {
                    Ok(Some(record)) => found.push((key, record)),
                    Ok(None) => {}
                    Err(Error::WrongType { .. }) => super::skipped_foreign(&key),
                    Err(error) => return Err(error),
                }
            }
            if next == 0 || found.len() >= limit {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// Wakes a notification listener: an empty message on its control channel.
/// Best effort: a listener not woken takes its new channel at its next
/// message, and its waiters poll meanwhile.
fn poke(pool: &Pool, channel: &str) {
    let _ = pool.run(channel, |conn| {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg("")
            .query::<i64>(conn)
    });
}

/// How many turns may wait to be passed on; more are dropped (their
/// processes wait for their poll).
const TURN_BACKLOG: usize = 64;

/// Passes on a lock's turn that reached this process when nobody here could
/// take it, so that the next waiting process is woken now, not at its next
/// poll. Best effort, on one thread of its own (started at the first turn
/// to pass, ended with the client): the caller goes on at once, and a
/// failure costs the others their poll.
fn turn_passer(route: Route) -> TurnPasser {
    let worker: Mutex<Option<SyncSender<(String, String)>>> = Mutex::new(None);
    Box::new(move |key, fence| {
        let mut worker = worker.lock();
        let sender = worker.get_or_insert_with(|| start_turn_passer(route.clone()));
        if let Err(TrySendError::Disconnected(_)) =
            sender.try_send((key.to_owned(), fence.to_owned()))
        {
            // Its thread could not start: try again at the next turn.
            *worker = None;
        }
    })
}

fn start_turn_passer(route: Route) -> SyncSender<(String, String)> {
    let (sender, turns) = sync_channel::<(String, String)>(TURN_BACKLOG);
    let script = lock_script(include_str!("lock_pass_turn.lua"));
    let passing = move || {
        for (key, fence) in turns {
            let keys = LockKeys::of(key);
            let turns = keys.turns();
            let passed = route.run(&keys.lock, |conn| {
                script
                    .key(&keys.lock)
                    .arg(&keys.lock)
                    .arg(&fence)
                    .arg(&keys.waiters)
                    .arg(&turns)
                    .invoke::<i64>(conn)
            });
            if let Err(error) = passed {
                tracing::debug!(lock = %keys.lock, %error, "tollgate: could not pass on a turn");
            }
        }
    };
    let _ = std::thread::Builder::new()
        .name("tollgate-turn".into())
        .spawn(passing);
    sender
}

/// Where requests go: one server, or the masters of a cluster.
#[derive(Clone)]
enum Route {
    Single(Arc<Pool>),
    Cluster(Arc<ClusterRouter>),
}

impl Route {
    /// Runs `request` on the server that holds `key`.
    fn run<T>(
        &self,
        key: &str,
        request: impl Fn(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        match self {
            Route::Single(pool) => pool.run(key, request),
            Route::Cluster(router) => router.run(key, request),
        }
    }

    /// Every server that holds keys: the one, or each master.
    fn masters(&self) -> Result<Vec<Arc<Pool>>> {
        match self {
            Route::Single(pool) => Ok(vec![Arc::clone(pool)]),
            Route::Cluster(router) => router.masters(),
        }
    }
}

/// A `PTTL` reply as a duration; negative replies mean "no TTL" or "no key".
fn ttl_from_millis(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A Lua pattern that matches the start of the lock value of the grant
/// `fence` to `owner`: `^<fence> <expires> <owner> ` (see
/// `store/lock_record.lua`), the owner token escaped.
fn grant_pattern(fence: u64, owner: &str) -> String {
    let mut pattern = format!("^{fence} %d+ ");
    for c in owner.chars() {
        match c {
            // Lua 5.1 patterns hold no zero byte: `%z` matches one.
            '\0' => pattern.push_str("%z"),
            c if c.is_ascii_alphanumeric() => pattern.push(c),
            c => {
                pattern.push('%');
                pattern.push(c);
            }
        }
    }
    pattern.push(' ');
    pattern
}

/// How long a lock's queue of waiting processes lives past its last
/// addition: it bounds how long the entry of a process that died can cost
/// a turn (one release, after which the waiters poll).
const TURN_KEPT_MS: u64 = 60 * 60 * 1000;

fn token_from(value: i64) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| Error::UnexpectedReply(format!("negative fencing token {value}")))
}

impl Store for RedisStore {
    fn acquire_lock(&self, req: &LockRequest<'_>) -> Result<Acquired> {
        let keys = req.keys;
        // Only a waiting caller's process takes its turn.
        let waiting = req.waiting.map(|waiting| {
            (
                self.subscriber.board().process(),
                if waiting.more_here { "1" } else { "0" },
                TURN_KEPT_MS,
            )
        });
        let reply: i64 = self.grant(
            &keys.lock,
            |conn| {
                self.scripts
                    .acquire
                    .key(&keys.lock)
                    .arg(req.owner)
                    .arg(req.ttl_ms)
                    .arg(req.holder)
                    .arg(req.ttl_ms.saturating_add(req.fence_retention_ms))
                    .arg(waiting)
                    .invoke(conn)
            },
            |reply: &i64| *reply >= 0,
            || self.release_lock(keys, &HeldGrant::by_owner(req.owner)),
        )?;
        // The fencing token when granted, minus the ms left when held.
        Ok(if reply >= 0 {
            Acquired::Granted {
                fence: token_from(reply)?,
            }
        } else {
            Acquired::Held {
                remaining: ttl_from_millis(reply.saturating_neg()),
            }
        })
    }

    fn extend_lock(
        &self,
        keys: &LockKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<bool> {
        self.route.run(&keys.lock, |conn| {
            self.scripts
                .extend
                .key(&keys.lock)
                .arg(owner)
                .arg(ttl_ms)
                .arg(fence_retention_ms)
                .invoke(conn)
        })
    }

    fn release_lock(&self, keys: &LockKeys, held: &HeldGrant<'_>) -> Result<bool> {
        let board = self.subscriber.board();
        let expected = board.expect_release(&keys.lock);
        let reply = self.release_taking_turns(keys, held, expected);
        if expected {
            match reply {
                // This process has the turn: its waiter is woken now, and
                // the announcement, when it comes back, is skipped.
                Ok((1, 1)) => board.released_here(&keys.lock, true),
                // No process was queued (ours has waiters that have not
                // asked yet): wake one, nothing was announced.
                Ok((1, 0)) => {
                    board.cancel_expected(&keys.lock);
                    board.wake_next(&keys.lock);
                }
                // Another process has the turn, or nothing was released.
                _ => board.cancel_expected(&keys.lock),
            }
        }
        reply.map(|(released, _)| released == 1)
    }

    fn leave_turns(&self, keys: &LockKeys) -> Result<()> {
        let board = self.subscriber.board();
        let turns = keys.turns();
        self.route.run(&keys.lock, |conn| {
            redis::cmd("ZREM")
                .arg(&turns)
                .arg(board.process())
                .exec(conn)
        })
    }

    fn release_lock_to(
        &self,
        keys: &LockKeys,
        held: &HeldGrant<'_>,
        next: &NextOwner<'_>,
        resend: bool,
    ) -> Result<Released> {
        if self.synced.is_some() {
            // A handed grant would skip the replicas' confirmation that
            // synced mode gives every grant: release, and let it be asked for.
            return self.release_for_waiter(keys, held);
        }
        let board = self.subscriber.board();
        let expected = board.expect_release(&keys.lock);
        let turns = keys.turns();
        let reply: Result<(i64, i64)> = self.route.run(&keys.lock, |conn| {
            self.scripts
                .release_to
                .key(&keys.lock)
                .arg(held.owner)
                .arg(&keys.lock)
                .arg(next.owner)
                .arg(next.ttl_ms)
                .arg(next.holder)
                .arg(next.ttl_ms.saturating_add(next.fence_retention_ms))
                .arg(if resend { "1" } else { "0" })
                .arg(board.process())
                .arg(if next.after.more_here { "1" } else { "0" })
                .arg(TURN_KEPT_MS)
                .arg(if next.keep_past_others { "1" } else { "0" })
                .arg(&keys.waiters)
                .arg(&turns)
                .invoke(conn)
        });
        let released = match reply {
            Ok((2, fence)) => Released::HandedOver {
                fence: token_from(fence)?,
                past_others: false,
            },
            // On a resend that found the first send's hand-over, whether
            // it went past another's turn is unknown: counted as if it did,
            // so the bound on keeping it holds.
            Ok((3 | 4, fence)) => Released::HandedOver {
                fence: token_from(fence)?,
                past_others: true,
            },
            Ok((1, _)) => Released::FreedForAnother,
            Ok(_) => Released::NotHeld,
            Err(error) => {
                if expected {
                    board.cancel_expected(&keys.lock);
                }
                return Err(error);
            }
        };
        // Freed, the turn went to another process: nothing comes back here.
        if expected {
            board.cancel_expected(&keys.lock);
        }
        Ok(released)
    }

    fn owned_ttl(&self, keys: &LockKeys, owner: &str) -> Result<Option<Duration>> {
        let ms: i64 = self.route.run(&keys.lock, |conn| {
            self.scripts
                .owned_ttl
                .key(&keys.lock)
                .arg(owner)
                .invoke(conn)
        })?;
        Ok(ttl_from_millis(ms))
    }

    fn lock_record(&self, keys: &LockKeys) -> Result<Option<LockRecord>> {
        let record: Option<(String, String, i64)> = self.route.run(&keys.lock, |conn| {
            self.scripts.inspect.key(&keys.lock).invoke(conn)
        })?;
        record
            .map(|(fence, holder, pttl)| {
                let fence = fence.parse().map_err(|_| Error::WrongType {
                    key: keys.lock.clone(),
                    detail: format!("fencing token {fence:?} is not a number"),
                })?;
                Ok(LockRecord {
                    fence,
                    holder,
                    remaining: ttl_from_millis(pttl),
                })
            })
            .transpose()
    }

    fn list_locks(&self, key_glob: &str, limit: usize) -> Result<Vec<(String, LockRecord)>> {
        let mut found = Vec::new();
        for master in self.route.masters()? {
            self.scan_locks(&master, key_glob, limit, &mut found)?;
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    fn force_unlock(&self, keys: &LockKeys) -> Result<bool> {
        self.route.run(&keys.lock, |conn| {
            self.scripts
                .force_unlock
                .key(&keys.lock)
                .arg(&keys.lock)
                .arg(&keys.waiters)
                .invoke(conn)
        })
    }

    fn begin_claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimState> {
        let keys = req.keys;
        let (reply, confirmed) = self.route.run(&keys.record, |conn| {
            let reply: Vec<u8> = self
                .scripts
                .claim_begin
                .key(&keys.record)
                .key(&keys.waiters)
                .arg(req.owner)
                .arg(req.fingerprint)
                .arg(req.lease_ms)
                .arg(req.waiting_ms)
                .invoke(conn)?;
            let confirmed = match reply.starts_with(b"fresh\n") {
                true => self.replicas_confirming(conn)?,
                false => None,
            };
            Ok((reply, confirmed))
        })?;
        // '<tag>\n<payload>' (see claim_begin.lua).
        let unknown = |detail: String| Error::WrongType {
            key: keys.record.clone(),
            detail,
        };
        let split = reply.iter().position(|&b| b == b'\n');
        let Some(split) = split else {
            return Err(unknown(format!(
                "unexpected claim reply {:?}",
                String::from_utf8_lossy(&reply)
            )));
        };
        if let Err(error) = self.check_replicated(confirmed) {
            let _ = self.abandon_claim(keys, req.owner);
            return Err(error);
        }
        let payload = |mut reply: Vec<u8>| {
            reply.drain(..=split);
            reply
        };
        Ok(match &reply[..split] {
            b"fresh" => ClaimState::Fresh,
            b"done" => ClaimState::Done(payload(reply)),
            b"failed" => ClaimState::Failed(payload(reply)),
            b"running" => ClaimState::Running {
                remaining: std::str::from_utf8(&reply[split + 1..])
                    .ok()
                    .and_then(|pttl| pttl.parse().ok())
                    .and_then(ttl_from_millis),
            },
            b"mismatch" => ClaimState::Mismatch,
            other => {
                return Err(unknown(format!(
                    "unknown claim state {:?}",
                    String::from_utf8_lossy(other)
                )));
            }
        })
    }

    fn claim_record(&self, keys: &ClaimKeys) -> Result<Option<ClaimRecord>> {
        let record: Option<(String, Vec<u8>, Vec<u8>, i64)> =
            self.route.run(&keys.record, |conn| {
                self.scripts.claim_inspect.key(&keys.record).invoke(conn)
            })?;
        let Some((state, fingerprint, payload, pttl)) = record else {
            return Ok(None);
        };
        let remaining = ttl_from_millis(pttl);
        let state = match state.as_str() {
            "running" => ClaimState::Running { remaining },
            "done" => ClaimState::Done(payload),
            "failed" => ClaimState::Failed(payload),
            other => {
                return Err(Error::WrongType {
                    key: keys.record.clone(),
                    detail: format!("unknown claim state {other:?}"),
                });
            }
        };
        Ok(Some(ClaimRecord {
            state,
            fingerprinted: !fingerprint.is_empty(),
            remaining,
        }))
    }

    fn extend_claim(&self, keys: &ClaimKeys, owner: &str, lease_ms: u64) -> Result<bool> {
        self.route.run(&keys.record, |conn| {
            self.scripts
                .claim_extend
                .key(&keys.record)
                .arg(owner)
                .arg(lease_ms)
                .invoke(conn)
        })
    }

    fn finish_claim(
        &self,
        keys: &ClaimKeys,
        owner: &str,
        finish: Finish<'_>,
        result_ttl_ms: u64,
    ) -> Result<bool> {
        let (state, result) = match finish {
            Finish::Done(result) => ("done", result),
            Finish::Failed(failure) => ("failed", failure),
        };
        let (stored, confirmed) = self.route.run(&keys.record, |conn| {
            let stored: bool = self
                .scripts
                .claim_finish
                .key(&keys.record)
                .key(&keys.waiters)
                .arg(owner)
                .arg(state)
                .arg(result)
                .arg(result_ttl_ms)
                .arg(&keys.record)
                .invoke(conn)?;
            let confirmed = match stored {
                true => self.replicas_confirming(conn)?,
                false => None,
            };
            Ok((stored, confirmed))
        })?;
        self.check_replicated(confirmed)?;
        Ok(stored)
    }

    fn abandon_claim(&self, keys: &ClaimKeys, owner: &str) -> Result<bool> {
        self.route.run(&keys.record, |conn| {
            self.scripts
                .claim_abandon
                .key(&keys.record)
                .key(&keys.waiters)
                .arg(owner)
                .arg(&keys.record)
                .invoke(conn)
        })
    }

    fn mark_once(&self, key: &str, window_ms: u64) -> Result<bool> {
        let set: Option<String> = self.route.run(key, |conn| {
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(window_ms)
                .query(conn)
        })?;
        Ok(set.is_some())
    }

    fn notifications(&self) -> Notifications {
        self.subscriber.status()
    }

    fn server_generation(&self) -> u64 {
        self.connector.server_generation().load(Ordering::Acquire)
    }

    fn on_server_changed(&self, callback: Box<dyn Fn() + Send + Sync>) {
        self.connector.on_server_changed(callback);
    }

    fn board(&self) -> &WakeBoard {
        self.subscriber.board()
    }

    fn watch(&self, key: &str, fair: bool, until: Instant) -> Watch {
        let watch = self.subscriber.board().watch(key, fair);
        let until = until.min(Instant::now() + self.connect_timeout);
        if !self.subscriber.listen_for(key, until) {
            tracing::debug!(
                key,
                "tollgate: waiting without notifications (polling only)"
            );
        }
        watch
    }

    // ---- semaphores ----

    fn semaphore_acquire(&self, req: &PermitRequest<'_>) -> Result<PermitAcquired> {
        let key = &req.keys.key;
        let (granted, value, free): (i64, i64, i64) = self.grant(
            key,
            |conn| {
                self.scripts
                    .semaphore_acquire
                    .key(key)
                    .arg(req.owner)
                    .arg(req.count)
                    .arg(req.permits)
                    .arg(req.ttl_ms)
                    .arg(req.holder)
                    .arg(req.fence_retention_ms)
                    .invoke(conn)
            },
            |reply: &(i64, i64, i64)| reply.0 == 1,
            || self.semaphore_release(req.keys, req.owner, req.fence_retention_ms),
        )?;
        if granted != 1 {
            return Ok(PermitAcquired::Busy {
                first_end: ttl_from_millis(value),
            });
        }
        Ok(PermitAcquired::Granted {
            fence: token_from(value)?,
            free: u32::try_from(free).unwrap_or(0),
        })
    }

    fn semaphore_release(
        &self,
        keys: &GrantKeys,
        owner: &str,
        fence_retention_ms: u64,
    ) -> Result<bool> {
        self.end_grant(
            &self.scripts.semaphore_release,
            keys,
            owner,
            fence_retention_ms,
        )
    }

    fn semaphore_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>> {
        let script = &self.scripts.semaphore_extend;
        self.extend_grant(script, keys, owner, ttl_ms, fence_retention_ms)
    }

    fn semaphore_grants(&self, keys: &GrantKeys) -> Result<Vec<PermitRecord>> {
        let flat: Vec<redis::Value> = self.route.run(&keys.key, |conn| {
            self.scripts.semaphore_inspect.key(&keys.key).invoke(conn)
        })?;
        let unexpected = || Error::UnexpectedReply("a semaphore grant that is not 4 fields".into());
        flat.chunks(4)
            .map(|grant| {
                let [count, fence, holder, left] = grant else {
                    return Err(unexpected());
                };
                let count: u32 =
                    redis::from_redis_value(count.clone()).map_err(|_| unexpected())?;
                let fence: String =
                    redis::from_redis_value(fence.clone()).map_err(|_| unexpected())?;
                let holder: String =
                    redis::from_redis_value(holder.clone()).map_err(|_| unexpected())?;
                let left: u64 = redis::from_redis_value(left.clone()).map_err(|_| unexpected())?;
                Ok(PermitRecord {
                    count,
                    fence: fence_at(&keys.key, &fence)?,
                    holder,
                    remaining: Duration::from_millis(left),
                })
            })
            .collect()
    }

    // ---- read-write locks ----

    fn rw_acquire(&self, req: &RwRequest<'_>) -> Result<Acquired> {
        let key = &req.keys.key;
        let (granted, value): (i64, i64) = self.grant(
            key,
            |conn| {
                self.scripts
                    .rw_acquire
                    .key(key)
                    .arg(if req.write { "w" } else { "r" })
                    .arg(req.owner)
                    .arg(req.ttl_ms)
                    .arg(req.holder)
                    .arg(req.fence_retention_ms)
                    .arg(req.wish_ms)
                    .invoke(conn)
            },
            |reply: &(i64, i64)| reply.0 == 1,
            || self.rw_release(req.keys, req.owner, req.fence_retention_ms),
        )?;
        Ok(if granted == 1 {
            Acquired::Granted {
                fence: token_from(value)?,
            }
        } else {
            Acquired::Held {
                remaining: ttl_from_millis(value),
            }
        })
    }

    fn rw_release(&self, keys: &GrantKeys, owner: &str, fence_retention_ms: u64) -> Result<bool> {
        // 1: a hold ended; 2: only a wish to write withdrawn. Both let
        // waiters in, so both are announced.
        let mut outcome = 0;
        self.announced_release(&keys.key, || {
            outcome = self.route.run(&keys.key, |conn| {
                self.scripts
                    .rw_release
                    .key(&keys.key)
                    .arg(owner)
                    .arg(&keys.key)
                    .arg(fence_retention_ms)
                    .arg(&keys.waiters)
                    .invoke::<i64>(conn)
            })?;
            Ok(outcome != 0)
        })?;
        Ok(outcome == 1)
    }

    fn rw_extend(
        &self,
        keys: &GrantKeys,
        owner: &str,
        ttl_ms: u64,
        fence_retention_ms: u64,
    ) -> Result<Option<Duration>> {
        let script = &self.scripts.rw_extend;
        self.extend_grant(script, keys, owner, ttl_ms, fence_retention_ms)
    }

    // ---- fenced records ----

    fn record_get(&self, key: &str) -> Result<Option<StoredRecord>> {
        let reply: Option<(String, i64, Vec<u8>, i64)> = self
            .route
            .run(key, |conn| self.scripts.record_get.key(key).invoke(conn))?;
        let Some((fence, has_value, value, pttl)) = reply else {
            return Ok(None);
        };
        Ok(Some(StoredRecord {
            fence: fence_at(key, &fence)?,
            value: (has_value == 1).then_some(value),
            remaining: ttl_from_millis(pttl),
        }))
    }

    fn record_write(
        &self,
        key: &str,
        token: u64,
        value: Option<&[u8]>,
        ttl_ms: u64,
    ) -> Result<FencedWrite> {
        // In synced mode an accepted write is confirmed by the replicas, so
        // that a failover cannot set the record's fence back; one they do
        // not confirm cannot be given back, and fails with NotReplicated.
        let (written, detail): (i64, String) = self.grant(
            key,
            |conn| {
                self.scripts
                    .record_write
                    .key(key)
                    .arg(token)
                    .arg(if value.is_some() { "1" } else { "0" })
                    .arg(value.unwrap_or_default())
                    .arg(ttl_ms)
                    .invoke(conn)
            },
            |reply: &(i64, String)| reply.0 == 1,
            || Ok(false),
        )?;
        Ok(if written == 1 {
            FencedWrite::Accepted {
                existed: detail == "1",
            }
        } else {
            FencedWrite::Stale {
                highest: fence_at(key, &detail)?,
            }
        })
    }

    // ---- counters and sequences ----

    fn counter_get(&self, key: &str) -> Result<Option<i64>> {
        let text: Option<String> = self
            .route
            .run(key, |conn| redis::cmd("GET").arg(key).query(conn))?;
        text.map(|text| integer_at(key, &text)).transpose()
    }

    fn counter_set(&self, key: &str, value: i64) -> Result<()> {
        let _: i64 = self
            .route
            .run(key, |conn| {
                self.scripts.counter_set.key(key).arg(value).invoke(conn)
            })
            .map_err(|e| counter_error(e, key))?;
        Ok(())
    }

    fn counter_incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.route
            .run(key, |conn| {
                redis::cmd("INCRBY").arg(key).arg(delta).query(conn)
            })
            .map_err(|e| counter_error(e, key))
    }

    fn counter_change(&self, change: &CounterChange<'_>) -> Result<Changed> {
        let key = change.key;
        let bound = |b: Option<i64>| b.map(|b| b.to_string()).unwrap_or_default();
        let reply: redis::Value = self
            .route
            .run(key, |conn| {
                let call = self.scripts.counter_change.key(key);
                let call = match change.once {
                    Some((op_key, _)) => call.key(op_key),
                    None => call,
                };
                call.arg(change.delta)
                    .arg(bound(change.min))
                    .arg(bound(change.max))
                    .arg(change.once.map_or(0, |(_, window_ms)| window_ms))
                    .invoke(conn)
            })
            .map_err(|e| counter_error(e, key))?;
        let reply = match reply {
            redis::Value::Int(value) => return Ok(Changed::Applied(value)),
            redis::Value::BulkString(value) => {
                let value = String::from_utf8_lossy(&value);
                return Ok(Changed::Applied(integer_at(key, &value)?));
            }
            other => redis::from_redis_value::<Vec<String>>(other)
                .map_err(|e| Error::UnexpectedReply(format!("counter script answered {e}")))?,
        };
        match reply.as_slice() {
            [status, value] if status == "0" => Ok(Changed::OutOfBounds(integer_at(key, value)?)),
            [status, value, delta] if status == "2" => Ok(Changed::Repeated {
                value: integer_at(key, value)?,
                delta: integer_at(key, delta)?,
            }),
            other => Err(Error::UnexpectedReply(format!(
                "counter script answered {other:?}"
            ))),
        }
    }

    fn sequence_reserve(
        &self,
        key: &str,
        count: u64,
        daily: bool,
        day_ttl_secs: u64,
        now: Option<u64>,
    ) -> Result<Reserved> {
        let (last, day, to_midnight_ms): (String, String, u64) = self
            .route
            .run(key, |conn| {
                self.scripts
                    .sequence_reserve
                    .key(key)
                    .arg(count)
                    .arg(if daily { "1" } else { "0" })
                    .arg(day_ttl_secs)
                    .arg(now.map(|n| n.to_string()).unwrap_or_default())
                    .invoke(conn)
            })
            .map_err(|e| counter_error(e, key))?;
        let last = integer_at(key, &last)?;
        let last = u64::try_from(last).map_err(|_| Error::WrongType {
            key: key.to_owned(),
            detail: format!("sequence is at {last}, below zero"),
        })?;
        Ok(Reserved {
            last,
            day,
            to_midnight: Duration::from_millis(to_midnight_ms),
        })
    }
}

/// Parses a counter stored as text; anything but an integer is not ours.
/// A record's fence: a decimal u64.
fn fence_at(key: &str, text: &str) -> Result<u64> {
    text.parse().map_err(|_| Error::WrongType {
        key: key.to_owned(),
        detail: format!("fencing token {text:?} is not a number"),
    })
}

fn integer_at(key: &str, text: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::WrongType {
        key: key.to_owned(),
        detail: format!("{text:?} is not a 64-bit integer"),
    })
}

/// Gives `INCRBY`'s generic `ERR` replies their own types: a key holding text
/// is [`Error::WrongType`], a sum beyond `i64` is [`Error::Overflow`].
fn counter_error(error: Error, key: &str) -> Error {
    match error {
        Error::Refused { code, message } if code == "ERR" => {
            if message.contains("overflow") {
                Error::Overflow {
                    key: key.to_owned(),
                }
            } else if message.contains("not an integer") {
                Error::WrongType {
                    key: key.to_owned(),
                    detail: "holds a value that is not a 64-bit integer".to_owned(),
                }
            } else {
                Error::Refused { code, message }
            }
        }
        other => other,
    }
}
