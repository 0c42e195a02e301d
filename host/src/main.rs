//! The `tollgate` command; everything it does is in [`tollgate::cli`].

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
