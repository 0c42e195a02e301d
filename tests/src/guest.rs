//! Builds the guest plugins for `wasm32-wasip2` once per test process, in
//! the guest workspace's own target dir (`guest/target`), or in
//! `$CARGO_TARGET_DIR` when that is set (the nested cargo would use it).

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
    let guest = repo_root().join("guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Relative to the current directory, for both cargo and us.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| guest.join("target"));
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
        .arg("--target-dir")
        .arg(&target)
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
    let file: PathBuf = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// The test plugin (`guest/plugins/test-plugin`), built once per process.
pub fn test_plugin() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build_plugin("tollgate-test-plugin"))
}
