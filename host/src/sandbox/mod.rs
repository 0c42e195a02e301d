//! The rules a sandboxed plugin's calls follow, without any wasm runtime:
//! its [`Policy`] (namespace, quotas, limits), one invocation's
//! [`Session`], and the [`GuestError`] a refused call gives.
//!
//! The wasmtime host (`plugin`, feature `plugin`) runs every guest call
//! through a [`Session`]; so does `tollgate-guest` when a plugin's tests run
//! natively with `cargo test`. Either way the plugin sees the same names,
//! quotas and errors.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use tollgate::sandbox::{GuestError, LockRequest, Policy, Session};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = tollgate::Client::in_memory();
//! let policy = Arc::new(Policy::new("billing")?.max_locks(1));
//! let session = Session::new(client.clone(), policy, Instant::now() + Duration::from_secs(5));
//!
//! // The plugin's names live in its namespace.
//! session.incr("orders", 1, None)?;
//! assert_eq!(client.counter("billing/orders").get()?, 1);
//!
//! let held = session.acquire("invoices", LockRequest::default())?;
//! // Quotas count across the session.
//! assert!(matches!(
//!     session.acquire("other", LockRequest::default()),
//!     Err(GuestError::QuotaExceeded(_))
//! ));
//! held.release()?;
//! # Ok(())
//! # }
//! ```

mod error;
mod policy;
mod session;

pub use error::{GuestError, PluginError, TrapCause};
pub use policy::{MAX_GUEST_NAME_BYTES, MAX_TIMEOUT, Policy};
pub use session::{
    ClaimOutcome, ClaimRequest, CounterBounds, Grant, Held, HeldClaim, HeldLock, HeldPermit,
    HeldRw, LockRequest, PermitRequest, RwGrant, SequenceRequest, Session,
};
