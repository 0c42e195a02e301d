//! The fresh-machine set-up that README's two commands run first
//! (`scripts/wasm-target`), tried against fake toolchains: one that has the
//! wasm32-wasip2 target, one that lacks it with rustup present, and one that
//! lacks it without rustup.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A toolchain in a temp dir: a `rustc` that reports `sysroot/` as its
/// sysroot and, when asked, a `rustup` that logs its arguments and installs
/// the target the way rustup does (a `lib/rustlib/TARGET/lib` dir).
struct FakeToolchain {
    dir: PathBuf,
}

impl FakeToolchain {
    fn new(name: &str, with_target: bool, with_rustup: bool) -> FakeToolchain {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-fake-toolchain-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::create_dir_all(dir.join("sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
        if with_target {
            fs::create_dir_all(dir.join("sysroot/lib/rustlib/wasm32-wasip2/lib")).unwrap();
        }
        let sysroot = dir.join("sysroot");
        script(
            &dir.join("bin/rustc"),
            &format!(
                "[ \"$*\" = '--print sysroot' ] && echo '{}'",
                sysroot.display()
            ),
        );
        if with_rustup {
            script(
                &dir.join("bin/rustup"),
                &format!(
                    "echo \"$*\" >> '{log}'\n[ \"$*\" = 'target add wasm32-wasip2' ] && mkdir -p '{lib}'",
                    log = dir.join("rustup.log").display(),
                    lib = sysroot.join("lib/rustlib/wasm32-wasip2/lib").display(),
                ),
            );
        }
        FakeToolchain { dir }
    }

    /// Runs the set-up script with only this toolchain and the system's
    /// basic tools on PATH.
    fn run_setup(&self) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/wasm-target");
        Command::new(script)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.dir.join("bin").display()),
            )
            .env_remove("RUSTC")
            .output()
            .expect("the set-up script runs")
    }

    fn rustup_calls(&self) -> String {
        fs::read_to_string(self.dir.join("rustup.log")).unwrap_or_default()
    }

    fn has_target(&self) -> bool {
        self.dir
            .join("sysroot/lib/rustlib/wasm32-wasip2/lib")
            .is_dir()
    }
}

impl Drop for FakeToolchain {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn setup_does_nothing_when_the_wasm_target_is_installed() {
    let toolchain = FakeToolchain::new("present", true, true);
    let output = toolchain.run_setup();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    assert_eq!(toolchain.rustup_calls(), "", "rustup must not be called");
}

#[test]
fn setup_adds_a_missing_wasm_target_with_rustup_and_says_so() {
    let toolchain = FakeToolchain::new("missing", false, true);
    let output = toolchain.run_setup();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(toolchain.rustup_calls(), "target add wasm32-wasip2\n");
    assert!(toolchain.has_target());
    assert!(
        stderr(&output).contains("rustup target add wasm32-wasip2"),
        "stderr says what it does: {}",
        stderr(&output)
    );
    // Once installed, the next run is silent.
    let again = toolchain.run_setup();
    assert!(again.status.success());
    assert_eq!(toolchain.rustup_calls(), "target add wasm32-wasip2\n");
}

#[test]
fn setup_without_rustup_fails_with_one_line_saying_what_to_install() {
    let toolchain = FakeToolchain::new("no-rustup", false, false);
    let output = toolchain.run_setup();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    assert!(message.contains("wasm32-wasip2"), "{message}");
    assert!(message.contains("rustup"), "{message}");
}

/// `cargo tree` of the `tollgate` package with `args`, as text.
fn tollgate_tree(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["tree", "-p", "tollgate", "-e", "normal", "--offline"])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_service_that_takes_the_default_features_compiles_no_wasmtime_and_no_clap() {
    let client_only = tollgate_tree(&[]);
    assert!(!client_only.contains("wasmtime"), "{client_only}");
    assert!(!client_only.contains("clap"), "{client_only}");
    let host = tollgate_tree(&["--features", "plugin"]);
    assert!(host.contains("wasmtime"));
    assert!(!host.contains("clap"));
}
