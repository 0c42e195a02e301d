//! Generated from `wit/coord.wit`; nothing generated leaks into the public
//! API.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tollgate:coord/plugin",
    imports: { default: trappable },
    with: {
        "tollgate:coord/lock.guard": crate::sandbox::HeldLock,
        "tollgate:coord/idempotency.claim": crate::sandbox::HeldClaim,
        "tollgate:coord/semaphore.permit": crate::sandbox::HeldPermit,
        "tollgate:coord/rw-lock.hold": crate::sandbox::HeldRw,
    },
    trappable_error_type: {
        "tollgate:coord/types.error" => super::error::CallError,
    },
});
