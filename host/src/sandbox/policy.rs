//! What a plugin may do: its namespace, quotas and resource limits.
//!
//! Access is decided when a plugin is loaded and checked on every call: a
//! name is always put inside the plugin's namespace, and a call beyond a
//! quota is refused with a typed error that reaches the guest.

use std::time::Duration;

use super::error::{GuestError, PluginError};
use crate::error::Error;

/// The longest name a guest may use, in bytes (the namespace is added to it).
pub const MAX_GUEST_NAME_BYTES: usize = 256;

/// The longest [`Policy::timeout`] a plugin can be loaded with: one hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A plugin's namespace, quotas and limits. Every limit has a default.
///
/// ```
/// use std::time::Duration;
/// use tollgate::plugin::Policy;
///
/// let policy = Policy::new("billing")?
///     .max_locks(4)
///     .max_ttl(Duration::from_secs(30))
///     .timeout(Duration::from_secs(2))
///     .max_memory(32 << 20);
/// # Ok::<(), tollgate::plugin::PluginError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    namespace: String,
    pub(crate) max_locks: usize,
    pub(crate) max_claims: usize,
    pub(crate) max_permits: usize,
    pub(crate) max_ttl: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) max_retention: Duration,
    pub(crate) max_result_bytes: usize,
    pub(crate) max_record_bytes: usize,
    pub(crate) max_written_names: usize,
    pub(crate) max_stored_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) max_memory: usize,
    pub(crate) max_input: usize,
}

impl Policy {
    /// A policy for the plugin whose names live under `namespace`: 1 to 64
    /// characters from `a-z`, `0-9`, `-` and `_`. Defaults: 16 locks, 16
    /// semaphore grants and 16 idempotency claims held at once, TTLs and
    /// leases up to 60 s, waits up to 10 s, results kept up to 24 h and up
    /// to 64 KiB, record values
    /// up to 64 KiB, 1,000 names written and 1 MiB of results and record
    /// values stored per invocation, 5 s per invocation, 64 MiB of memory,
    /// inputs up to 16 MiB.
    pub fn new(namespace: impl Into<String>) -> Result<Policy, PluginError> {
        let namespace = namespace.into();
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(PluginError::Load(format!(
                "namespace {namespace:?} must be 1 to 64 characters of a-z, 0-9, '-' and '_'"
            )));
        }
        Ok(Policy {
            namespace,
            max_locks: 16,
            max_claims: 16,
            max_permits: 16,
            max_ttl: Duration::from_secs(60),
            max_wait: Duration::from_secs(10),
            max_retention: Duration::from_secs(24 * 3600),
            max_result_bytes: 64 << 10,
            max_record_bytes: 64 << 10,
            max_written_names: 1000,
            max_stored_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
            max_memory: 64 << 20,
            max_input: 16 << 20,
        })
    }

    /// The plugin's namespace. The plugin's names are stored as
    /// `namespace/name` in the client's keyspace, so the embedder can see
    /// (and, with care, touch) them: `client.lock("namespace/name")`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How long one invocation may run (see [`timeout`](Self::timeout)).
    pub fn time_limit(&self) -> Duration {
        self.timeout
    }

    /// Refuses limits that cannot work: a timeout of zero or over
    /// [`MAX_TIMEOUT`],
    /// no memory.
    #[cfg_attr(not(feature = "plugin"), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), PluginError> {
        let problem = if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            format!(
                "timeout {:?} must be above zero and at most an hour",
                self.timeout
            )
        } else if self.max_memory == 0 {
            "max_memory must be above zero".to_owned()
        } else {
            return Ok(());
        };
        Err(PluginError::Load(format!("invalid policy: {problem}")))
    }

    /// Most locks one invocation may hold at once.
    pub fn max_locks(mut self, max: usize) -> Self {
        self.max_locks = max;
        self
    }

    /// Most semaphore grants one invocation may hold at once (16 by
    /// default); each grant may take several permits.
    pub fn max_permits(mut self, max: usize) -> Self {
        self.max_permits = max;
        self
    }

    /// Most idempotency claims one invocation may hold at once.
    pub fn max_claims(mut self, max: usize) -> Self {
        self.max_claims = max;
        self
    }

    /// Longest lock TTL or in-progress lease a guest may ask for.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self
    }

    /// Longest wait a guest may ask for (a wait also ends at the
    /// invocation's deadline).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = max;
        self
    }

    /// Longest a guest may keep an idempotent result or a once-window.
    pub fn max_retention(mut self, max: Duration) -> Self {
        self.max_retention = max;
        self
    }

    /// Largest value a guest may write to a fenced record (64 KiB by
    /// default); a larger one fails with `too-large`. Record writes also
    /// count against [`max_stored_bytes`](Self::max_stored_bytes).
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Largest idempotent result a guest may store.
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// Most distinct names one invocation may write to: locks, read-write
    /// locks and semaphores taken (each keeps a fencing counter for its TTL
    /// plus the client's fence retention), idempotency keys claimed, `once`
    /// keys, counters changed, counter operation ids, sequences drawn from,
    /// fenced records written or deleted. Each may leave a key in Redis
    /// after the invocation; a call past the quota fails with
    /// `quota-exceeded` and writes nothing. Writing one name again does not
    /// count again.
    ///
    /// What a plugin can leave behind is bounded by invocations × this ×
    /// (key size, and record values up to `max_record_size`), for as long
    /// as the longest of: `max_retention` (results, `once` keys, operation
    /// ids, records written with a TTL), TTL + fence retention (fencing
    /// counters), the fence retention (the tombstone a delete leaves where
    /// there was no record), 48 h (a daily sequence's day). Counters, plain
    /// sequences and records written without a TTL never expire: they are
    /// the plugin's lasting state.
    pub fn max_written_names(mut self, max: usize) -> Self {
        self.max_written_names = max;
        self
    }

    /// Most bytes of idempotent results and cached failures one invocation
    /// may store, in all (each also within `max_result_size`). A `complete`
    /// or `fail` past it fails with `quota-exceeded` and stores nothing.
    pub fn max_stored_bytes(mut self, bytes: usize) -> Self {
        self.max_stored_bytes = bytes;
        self
    }

    /// The largest input an invocation accepts: a larger one is refused
    /// with [`PluginError::InputTooLarge`]
    /// before the plugin runs (the input is copied into the plugin's
    /// memory, so raise `max_memory` with it).
    pub fn max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// How long one invocation may run, host calls included; the plugin is
    /// stopped (and everything it held released) when it passes. One call
    /// can be given less with the plugin host's `RunOptions::timeout`.
    /// Above zero and at most [`MAX_TIMEOUT`], or loading fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Most linear memory one invocation may use, in bytes.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// The store name of a guest's `name`: always `namespace/name`. Since
    /// namespaces have no `/`, no guest name can reach another namespace.
    /// Key syntax (`{`, `}`, `*`) is refused as access denied, control
    /// characters and empty or oversized names as invalid.
    pub(crate) fn scoped(&self, what: &'static str, name: &str) -> Result<String, GuestError> {
        let refuse = |reason: String| GuestError::from(Error::invalid(what, reason));
        if name.is_empty() {
            return Err(refuse("must not be empty".into()));
        }
        if name.len() > MAX_GUEST_NAME_BYTES {
            return Err(refuse(format!(
                "is {} bytes long; the limit is {MAX_GUEST_NAME_BYTES}",
                name.len()
            )));
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(refuse(format!("contains the control character {c:?}")));
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '{' | '}' | '*')) {
            return Err(GuestError::AccessDenied(format!(
                "{what} {name:?} contains {c:?}: plugins may not use key syntax in names"
            )));
        }
        let mut scoped = String::with_capacity(self.namespace.len() + 1 + name.len());
        scoped.push_str(&self.namespace);
        scoped.push('/');
        scoped.push_str(name);
        Ok(scoped)
    }

    /// A guest-chosen duration in ms: zero means `default`; above `max` is a
    /// quota error.
    pub(crate) fn duration(
        &self,
        what: &str,
        ms: u64,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, GuestError> {
        let asked = if ms == 0 {
            default.min(max)
        } else {
            Duration::from_millis(ms)
        };
        if asked > max {
            return Err(GuestError::QuotaExceeded(format!(
                "{what} of {asked:?} is above the plugin's limit of {max:?}"
            )));
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_plain_words() {
        assert!(Policy::new("billing-2").is_ok());
        for bad in ["", "a/b", "A", "a b", "a{", "x".repeat(65).as_str()] {
            assert!(Policy::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_guest_name_lands_inside_its_namespace() {
        let policy = Policy::new("a").unwrap();
        for name in ["x", "../b/x", "b/x", ":x", "..", "/"] {
            let scoped = policy.scoped("lock name", name).unwrap();
            assert!(scoped.starts_with("a/"), "{name:?} -> {scoped}");
        }
        for name in ["", "{b}", "x}", "*", "x\0y", &"x".repeat(257)] {
            assert!(policy.scoped("lock name", name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn zero_means_default_and_above_the_limit_is_a_quota_error() {
        let policy = Policy::new("a").unwrap();
        let max = Duration::from_secs(10);
        let default = Duration::from_secs(30);
        assert_eq!(policy.duration("ttl", 0, default, max).unwrap(), max);
        assert_eq!(
            policy.duration("ttl", 5, default, max).unwrap(),
            Duration::from_millis(5)
        );
        assert!(matches!(
            policy.duration("ttl", 10_001, default, max),
            Err(GuestError::QuotaExceeded(_))
        ));
    }
}
