//! Redis Cluster: each request goes to the master that serves its key's
//! slot, through a pool per node.
//!
//! tollgate routes by itself rather than through the `redis` crate's sync
//! cluster client, which resends a request after a read timeout (a script
//! that is not safe to repeat could run twice) and cannot follow redirects
//! without its retries. Here only what the server did not run is sent
//! again: a `MOVED` or `ASK` redirect (followed, `ASK` with `ASKING`), or
//! `TRYAGAIN` (a multi-key step during a slot migration). A lost reply stays
//! [`Error::OutcomeUnknown`], as on one server.
//!
//! The slot map comes from `CLUSTER SLOTS` on any reachable node, and is
//! read again after a redirect, a failed connection or a lost reply. When a
//! replica has taken over a master's slots (a failover), every lease granted
//! before may be gone: the server generation moves, as on a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redis::{RedisResult, Value};

use super::connect::Connector;
use super::pool::{Pool, PoolConfig};
use super::slot::slot_of;
use super::subscriber::ConnectFn;
use super::wire::Connection;
use crate::error::{Error, Result};

/// Most redirects (`MOVED`, `ASK`) followed for one request. `TRYAGAIN`
/// is retried instead for as long as the response timeout: a migration in
/// progress ends, a redirect loop does not.
const MAX_REDIRECTS: usize = 16;
/// Slot maps are read at most this often, unless a redirect asks for it.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// One range of slots and who serves it.
#[derive(Debug, Clone)]
struct Range {
    start: u16,
    end: u16,
    master: Node,
    replicas: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    host: String,
    port: u16,
    id: String,
}

impl Node {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Routes requests to the masters of a Redis Cluster.
pub(crate) struct ClusterRouter {
    /// The first seed's connector: the others are made from it.
    seed: Arc<Connector>,
    seeds: Vec<(String, u16)>,
    config: PoolConfig,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    ranges: RwLock<Vec<Range>>,
    refreshed: Mutex<Option<Instant>>,
}

impl ClusterRouter {
    /// A router that learns the cluster from `seeds` on first use.
    pub fn new(seed: Arc<Connector>, seeds: Vec<(String, u16)>, config: PoolConfig) -> Self {
        ClusterRouter {
            seed,
            seeds,
            config,
            pools: Mutex::default(),
            ranges: RwLock::default(),
            refreshed: Mutex::new(None),
        }
    }

    /// Runs `request` on the master serving `key`'s slot, following
    /// redirects; errors as [`Pool::run`] gives them.
    pub fn run<T>(
        &self,
        key: &str,
        request: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let slot = slot_of(key.as_bytes());
        let mut target = self.master_of(slot)?;
        let mut asking = false;
        let mut pause = Duration::from_millis(5);
        let started = Instant::now();
        let mut redirects = 0;
        while redirects < MAX_REDIRECTS {
            let answer = target.run(key, |conn| {
                if asking {
                    redis::cmd("ASKING").exec(conn)?;
                }
                request(conn)
            });
            asking = false;
            match answer {
                Err(Error::Refused { code, message }) if code == "MOVED" => {
                    redirects += 1;
                    self.refresh(true);
                    target = self.pool_at(redirect_address(&message)?)?;
                }
                Err(Error::Refused { code, message }) if code == "ASK" => {
                    redirects += 1;
                    target = self.pool_at(redirect_address(&message)?)?;
                    asking = true;
                }
                Err(Error::Refused { code, message }) if code == "TRYAGAIN" => {
                    // A multi-key step met a slot half migrated: nothing ran.
                    // (The pool also stops once the caller's own deadline
                    // passes.)
                    if started.elapsed() + pause >= self.config.response_timeout {
                        return Err(Error::Refused { code, message });
                    }
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                    target = self.master_of(slot)?;
                }
                Err(error @ (Error::Unavailable { .. } | Error::OutcomeUnknown { .. })) => {
                    self.refresh(false);
                    return Err(error);
                }
                Err(Error::Refused { code, message }) if code == "CLUSTERDOWN" => {
                    self.refresh(false);
                    return Err(Error::Refused { code, message });
                }
                other => return other,
            }
        }
        Err(Error::Unavailable {
            reason: format!("slot {slot} kept moving: more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// A pool on every master, for requests that must visit them all
    /// (`SCAN`).
    pub fn masters(&self) -> Result<Vec<Arc<Pool>>> {
        if self.ranges.read().is_empty() {
            self.refresh(true);
        }
        let mut addresses: Vec<String> = self
            .ranges
            .read()
            .iter()
            .map(|range| range.master.address())
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
            .iter()
            .map(|address| self.pool_at(address))
            .collect()
    }

    /// The master that serves `channel`'s slot (a sharded pub/sub channel
    /// lives there), and how to open a listening connection to it.
    pub fn node_of(&self, channel: &str) -> Result<(String, ConnectFn)> {
        let slot = slot_of(channel.as_bytes());
        let address = match self.lookup(slot) {
            Some(address) => address,
            None => {
                self.refresh(true);
                self.lookup(slot).ok_or_else(|| Error::Unavailable {
                    reason: format!("no cluster node serves slot {slot}"),
                })?
            }
        };
        let (host, port) = split_address(&address).ok_or_else(|| {
            Error::UnexpectedReply(format!("cluster node address {address:?} has no port"))
        })?;
        let connector = self.seed.for_node(host, port)?;
        let connect: ConnectFn = Box::new(move || connector.connect_listener());
        Ok((address, connect))
    }

    fn master_of(&self, slot: u16) -> Result<Arc<Pool>> {
        if let Some(address) = self.lookup(slot) {
            return self.pool_at(&address);
        }
        self.refresh(true);
        match self.lookup(slot) {
            Some(address) => self.pool_at(&address),
            None => Err(Error::Unavailable {
                reason: format!("no cluster node serves slot {slot}"),
            }),
        }
    }

    fn lookup(&self, slot: u16) -> Option<String> {
        self.ranges
            .read()
            .iter()
            .find(|range| (range.start..=range.end).contains(&slot))
            .map(|range| range.master.address())
    }

    /// The pool of the node at `address` (`host:port`), made if new.
    pub fn pool_at(&self, address: &str) -> Result<Arc<Pool>> {
        if let Some(pool) = self.pools.lock().get(address) {
            return Ok(Arc::clone(pool));
        }
        let (host, port) = split_address(address).ok_or_else(|| {
            Error::UnexpectedReply(format!("cluster node address {address:?} has no port"))
        })?;
        let connector = Arc::new(self.seed.for_node(host, port)?);
        let pool = Arc::new(Pool::new(connector, self.config.clone()));
        Ok(Arc::clone(
            self.pools.lock().entry(address.to_owned()).or_insert(pool),
        ))
    }

    /// Every node address known: masters and replicas of the map, then the
    /// seeds.
    fn known_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = Vec::new();
        for range in self.ranges.read().iter() {
            addresses.push(range.master.address());
        }
        addresses.extend(
            self.seeds
                .iter()
                .map(|(host, port)| format!("{host}:{port}")),
        );
        let mut seen = HashSet::new();
        addresses.retain(|a| seen.insert(a.clone()));
        addresses
    }

    /// Reads the slot map again (`now`: even if it was read a moment ago).
    /// Failures leave the old map.
    fn refresh(&self, now: bool) {
        {
            let mut refreshed = self.refreshed.lock();
            if !now && refreshed.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
                return;
            }
            *refreshed = Some(Instant::now());
        }
        for address in self.known_addresses() {
            let Ok(pool) = self.pool_at(&address) else {
                continue;
            };
            let slots = pool.run("", |conn| {
                redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(conn)
            });
            let Ok(Some(ranges)) = slots.map(|v| parse_slots(&v, &address)) else {
                continue;
            };
            if ranges.is_empty() {
                continue; // a node that lost the cluster; ask another
            }
            let failed_over = {
                let old = self.ranges.read();
                let old_replicas: HashSet<&str> = old
                    .iter()
                    .flat_map(|range| range.replicas.iter().map(String::as_str))
                    .collect();
                ranges
                    .iter()
                    .any(|range| old_replicas.contains(range.master.id.as_str()))
            };
            *self.ranges.write() = ranges;
            if failed_over {
                self.seed.server_changed();
            }
            return;
        }
    }
}

/// `host:port` of a `MOVED`/`ASK` message (`"SLOT HOST:PORT"`).
fn redirect_address(message: &str) -> Result<&str> {
    message
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| Error::UnexpectedReply(format!("redirect without an address: {message}")))
}

fn split_address(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The ranges of a `CLUSTER SLOTS` reply; `None` when it is not one. A node
/// with no host (or `?`) is the one asked, at `asked`.
fn parse_slots(reply: &Value, asked: &str) -> Option<Vec<Range>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let asked_host = split_address(asked)
        .map(|(host, _)| host)
        .unwrap_or_default();
    let node = |value: &Value| -> Option<Node> {
        let Value::Array(parts) = value else {
            return None;
        };
        let host = match parts.first()? {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let host = if host.is_empty() || host == "?" {
            asked_host.to_owned()
        } else {
            host
        };
        let Value::Int(port) = parts.get(1)? else {
            return None;
        };
        let id = match parts.get(2) {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            _ => String::new(),
        };
        Some(Node {
            host,
            port: u16::try_from(*port).ok()?,
            id,
        })
    };
    let mut parsed = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(parts) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (parts.first(), parts.get(1)) else {
            return None;
        };
        parsed.push(Range {
            start: u16::try_from(*start).ok()?,
            end: u16::try_from(*end).ok()?,
            master: node(parts.get(2)?)?,
            replicas: parts[3..].iter().filter_map(node).map(|n| n.id).collect(),
        });
    }
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(id.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn slot_maps_and_redirects_are_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node("", 7000, "a"),
            node("127.0.0.1", 7003, "b"),
        ])]);
        let ranges = parse_slots(&reply, "10.0.0.1:7000").unwrap();
        assert_eq!(ranges[0].master.address(), "10.0.0.1:7000");
        assert_eq!(ranges[0].replicas, ["b"]);
        assert_eq!(
            redirect_address("3999 127.0.0.1:6381").unwrap(),
            "127.0.0.1:6381"
        );
        assert!(redirect_address("3999").is_err());
        assert_eq!(split_address("::1:7000"), Some(("::1", 7000)));
    }
}
