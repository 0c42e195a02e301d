//! A private Redis Cluster: masters and replicas on free loopback ports,
//! created with `redis-cli --cluster create` and stopped on drop.

use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::{RedisServer, redis_server_bin};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A local Redis Cluster of `masters` masters with `replicas` replicas each.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

/// The cluster shared by the tests of one process (see [`RedisCluster::shared`]).
static SHARED: OnceLock<RedisCluster> = OnceLock::new();

extern "C" fn stop_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        for node in &cluster.nodes {
            node.kill_for_exit();
        }
    }
}

impl RedisCluster {
    /// One cluster (3 masters, 1 replica each) for every test of this
    /// process that only needs a healthy cluster: started on first use,
    /// stopped when the process exits. Tests keep apart by key prefix; a
    /// test that kills, pauses or migrates must start its own.
    pub fn shared() -> &'static RedisCluster {
        SHARED.get_or_init(|| {
            let cluster = RedisCluster::start();
            // SAFETY: registers a plain `extern "C"` function that only
            // sends signals to our own children.
            unsafe { libc::atexit(stop_shared_cluster) };
            cluster
        })
    }

    /// Three masters with one replica each; panics with a clear message when
    /// the cluster cannot be made.
    pub fn start() -> RedisCluster {
        Self::with_shape(3, 1)
    }

    /// `masters` masters (at least 3) with `replicas` replicas each.
    pub fn with_shape(masters: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::builder()
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", "nodes.conf"])
                    .args(["--cluster-node-timeout", "1000"])
                    // A replica takes over however long it was cut off.
                    .args(["--cluster-replica-validity-factor", "0"])
                    .start()
            })
            .collect();
        let mut create = Command::new(redis_cli());
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let output = create
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli (it comes with redis-server): {e}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes, masters };
        cluster.wait_until_ok();
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,.../` with every node as
    /// a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}/", seeds.join(","))
    }

    /// Every node, masters first as created (roles change on failover).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Every node, mutably (to kill or restart one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// How many masters the cluster was made with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// The node that serves `slot` now, as the first live node reports it.
    pub fn owner_of(&self, slot: u16) -> &RedisServer {
        let port = self.slot_owner_port(slot);
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .expect("the owner is one of our nodes")
    }

    fn slot_owner_port(&self, slot: u16) -> u16 {
        for node in &self.nodes {
            let Ok(mut conn) = node.try_conn() else {
                continue;
            };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut conn)
            else {
                continue;
            };
            if let redis::Value::Array(ranges) = slots {
                for range in ranges {
                    let redis::Value::Array(parts) = range else {
                        continue;
                    };
                    let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                        (parts.first(), parts.get(1))
                    else {
                        continue;
                    };
                    if (*start..=*end).contains(&i64::from(slot))
                        && let Some(redis::Value::Array(master)) = parts.get(2)
                        && let Some(redis::Value::Int(port)) = master.get(1)
                    {
                        return u16::try_from(*port).expect("a port");
                    }
                }
            }
        }
        panic!("no node knows who serves slot {slot}");
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn slot_of(&self, key: &str) -> u16 {
        let mut conn = self.nodes[0].conn();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT")
    }

    /// Waits until every live node says `cluster_state:ok` and agrees on
    /// who serves every slot.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = self
                .nodes
                .iter()
                .filter_map(|n| n.try_conn().ok())
                .all(|mut conn| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut conn)
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {READY_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `redis-cli`, next to `redis-server` (or on PATH).
fn redis_cli() -> std::path::PathBuf {
    if let Ok(server) = redis_server_bin() {
        let cli = server.with_file_name("redis-cli");
        if cli.exists() {
            return cli;
        }
    }
    "redis-cli".into()
}
