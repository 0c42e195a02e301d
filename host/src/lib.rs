//! Distributed locks, idempotent actions, counters and serial numbers on
//! Redis for synchronous Rust, done right: atomic grants, token-checked
//! release and extend, fencing tokens, waits woken by the release, a watchdog
//! that renews locks and in-progress leases while their owner lives, repeats
//! that get the first run's result, counters changed in one atomic step (with
//! bounds, and exactly-once increments), and serial numbers that restart each
//! server day and can be reserved in blocks.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> tollgate::Result<()> {
//! let client = tollgate::Client::open("redis://127.0.0.1:6379/")?;
//!
//! let guard = client
//!     .lock("orders:42")
//!     .ttl(Duration::from_secs(10))
//!     .wait(Duration::from_secs(3)) // Err(Timeout) if not granted in 3 s
//!     .watchdog() // renewed while `guard` lives
//!     .acquire()?;
//! let token = guard.fencing_token(); // hand it to the resource you protect
//! # let _ = token;
//! guard.release()?; // or just drop the guard
//!
//! let views = client.counter("page_views");
//! views.incr(1)?;
//! let orders = client
//!     .sequence("orders")
//!     .format("ORD-{date}-{seq:06}")?
//!     .reset(tollgate::Reset::Daily);
//! let number = orders.next()?; // "ORD-20261122-000042"
//! # let _ = number;
//! # Ok(())
//! # }
//! ```
//!
//! Run an action at most once per request id, and stop double submissions:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let client = tollgate::Client::open("redis://127.0.0.1:6379/")?;
//! let payments = client.idempotency("payments");
//! let out = payments
//!     .key("pay-123")
//!     .fingerprint(b"amount=4200")
//!     .wait(Duration::from_secs(5)) // a repeat waits for a running action
//!     .run(|| Ok::<_, std::io::Error>(b"charge ch_1".to_vec()))?;
//! assert!(!out.replayed || out.value == b"charge ch_1");
//!
//! if client.once("submit:user42:9f2c", Duration::from_secs(10))? {
//!     // first submission in the window: process it
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Without Redis, [`Client::in_memory`] gives the same API, with the same
//! semantics, on a store inside this process: for tests (a plugin's, say)
//! and for programs that run alone.
//!
//! Every call blocks for a bounded time (see [`ClientBuilder`]) and fails
//! with a typed [`Error`]; nothing panics on I/O or bad input. What locks
//! and idempotent actions guarantee, and which clock bounds what, is in the
//! [`lock`] and [`idempotency`] modules; counters and serial numbers are
//! described in [`counter`] and [`sequence`]. Sandboxed WebAssembly plugins
//! use all of them through `plugin` (feature `plugin`), whose per-call rules
//! (namespace, quotas, deadline) are `sandbox` (feature `sandbox`, no wasm
//! runtime: the guest SDK's native tests use it); the `tollgate`
//! command (`cli`, feature `cli`, which implies `plugin`) runs plugins
//! and shows operators what is held.

#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
mod client;
pub mod counter;
mod error;
mod held;
mod hold;
pub mod idempotency;
mod keys;
mod limits;
pub mod lock;
pub mod metrics;
mod notify;
#[cfg(feature = "plugin")]
pub mod plugin;
pub mod record;
pub mod redlock;
pub mod rwlock;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod semaphore;
pub mod sequence;
mod store;
mod trace;
mod wait;
mod watchdog;

pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RESPONSE_TIMEOUT,
};
pub use counter::{Counter, OnceOutcome};
pub use error::{Error, Result};
pub use idempotency::{
    Begin, Claim, Duplicate, Idempotency, IdempotentCall, Outcome, RecordInfo, RecordState,
    RunError,
};
pub use limits::MAX_NAME_BYTES;
pub use lock::{LockBuilder, LockGuard, LockInfo, LockOptions};
pub use record::{FencedRecord, RecordEntry};
pub use redlock::{Redlock, RedlockBuilder, RedlockGuard};
pub use rwlock::{ReadGuard, RwLock, WriteGuard};
pub use semaphore::{Permit, PermitInfo, Semaphore};
pub use sequence::{Reset, Sequence};
pub use store::Notifications;
