//! A Redis Sentinel watching one master, to fail it over on demand.

use std::thread;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// The master's name in the sentinel's configuration.
pub const MASTER_NAME: &str = "mymaster";

/// A private `redis-server --sentinel` monitoring one master as
/// [`MASTER_NAME`] (quorum 1; a master silent for 5 s is down), killed on drop.
pub struct RedisSentinel {
    server: RedisServer,
}

impl RedisSentinel {
    /// Starts a sentinel monitoring `master`; it learns the master's
    /// replicas from the master itself.
    pub fn watching(master: &RedisServer) -> RedisSentinel {
        Self::start(master, None, false)
    }

    /// Starts a sentinel monitoring `master`, which requires `password`
    /// (as its replicas do); with `asks_too`, the sentinel requires the same
    /// password of its own clients.
    pub fn watching_protected(
        master: &RedisServer,
        password: &str,
        asks_too: bool,
    ) -> RedisSentinel {
        Self::start(master, Some(password), asks_too)
    }

    fn start(master: &RedisServer, password: Option<&str>, asks_too: bool) -> RedisSentinel {
        let mut config = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 5000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n",
            master.port()
        );
        if let Some(password) = password {
            config.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
        }
        let mut builder = RedisServer::builder().config_file(config).arg("--sentinel");
        if let (Some(password), true) = (password, asks_too) {
            builder = builder.requirepass(password);
        }
        RedisSentinel {
            server: builder.start(),
        }
    }

    /// The sentinel's port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster`.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{MASTER_NAME}", self.port())
    }

    /// How many of the sentinel's clients are subscribed to a channel.
    pub fn subscribed_clients(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.server.conn())
            .unwrap();
        list.lines().filter(|line| line.contains(" sub=1 ")).count()
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> u16 {
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut self.server.conn())
            .expect("the sentinel names its master");
        port
    }

    /// Fails `master` over to `replica` (its only replica), as
    /// `SENTINEL FAILOVER` does, and waits until the sentinel names the
    /// replica, the replica has become a master and `master` a replica.
    pub fn fail_over(&self, master: &RedisServer, replica: &RedisServer) {
        self.start_failover(replica);
        let deadline = Instant::now() + Duration::from_secs(30);
        for (server, role) in [(replica, "role:master"), (master, "role:slave")] {
            while role_of(server) != role {
                assert!(
                    Instant::now() < deadline,
                    "port {} never took {role}",
                    server.port()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts failing the master over to `replica` (its only replica) and
    /// waits until the sentinel names the replica (it announces the switch
    /// then); the old master may stay a master for seconds more.
    pub fn start_failover(&self, replica: &RedisServer) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // The sentinel must have seen the replica in the master's INFO.
        loop {
            let asked: redis::RedisResult<()> = redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(MASTER_NAME)
                .exec(&mut self.server.conn());
            match asked {
                Ok(()) => break,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "the sentinel would not fail over: {error}"
                ),
            }
            thread::sleep(Duration::from_millis(100));
        }
        while self.master_port() != replica.port() {
            assert!(Instant::now() < deadline, "the sentinel never switched");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `role:master` or `role:slave`, from `INFO replication`.
pub fn role_of(server: &RedisServer) -> String {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find(|line| line.starts_with("role:"))
        .unwrap_or("role:unknown")
        .to_owned()
}
