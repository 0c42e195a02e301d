//! The guest SDK's own tests, run natively: plugin code under plain
//! `cargo test`, served in-process with the host's rules. Runs the guest
//! workspace's `cargo test` (its SDK tests, doctests and the example
//! plugins' tests) and checks that they ran and passed.

use std::path::Path;
use std::process::Command;

#[test]
fn plugin_code_runs_under_plain_cargo_test_with_the_hosts_rules() {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["test", "--workspace", "--manifest-path"])
        .arg(guest.join("Cargo.toml"))
        // The guest workspace's own target dir, as for its wasm builds.
        .env("CARGO_TARGET_DIR", guest.join("target"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the guest workspace's native tests failed:\n{stdout}\n{stderr}"
    );
    // Not a vacuous pass: the SDK's tests, a plugin's scenario tests and the
    // runnable doc examples all ran.
    for test in [
        "invocations_on_one_sandbox_exclude_each_other_under_a_lock ... ok",
        "names_are_checked_as_the_host_checks_them ... ok",
        "concurrent_retries_of_one_request_charge_once ... ok",
        "concurrent_reservations_never_sell_more_than_the_stock ... ok",
        "an_instance_paused_past_its_lock_cannot_overwrite_the_next_callers_balance ... ok",
        "src/testing.rs - testing",
    ] {
        assert!(stdout.contains(test), "{test:?} did not run:\n{stdout}");
    }
}
