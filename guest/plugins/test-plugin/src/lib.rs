//! A tollgate plugin driven by text commands, for the host's integration
//! tests.
//!
//! The input is UTF-8: a command and its arguments, separated by spaces. The
//! output is UTF-8 text. A tollgate call that fails gives `Ok("error: CASE")`,
//! where `CASE` is the WIT error case in kebab-case (`error: timeout`,
//! `error: quota-exceeded`, ...), so tests can assert on it; a malformed
//! command gives `Err` with a usage message.
//!
//! Locks are taken with the TTL given below and no wait unless stated.
//!
//! | Command                         | Does                                                                                                                                   | Returns                         |
//! |---------------------------------|----------------------------------------------------------------------------------------------------------------------------------------|---------------------------------|
//! | `critical NAME ITERATIONS COUNTER` | ITERATIONS times: acquire NAME (TTL 10 s, wait 10 s), `get` COUNTER, `set` it to value + 1 (not atomic: exact only under mutual exclusion), release | `ok`                  |
//! | `hold NAME`                     | acquire NAME (TTL 30 s); the guard drops at return                                                                                     | `held TOKEN`                    |
//! | `forget NAME`                   | acquire NAME (TTL 30 s) and `std::mem::forget` the guard                                                                               | `forgot TOKEN`                  |
//! | `panic-holding NAME`            | acquire NAME (TTL 30 s), then `panic!` (the invocation traps)                                                                         | —                               |
//! | `abort-holding NAME`            | acquire NAME (TTL 30 s), then `std::process::abort()` (a trap without a panic message)                                                | —                               |
//! | `hold-sleep-put NAME TTL_MS SLEEP_MS RECORD VALUE` | acquire NAME with that TTL, sleep SLEEP_MS, then write VALUE to fenced record RECORD through the guard          | `put TOKEN` or `error: stale-token` |
//! | `permit-critical NAME PERMITS SLEEP_MS` | take 1 of PERMITS permits of semaphore NAME (wait 10 s), add 1 to counter `inside`, sleep, take 1 off, release | `inside N` (N counted itself) |
//! | `rw NAME read\|write SLEEP_MS`   | take a read or write hold of NAME (wait 10 s), add 1 to counter `readers` or `writers`, read both, sleep, take 1 off, release | `readers R writers W` as seen inside |
//! | `read-then-write NAME`          | take a read hold of NAME, then ask for the write hold                                                                                  | `error: would-deadlock`         |
//! | `put RECORD VALUE TOKEN`        | write VALUE to fenced record RECORD with TOKEN                                                                                         | `put`                           |
//! | `get-record RECORD`             | read fenced record RECORD                                                                                                              | `VALUE TOKEN` or `none`         |
//! | `recurse`                       | recurse without end (the stack overflows)                                                                                              | —                               |
//! | `loop-holding NAME`             | acquire NAME (TTL 30 s), then loop forever                                                                                             | —                               |
//! | `alloc BYTES`                   | allocate BYTES bytes and write to every 4 KiB page (traps when memory runs out)                                                        | `allocated`                     |
//! | `grow-fresh PAGES`              | grow linear memory by PAGES 64 KiB pages, look for a byte an earlier invocation left there, then fill them all                      | `fresh` or `stale at OFFSET`    |
//! | `try NAME`                      | try-acquire NAME (TTL 30 s), holding nothing at return                                                                                 | `granted TOKEN` or `busy`       |
//! | `hold-many COUNT`               | acquire `m0` .. `m{COUNT-1}` (TTL 30 s), keeping every guard until return                                                              | `held COUNT` or `error at K: CASE` |
//! | `lock-ttl NAME TTL_MS`          | acquire NAME with that TTL                                                                                                             | `held TOKEN`                    |
//! | `lock-wait NAME WAIT_MS`        | acquire NAME with that wait (host-default TTL)                                                                                         | `held TOKEN`                    |
//! | `incr NAME DELTA`               | add DELTA to counter NAME                                                                                                              | `value N`                       |
//! | `get NAME`                      | read counter NAME                                                                                                                      | `value N`                       |
//! | `set NAME VALUE`                | set counter NAME                                                                                                                       | `ok`                            |
//! | `idem KEY SLEEP_MS COUNTER`     | idempotent run on KEY (wait 10 s) whose action increments COUNTER, sleeps SLEEP_MS and returns `result-of-KEY`                         | `fresh RESULT` or `replayed RESULT` |
//! | `once KEY WINDOW_MS`            | `once(KEY, WINDOW_MS)`                                                                                                                 | `true` or `false`               |
//! | `seq NAME FORMAT [daily]`       | the next number of sequence NAME in FORMAT (`-` for none), reset daily if asked                                                        | the number                      |
//! | `result-size BYTES`             | idempotent run on key `big` whose action returns BYTES bytes                                                                           | `ok`                            |
//! | `sleep-holding NAME MS`         | acquire NAME (renewed), then sleep MS                                                                                                  | `slept`                         |
//! | `drop-many COUNT`               | acquire and drop locks `d0..d{COUNT-1}` one after another                                                                              | `dropped COUNT`                 |
//! | `write-many KIND COUNT`         | write to COUNT distinct names `w0..` of KIND: `lock` (acquire, drop), `counter` (incr), `op` (incr_once on counter `w` with op ids `w0..`), `once`, `seq`, `idem` (an idempotent run storing 1 byte) | `wrote COUNT` or `error at K: CASE` |
//! | `store-many COUNT BYTES`        | COUNT idempotent runs on keys `s0..`, each storing BYTES bytes                                                                          | `stored COUNT` or `error at K: CASE` |
//! | `hold-and-spin COUNT`           | acquire `h0..` and claim idempotency keys `h0..` (COUNT each, TTL and lease 30 s), then loop forever                                   | —                               |
//! | `print TEXT`                    | write TEXT to stdout and `err: TEXT` to stderr                                                                                           | `printed`                       |
//! | `env`                           | count the environment variables and arguments the host grants                                                                          | `env N args M`                  |
//! | `file PATH`                     | try to read a file                                                                                                                     | `read N bytes` or `no file access` |
//!
//! For `idem`: an action that ran and failed gives `error: CASE` (the case of
//! the counter's failure), a cached earlier failure `error: failed: TEXT`,
//! another caller still running it `error: in-progress`.

use std::hint::black_box;
use std::time::Duration;

use tollgate_guest::{Error, Failure, Plugin, RunError, counter, idempotent, lock, once, sequence};

const LOCK_TTL: Duration = Duration::from_secs(30);

struct TestPlugin;

impl Plugin for TestPlugin {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let input = String::from_utf8(input).map_err(|e| format!("input is not UTF-8: {e}"))?;
        let args: Vec<&str> = input.split_whitespace().collect();
        let reply = match command(&args)? {
            Ok(text) => text,
            Err(e) => format!("error: {}", e.code()),
        };
        Ok(reply.into_bytes())
    }
}

tollgate_guest::export_plugin!(TestPlugin);

/// Runs one command: the outer `Err` is a malformed command, the inner one a
/// tollgate error.
fn command(args: &[&str]) -> Result<Result<String, Error>, String> {
    Ok(match args {
        ["critical", name, iterations, counter_name] => {
            critical(name, number(iterations)?, counter_name)
        }
        ["hold", name] => lock(*name)
            .ttl(LOCK_TTL)
            .acquire()
            .map(|g| format!("held {}", g.fencing_token())),
        ["forget", name] => lock(*name).ttl(LOCK_TTL).acquire().map(|g| {
            let token = g.fencing_token();
            std::mem::forget(g);
            format!("forgot {token}")
        }),
        ["panic-holding", name] => {
            let guard = lock(*name).ttl(LOCK_TTL).acquire();
            panic!("panic-holding: panicking while holding {guard:?}");
        }
        ["abort-holding", name] => {
            let _guard = lock(*name).ttl(LOCK_TTL).acquire();
            std::process::abort(); // wasm `unreachable`, no panic message
        }
        ["recurse"] => Ok(format!("depth {}", recurse(black_box(0)))),
        ["hold-sleep-put", name, ttl_ms, sleep_ms, record_name, value] => {
            match lock(*name)
                .ttl(Duration::from_millis(number(ttl_ms)?))
                .acquire()
            {
                Ok(guard) => {
                    std::thread::sleep(Duration::from_millis(number(sleep_ms)?));
                    guard
                        .put(record_name, value.as_bytes())
                        .map(|()| format!("put {}", guard.fencing_token()))
                }
                Err(e) => Err(e),
            }
        }
        ["permit-critical", name, permits, sleep_ms] => {
            permit_critical(name, number(permits)?, number(sleep_ms)?)
        }
        ["rw", name, mode, sleep_ms] => rw_critical(name, mode, number(sleep_ms)?),
        ["read-then-write", name] => tollgate_guest::rw_lock(*name).read().and_then(|_read| {
            tollgate_guest::rw_lock(*name)
                .write()
                .map(|_| "wrote while reading".to_owned())
        }),
        ["put", record_name, value, token] => tollgate_guest::record(*record_name)
            .put(value.as_bytes(), number(token)?)
            .map(|()| "put".to_owned()),
        ["get-record", record_name] => tollgate_guest::record(*record_name).get().map(|entry| {
            entry.map_or("none".to_owned(), |e| {
                format!("{} {}", String::from_utf8_lossy(&e.value), e.token)
            })
        }),
        ["loop-holding", name] => {
            let guard = lock(*name).ttl(LOCK_TTL).acquire();
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
                black_box(&guard);
            }
        }
        ["alloc", bytes] => {
            let bytes: usize = number(bytes)?;
            let mut buf = vec![0u8; bytes];
            for i in (0..bytes).step_by(4096) {
                buf[i] = 1;
            }
            black_box(&buf);
            Ok("allocated".to_owned())
        }
        ["grow-fresh", pages] => Ok(grow_fresh(number(pages)?)?),
        ["try", name] => lock(*name).ttl(LOCK_TTL).try_acquire().map(|g| match g {
            Some(g) => format!("granted {}", g.fencing_token()),
            None => "busy".to_owned(),
        }),
        ["hold-many", count] => {
            let count: usize = number(count)?;
            let mut guards = Vec::with_capacity(count);
            for k in 0..count {
                match lock(format!("m{k}")).ttl(LOCK_TTL).acquire() {
                    Ok(g) => guards.push(g),
                    Err(e) => return Ok(Ok(format!("error at {k}: {}", e.code()))),
                }
            }
            Ok(format!("held {}", guards.len()))
        }
        ["lock-ttl", name, ttl_ms] => lock(*name)
            .ttl(Duration::from_millis(number(ttl_ms)?))
            .acquire()
            .map(|g| format!("held {}", g.fencing_token())),
        ["lock-wait", name, wait_ms] => lock(*name)
            .wait(Duration::from_millis(number(wait_ms)?))
            .acquire()
            .map(|g| format!("held {}", g.fencing_token())),
        ["incr", name, delta] => counter(*name)
            .incr(number(delta)?)
            .map(|v| format!("value {v}")),
        ["get", name] => counter(*name).get().map(|v| format!("value {v}")),
        ["set", name, value] => counter(*name).set(number(value)?).map(|()| "ok".to_owned()),
        ["idem", key, sleep_ms, counter_name] => Ok(idem(
            key,
            Duration::from_millis(number(sleep_ms)?),
            counter_name,
        )),
        ["once", key, window_ms] => {
            once(key, Duration::from_millis(number(window_ms)?)).map(|first| first.to_string())
        }
        ["seq", name, format] => next_in_sequence(name, format, tollgate_guest::Reset::Never),
        ["seq", name, format, "daily"] => {
            next_in_sequence(name, format, tollgate_guest::Reset::Daily)
        }
        ["result-size", bytes] => {
            let bytes: usize = number(bytes)?;
            match idempotent("big").run(|| Ok(vec![b'x'; bytes])) {
                Ok(_) => Ok("ok".to_owned()),
                Err(e) => Ok(run_error(e)),
            }
        }
        ["sleep-holding", name, sleep_ms] => {
            let _guard = lock(*name).ttl(LOCK_TTL).watchdog().acquire();
            std::thread::sleep(Duration::from_millis(number(sleep_ms)?));
            Ok("slept".to_owned())
        }
        ["drop-many", count] => {
            let count: u64 = number(count)?;
            for k in 0..count {
                if let Err(e) = lock(format!("d{k}")).ttl(LOCK_TTL).acquire() {
                    return Ok(Ok(format!("error at {k}: {}", e.code())));
                }
            }
            Ok(format!("dropped {count}"))
        }
        ["write-many", kind, count] => Ok(write_many(kind, number(count)?)?),
        ["store-many", count, bytes] => {
            let value = vec![b'x'; number(bytes)?];
            for k in 0..number::<u64>(count)? {
                if let Err(e) = idempotent(format!("s{k}")).run(|| Ok(value.clone())) {
                    return Ok(Ok(format!("error at {k}: {}", run_error(e))));
                }
            }
            Ok(format!("stored {count}"))
        }
        ["hold-and-spin", count] => {
            let count: u64 = number(count)?;
            let mut held = Vec::new();
            let mut claims = Vec::new();
            for k in 0..count {
                held.push(lock(format!("h{k}")).ttl(LOCK_TTL).acquire());
                claims.push(idempotent(format!("h{k}")).lease(LOCK_TTL).begin());
            }
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
                black_box((&held, &claims));
            }
        }
        // For the benchmark: lock cycles inside the guest, and an empty call.
        ["lock-cycles", name, count] => lock_cycles(name, number(count)?),
        ["noop"] => Ok("ok".to_owned()),
        // Counts this instance's calls in its memory (and on its heap): a
        // fresh instance answers 1 however many ran before it.
        ["visits"] => {
            static VISITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = VISITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let heap = vec![n; 1024];
            Ok(format!("visit {}", heap.iter().max().copied().unwrap_or(0)))
        }
        ["print-then-lock", text, name, wait_ms] => {
            println!("{text}");
            lock(*name)
                .ttl(LOCK_TTL)
                .wait(Duration::from_millis(number(wait_ms)?))
                .acquire()
                .map(|_| "locked".to_owned())
        }
        ["print", text] => {
            println!("{text}");
            eprintln!("err: {text}");
            Ok("printed".to_owned())
        }
        ["env"] => Ok(format!(
            "env {} args {}",
            std::env::vars().count(),
            std::env::args().count()
        )),
        ["file", path] => Ok(match std::fs::read(path) {
            Ok(bytes) => format!("read {} bytes", bytes.len()),
            Err(_) => "no file access".to_owned(),
        }),
        _ => return Err(format!("unknown command or wrong arguments: {args:?}")),
    })
}

/// Takes and releases the lock `name` `count` times.
fn lock_cycles(name: &str, count: u64) -> Result<String, Error> {
    for _ in 0..count {
        lock(name).ttl(LOCK_TTL).acquire()?.release()?;
    }
    Ok(format!("cycled {count}"))
}

/// Writes to `count` distinct names of `kind`; stops at the first error.
fn write_many(kind: &str, count: u64) -> Result<String, String> {
    for k in 0..count {
        let name = format!("w{k}");
        let written = match kind {
            "lock" => lock(name.as_str()).ttl(LOCK_TTL).acquire().map(drop),
            "counter" => counter(name.as_str()).incr(1).map(drop),
            "op" => counter("w").incr_once(&name, 1).map(drop),
            "once" => once(&name, Duration::from_secs(60)).map(drop),
            "seq" => sequence(name.as_str()).next_raw().map(drop),
            "idem" => match idempotent(name.as_str()).run(|| Ok(vec![b'x'])) {
                Ok(_) => Ok(()),
                Err(e) => return Ok(format!("error at {k}: {}", run_error(e))),
            },
            other => return Err(format!("unknown kind {other:?}")),
        };
        if let Err(e) = written {
            return Ok(format!("error at {k}: {}", e.code()));
        }
    }
    Ok(format!("wrote {count}"))
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| format!("bad number {text:?}: {e}"))
}

fn critical(name: &str, iterations: u64, counter_name: &str) -> Result<String, Error> {
    let lock = lock(name)
        .ttl(Duration::from_secs(10))
        .wait(Duration::from_secs(10));
    let counter = counter(counter_name);
    for _ in 0..iterations {
        let guard = lock.acquire()?;
        let value = counter.get()?;
        counter.set(value + 1)?;
        guard.release()?;
    }
    Ok("ok".to_owned())
}

fn idem(key: &str, sleep: Duration, counter_name: &str) -> String {
    let outcome = idempotent(key).wait(Duration::from_secs(10)).run(|| {
        counter(counter_name)
            .incr(1)
            .map_err(|e| format!("error: {}", e.code()))?;
        std::thread::sleep(sleep);
        Ok(format!("result-of-{key}").into_bytes())
    });
    match outcome {
        Ok(outcome) => format!(
            "{} {}",
            if outcome.replayed {
                "replayed"
            } else {
                "fresh"
            },
            String::from_utf8_lossy(&outcome.value)
        ),
        Err(e) => run_error(e),
    }
}

/// Takes 1 of `permits` permits of `name` (wait 10 s) and counts itself in
/// counter `inside` while it sleeps: the reply is how many were inside,
/// itself included.
fn permit_critical(name: &str, permits: u32, sleep_ms: u64) -> Result<String, Error> {
    let permit = tollgate_guest::semaphore(name, permits)
        .wait(Duration::from_secs(10))
        .acquire()?;
    let inside = counter("inside");
    let seen = inside.incr(1)?;
    std::thread::sleep(Duration::from_millis(sleep_ms));
    inside.decr(1)?;
    permit.release()?;
    Ok(format!("inside {seen}"))
}

/// Takes a `read` or `write` hold of `name` (wait 10 s) and marks itself in
/// counters `readers` / `writers` while it sleeps: the reply is what it
/// saw inside (`readers R writers W`, itself included).
fn rw_critical(name: &str, mode: &str, sleep_ms: u64) -> Result<String, Error> {
    let lock = tollgate_guest::rw_lock(name).wait(Duration::from_secs(10));
    let (guard, mine) = match mode {
        "write" => (lock.write()?, counter("writers")),
        _ => (lock.read()?, counter("readers")),
    };
    mine.incr(1)?;
    let seen = format!(
        "readers {} writers {}",
        counter("readers").get()?,
        counter("writers").get()?
    );
    std::thread::sleep(Duration::from_millis(sleep_ms));
    mine.decr(1)?;
    guard.release()?;
    Ok(seen)
}

/// Recurses until wasm's call stack overflows: no locals in linear memory,
/// so the shadow stack (whose overflow is an out-of-bounds access) is not
/// what runs out first.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    1 + black_box(recurse(black_box(depth) + 1))
}

/// A failed idempotent run as `error: ...` text.
fn run_error(e: RunError) -> String {
    match e {
        // The action's own failure is already `error: CASE`.
        RunError::Action(message) => message,
        RunError::EarlierFailure(failure) => format!("error: failed: {failure}"),
        RunError::InProgress => "error: in-progress".to_owned(),
        RunError::NotStored { error, .. } | RunError::Tollgate(error) => {
            format!("error: {}", error.code())
        }
        other => format!("error: {other}"),
    }
}

fn next_in_sequence(
    name: &str,
    format: &str,
    reset: tollgate_guest::Reset,
) -> Result<String, Error> {
    let mut seq = sequence(name).reset(reset);
    if format != "-" {
        seq = seq.format(format);
    }
    seq.next()
}

/// Grows linear memory by `pages` and checks that every new byte is zero,
/// as WebAssembly defines them: a byte left by an earlier invocation means
/// the host handed this instance memory it did not reset. Then fills the
/// new pages, for the next invocation to check.
#[cfg(target_arch = "wasm32")]
fn grow_fresh(pages: usize) -> Result<String, String> {
    const PAGE: usize = 65536;
    let before = core::arch::wasm32::memory_grow::<0>(pages);
    if before == usize::MAX {
        return Err(format!("memory.grow by {pages} pages failed"));
    }
    let start = before * PAGE;
    let mut stale = None;
    for offset in start..start + pages * PAGE {
        let byte = std::ptr::with_exposed_provenance_mut::<u8>(offset);
        // SAFETY: memory.grow just added these bytes to linear memory, and
        // no allocation of this program owns them.
        unsafe {
            if stale.is_none() && std::ptr::read_volatile(byte) != 0 {
                stale = Some(offset);
            }
            std::ptr::write_volatile(byte, 0xAB);
        }
    }
    Ok(match stale {
        Some(offset) => format!("stale at {offset}"),
        None => "fresh".to_owned(),
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn grow_fresh(_pages: usize) -> Result<String, String> {
    Err("grow-fresh needs wasm32".to_owned())
}
