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
//!
//! # Threads
//! [`Runtime`] and [`Plugin`] are `Send + Sync`: share them (by reference,
//! or in an `Arc` for threads that outlive the scope) and call
//! [`Plugin::run`] from any number of threads at once; each call gets its own
//! instance and store, and blocks its thread until the invocation ends. Each
//! `Runtime` starts one thread, the deadline clock (10 ms ticks), which ends
//! when the runtime and every plugin loaded from it are dropped. Make one
//! runtime per program: it owns the compiled-component cache.
//!
//! # Output
//! A guest may write up to 1 MiB to stdout and to stderr per invocation;
//! past that its writes fail (a Rust guest's `println!` then panics, which
//! ends the invocation as [`PluginError::Panicked`]). [`Plugin::run`] logs
//! what it wrote; [`Plugin::run_reporting`] returns it.

mod bindings;
mod cache;
mod error;
mod host;
mod limits;
mod output;
mod runtime;

pub use crate::sandbox::{MAX_GUEST_NAME_BYTES, MAX_TIMEOUT, PluginError, Policy, TrapCause};
pub use cache::default_cache_dir;
pub use output::{OutputSink, OutputStreamKind};
pub use runtime::{Plugin, RunOptions, RunReport, Runtime, RuntimeBuilder, RuntimeStats};
