//! Builds the guest plugins for `wasm32-wasip2` once per test process, in
//! the guest workspace's own target dir (`guest/target`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root (the parent of this crate).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Builds the plugin crate `package` of the guest workspace (release, for
/// `wasm32-wasip2`) and returns its component bytes. Panics with what to
/// install when the build cannot run.
pub fn build_plugin(package: &str) -> Vec<u8> {
    let file = plugin_file(package);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// Makes sure the toolchain can build for `wasm32-wasip2`, once per process:
/// runs `scripts/wasm-target`, which adds the target with rustup when it is
/// missing (saying so on stderr) and otherwise fails with what to install.
pub fn ensure_wasm_target() -> Result<(), String> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let script = repo_root().join("scripts/wasm-target");
            let output = Command::new(&script)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            eprint!("{stderr}");
            if output.status.success() {
                Ok(())
            } else {
                Err(stderr.trim().to_owned())
            }
        })
        .clone()
}

/// Builds the plugin crate `package` like [`build_plugin`] and returns the
/// path of its `.wasm` file (named after the crate, `-` as `_`).
pub fn plugin_file(package: &str) -> PathBuf {
    if let Err(why) = ensure_wasm_target() {
        panic!("cannot build the guest {package}: {why}");
    }
    let guest = repo_root().join("guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--manifest-path")
        .arg(guest.join("Cargo.toml"))
        // Always the guest workspace's own target dir, even when the tests
        // run with CARGO_TARGET_DIR set (which the child would inherit).
        .env("CARGO_TARGET_DIR", guest.join("target"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guest {package}: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nInstall the target with `rustup target add wasm32-wasip2`."
            } else {
                ""
            };
        panic!("building the guest {package} failed:\n{stderr}{hint}");
    }
    guest
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// The test plugin (`guest/plugins/test-plugin`), built once per process.
pub fn test_plugin() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build_plugin("tollgate-test-plugin"))
}
