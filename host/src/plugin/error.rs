//! Errors of the plugin host: what a guest's call returns to the guest, and
//! what an invocation returns to the embedder.

use std::time::Duration;

use crate::error::Error;

/// The outcome of a host call that did not succeed. Every case but
/// [`Trap`](CallError::Trap) reaches the guest as one case of the WIT
/// `error` variant; `Trap` ends the invocation (a host bug or a misused
/// handle, never a guest's ordinary mistake).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The library refused or failed: one WIT case per `tollgate::Error`.
    #[error(transparent)]
    Tollgate(#[from] Error),
    /// The plugin's policy does not allow the call.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The call would exceed one of the plugin's quotas.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// Ends the invocation.
    #[error(transparent)]
    Trap(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for CallError {
    fn from(error: wasmtime::component::ResourceTableError) -> Self {
        CallError::Trap(error.into())
    }
}

/// Why an invocation of a plugin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not a component of the `tollgate:coord` plugin world, or
    /// it imports something the host does not grant.
    #[error("cannot load the plugin: {0}")]
    Load(String),
    /// The plugin ran and returned an error of its own.
    #[error("the plugin failed: {0}")]
    Failed(String),
    /// The plugin ran past its policy's time limit and was stopped.
    #[error("the plugin ran past its time limit of {0:?} and was stopped")]
    TimedOut(Duration),
    /// The guest panicked; its panic message and where. Everything it held
    /// was released.
    #[error("the plugin panicked: {0}")]
    Panicked(String),
    /// The plugin asked for more linear memory than its policy allows (in
    /// all its memories together): `requested` bytes against `limit`.
    /// Everything it held was released.
    #[error(
        "the plugin ran out of memory: it asked for {requested} bytes, over the policy's {limit}"
    )]
    OutOfMemory {
        /// The bytes the plugin would have had after the growth it asked for.
        requested: usize,
        /// The policy's limit (`Policy::max_memory`).
        limit: usize,
    },
    /// The input is larger than the policy allows; the plugin did not run.
    #[error("the input is {size} bytes, over the policy's limit of {limit}")]
    InputTooLarge {
        /// The input's size in bytes.
        size: usize,
        /// The policy's limit (`Policy::max_input`).
        limit: usize,
    },
    /// The plugin trapped: a table limit, an invalid operation, or a host
    /// call it misused (a panic without a message on stderr also ends
    /// here). Everything it held was released.
    #[error("the plugin trapped: {0}")]
    Trapped(String),
    /// The host could not set up the invocation.
    #[error("the host could not run the plugin: {0}")]
    Host(String),
}
