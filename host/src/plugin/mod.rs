//! The wasmtime host for sandboxed plugins: guests built against the
//! `tollgate:coord` WIT package take locks, run idempotent actions and use
//! counters and serial numbers through this crate.
//!
//! - **Isolation**: a plugin's names always live in its namespace
//!   (`namespace/name`); no name can reach another plugin's keys.
//! - **Bounded**: every invocation has a deadline (epoch interruption) and a
//!   memory limit; host calls that wait end at the deadline; quotas limit
//!   locks held, TTLs, waits and result sizes. A call beyond a quota fails
//!   with a typed error in the guest, never a host panic.
//! - **Nothing left behind**: everything a plugin holds lives in its
//!   invocation's store. Dropping a guard releases its lock; when the
//!   invocation ends, by return, trap, timeout or a forgotten guard, the
//!   store goes and every lock is released and every claim abandoned at
//!   once, not after a TTL.
//!
//! The embedder's whole integration is [`Runtime`], [`Policy`] and
//! [`Plugin::run`]; see [`Runtime`] for an example.

mod bindings;
mod error;
mod host;
mod limits;
mod policy;
mod runtime;

pub use error::PluginError;
pub use policy::{MAX_GUEST_NAME_BYTES, Policy};
pub use runtime::{Plugin, RunReport, Runtime};
