//! What tollgate reports through the [`metrics`](https://docs.rs/metrics)
//! facade when the feature `metrics` is on: install any recorder (a
//! Prometheus exporter, say) and these appear. Without the feature, or
//! without a recorder, recording costs nothing.
//!
//! | Name | Kind | Labels | Counts |
//! |---|---|---|---|
//! | [`LOCK_GRANTS`] | counter | | grants of locks (single store and Redlock), semaphore permits and read-write lock holds |
//! | [`LOCK_WAIT_SECONDS`] | histogram | | for each grant, the time from asking to the request that got it (monotonic clock): about zero uncontended |
//! | [`LOCK_NOT_GRANTED`] | counter | | acquisitions that ended without the lock: a refused `try_acquire`, or a wait that timed out |
//! | [`LEASES_LOST`] | counter | `kind` = `lock`, `claim`, `permit`, `rw_lock` (a lease that the watchdog finds lost: `lock` for locks, Redlock, permits and read-write holds alike) | leases found lost: by the watchdog, or by a release or store that found them gone |
//! | [`LEASE_RENEWALS`] | counter | `result` = `ok`, `lost`, `failed` | watchdog renewals of locks and in-progress claims |
//! | [`IDEMPOTENCY_CLAIMS`] | counter | `found` = `fresh`, `replayed`, `failed`, `in_progress`, `mismatch` | idempotency keys claimed, and what each found |
//! | [`PLUGIN_INVOCATIONS`] | counter | `plugin` (namespace), `outcome` = `ok`, `failed`, `panicked`, `timed_out`, `out_of_memory`, `trapped`, `input_too_large`, `host` | plugin invocations and how they ended |
//! | [`PLUGIN_INVOCATION_SECONDS`] | histogram | `plugin` | wall time of each invocation |
//! | [`PLUGIN_TRAPS`] | counter | `plugin`, `cause` (`plugin::TrapCause::name`) | traps other than panics, out of memory and timeouts |
//!
//! Lock and key names are never labels: their number is unbounded.

/// Locks granted.
pub const LOCK_GRANTS: &str = "tollgate_lock_grants_total";
/// Seconds from asking for a lock to the request that got it.
pub const LOCK_WAIT_SECONDS: &str = "tollgate_lock_wait_seconds";
/// Acquisitions that ended without the lock.
pub const LOCK_NOT_GRANTED: &str = "tollgate_lock_not_granted_total";
/// Leases (locks, in-progress claims) found lost.
pub const LEASES_LOST: &str = "tollgate_leases_lost_total";
/// Watchdog renewals, by result.
pub const LEASE_RENEWALS: &str = "tollgate_lease_renewals_total";
/// Idempotency keys claimed, by what was found.
pub const IDEMPOTENCY_CLAIMS: &str = "tollgate_idempotency_claims_total";
/// Plugin invocations, by plugin and outcome.
pub const PLUGIN_INVOCATIONS: &str = "tollgate_plugin_invocations_total";
/// Wall time of plugin invocations, by plugin.
pub const PLUGIN_INVOCATION_SECONDS: &str = "tollgate_plugin_invocation_seconds";
/// Plugin traps, by plugin and cause.
pub const PLUGIN_TRAPS: &str = "tollgate_plugin_traps_total";

// The recording points. Each is a no-op without the feature.

#[cfg(feature = "metrics")]
mod record {
    use std::time::Duration;

    pub(crate) fn lock_granted(waited: Duration) {
        metrics::counter!(super::LOCK_GRANTS).increment(1);
        metrics::histogram!(super::LOCK_WAIT_SECONDS).record(waited.as_secs_f64());
    }

    pub(crate) fn lock_not_granted() {
        metrics::counter!(super::LOCK_NOT_GRANTED).increment(1);
    }

    pub(crate) fn lease_lost(kind: &'static str) {
        metrics::counter!(super::LEASES_LOST, "kind" => kind).increment(1);
    }

    pub(crate) fn lease_renewal(result: &'static str) {
        metrics::counter!(super::LEASE_RENEWALS, "result" => result).increment(1);
    }

    pub(crate) fn claim_found(found: &'static str) {
        metrics::counter!(super::IDEMPOTENCY_CLAIMS, "found" => found).increment(1);
    }

    #[cfg(feature = "plugin")]
    pub(crate) fn plugin_invocation(
        plugin: &str,
        outcome: &'static str,
        trap: Option<&'static str>,
        elapsed: Duration,
    ) {
        let plugin = plugin.to_owned();
        metrics::counter!(super::PLUGIN_INVOCATIONS, "plugin" => plugin.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(super::PLUGIN_INVOCATION_SECONDS, "plugin" => plugin.clone())
            .record(elapsed.as_secs_f64());
        if let Some(cause) = trap {
            metrics::counter!(super::PLUGIN_TRAPS, "plugin" => plugin, "cause" => cause)
                .increment(1);
        }
    }
}

#[cfg(not(feature = "metrics"))]
#[allow(clippy::missing_const_for_fn)]
mod record {
    use std::time::Duration;

    pub(crate) fn lock_granted(_waited: Duration) {}
    pub(crate) fn lock_not_granted() {}
    pub(crate) fn lease_lost(_kind: &'static str) {}
    pub(crate) fn lease_renewal(_result: &'static str) {}
    pub(crate) fn claim_found(_found: &'static str) {}
    #[cfg(feature = "plugin")]
    pub(crate) fn plugin_invocation(
        _plugin: &str,
        _outcome: &'static str,
        _trap: Option<&'static str>,
        _elapsed: Duration,
    ) {
    }
}

pub(crate) use record::*;
