//! The error type of the generated host traits.

use crate::sandbox::GuestError;
pub use crate::sandbox::PluginError;

/// The outcome of a host call that did not succeed. A guest error reaches
/// the guest as the WIT `error` case of the same name; `Trap` ends the
/// invocation (a host bug or a misused handle, never a guest's ordinary
/// mistake).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// Reaches the guest.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// Ends the invocation.
    #[error(transparent)]
    Trap(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for CallError {
    fn from(error: wasmtime::component::ResourceTableError) -> Self {
        CallError::Trap(error.into())
    }
}
