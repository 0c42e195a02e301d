//! The `tollgate` command, built in this package too so that the CLI
//! integration tests get its path from Cargo (`CARGO_BIN_EXE_tollgate-cli`):
//! Cargo only tells a package's tests about its own binaries, and building
//! the `tollgate` package's binary from a test would start a second Cargo
//! build of the host with another feature set. Same code as `tollgate`:
//! both are `tollgate::cli::main`.

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
