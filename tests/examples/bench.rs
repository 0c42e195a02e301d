//! tollgate's benchmark: every operation beside its floor and its peers,
//! measured in one run (see `tollgate_tests::bench` for what each column
//! means).
//!
//! ```text
//! cargo run --release -p tollgate-tests --example bench            # unpinned
//! cargo run --release -p tollgate-tests --example bench -- --pin   # CPU cost
//! cargo run --release -p tollgate-tests --example bench -- --quick # smoke run
//! ```
//!
//! Peers in the lock-cycle row: rslock (a dev-dependency, on a
//! current-thread tokio runtime), and redis-py's `Lock` when `python3` with
//! the `redis` package is on the path (otherwise the row says why not).
//! Every server is private, on loopback; `--pin` runs them and this process
//! on CPU 0. The multi-process contention row runs this program again as
//! its worker processes (`--contend-worker`).

use std::time::Duration;

use tollgate_tests::bench::{self, Options, Peer};

fn rslock_peer() -> Peer {
    Peer {
        name: "rslock 0.10 (async, one server)".into(),
        cycles: Box::new(|url, n| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let manager = rslock::LockManager::new(vec![url.to_owned()]);
                for _ in 0..n {
                    let lock = manager
                        .lock("rslock-bench", Duration::from_secs(10))
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    manager.unlock(&lock).await;
                }
                Ok(None)
            })
        }),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--contend-worker") {
        return bench::contend_worker(&args[1..]);
    }
    let mut options = Options::full();
    options.worker_exe = std::env::current_exe().ok();
    for arg in &args {
        match arg.as_str() {
            "--quick" => {
                options = Options {
                    pin: options.pin,
                    ..Options::quick()
                }
            }
            "--pin" => options.pin = true,
            "--no-topologies" => options.skip_topologies = true,
            "--no-guest" => options.skip_guest = true,
            _ => {
                eprintln!("usage: bench [--quick] [--pin] [--no-topologies] [--no-guest]");
                std::process::exit(2);
            }
        }
    }
    bench::run(
        &options,
        vec![rslock_peer(), bench::redis_py_peer()],
        &mut std::io::stdout(),
    )?;
    Ok(())
}
