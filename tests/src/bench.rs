//! The benchmark behind
//! `cargo run --release -p tollgate-tests --example bench`: every tollgate
//! operation beside its floor (the fewest Redis commands a naive version
//! needs, sent on one raw connection) and its peers, measured in one run,
//! with what each costs the client and the server.
//!
//! For every variant of every row it prints operations per second, the
//! ratio to the row's floor and its range over the rounds, Redis commands
//! per operation and server CPU µs per operation (from the private server's
//! `INFO commandstats` and `INFO cpu`; commands a script runs count too),
//! and client CPU µs per operation (`getrusage`, every thread of this
//! process and its children).
//! Each variant is measured in [`Options::rounds`] interleaved rounds: a
//! row shows each variant's median round, and as its ratio the median of
//! the per-round ratios (each round's variant against the same round's
//! floor, measured seconds apart), so that a slow spell of a shared machine
//! weighs on both sides of a ratio alike.
//!
//! With [`Options::pin`] the benchmark and every server it starts run on
//! CPU 0, so that wall µs per operation is client plus server CPU: the
//! figure to compare on a noisy machine. Without it the machine's idle
//! wake-ups dominate each round trip and squeeze the ratios towards 1.
//!
//! No figure here is asserted anywhere: tests run [`Options::quick`] only to
//! keep the benchmark working.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tollgate::plugin::{Policy, Runtime};
use tollgate::{Client, Redlock};

use crate::{RedisCluster, RedisServer};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How much to measure, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// A smoke run: few operations, one round.
    pub quick: bool,
    /// Run this process and the servers it starts on CPU 0.
    pub pin: bool,
    /// Rounds per variant (the median is shown).
    pub rounds: usize,
    /// Skip the rows that start more servers (cluster, replica, Redlock).
    pub skip_topologies: bool,
    /// Skip the rows that need the guest plugin (and its wasm build).
    pub skip_guest: bool,
    /// The benchmark's own executable, run with `--contend-worker` as the
    /// processes of the multi-process contention row (no such row without).
    pub worker_exe: Option<std::path::PathBuf>,
}

impl Options {
    /// The full run: 5 rounds, every row.
    pub fn full() -> Options {
        Options {
            quick: false,
            pin: false,
            rounds: 5,
            skip_topologies: false,
            skip_guest: false,
            worker_exe: None,
        }
    }

    /// A smoke run: every row, few operations, one round.
    pub fn quick() -> Options {
        Options {
            quick: true,
            rounds: 1,
            ..Options::full()
        }
    }

    /// Operations per round for a row sized `full` for three rounds: more
    /// rounds are each shorter, so a full run takes as long whatever the
    /// rounds (and interleaves more finely).
    fn ops(&self, full: u64) -> u64 {
        if self.quick {
            (full / 50).max(20)
        } else {
            (full * 3 / self.rounds.max(3) as u64).max(1)
        }
    }

    /// How long a contention round lasts (2 s for three rounds).
    fn window(&self) -> Duration {
        if self.quick {
            Duration::from_millis(150)
        } else {
            Duration::from_secs(6) / self.rounds.max(3) as u32
        }
    }
}

/// Runs `n` lock cycles on the server at a URL: see [`Peer::cycles`].
pub type PeerCycles = Box<dyn FnMut(&str, u64) -> Result<Option<(f64, f64)>, String>>;

/// A lock implementation from elsewhere, run in the lock-cycle row.
pub struct Peer {
    /// Its name in the table.
    pub name: String,
    /// Runs `n` acquire + release cycles of one lock on the server at
    /// `url`; `Ok(Some(..))` when it timed itself (a child process: its
    /// own wall seconds and CPU seconds for the loop), `Ok(None)` to be timed
    /// from outside, `Err` with why it could not run.
    pub cycles: PeerCycles,
}

/// One measured variant of a row.
#[derive(Debug, Clone)]
pub struct Measured {
    /// What ran.
    pub variant: String,
    /// Operations per second (wall clock).
    pub per_sec: f64,
    /// Against the row's floor: the median of the rounds' ratios (1.0 for
    /// the floor itself).
    pub ratio: f64,
    /// The lowest and highest of the rounds' ratios: how far this machine
    /// moved the figure within the run.
    pub ratio_range: (f64, f64),
    /// Redis commands per operation, scripts' commands included.
    pub commands: Option<f64>,
    /// Server CPU µs per operation.
    pub server_us: Option<f64>,
    /// Client CPU µs per operation.
    pub client_us: Option<f64>,
    /// Extra figures (contention: hand-over latency, grant shares).
    pub note: String,
}

/// One row: an operation, its floor first, then tollgate and its peers.
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row measures.
    pub title: String,
    /// The variants, the floor first.
    pub variants: Vec<Measured>,
    /// Why a variant could not run (a missing peer).
    pub missing: Vec<String>,
}

/// What one round of one variant saw.
#[derive(Debug, Clone, Default)]
struct Sample {
    ops: u64,
    secs: f64,
    client_cpu: f64,
    server_cpu: Option<f64>,
    commands: Option<u64>,
    note: String,
}

/// Reads the private server's counters around a measured closure.
struct Meter {
    admin: redis::Connection,
}

impl Meter {
    fn new(url: &str) -> BenchResult<Meter> {
        Ok(Meter {
            admin: redis::Client::open(url)?.get_connection()?,
        })
    }

    /// Runs `work` (which performs `ops` operations and may time itself)
    /// and reads what it cost.
    fn measure(
        &mut self,
        ops: u64,
        work: impl FnOnce() -> BenchResult<Option<(f64, f64)>>,
    ) -> BenchResult<Sample> {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query::<()>(&mut self.admin)?;
        let server_before = self.server_cpu()?;
        let client_before = process_cpu();
        let start = Instant::now();
        let timed = work()?;
        let mut secs = start.elapsed().as_secs_f64();
        let mut client_cpu = process_cpu() - client_before;
        let server_cpu = self.server_cpu()? - server_before;
        let commands = self.commands()?;
        if let Some((own_secs, own_cpu)) = timed {
            secs = own_secs;
            client_cpu = own_cpu;
        }
        Ok(Sample {
            ops,
            secs,
            client_cpu,
            server_cpu: Some(server_cpu),
            commands: Some(commands),
            note: String::new(),
        })
    }

    /// The server's CPU seconds so far (user + system, every thread).
    fn server_cpu(&mut self) -> BenchResult<f64> {
        let info: String = redis::cmd("INFO").arg("cpu").query(&mut self.admin)?;
        Ok(info_fields(&info)
            .filter(|(k, _)| *k == "used_cpu_user" || *k == "used_cpu_sys")
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum())
    }

    /// Commands the server ran since the last reset, but for our own
    /// `INFO` and `CONFIG`.
    fn commands(&mut self) -> BenchResult<u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.admin)?;
        Ok(info_fields(&info)
            .filter(|(k, _)| *k != "cmdstat_info" && !k.starts_with("cmdstat_config"))
            .filter_map(|(_, v)| {
                v.split(',')
                    .find_map(|f| f.strip_prefix("calls="))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum())
    }
}

fn info_fields(info: &str) -> impl Iterator<Item = (&str, &str)> {
    info.lines().filter_map(|l| l.trim().split_once(':'))
}

/// CPU seconds of this process (every thread) and its waited-for children.
fn process_cpu() -> f64 {
    fn seconds(who: libc::c_int) -> f64 {
        // SAFETY: getrusage fills the struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
    seconds(libc::RUSAGE_SELF) + seconds(libc::RUSAGE_CHILDREN)
}

/// Moves `pid` (0: the calling thread, whose later threads inherit it) to CPU 0.
fn pin_to_cpu0(pid: u32) {
    // SAFETY: plain syscall on a set built here.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        );
    }
}

/// Starts a private server for the benchmark, pinned when asked.
fn start_server(options: &Options, builder: crate::RedisServerBuilder) -> RedisServer {
    let server = builder.start();
    if options.pin {
        pin_to_cpu0(server.pid());
    }
    server
}

/// A variant under measurement: its name and one round of it.
type Variant<'a> = (
    String,
    Box<dyn FnMut(&mut Meter) -> BenchResult<Sample> + 'a>,
);

/// Names a variant.
fn variant<'a>(
    name: impl Into<String>,
    run: impl FnMut(&mut Meter) -> BenchResult<Sample> + 'a,
) -> Variant<'a> {
    (name.into(), Box::new(run))
}

/// A floor: `op` (given the operation's number) `n` times on the raw
/// connection.
fn raw_variant<'a>(
    name: &str,
    raw: &'a std::cell::RefCell<redis::Connection>,
    n: u64,
    mut op: impl FnMut(&mut redis::Connection, u64) -> BenchResult<()> + 'a,
) -> Variant<'a> {
    variant(name, move |m: &mut Meter| {
        let mut raw = raw.borrow_mut();
        repeat(m, n, |i| op(&mut raw, i))
    })
}

/// The raw lock cycle as a variant (the floor of the lock rows).
fn floor_cycle<'a>(
    name: &str,
    raw: &'a std::cell::RefCell<redis::Connection>,
    unlock: &'a redis::Script,
    n: u64,
) -> Variant<'a> {
    raw_variant(name, raw, n, move |conn, i| {
        raw_lock_cycle(conn, unlock, "raw", &i.to_string()).map(drop)
    })
}

/// `n` uncontended lock cycles by `client` as a variant.
fn tollgate_cycle<'a>(name: &str, client: &'a Client, n: u64) -> Variant<'a> {
    variant(name, move |m: &mut Meter| {
        repeat(m, n, |_| {
            client
                .lock("bench")
                .ttl(Duration::from_secs(10))
                .acquire()?
                .release()?;
            Ok(())
        })
    })
}

/// Measures the variants of a row in interleaved rounds; the first is the
/// floor.
fn row(
    options: &Options,
    meter: &mut Meter,
    title: &str,
    mut variants: Vec<Variant<'_>>,
) -> BenchResult<Row> {
    let mut rounds: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for _ in 0..options.rounds {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            rounds[i].push(run(meter)?);
        }
    }
    let floor_rates: Vec<f64> = rounds[0].iter().map(rate).collect();
    let mut measured = Vec::new();
    for ((name, _), mut samples) in variants.into_iter().zip(rounds) {
        let mut ratios: Vec<f64> = samples
            .iter()
            .zip(&floor_rates)
            .map(|(sample, floor)| rate(sample) / floor)
            .collect();
        ratios.sort_by(f64::total_cmp);
        samples.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        let s = &samples[samples.len() / 2];
        let per_sec = rate(s);
        let per_op = |x: f64| x / s.ops as f64;
        measured.push(Measured {
            variant: name,
            per_sec,
            ratio: ratios[ratios.len() / 2],
            ratio_range: (ratios[0], ratios[ratios.len() - 1]),
            commands: s.commands.map(|c| per_op(c as f64)),
            server_us: s.server_cpu.map(|c| per_op(c) * 1e6),
            client_us: Some(per_op(s.client_cpu) * 1e6),
            note: s.note.clone(),
        });
    }
    Ok(Row {
        title: title.to_owned(),
        variants: measured,
        missing: Vec::new(),
    })
}

fn rate(s: &Sample) -> f64 {
    s.ops as f64 / s.secs
}

/// Runs `op` `n` times under the meter.
fn repeat(
    meter: &mut Meter,
    n: u64,
    mut op: impl FnMut(u64) -> BenchResult<()>,
) -> BenchResult<Sample> {
    meter.measure(n, || {
        for i in 0..n {
            op(i)?;
        }
        Ok(None)
    })
}

/// `SET key token NX PX 10000`: whether it was set.
fn set_nx_px(conn: &mut redis::Connection, key: &str, token: &str) -> BenchResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query(conn)?;
    Ok(set.is_some())
}

/// The raw floor of a lock cycle on `conn`: `SET NX PX`, then a
/// compare-and-delete script.
fn raw_lock_cycle(
    conn: &mut redis::Connection,
    unlock: &redis::Script,
    key: &str,
    token: &str,
) -> BenchResult<bool> {
    if !set_nx_px(conn, key, token)? {
        return Ok(false);
    }
    let _: i64 = unlock.key(key).arg(token).invoke(conn)?;
    Ok(true)
}

fn unlock_script() -> redis::Script {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
}

/// Runs every row against a private redis-server and prints the table to
/// `out` as rows finish; returns the rows.
pub fn run(options: &Options, peers: Vec<Peer>, out: &mut dyn Write) -> BenchResult<Vec<Row>> {
    if options.pin {
        pin_to_cpu0(0);
    }
    let server = start_server(options, RedisServer::builder());
    let url = server.url();
    let mut meter = Meter::new(&url)?;
    let client = Client::open(&url)?;
    let mut raw = redis::Client::open(url.as_str())?.get_connection()?;
    let unlock = unlock_script();
    writeln!(
        out,
        "tollgate benchmark: {} round(s){}{}",
        options.rounds,
        if options.pin { ", pinned to CPU 0" } else { "" },
        if options.quick { ", quick" } else { "" }
    )?;
    print_header(out)?;
    let mut rows = Vec::new();
    let mut emit = |row: Row, out: &mut dyn Write| -> BenchResult<()> {
        print_row(&row, out)?;
        rows.push(row);
        Ok(())
    };

    // Warm up: scripts loaded, pools filled.
    client.lock("bench").acquire()?.release()?;
    raw_lock_cycle(&mut raw, &unlock, "raw", "warm")?;

    let n = options.ops(5_000);
    let raw_cell = std::cell::RefCell::new(raw);

    // 1. Lock cycle, with the peers.
    let mut lock_row = {
        let mut variants = vec![
            floor_cycle(
                "floor: SET NX PX + EVALSHA compare-and-delete",
                &raw_cell,
                &unlock,
                n,
            ),
            tollgate_cycle("tollgate lock", &client, n),
        ];
        let mut missing = Vec::new();
        let url = url.clone();
        for mut peer in peers {
            // Try once: a peer that cannot run gets a line saying why.
            match (peer.cycles)(&url, 1) {
                Err(why) => missing.push(format!("{}: {why}", peer.name)),
                Ok(_) => {
                    let url = url.clone();
                    variants.push(variant(peer.name.clone(), move |m: &mut Meter| {
                        m.measure(n, || Ok((peer.cycles)(&url, n)?))
                    }));
                }
            }
        }
        let mut r = row(
            options,
            &mut meter,
            "lock cycle (acquire + release)",
            variants,
        )?;
        r.missing = missing;
        r
    };
    lock_row.title = "lock cycle (acquire + release)".to_owned();
    emit(lock_row, out)?;

    // 2. try_acquire on a held lock.
    let holder = Client::open(&url)?;
    let _held = holder
        .lock("held")
        .ttl(Duration::from_secs(600))
        .acquire()?;
    redis::cmd("SET")
        .arg("rawheld")
        .arg("x")
        .arg("PX")
        .arg(600_000)
        .query::<()>(&mut *raw_cell.borrow_mut())?;
    let r = row(
        options,
        &mut meter,
        "try_acquire on a held lock",
        vec![
            raw_variant("floor: SET NX on a held key", &raw_cell, n, |conn, _| {
                assert!(!set_nx_px(conn, "rawheld", "y")?);
                Ok(())
            }),
            variant("tollgate try_acquire", |m: &mut Meter| {
                repeat(m, n, |_| {
                    let got = client.lock("held").try_acquire()?;
                    assert!(got.is_none());
                    Ok(())
                })
            }),
        ],
    )?;
    emit(r, out)?;

    // 3. Idempotency: a replay, and a fresh run.
    let idem = client.idempotency("bench");
    idem.key("replayed")
        .run(|| Ok::<_, String>(b"x".to_vec()))?;
    let mut fresh = 0u64;
    let r = row(
        options,
        &mut meter,
        "idempotent action replayed",
        vec![
            raw_variant("floor: SET", &raw_cell, n, |conn, _| {
                redis::cmd("SET").arg("rawset").arg("x").query::<()>(conn)?;
                Ok(())
            }),
            variant("tollgate replay", |m: &mut Meter| {
                repeat(m, n, |_| {
                    let outcome = idem.key("replayed").run(|| Ok::<_, String>(vec![]))?;
                    assert!(outcome.replayed);
                    Ok(())
                })
            }),
        ],
    )?;
    emit(r, out)?;
    let r = row(
        options,
        &mut meter,
        "idempotent action, fresh key",
        vec![
            floor_cycle("floor: raw lock cycle", &raw_cell, &unlock, n),
            variant("tollgate fresh run", |m: &mut Meter| {
                repeat(m, n, |_| {
                    fresh += 1;
                    let outcome = idem
                        .key(format!("fresh-{fresh}"))
                        .run(|| Ok::<_, String>(b"x".to_vec()))?;
                    assert!(!outcome.replayed);
                    Ok(())
                })
            }),
        ],
    )?;
    emit(r, out)?;

    // 4. Counters and sequences against INCR.
    let bounded = client.counter("bounded").bounds(0..1_000_000_000_000);
    let plain = client.counter("plain");
    let once = client.counter("once");
    let sequence = client.sequence("seq");
    let blocked = client.sequence("seq-block").block(1_000);
    let mut op = 0u64;
    let r = row(
        options,
        &mut meter,
        "counters and serial numbers",
        vec![
            raw_variant("floor: INCR", &raw_cell, n, |conn, _| {
                redis::cmd("INCR").arg("rawincr").query::<i64>(conn)?;
                Ok(())
            }),
            variant("tollgate incr", |m: &mut Meter| {
                repeat(m, n, |_| plain.incr(1).map(drop).map_err(Into::into))
            }),
            variant("tollgate bounded incr", |m: &mut Meter| {
                repeat(m, n, |_| bounded.incr(1).map(drop).map_err(Into::into))
            }),
            variant("tollgate incr_once", |m: &mut Meter| {
                repeat(m, n, |_| {
                    op += 1;
                    once.incr_once(&format!("op-{op}"), 1)?;
                    Ok(())
                })
            }),
            variant("tollgate sequence next", |m: &mut Meter| {
                repeat(m, n, |_| sequence.next_raw().map(drop).map_err(Into::into))
            }),
            variant("tollgate sequence, blocks of 1000", |m: &mut Meter| {
                repeat(m, n, |_| blocked.next_raw().map(drop).map_err(Into::into))
            }),
        ],
    )?;
    emit(r, out)?;

    // 5. Contention: threads of this process, then several processes.
    for threads in [8, 16] {
        let r = row(
            options,
            &mut meter,
            &format!("{threads} threads on one lock (grants)"),
            vec![
                variant(Contender::Polling.title(), |m: &mut Meter| {
                    contend(m, threads, options.window(), Contender::Polling, &url)
                }),
                variant(Contender::Tollgate.title(), |m: &mut Meter| {
                    contend(m, threads, options.window(), Contender::Tollgate, &url)
                }),
            ],
        )?;
        emit(r, out)?;
    }
    if let Some(exe) = &options.worker_exe {
        let (processes, threads) = (4, 4);
        let r = row(
            options,
            &mut meter,
            &format!("{processes} processes × {threads} threads on one lock (grants)"),
            vec![
                variant(Contender::Polling.title(), |m: &mut Meter| {
                    contend_processes(
                        m,
                        exe,
                        processes,
                        threads,
                        options.window(),
                        Contender::Polling,
                        &url,
                    )
                }),
                variant(Contender::Tollgate.title(), |m: &mut Meter| {
                    contend_processes(
                        m,
                        exe,
                        processes,
                        threads,
                        options.window(),
                        Contender::Tollgate,
                        &url,
                    )
                }),
            ],
        )?;
        emit(r, out)?;
    }

    // 6. Inside a wasm guest.
    if !options.skip_guest {
        let runtime = Runtime::new()?;
        let plugin = runtime.load(
            &client,
            crate::guest::test_plugin(),
            Policy::new("bench")?.timeout(Duration::from_secs(60)),
        )?;
        let pooled = Runtime::builder().pooled_instances(64).build()?;
        let pooled_plugin =
            pooled.load(&client, crate::guest::test_plugin(), Policy::new("bench")?)?;
        let input = format!("lock-cycles bench {n}");
        plugin.run(b"lock-cycles bench 10")?;
        let guest_lock = |m: &mut Meter| -> BenchResult<Sample> {
            m.measure(n, || {
                plugin.run(input.as_bytes())?;
                Ok(None)
            })
        };
        let r = row(
            options,
            &mut meter,
            "lock cycle inside a wasm guest",
            vec![
                tollgate_cycle("native tollgate lock (the floor here)", &client, n),
                variant("guest tollgate lock", guest_lock),
            ],
        )?;
        emit(r, out)?;
        let calls = options.ops(2_000);
        let r = row(
            options,
            &mut meter,
            "instantiate + one call (no Redis)",
            vec![
                variant("plugin.run(\"noop\"), default runtime", |m: &mut Meter| {
                    repeat(m, calls, |_| {
                        plugin.run(b"noop")?;
                        Ok(())
                    })
                }),
                variant("the same, pooled_instances(64)", |m: &mut Meter| {
                    repeat(m, calls, |_| {
                        pooled_plugin.run(b"noop")?;
                        Ok(())
                    })
                }),
            ],
        )?;
        emit(r, out)?;
    }

    // 7. Topologies: a lock cycle each, against one server.
    if !options.skip_topologies {
        let r = topologies(options, &mut meter, &client, options.ops(2_000))?;
        emit(r, out)?;
    }
    drop(server);
    Ok(rows)
}

/// How a contending thread takes and gives back the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// `SET NX PX`, and 1 ms of sleep after each refusal; a
    /// compare-and-delete script to release (the floor).
    Polling,
    /// tollgate's `acquire` with a wait, and `release`.
    Tollgate,
}

impl Contender {
    fn title(self) -> &'static str {
        match self {
            Contender::Polling => "floor: SET NX PX polling every 1 ms",
            Contender::Tollgate => "tollgate acquire with wait",
        }
    }

    /// The name a worker process is told.
    pub fn arg(self) -> &'static str {
        match self {
            Contender::Polling => "polling",
            Contender::Tollgate => "tollgate",
        }
    }

    /// The contender a worker process was told.
    pub fn from_arg(arg: &str) -> Option<Contender> {
        [Contender::Polling, Contender::Tollgate]
            .into_iter()
            .find(|c| c.arg() == arg)
    }

    /// One thread's attempt: takes the lock, calls `hold` while holding it,
    /// releases it; `false` when it gave up.
    fn attempt<'a>(self, url: &str, client: &'a Client) -> BenchResult<Box<Attempt<'a>>> {
        Ok(match self {
            Contender::Polling => {
                let mut conn = redis::Client::open(url)?.get_connection()?;
                let unlock = unlock_script();
                let mut token = 0u64;
                Box::new(move |hold: &mut dyn FnMut()| {
                    token += 1;
                    let token = token.to_string();
                    while !set_nx_px(&mut conn, "contended-raw", &token)? {
                        thread::sleep(Duration::from_millis(1));
                    }
                    hold();
                    let _: i64 = unlock.key("contended-raw").arg(&token).invoke(&mut conn)?;
                    Ok(true)
                })
            }
            Contender::Tollgate => Box::new(move |hold: &mut dyn FnMut()| {
                let guard = client
                    .lock("contended")
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(10))
                    .try_acquire()?;
                let Some(guard) = guard else { return Ok(false) };
                hold();
                guard.release()?;
                Ok(true)
            }),
        })
    }
}

type Attempt<'a> = dyn FnMut(&mut dyn FnMut()) -> BenchResult<bool> + 'a;

/// The system-wide monotonic clock in ns: comparable between processes.
fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime fills the struct it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Grants (when, by which thread) and releases (when) of a contention run,
/// in ns of [`monotonic_ns`].
#[derive(Default)]
struct Events {
    grants: Vec<(u64, usize)>,
    releases: Vec<u64>,
}

/// `threads` threads (numbered from `first`) contend for one lock from
/// `start` (ns) for `window`.
fn run_contenders(
    contender: Contender,
    url: &str,
    threads: usize,
    first: usize,
    start: u64,
    window: Duration,
) -> BenchResult<Events> {
    let client = Client::open(url)?;
    client.lock("contended").try_acquire()?; // connected, scripts loaded
    let end = start + window.as_nanos() as u64;
    let log = parking_lot::Mutex::new(Events::default());
    thread::scope(|scope| -> BenchResult<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (log, client) = (&log, &client);
                scope.spawn(move || -> BenchResult<()> {
                    let mut attempt = contender.attempt(url, client)?;
                    let mut events = Events::default();
                    let now = monotonic_ns();
                    if now < start {
                        thread::sleep(Duration::from_nanos(start - now));
                    }
                    while monotonic_ns() < end {
                        attempt(&mut || {
                            events.grants.push((monotonic_ns(), first + t));
                            // Taken again: the release comes strictly after.
                            events.releases.push(monotonic_ns());
                        })?;
                    }
                    let mut log = log.lock();
                    log.grants.extend(events.grants);
                    log.releases.extend(events.releases);
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| "a contending thread panicked")??;
        }
        Ok(())
    })?;
    Ok(log.into_inner())
}

/// `threads` threads of this process contend for one lock for `window`.
fn contend(
    meter: &mut Meter,
    threads: usize,
    window: Duration,
    contender: Contender,
    url: &str,
) -> BenchResult<Sample> {
    let mut events = Events::default();
    let mut sample = meter.measure(0, || {
        events = run_contenders(contender, url, threads, 0, monotonic_ns(), window)?;
        Ok(None)
    })?;
    contention_figures(&mut sample, events, threads);
    Ok(sample)
}

/// `processes` worker processes (`exe --contend-worker …`) of `threads`
/// threads each contend for one lock for `window`.
fn contend_processes(
    meter: &mut Meter,
    exe: &Path,
    processes: usize,
    threads: usize,
    window: Duration,
    contender: Contender,
    url: &str,
) -> BenchResult<Sample> {
    let mut events = Events::default();
    let mut sample = meter.measure(0, || {
        // Each worker starts contending at the same moment, once all are up.
        let start = monotonic_ns() + 500_000_000;
        let children = (0..processes)
            .map(|p| {
                Command::new(exe)
                    .args(["--contend-worker", contender.arg(), url])
                    .args([threads, p * threads].map(|n| n.to_string()))
                    .args([start.to_string(), window.as_millis().to_string()])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for child in children {
            let output = child.wait_with_output()?;
            if !output.status.success() {
                return Err("a contending worker process failed".into());
            }
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let fields: Vec<u64> = line[1..]
                    .split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect();
                match (line.as_bytes().first(), fields.as_slice()) {
                    (Some(b'G'), [at, t]) => events.grants.push((*at, *t as usize)),
                    (Some(b'R'), [at]) => events.releases.push(*at),
                    _ => {}
                }
            }
        }
        Ok(None)
    })?;
    sample.secs = window.as_secs_f64();
    contention_figures(&mut sample, events, processes * threads);
    Ok(sample)
}

/// A worker process of `contend_processes`: `args` are the contender,
/// the URL, threads, the first thread's number, the start (ns of the
/// system's monotonic clock) and the window (ms). Prints `G ns thread` per
/// grant and `R ns` per release.
pub fn contend_worker(args: &[String]) -> BenchResult<()> {
    let [contender, url, threads, first, start, window_ms] = args else {
        return Err(
            "usage: --contend-worker polling|tollgate URL THREADS FIRST START_NS WINDOW_MS".into(),
        );
    };
    let contender = Contender::from_arg(contender).ok_or("unknown contender")?;
    let events = run_contenders(
        contender,
        url,
        threads.parse()?,
        first.parse()?,
        start.parse()?,
        Duration::from_millis(window_ms.parse()?),
    )?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (at, t) in events.grants {
        writeln!(out, "G {at} {t}")?;
    }
    for at in events.releases {
        writeln!(out, "R {at}")?;
    }
    Ok(())
}

/// Grants, hand-over latency and grant shares of a contention run.
fn contention_figures(sample: &mut Sample, mut events: Events, threads: usize) {
    events.grants.sort();
    events.releases.sort();
    let (grants, releases) = (&events.grants, &events.releases);
    sample.ops = grants.len() as u64;
    // Release → next grant: for every grant, the time since the latest
    // release before it.
    let mut gaps: Vec<u64> = grants
        .iter()
        .filter_map(|(at, _)| {
            let i = releases.partition_point(|r| r <= at);
            (i > 0).then(|| at - releases[i - 1])
        })
        .collect();
    gaps.sort();
    let mut per_thread = BTreeMap::new();
    for (_, t) in grants {
        *per_thread.entry(*t).or_insert(0u64) += 1;
    }
    let mean = grants.len() as f64 / threads as f64;
    let spread = (0..threads)
        .map(|t| (per_thread.get(&t).copied().unwrap_or(0) as f64 - mean).abs() / mean.max(1.0))
        .fold(0.0, f64::max);
    sample.note = format!(
        "hand-over p50 {:.3} ms; grant shares within ±{:.0}%",
        gaps.get(gaps.len() / 2)
            .map_or(f64::NAN, |ns| *ns as f64 / 1e6),
        spread * 100.0
    );
}

/// A lock cycle on one server (the floor), a primary with a synced
/// replica, a 3-master cluster and Redlock over 3 masters.
fn topologies(options: &Options, meter: &mut Meter, single: &Client, n: u64) -> BenchResult<Row> {
    fn cycles(n: u64, mut cycle: impl FnMut() -> tollgate::Result<()>) -> BenchResult<Sample> {
        let cpu = process_cpu();
        let start = Instant::now();
        for _ in 0..n {
            cycle()?;
        }
        Ok(Sample {
            ops: n,
            secs: start.elapsed().as_secs_f64(),
            client_cpu: process_cpu() - cpu,
            ..Sample::default()
        })
    }
    let lock_cycle = |client: &Client| -> tollgate::Result<()> {
        client
            .lock("bench")
            .ttl(Duration::from_secs(10))
            .acquire()?
            .release()
    };

    let primary = start_server(options, RedisServer::builder());
    let replica = start_server(
        options,
        RedisServer::builder().args(["--replicaof", "127.0.0.1", &primary.port().to_string()]),
    );
    let synced = Client::builder(primary.url())
        .wait_for_replicas(1, Duration::from_millis(500))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while synced.lock("warm").acquire().map(drop).is_err() {
        if Instant::now() > deadline {
            return Err("the replica never synced".into());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let cluster = RedisCluster::start();
    if options.pin {
        for node in cluster.nodes() {
            pin_to_cpu0(node.pid());
        }
    }
    let clustered = Client::open(&cluster.url())?;
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| start_server(options, RedisServer::builder()))
        .collect();
    let redlock = Redlock::new(
        masters
            .iter()
            .map(|m| Client::open(&m.url()))
            .collect::<tollgate::Result<Vec<_>>>()?,
    )?;
    for _ in 0..20 {
        lock_cycle(&clustered)?;
        redlock.lock("bench").acquire()?.release()?;
    }
    // Servers other than the meter's: only wall time and client CPU count.
    let variants = vec![
        variant("one server (the floor here)", |_: &mut Meter| {
            cycles(n, || lock_cycle(single))
        }),
        variant(
            "primary + replica, wait_for_replicas(1)",
            |_: &mut Meter| cycles(n, || lock_cycle(&synced)),
        ),
        variant("cluster, 3 masters + 3 replicas", |_: &mut Meter| {
            cycles(n, || lock_cycle(&clustered))
        }),
        variant("Redlock, 3 masters", |_: &mut Meter| {
            cycles(n, || {
                redlock
                    .lock("bench")
                    .ttl(Duration::from_secs(10))
                    .acquire()?
                    .release()
            })
        }),
    ];
    let r = row(
        options,
        meter,
        "lock cycle by topology (servers on this machine)",
        variants,
    );
    drop(replica);
    r
}

fn print_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<46} {:>10} {:>6} {:>10} {:>8} {:>10} {:>10}",
        "", "ops/s", "ratio", "range", "cmds/op", "server µs", "client µs"
    )
}

fn print_row(row: &Row, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}", row.title)?;
    let opt = |v: Option<f64>, prec: usize| match v {
        Some(v) => format!("{v:.prec$}"),
        None => "-".to_owned(),
    };
    for (i, m) in row.variants.iter().enumerate() {
        let range = match (i, m.ratio_range) {
            (0, _) => String::new(),
            (_, (low, high)) if high >= 100.0 => format!("{low:.0}–{high:.0}"),
            (_, (low, high)) => format!("{low:.2}–{high:.2}"),
        };
        writeln!(
            out,
            "  {:<44} {:>10.0} {:>6.2} {:>10} {:>8} {:>10} {:>10}{}",
            m.variant,
            m.per_sec,
            m.ratio,
            range,
            opt(m.commands, 1),
            opt(m.server_us, 1),
            opt(m.client_us, 1),
            if m.note.is_empty() {
                String::new()
            } else {
                format!("   {}", m.note)
            }
        )?;
    }
    for why in &row.missing {
        writeln!(out, "  (not run) {why}")?;
    }
    Ok(())
}

/// redis-py's `Lock` as a peer, run by `bench/redis_py_lock.py` with the
/// first `python3` on the path; missing (with why) when Python or its
/// `redis` package is not installed.
pub fn redis_py_peer() -> Peer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/redis_py_lock.py");
    Peer {
        name: "redis-py Lock".into(),
        cycles: Box::new(move |url, n| {
            let output = Command::new("python3")
                .arg(&script)
                .arg(url)
                .arg(n.to_string())
                .output()
                .map_err(|e| format!("python3 not runnable: {e}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(stderr.lines().last().unwrap_or("failed").to_owned());
            }
            let mut numbers = stdout.split_whitespace().map(str::parse::<f64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(secs)), Some(Ok(cpu))) => Ok(Some((secs, cpu))),
                _ => Err(format!("unexpected output {stdout:?}")),
            }
        }),
    }
}
