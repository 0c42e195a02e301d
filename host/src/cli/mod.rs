//! The `tollgate` command (feature `cli`): runs plugins, and shows operators
//! what is held in a store.
//!
//! ```text
//! tollgate run PLUGIN.wasm [--input TEXT | --input-file FILE] [--redis URL]
//!                          [--namespace NS] [--timeout DUR] [--instances N]
//! tollgate locks [PATTERN] [--redis URL] [--limit N]
//! tollgate unlock NAME --force [--redis URL]
//! tollgate counter NAME [--redis URL]
//! tollgate inspect NAME [--redis URL]
//! ```
//!
//! `--redis` defaults to the `REDIS_URL` environment variable. Durations
//! are written `500ms`, `2s`, `1m`, `1h` or `1m30s`. Every command has
//! `--help`.
//!
//! Errors are one line on stderr, starting with `tollgate: `. The exit codes
//! are stable, for scripts:
//!
//! | Code | Meaning |
//! |------|---------|
//! | 0 | ok |
//! | 1 | the plugin returned an error, trapped or timed out (with `--instances`: at least one instance did) |
//! | 2 | usage or configuration error: bad arguments, no store given to an operator command, an unreadable file, `unlock` without `--force` |
//! | 3 | the store is unavailable: it cannot be reached, or did not answer in time |
//! | 4 | the plugin cannot be loaded: not a component of the `tollgate:coord` plugin world |
//! | 5 | no such object: `unlock` found no lock held (nothing was removed), `counter` a name never set |
//! | 6 | the store refused the request or answered unexpectedly |
//!
//! A plugin that finds the store unavailable sees the `unavailable` error
//! itself; what it does with it decides the exit code (the example plugins
//! fail, so `run` exits with 1).

mod duration;
mod exit;
mod operator;
mod run;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

/// Runs the `tollgate` command with the process's arguments and returns its
/// exit code. The `tollgate` binary is this function; it is public so that
/// another binary can ship the same command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return ExitCode::from(argument_error(error)),
    };
    if cli.verbose {
        let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tollgate=debug"));
        // A line as each operation's span closes: what, on which name, how
        // it ended, how long it took.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .with_target(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .init();
    } else {
        // Warnings only (a key skipped, a release that failed, ...): what an
        // operator should see without asking.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new("tollgate=warn"))
            .with_target(false)
            .without_time()
            .init();
    }
    let redis = cli.store.redis.as_deref();
    let result = match cli.command {
        Command::Run(args) => run::run(args, redis, cli.json),
        Command::Locks(args) => operator::locks(args, redis, cli.json),
        Command::Unlock(args) => operator::unlock(args, redis),
        Command::Counter(args) => operator::counter(args, redis, cli.json),
        Command::Inspect(args) => operator::inspect(args, redis, cli.json),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            eprintln!("tollgate: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// Prints what clap found wrong with the arguments, in one line, and
/// returns the exit code; `--help` and `--version` print in full and exit 0.
fn argument_error(error: clap::Error) -> u8 {
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            return u8::try_from(error.exit_code()).unwrap_or(exit::USAGE);
        }
        _ => {}
    }
    let rendered = error.render().to_string();
    // clap's first paragraph says what is wrong.
    let what = rendered.split("\n\n").next().unwrap_or_default();
    let what = what.strip_prefix("error: ").unwrap_or(what);
    // Which command's help to point at: the first word naming a subcommand.
    let command = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .filter(|arg| {
            Cli::command()
                .get_subcommands()
                .any(|sub| sub.get_name() == arg)
        })
        .map_or_else(|| "tollgate".to_owned(), |sub| format!("tollgate {sub}"));
    // clap's tips ("a similar subcommand exists: 'run'") come later.
    let tips: String = rendered
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tip: "))
        .map(|tip| format!("; {tip}"))
        .collect();
    eprintln!(
        "tollgate: {}{tips} (see '{command} --help')",
        exit::one_line(what).trim_end_matches('.')
    );
    exit::USAGE
}

/// Locks, idempotent actions, counters and serial numbers on Redis: run
/// tollgate plugins, and see what is held.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, after_help = exit::HELP)]
struct Cli {
    /// Log what tollgate does (locks, waits, claims, invocations) to
    /// stderr; TOLLGATE_LOG (e.g. `tollgate=trace`) chooses what.
    #[arg(long, short, global = true)]
    verbose: bool,
    /// Print results as JSON (run, locks, counter, inspect): one document
    /// on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plugin's handler and print its output.
    #[command(after_help = exit::SEE_HELP)]
    Run(RunArgs),
    /// List held locks: name, fencing token, remaining TTL, holder.
    #[command(after_help = exit::SEE_HELP)]
    Locks(LocksArgs),
    /// Remove a lock whoever holds it (needs --force).
    #[command(after_help = exit::SEE_HELP)]
    Unlock(UnlockArgs),
    /// Print a counter's value (exit 5 when it was never set).
    #[command(after_help = exit::SEE_HELP)]
    Counter(NameArgs),
    /// Show what a name holds: its lock (holder, fencing token, TTL),
    /// counter, sequences, semaphore permits out, fenced record, and for
    /// NAMESPACE/KEY the idempotency record of
    /// KEY in NAMESPACE (a plugin's names are NAMESPACE/NAME).
    #[command(after_help = exit::SEE_HELP)]
    Inspect(NameArgs),
}

/// Where the store is.
#[derive(Debug, Args)]
struct StoreArgs {
    /// The Redis server, e.g. redis://127.0.0.1:6379/ (rediss:// for TLS;
    /// redis+cluster://host:port,host:port/ for a cluster;
    /// redis+sentinel://host:26379,host:26380/MASTER for the master that
    /// Redis Sentinel names). Before or after the subcommand.
    #[arg(
        long,
        value_name = "URL",
        env = "REDIS_URL",
        hide_env_values = true,
        global = true
    )]
    redis: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The plugin: a wasm component built against tollgate:coord.
    #[arg(value_name = "PLUGIN.wasm")]
    plugin: PathBuf,
    /// The input handed to the plugin [default: empty].
    #[arg(long, value_name = "TEXT", conflicts_with = "input_file")]
    input: Option<String>,
    /// Read the input from a file ('-' for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "inputs")]
    input_file: Option<PathBuf>,
    /// Run once per line of FILE, in order, on one store (so that a
    /// sequence of calls works on the embedded store too).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "instances"])]
    inputs: Option<PathBuf>,
    /// Where the plugin's names live (NS/NAME in the store)
    /// [default: the file name, e.g. order_numbers for order_numbers.wasm].
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// How long one invocation may run before it is stopped, at most 1h
    /// [default: 5s].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    timeout: Option<Duration>,
    /// Run N instances at once, each on its own thread, and print each
    /// output after its instance number.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    instances: u16,
    /// Most linear memory one invocation may use [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = duration::parse_size)]
    max_memory: Option<u64>,
    /// Most locks one invocation may hold at once [default: 16].
    #[arg(long, value_name = "N")]
    max_locks: Option<usize>,
    /// Largest input accepted; a larger one is refused before the plugin
    /// runs.
    #[arg(long, value_name = "SIZE", value_parser = duration::parse_size,
          default_value = "16MiB")]
    max_input: u64,
    /// Compile the plugin again instead of using (and filling) the cache of
    /// compiled plugins ($TOLLGATE_CACHE_DIR, else ~/.cache/tollgate).
    #[arg(long)]
    no_cache: bool,
}

#[derive(Debug, Args)]
struct LocksArgs {
    /// Names to show: '*' any characters, '?' one, '[abc]' a class.
    #[arg(value_name = "PATTERN", default_value = "*")]
    pattern: String,
    /// Show at most N locks.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    limit: u32,
}

#[derive(Debug, Args)]
struct UnlockArgs {
    /// The lock's name (a plugin's locks are NAMESPACE/NAME).
    #[arg(value_name = "NAME")]
    name: String,
    /// Really remove it: a holder that is still running loses mutual
    /// exclusion (its next call on the lock fails with not-held).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct NameArgs {
    /// The name (a plugin's names are NAMESPACE/NAME).
    #[arg(value_name = "NAME")]
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
