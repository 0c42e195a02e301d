//! What a lock protects, and how tests check that it was protected.
//!
//! [`FencedResource`] stands for the database or file a lock guards: a
//! second, private `redis-server` whose records accept a write only with a
//! fencing token at least as large as the largest they have seen, so a
//! holder whose lock expired while it was paused cannot overwrite what the
//! next holder wrote. Each write also names the value the writer read: a
//! different value means two holders were inside at once.
//!
//! [`Hold`] and [`check_mutual_exclusion`] check the same invariant from the
//! client's side, over an operation history.

use std::time::{Duration, Instant};

use crate::RedisServer;

/// The write script: `KEYS[1]` the record hash `{token, value}`, `ARGV[1]`
/// the writer's token, `ARGV[2]` the value it read, `ARGV[3]` the value it
/// writes. Answers `stale` (refused: a newer token was seen), `overlap`
/// (written, but the value changed since the writer read it), or `ok`.
const WRITE: &str = r"
local seen = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
local token = tonumber(ARGV[1])
if token < seen then
  return 'stale'
end
local current = redis.call('HGET', KEYS[1], 'value') or ''
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[3])
if current ~= ARGV[2] then
  return 'overlap'
end
return 'ok'
";

/// What a fenced write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencedWrite {
    /// Accepted, and nobody wrote since the writer read.
    Ok,
    /// Refused: a write with a newer token came first.
    Stale,
    /// Accepted, but another writer wrote between this one's read and
    /// write: two holders were inside at once.
    Overlap,
}

/// A store of records that refuse stale fencing tokens, on its own
/// `redis-server` (separate from the lock's).
pub struct FencedResource {
    server: RedisServer,
}

impl Default for FencedResource {
    fn default() -> Self {
        Self::start()
    }
}

impl FencedResource {
    /// Starts the resource's server.
    pub fn start() -> FencedResource {
        FencedResource {
            server: RedisServer::start(),
        }
    }

    /// The resource server's URL (for a child process).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A connection to the resource.
    pub fn conn(&self) -> redis::Connection {
        self.server.conn()
    }

    /// The value of `record` (empty when never written).
    pub fn read(conn: &mut redis::Connection, record: &str) -> String {
        redis::cmd("HGET")
            .arg(record)
            .arg("value")
            .query::<Option<String>>(conn)
            .expect("the resource answers")
            .unwrap_or_default()
    }

    /// Writes `value` to `record` with `token`, saying it read `read`.
    pub fn write(
        conn: &mut redis::Connection,
        record: &str,
        token: u64,
        read: &str,
        value: &str,
    ) -> FencedWrite {
        let answer: String = redis::Script::new(WRITE)
            .key(record)
            .arg(token)
            .arg(read)
            .arg(value)
            .invoke(conn)
            .expect("the resource answers");
        match answer.as_str() {
            "ok" => FencedWrite::Ok,
            "stale" => FencedWrite::Stale,
            "overlap" => FencedWrite::Overlap,
            other => panic!("unexpected answer from the resource: {other}"),
        }
    }
}

/// One hold of a lock as its holder saw it, on this process's monotonic
/// clock.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// The grant's fencing token.
    pub token: u64,
    /// When the grant's reply arrived: the server granted before this.
    pub granted_by: Instant,
    /// When the release was sent: the server released after this.
    pub released_after: Instant,
    /// The release found the lock still held by this grant (it returned
    /// `Ok`), so the grant lasted, on the server, from before `granted_by`
    /// until after `released_after`.
    pub confirmed: bool,
}

/// Checks that no two confirmed holds overlapped and that tokens grew with
/// grants: confirmed holds, ordered by grant, must each end before the next
/// begins, with a larger token. Holds not confirmed (the lock was lost, or
/// the release's outcome is unknown) prove nothing and are skipped.
pub fn check_mutual_exclusion(holds: &[Hold]) -> Result<(), String> {
    let mut confirmed: Vec<&Hold> = holds.iter().filter(|h| h.confirmed).collect();
    confirmed.sort_by_key(|h| h.granted_by);
    for pair in confirmed.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.granted_by < a.released_after {
            return Err(format!("two holders at once: {a:?} and {b:?}"));
        }
        if b.token <= a.token {
            return Err(format!("fencing token went backwards: {a:?} then {b:?}"));
        }
    }
    Ok(())
}

/// What one [`increment_under`] did.
#[derive(Debug)]
pub struct Turn {
    /// The hold, for [`check_mutual_exclusion`].
    pub hold: Hold,
    /// What the resource said to the write.
    pub write: FencedWrite,
    /// What the release returned.
    pub release: Result<(), tollgate::Error>,
    /// How long the release took.
    pub release_took: Duration,
}

/// A worker's critical section under `guard`, whose reply arrived at
/// `granted_by`: reads the integer in `record`, waits `pause`, writes it
/// plus one with the guard's fencing token, then releases the lock.
pub fn increment_under(
    guard: tollgate::LockGuard,
    granted_by: Instant,
    conn: &mut redis::Connection,
    record: &str,
    pause: Duration,
) -> Turn {
    let token = guard.fencing_token();
    let read = FencedResource::read(conn, record);
    std::thread::sleep(pause);
    let next = read.parse::<u64>().unwrap_or(0) + 1;
    let write = FencedResource::write(conn, record, token, &read, &next.to_string());
    let released_after = Instant::now();
    let release = guard.release();
    Turn {
        hold: Hold {
            token,
            granted_by,
            released_after,
            confirmed: release.is_ok(),
        },
        write,
        release,
        release_took: released_after.elapsed(),
    }
}
