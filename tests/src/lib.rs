//! Real-Redis test kit for tollgate.
//!
//! [`RedisServer`] starts a private `redis-server` process on a free loopback
//! port (persistence off, its own temp dir) and kills it on drop. Tests that
//! need Redis fail — they never skip — when `redis-server` is not installed.
#![deny(missing_docs)]

pub mod bench;
mod cluster;
pub mod fenced;
pub mod guest;
pub mod proxy;
mod redis_server;
mod sentinel;
mod tls;

pub use cluster::RedisCluster;
pub use proxy::{FaultProxy, ReplyFault};
pub use redis_server::{KitError, RedisServer, RedisServerBuilder, redis_server_bin};
pub use sentinel::{MASTER_NAME, RedisSentinel, role_of};
pub use tls::TestCertificates;

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;

/// The Redis the examples use: `$REDIS_URL` when set, else a private
/// `redis-server` started here (kept alive by the returned handle).
pub fn redis_from_env_or_private() -> (Option<RedisServer>, String) {
    match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = RedisServer::start();
            let url = server.url();
            (Some(server), url)
        }
    }
}
