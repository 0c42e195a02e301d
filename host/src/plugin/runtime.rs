//! The engine, the compiled-component cache, and one fresh store per
//! invocation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreContextMut,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

use super::bindings;
use super::cache::DiskCache;
use super::error::PluginError;
use super::host::Invocation;
use super::limits::InvocationLimits;
use super::output::{GuestOutput, OutputSink, OutputStreamKind};
use crate::Client;
use crate::sandbox::TrapCause;
use crate::sandbox::{Policy, Session};
use crate::store::within_deadline;

/// How many finished instances' memories a pool gives back to the kernel in
/// one batch: one `madvise` and TLB flush per batch instead of per
/// instance. A slot is reused only once its batch is given back (zeroed),
/// so no instance sees another's memory; when the pool runs out of free
/// slots, the pending batch is given back at once.
const DECOMMIT_BATCH: usize = 16;
/// How much of a pooled table is zeroed in place (and stays resident) when
/// its instance ends, sparing the next instance in the slot a page fault;
/// a table is seldom more than a page.
const TABLE_KEPT_RESIDENT: usize = 64 << 10;
/// How often the deadline clock ticks: the resolution of plugin timeouts.
const TICK: Duration = Duration::from_millis(10);
/// Host-side waits (locks, claims, clock subscriptions) end this long after
/// the invocation's epoch deadline, so that a guest returning from such a
/// wait is stopped by its next epoch check instead of running on.
const HOST_WAIT_SLACK: Duration = Duration::from_millis(50);
/// How long releasing what an invocation left behind may take when the
/// invocation used all its time (with Redis stalled, say): what is not
/// released by then frees at its TTL.
const CLEANUP_GRACE: Duration = Duration::from_millis(100);
/// How much a plugin may write to stdout and to stderr per invocation; the
/// text goes to the host's log or its [`RunReport`]. Writing more fails in the guest (a Rust
/// guest's `println!` then panics, which traps the invocation).
const OUTPUT_CAPTURE_BYTES: usize = 1 << 20;
/// Most handles (guards, claims, WASI streams) one invocation may hold.
const MAX_HANDLES: usize = 10_000;
/// The WASI clock interface whose waits are capped at the deadline.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Loads and runs plugins: one wasmtime engine, each component compiled
/// once, each invocation in a fresh instance.
///
/// ```no_run
/// use tollgate::plugin::{Policy, Runtime};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = tollgate::Client::open("redis://127.0.0.1/")?;
/// let runtime = Runtime::new()?;
/// let wasm = std::fs::read("charge_once.wasm")?;
/// let plugin = runtime.load(&client, &wasm, Policy::new("billing")?)?;
/// let output = plugin.run(b"pay-123")?;
/// # let _ = output;
/// # Ok(())
/// # }
/// ```
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<Invocation>>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    on_disk: Option<DiskCache>,
    stats: Mutex<RuntimeStats>,
    clock: Arc<DeadlineClock>,
}

/// How this runtime came by the components it loaded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Components compiled here.
    pub compiled: u64,
    /// Components loaded ready-compiled from the cache directory.
    pub from_disk: u64,
}

/// Settings of a [`Runtime`]; from [`Runtime::builder`].
#[derive(Debug, Default, Clone)]
pub struct RuntimeBuilder {
    cache_dir: Option<PathBuf>,
    pooled: Option<u32>,
}

impl RuntimeBuilder {
    /// Keeps compiled components in `dir` (created when missing), so that a
    /// plugin compiles once per machine rather than once per process: a
    /// large component then loads in milliseconds from its second load on.
    /// The directory must be this user's and writable by nobody else;
    /// otherwise, and whenever an entry is missing, damaged or from another
    /// wasmtime version or configuration, the component is compiled as
    /// without a cache (and a warning is logged). Off by default; the
    /// `tollgate` command uses [`default_cache_dir`](super::default_cache_dir).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Preallocates room for `instances` invocations running at once and
    /// reuses it: an invocation then starts several times faster (no
    /// `mmap`/`munmap` per instance), which matters for many short
    /// invocations. Past `instances` concurrent invocations, and for a
    /// component beyond the pool's per-instance limits (more than 4 tables
    /// per core module, tables of more than 100,000 elements, more than one
    /// memory per core module), `run` fails with [`PluginError::Host`].
    /// Reserves address space (not memory) for `instances` 4 GiB memories.
    /// A finished instance's slot is reset before reuse, so every invocation
    /// starts from fresh memory: its linear memory goes back to the kernel,
    /// and up to 64 KiB of each of its tables is zeroed in place and stays
    /// resident.
    /// Off by default: each instance is then allocated on demand, without
    /// limits but the policy's.
    pub fn pooled_instances(mut self, instances: u32) -> Self {
        self.pooled = Some(instances);
        self
    }

    /// Sets up the engine (see [`Runtime::new`]).
    pub fn build(self) -> Result<Runtime, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if let Some(instances) = self.pooled {
            let instances = instances.max(1);
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(8))
                .total_memories(instances.saturating_mul(2))
                .total_tables(instances.saturating_mul(8))
                .total_stacks(instances)
                .max_tables_per_module(4)
                .table_elements(100_000)
                .max_core_instance_size(4 << 20)
                .max_component_instance_size(4 << 20)
                .max_memory_size(1 << 32)
                .decommit_batch_size(DECOMMIT_BATCH.min(instances as usize))
                .table_keep_resident(TABLE_KEPT_RESIDENT);
            // Linear memory is not kept resident: without a list of the
            // pages an instance wrote, that zeroes the lowest addresses,
            // which a Rust guest (its stack at the top of its first MiB)
            // seldom writes; and the list Linux's PAGEMAP_SCAN gives misses
            // written pages that are swapped out or being migrated, which
            // the next invocation in the slot would then read (wasmtime
            // PR #14357).
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(host_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(host_error)?;
        cap_clock_waits(&mut linker).map_err(host_error)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(host_error)?;
        let on_disk = self
            .cache_dir
            .and_then(|dir| match DiskCache::open(&dir, &engine) {
                Ok(cache) => Some(cache),
                Err(why) => {
                    tracing::warn!("tollgate: not caching compiled plugins: {why}");
                    None
                }
            });
        Ok(Runtime {
            clock: Arc::new(DeadlineClock::start(&engine)?),
            engine,
            linker: Arc::new(linker),
            compiled: Mutex::default(),
            on_disk,
            stats: Mutex::default(),
        })
    }
}

/// Advances the engine's epoch every [`TICK`] while any runtime or plugin
/// is alive.
struct DeadlineClock {
    stop: Arc<AtomicBool>,
}

impl DeadlineClock {
    fn start(engine: &Engine) -> Result<DeadlineClock, PluginError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, stopped) = (engine.clone(), Arc::clone(&stop));
        thread::Builder::new()
            .name("tollgate-plugin-clock".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Host(format!("cannot start the deadline clock: {e}")))?;
        Ok(DeadlineClock { stop })
    }
}

impl Drop for DeadlineClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn host_error(error: wasmtime::Error) -> PluginError {
    PluginError::Host(format!("{error:#}"))
}

impl Runtime {
    /// Sets up the engine. Guests get the `tollgate:coord` imports and, of
    /// WASI, only stdout and stderr (captured into the host's log): no
    /// files, no environment, no network.
    /// No compiled components are kept on disk: see [`Runtime::builder`].
    pub fn new() -> Result<Runtime, PluginError> {
        Runtime::builder().build()
    }

    /// Settings for a runtime: where to keep compiled components.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// How the components loaded so far were come by (each distinct
    /// component counts once).
    pub fn stats(&self) -> RuntimeStats {
        *self.stats.lock()
    }

    /// The directory compiled components are kept in, when one is used.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.on_disk.as_ref().map(DiskCache::dir)
    }

    /// Prepares a plugin from its component bytes, to run with `client` under
    /// `policy`. The same bytes are compiled once per runtime.
    pub fn load(
        &self,
        client: &Client,
        wasm: &[u8],
        policy: Policy,
    ) -> Result<Plugin, PluginError> {
        policy.check()?;
        let component = self.compile(wasm)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PluginPre::new)
            .map_err(|e| PluginError::Load(load_error(&format!("{e:#}"))))?;
        Ok(Plugin {
            pre,
            client: client.clone(),
            policy: Arc::new(policy),
            _clock: Arc::clone(&self.clock),
            invocations: AtomicU64::new(0),
        })
    }

    /// [`load`](Self::load) from a `.wasm` file.
    pub fn load_file(
        &self,
        client: &Client,
        path: impl AsRef<Path>,
        policy: Policy,
    ) -> Result<Plugin, PluginError> {
        let path = path.as_ref();
        let wasm = std::fs::read(path)
            .map_err(|e| PluginError::Load(format!("cannot read {}: {e}", path.display())))?;
        self.load(client, &wasm, policy)
    }

    fn compile(&self, wasm: &[u8]) -> Result<Component, PluginError> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(component) = self.compiled.lock().get(&digest) {
            return Ok(component.clone());
        }
        let cached = self
            .on_disk
            .as_ref()
            .and_then(|disk| disk.load(&self.engine, &digest));
        let component = match cached {
            Some(component) => {
                self.stats.lock().from_disk += 1;
                tracing::debug!("tollgate: compiled plugin loaded from the cache");
                component
            }
            None => {
                // Compile without holding the lock: it can take a while.
                let started = Instant::now();
                let component = Component::new(&self.engine, wasm)
                    .map_err(|e| PluginError::Load(format!("{e:#}")))?;
                self.stats.lock().compiled += 1;
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "tollgate: plugin compiled"
                );
                if let Some(disk) = &self.on_disk {
                    disk.store(&digest, &component);
                }
                component
            }
        };
        self.compiled.lock().insert(digest, component.clone());
        Ok(component)
    }
}

/// A loaded plugin, ready to run any number of times, from any thread.
pub struct Plugin {
    pre: bindings::PluginPre<Invocation>,
    client: Client,
    policy: Arc<Policy>,
    _clock: Arc<DeadlineClock>,
    /// The id of the next invocation.
    invocations: AtomicU64,
}

/// Settings for one call of [`Plugin::run_with`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    timeout: Option<Duration>,
    output: Option<OutputSink>,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("timeout", &self.timeout)
            .field("output", &self.output.is_some())
            .finish()
    }
}

impl RunOptions {
    /// The policy's settings.
    pub fn new() -> Self {
        RunOptions::default()
    }

    /// Stops this call after `timeout`, or at the policy's timeout if that
    /// is shorter.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Hands every write of the guest to its stdout or stderr to `sink` as
    /// it happens (see [`Plugin::run_streaming`]).
    pub fn output(
        mut self,
        sink: impl Fn(OutputStreamKind, &[u8]) + Send + Sync + 'static,
    ) -> Self {
        self.output = Some(Arc::new(sink));
        self
    }
}

/// One invocation of a plugin: what it returned and what it printed.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport {
    /// The invocation's number for this [`Plugin`], from 1.
    pub id: u64,
    /// What [`Plugin::run`] returns.
    pub result: Result<Vec<u8>, PluginError>,
    /// What the guest wrote to stdout, at most 1 MiB (a guest that writes
    /// more traps).
    pub stdout: Vec<u8>,
    /// What the guest wrote to stderr (a panic's message goes here), at
    /// most 1 MiB.
    pub stderr: Vec<u8>,
}

impl Plugin {
    /// The policy the plugin runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs the plugin's handler once, in a fresh instance, and returns its
    /// output. However the invocation ends (return, error, trap, timeout),
    /// every lock it held is released and every claim abandoned before this
    /// returns. What the guest printed goes to the log (`tracing`, level
    /// INFO, target `tollgate::plugin::runtime`); [`run_reporting`](Self::run_reporting)
    /// returns it instead.
    pub fn run(&self, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        let report = self.run_reporting(input);
        self.log_output(report.id, "stdout", &report.stdout);
        self.log_output(report.id, "stderr", &report.stderr);
        report.result
    }

    /// Runs the plugin like [`run`](Self::run), and returns with the result
    /// what the guest printed and the invocation's id, without logging it.
    pub fn run_reporting(&self, input: &[u8]) -> RunReport {
        self.invoke(input, RunOptions::new())
    }

    /// Runs the plugin like [`run_reporting`](Self::run_reporting), and also
    /// hands every write of the guest to its stdout or stderr to `sink` as
    /// it happens (on the invocation's thread, while the guest waits: keep
    /// it quick). A write need not end at a line break.
    pub fn run_streaming(
        &self,
        input: &[u8],
        sink: impl Fn(OutputStreamKind, &[u8]) + Send + Sync + 'static,
    ) -> RunReport {
        self.run_with(input, RunOptions::new().output(sink))
    }

    /// Runs the plugin like [`run_reporting`](Self::run_reporting), with
    /// settings for this call only.
    pub fn run_with(&self, input: &[u8], options: RunOptions) -> RunReport {
        self.invoke(input, options)
    }

    fn invoke(&self, input: &[u8], options: RunOptions) -> RunReport {
        // The guest's calls nest in the invocation's span.
        let span = crate::trace::span!("plugin", self.policy.namespace());
        let _entered = span.enter();
        let report = self.invoke_traced(input, options);
        span.record("outcome", outcome_name(&report.result));
        report
    }

    fn invoke_traced(&self, input: &[u8], options: RunOptions) -> RunReport {
        let id = self.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        let policy = &self.policy;
        if input.len() > policy.max_input {
            crate::metrics::plugin_invocation(
                policy.namespace(),
                "input_too_large",
                None,
                started.elapsed(),
            );
            return RunReport {
                id,
                result: Err(PluginError::InputTooLarge {
                    size: input.len(),
                    limit: policy.max_input,
                }),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
        }
        let timeout = options
            .timeout
            .map_or(policy.timeout, |t| t.min(policy.timeout));
        let sink = options.output;
        let stdout = GuestOutput::new(OutputStreamKind::Stdout, OUTPUT_CAPTURE_BYTES, sink.clone());
        let stderr = GuestOutput::new(OutputStreamKind::Stderr, OUTPUT_CAPTURE_BYTES, sink);
        // No env, args, files or stdin; networking denied outright.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let ends_at = Instant::now() + timeout;
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let mut store = Store::new(
            self.pre.engine(),
            Invocation {
                session: Session::new(
                    self.client.clone(),
                    Arc::clone(policy),
                    ends_at + HOST_WAIT_SLACK,
                ),
                table,
                wasi,
                limits: InvocationLimits::new(policy.max_memory),
                ends_at,
            },
        );
        store.limiter(|state| &mut state.limits);
        // Checked at every tick against the monotonic clock, so the timeout
        // is kept to one tick however late the ticks come.
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().ends_at {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(1);

        // Every Redis request of the invocation ends by its deadline.
        let deadline = store.data().session.deadline();
        let mut instantiated = false;
        let result = within_deadline(deadline, || {
            let plugin = self.pre.instantiate(&mut store)?;
            instantiated = true;
            plugin.call_run(&mut store, input)
        });
        let (refused, memory_refused) = {
            let limits = &store.data().limits;
            (limits.refused(), limits.memory_refused())
        };
        let cut_wait = store.data().session.cut_wait();
        // Everything the instance held is released here, at once, within
        // the deadline or a short grace after it; what Redis does not
        // release in time frees at its TTL.
        within_deadline(deadline.max(Instant::now() + CLEANUP_GRACE), || drop(store));
        let (stdout, stderr) = (stdout.contents(), stderr.contents());

        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(PluginError::Failed(message)),
            Err(_) if memory_refused.is_some() => {
                let (requested, limit) = memory_refused.unwrap_or_default();
                Err(PluginError::OutOfMemory { requested, limit })
            }
            // No guest code ran and no limit of the policy was hit (a full
            // pool, say): the host's failure.
            Err(error) if !instantiated && !refused && error.downcast_ref::<Trap>().is_none() => {
                Err(PluginError::Host(format!(
                    "cannot start an instance: {error:#}"
                )))
            }
            Err(error) => Err(match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => PluginError::TimedOut {
                    limit: timeout,
                    cut_wait,
                },
                trap => match panic_message(&stderr) {
                    Some(message) => PluginError::Panicked(message),
                    None => PluginError::Trapped {
                        cause: trap_cause(trap.copied(), refused),
                        detail: format!("{error:#}"),
                    },
                },
            }),
        };
        tracing::debug!(
            plugin = policy.namespace(),
            invocation = id,
            elapsed_ms = started.elapsed().as_millis() as u64,
            outcome = outcome_name(&result),
            "tollgate: invocation ended"
        );
        crate::metrics::plugin_invocation(
            policy.namespace(),
            outcome_name(&result),
            match &result {
                Err(PluginError::Trapped { cause, .. }) => Some(cause.name()),
                _ => None,
            },
            started.elapsed(),
        );
        if let Err(PluginError::Trapped { detail, .. }) = &result {
            // The backtrace: `tollgate run --verbose` shows it.
            tracing::debug!(
                plugin = policy.namespace(),
                invocation = id,
                "tollgate: the trap: {detail}"
            );
        }
        RunReport {
            id,
            result,
            stdout,
            stderr,
        }
    }

    fn log_output(&self, invocation: u64, stream: &str, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let namespace = self.policy.namespace();
        for line in String::from_utf8_lossy(bytes).lines() {
            tracing::info!(plugin = namespace, invocation, stream, "{line}");
        }
    }
}

/// How an invocation ended, in snake_case (as in logs and metrics).
fn outcome_name(result: &Result<Vec<u8>, PluginError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(PluginError::Failed(_)) => "failed",
        Err(PluginError::Panicked(_)) => "panicked",
        Err(PluginError::TimedOut { .. }) => "timed_out",
        Err(PluginError::OutOfMemory { .. }) => "out_of_memory",
        Err(PluginError::Trapped { .. }) => "trapped",
        Err(PluginError::InputTooLarge { .. }) => "input_too_large",
        Err(_) => "host",
    }
}

/// Why a guest trapped, from wasmtime's trap code (`None`: the error came
/// from a host call, which only traps for a misused handle, or from a limit
/// the host refused).
fn trap_cause(trap: Option<Trap>, limit_refused: bool) -> TrapCause {
    match trap {
        Some(Trap::UnreachableCodeReached) => TrapCause::Unreachable,
        Some(Trap::StackOverflow) => TrapCause::StackOverflow,
        Some(Trap::MemoryOutOfBounds | Trap::HeapMisaligned) => TrapCause::MemoryOutOfBounds,
        Some(Trap::TableOutOfBounds | Trap::IndirectCallToNull | Trap::BadSignature) => {
            TrapCause::BadIndirectCall
        }
        Some(
            Trap::IntegerOverflow | Trap::IntegerDivisionByZero | Trap::BadConversionToInteger,
        ) => TrapCause::Arithmetic,
        _ if limit_refused => TrapCause::ResourceLimit,
        None => TrapCause::HostCallMisused,
        Some(_) => TrapCause::Other,
    }
}

/// Says what an import the host does not provide means for the plugin's
/// author (wasmtime names it in its own words); other errors pass as they are.
fn load_error(message: &str) -> String {
    let missing = message
        .split_once("component imports ")
        .and_then(|(_, rest)| rest.split_once('`'))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|_| message.contains("was not found in the linker"));
    match missing {
        Some(name) => format!(
            "it imports `{name}`, which the sandbox does not grant: plugins get \
             tollgate:coord, and of WASI only stdout, stderr, clocks and random \
             (no network, files or environment). Build it without that import \
             (componentize-js: --disable http --disable fetch-event)"
        ),
        None => message.to_owned(),
    }
}

/// The message of a Rust guest's panic, from what the panic hook wrote to
/// stderr: `thread '…' panicked at FILE:LINE:COL:` then the message, up to
/// the `note:` line. `None` when stderr holds no panic.
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let start = text.rfind(" panicked at ")?;
    let after = &text[start..];
    let (location, rest) = after[" panicked at ".len()..].split_once('\n')?;
    let message: Vec<&str> = rest
        .lines()
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    let message = message.join(" ");
    let location = location.trim_end_matches(':');
    Some(if message.is_empty() {
        format!("at {location}")
    } else {
        format!("{message} (at {location})")
    })
}

/// Replaces WASI's monotonic-clock waits so that none outlasts the
/// invocation. Epoch interruption cannot stop a host call, and a guest's
/// `sleep` (or a poll on a far deadline) blocks inside one. A wait that would
/// end past the deadline instead ends at once and moves the epoch deadline to
/// now, so the guest is stopped at its next epoch check (the plugin could not
/// have finished in time anyway).
fn cap_clock_waits(linker: &mut Linker<Invocation>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, Invocation>, (nanos,): (u64,)| {
            let wait = sleep_within_deadline(&mut store, nanos);
            let pollable =
                monotonic_clock::Host::subscribe_duration(&mut store.data_mut().clocks(), wait)?;
            Ok((pollable,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, Invocation>, (when,): (u64,)| {
            let now = monotonic_clock::Host::now(&mut store.data_mut().clocks())?;
            let wait = sleep_within_deadline(&mut store, when.saturating_sub(now));
            let pollable: Resource<DynPollable> =
                monotonic_clock::Host::subscribe_duration(&mut store.data_mut().clocks(), wait)?;
            Ok((pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A guest's sleep, cut at the invocation's end (where the next tick stops
/// the guest).
fn sleep_within_deadline(store: &mut StoreContextMut<'_, Invocation>, nanos: u64) -> u64 {
    let left = store
        .data()
        .ends_at
        .saturating_duration_since(Instant::now());
    let left = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
    if nanos > left {
        let asked = Duration::from_nanos(nanos);
        store
            .data()
            .session
            .note_cut_wait(format!("a sleep of {asked:?}"));
    }
    nanos.min(left)
}

#[cfg(test)]
mod tests {
    use super::{load_error, panic_message};

    #[test]
    fn a_missing_import_is_named_with_what_the_sandbox_grants() {
        let wasmtime = "component imports instance `wasi:http/types@0.2.3`, but a matching \
                        implementation was not found in the linker: instance export `fields` \
                        has the wrong type";
        let message = load_error(wasmtime);
        assert!(
            message.starts_with(
                "it imports `wasi:http/types@0.2.3`, which the sandbox does not grant"
            ),
            "{message}"
        );
        assert_eq!(load_error("bad magic number"), "bad magic number");
    }

    #[test]
    fn a_panic_message_is_read_from_stderr() {
        let stderr = b"thread '<unnamed>' panicked at src/lib.rs:81:13:\npanic-holding: boom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panic-holding: boom (at src/lib.rs:81:13)")
        );
        assert_eq!(panic_message(b"just some output\n"), None);
    }
}
