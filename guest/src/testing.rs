//! Running a plugin's code natively, for `cargo test` (not on wasm).
//!
//! Off wasm, every call of this SDK is served in the test process by the
//! host's own rules (`tollgate::sandbox`) over tollgate's in-process store:
//! the same namespace, quotas, defaults and errors as in the real host, no
//! wasm runtime and no Redis.
//!
//! Calls made outside [`Sandbox::invoke`] belong to one implicit invocation
//! per thread, on a store of its own, so each `#[test]` (which runs on a
//! thread of its own) starts empty. A [`Sandbox`] gives control: several
//! invocations on one store, from several threads, under a chosen policy.
//!
//! ```
//! use tollgate_guest::testing::Sandbox;
//! use tollgate_guest::{Failure, Plugin, counter};
//!
//! struct Visits;
//!
//! impl Plugin for Visits {
//!     fn run(_input: Vec<u8>) -> Result<Vec<u8>, Failure> {
//!         let n = counter("visits").incr(1)?;
//!         Ok(n.to_string().into_bytes())
//!     }
//! }
//!
//! let sandbox = Sandbox::new();
//! assert_eq!(sandbox.run::<Visits>(b"").unwrap(), b"1");
//! assert_eq!(sandbox.run::<Visits>(b"").unwrap(), b"2");
//! // The host's view: the plugin's names live in its namespace.
//! assert_eq!(sandbox.client().counter("plugin/visits").get().unwrap(), 2);
//! ```
//!
//! What differs from the wasm host: nothing stops a plugin that runs past
//! the policy's timeout (its waits and store calls still end at the
//! deadline), memory is not limited, and a guard passed to
//! `std::mem::forget` keeps its lock until the TTL, since no instance is
//! torn down. A panic unwinds through the test as usual; the guards it
//! drops release their locks.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use tollgate::Client;
pub use tollgate::sandbox::Policy;
use tollgate::sandbox::Session;

use crate::{Failure, Plugin};

/// A store and a policy to run plugin code against natively: each
/// [`run`](Self::run) or [`invoke`](Self::invoke) is one invocation, with
/// its own quotas and deadline, on the sandbox's store. Clones share the
/// store.
#[derive(Debug, Clone)]
pub struct Sandbox {
    client: Client,
    policy: Arc<Policy>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A fresh in-process store, and the host's default policy for a
    /// plugin in the namespace `plugin`.
    pub fn new() -> Sandbox {
        let policy = Policy::new("plugin").expect("\"plugin\" is a valid namespace");
        Sandbox::with_policy(policy)
    }

    /// A fresh in-process store, and `policy` (its namespace, quotas and
    /// timeout) for every invocation.
    pub fn with_policy(policy: Policy) -> Sandbox {
        Sandbox {
            client: Client::in_memory(),
            policy: Arc::new(policy),
        }
    }

    /// The store, as the host sees it: a plugin's name `x` is
    /// `namespace/x` there. Use it to set up state or check what a plugin
    /// left.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The policy every invocation runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs `P` once on `input`, as the host would: one invocation, its
    /// error as the text the host reports.
    pub fn run<P: Plugin>(&self, input: impl AsRef<[u8]>) -> Result<Vec<u8>, String> {
        let input = input.as_ref().to_vec();
        self.invoke(|| P::run(input).map_err(Failure::into_message))
    }

    /// Runs `work` as one invocation: the SDK calls it makes (on this
    /// thread) count against one set of quotas and end by the policy's
    /// timeout from now.
    pub fn invoke<R>(&self, work: impl FnOnce() -> R) -> R {
        let session = self.open_session(Some(self.policy.time_limit()));
        crate::native::with_session(session, work)
    }

    /// A session on this sandbox's store, ending after `limit` (or in a
    /// year when none).
    pub(crate) fn open_session(&self, limit: Option<Duration>) -> Session {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let deadline = Instant::now() + limit.unwrap_or(YEAR);
        Session::new(self.client.clone(), Arc::clone(&self.policy), deadline)
    }
}
