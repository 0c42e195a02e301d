//! A child process for tests that must kill a tollgate user with SIGKILL.
//!
//! `tollgate-test-helper hold-lock URL NAME TTL_MS`: takes the lock, prints
//! `granted FENCE` on stdout, then sleeps until killed.
//!
//! `tollgate-test-helper claim-and-hang URL NAMESPACE KEY LEASE_MS`: claims
//! an idempotency key (its lease renewed by the watchdog), prints `claimed`,
//! then sleeps until killed.
//!
//! `tollgate-test-helper hold-then-write URL NAME TTL_MS RESOURCE_URL RECORD`:
//! takes the lock (no watchdog), reads RECORD of the fenced resource, prints
//! `granted FENCE`, then waits for a line on stdin (the test pauses and
//! resumes it meanwhile). Then it writes `paused-holder` to RECORD with its
//! token and prints `write OUTCOME`, extends the lock and prints
//! `extend RESULT`, releases it and prints `release RESULT`.
//!
//! `tollgate-test-helper hold-then-put URL NAME TTL_MS RECORD`: takes the
//! lock (no watchdog), prints `granted FENCE`, waits for a line on stdin
//! (the test pauses and resumes it meanwhile), then writes `paused-holder`
//! to the fenced record RECORD through the guard and prints `put ok` or
//! `put stale TOKEN HIGHEST`.
//!
//! `tollgate-test-helper from-env`: opens a client from `$REDIS_URL` and
//! takes a lock, or prints the error.
//!
//! `tollgate-test-helper serial-numbers URL NAME COUNT BLOCK`: prints COUNT
//! numbers of sequence NAME (format `ORD-{date}-{seq:06}`, daily reset,
//! blocks of BLOCK), one per line.
//!
//! `tollgate-test-helper thread-count-after-drop URL`: uses every background
//! thread a client has (notifications, watchdog), drops the client and
//! prints how many `tollgate-*` threads are left a second later. The URL
//! `memory` uses an in-process store instead.

//! `--contend-worker …` is a worker process of the benchmark's
//! multi-process contention row (`tollgate_tests::bench`).

use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--contend-worker", ..] => {
            // A worker process of the benchmark's multi-process row.
            if let Err(error) = tollgate_tests::bench::contend_worker(&args[1..]) {
                eprintln!("contend-worker: {error}");
                std::process::exit(1);
            }
        }
        ["hold-lock", url, name, ttl_ms] => {
            let ttl = Duration::from_millis(ttl_ms.parse().expect("TTL_MS is a number"));
            let client = tollgate::Client::open(url).expect("client opens");
            let guard = client.lock(*name).ttl(ttl).acquire().expect("lock granted");
            println!("granted {}", guard.fencing_token());
            std::io::stdout().flush().expect("stdout flushes");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        ["claim-and-hang", url, namespace, key, lease_ms] => {
            let lease = Duration::from_millis(lease_ms.parse().expect("LEASE_MS is a number"));
            let client = tollgate::Client::open(url).expect("client opens");
            let payments = client.idempotency(*namespace).lease(lease);
            match payments.key(*key).begin().expect("begin") {
                tollgate::Begin::Fresh(claim) => {
                    println!("claimed");
                    std::io::stdout().flush().expect("stdout flushes");
                    std::thread::sleep(Duration::from_secs(3600));
                    drop(claim);
                }
                other => panic!("expected a fresh claim, got {other:?}"),
            }
        }
        ["hold-then-put", url, name, ttl_ms, record] => {
            let ttl = Duration::from_millis(ttl_ms.parse().expect("TTL_MS is a number"));
            let client = tollgate::Client::open(url).expect("client opens");
            let guard = client.lock(*name).ttl(ttl).acquire().expect("lock granted");
            println!("granted {}", guard.fencing_token());
            std::io::stdout().flush().expect("stdout flushes");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin reads");
            match guard.put(record, b"paused-holder") {
                Ok(()) => println!("put ok"),
                Err(tollgate::Error::StaleToken { token, highest, .. }) => {
                    println!("put stale {token} {highest}")
                }
                Err(e) => println!("put error {e}"),
            }
        }
        ["hold-then-write", url, name, ttl_ms, resource_url, record] => {
            use tollgate_tests::fenced::FencedResource;
            let ttl = Duration::from_millis(ttl_ms.parse().expect("TTL_MS is a number"));
            let client = tollgate::Client::open(url).expect("client opens");
            let mut resource = redis::Client::open(*resource_url)
                .and_then(|c| c.get_connection())
                .expect("the resource answers");
            let guard = client.lock(*name).ttl(ttl).acquire().expect("lock granted");
            let read = FencedResource::read(&mut resource, record);
            println!("granted {}", guard.fencing_token());
            std::io::stdout().flush().expect("stdout flushes");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin reads");
            let token = guard.fencing_token();
            let written =
                FencedResource::write(&mut resource, record, token, &read, "paused-holder");
            println!("write {written:?}");
            println!("extend {:?}", guard.extend(ttl).map_err(|e| e.to_string()));
            println!("release {:?}", guard.release().map_err(|e| e.to_string()));
        }
        ["from-env"] => match tollgate::Client::from_env() {
            Ok(client) => {
                let guard = client.lock("env").acquire().expect("lock granted");
                println!("granted {}", guard.fencing_token());
            }
            Err(error) => {
                println!("error {error}");
                std::process::exit(1);
            }
        },
        ["serial-numbers", url, name, count, block] => {
            let count: usize = count.parse().expect("COUNT is a number");
            let block: u64 = block.parse().expect("BLOCK is a number");
            let client = tollgate::Client::open(url).expect("client opens");
            let orders = client
                .sequence(*name)
                .format("ORD-{date}-{seq:06}")
                .expect("format is valid")
                .reset(tollgate::Reset::Daily)
                .block(block);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for _ in 0..count {
                let number = orders.next().expect("a serial number");
                writeln!(out, "{number}").expect("stdout writes");
            }
            out.flush().expect("stdout flushes");
        }
        ["thread-count-after-drop", url] => {
            let client = if *url == "memory" {
                tollgate::Client::in_memory()
            } else {
                tollgate::Client::open(url).expect("client opens")
            };
            let holder = client
                .lock("t")
                .ttl(Duration::from_secs(1))
                .watchdog()
                .acquire()
                .expect("granted");
            let other = client.clone();
            let waiter = std::thread::spawn(move || {
                other
                    .lock("t")
                    .wait(Duration::from_secs(5))
                    .acquire()
                    .expect("granted after release")
            });
            // Past the first renewal (at a third of the TTL), which starts
            // the watchdog's renewing thread.
            std::thread::sleep(Duration::from_millis(700));
            println!("running {}", tollgate_threads());
            drop(holder);
            drop(waiter.join().expect("waiter thread"));
            drop(client);
            std::thread::sleep(Duration::from_secs(1));
            println!("left {}", tollgate_threads());
        }
        _ => {
            eprintln!("usage: tollgate-test-helper hold-lock URL NAME TTL_MS");
            eprintln!("       tollgate-test-helper serial-numbers URL NAME COUNT BLOCK");
            eprintln!("       tollgate-test-helper thread-count-after-drop URL");
            eprintln!("       tollgate-test-helper from-env   (uses $REDIS_URL)");
            eprintln!(
                "       tollgate-test-helper hold-then-write URL NAME TTL_MS RESOURCE_URL RECORD"
            );
            eprintln!("       tollgate-test-helper claim-and-hang URL NAMESPACE KEY LEASE_MS");
            std::process::exit(2);
        }
    }
}

/// Threads of this process whose name starts with `tollgate-`, not counting
/// this program's own (named after the binary, `tollgate-test-h…`).
fn tollgate_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tollgate-") && !name.starts_with("tollgate-test"))
        .count()
}
