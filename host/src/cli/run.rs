//! `tollgate run`: one plugin invocation, or N at once.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use super::RunArgs;
use super::exit::{Failure, PLUGIN_FAILED};
use super::store::open_client;
use crate::plugin::{
    MAX_TIMEOUT, OutputStreamKind, Plugin, PluginError, Policy, RunReport, Runtime,
    default_cache_dir,
};

pub(crate) fn run(args: RunArgs, redis: Option<&str>, json: bool) -> Result<(), Failure> {
    let input = read_input(&args)?;
    let wasm = std::fs::read(&args.plugin).map_err(|e| {
        Failure::usage(format!(
            "cannot read the plugin {}: {e}",
            args.plugin.display()
        ))
    })?;
    let namespace = match args.namespace {
        Some(namespace) => namespace,
        None => default_namespace(&args.plugin),
    };
    let mut policy = Policy::new(namespace).map_err(|e| match e {
        PluginError::Load(why) => Failure::usage(format!("--namespace: {why}")),
        other => Failure::from(other),
    })?;
    if let Some(timeout) = args.timeout {
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(Failure::usage(
                "--timeout must be above zero and at most an hour",
            ));
        }
        policy = policy.timeout(timeout);
    }
    if let Some(bytes) = args.max_memory {
        let bytes = usize::try_from(bytes)
            .map_err(|_| Failure::usage("--max-memory is too large for this machine"))?;
        if bytes == 0 {
            return Err(Failure::usage("--max-memory must be above zero"));
        }
        policy = policy.max_memory(bytes);
    }
    if let Some(max) = args.max_locks {
        policy = policy.max_locks(max);
    }
    policy = policy.max_input(usize::try_from(args.max_input).unwrap_or(usize::MAX));

    let (client, store) = open_client(redis)?;
    if let Some(notice) = store.notice() {
        eprintln!("tollgate: {notice}");
    }
    let mut runtime = Runtime::builder();
    if let Some(dir) = default_cache_dir().filter(|_| !args.no_cache) {
        runtime = runtime.cache_dir(dir);
    }
    let runtime = runtime.build()?;
    let plugin = runtime.load(&client, &wasm, policy)?;

    if json {
        let reports = match &args.inputs {
            Some(path) => read_lines(path, args.max_input)?
                .iter()
                .map(|line| plugin.run_reporting(line.as_bytes()))
                .collect(),
            None => run_instances(&plugin, &input, args.instances, false)?,
        };
        return print_reports_json(&reports);
    }
    if let Some(path) = &args.inputs {
        return run_lines(&plugin, path, args.max_input);
    }
    if args.instances == 1 {
        let report = LiveOutput::run(&plugin, &input, None);
        let output = report.result?;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&output);
        if !output.is_empty() && !output.ends_with(b"\n") {
            let _ = stdout.write_all(b"\n");
        }
        return Ok(());
    }

    let reports = run_instances(&plugin, &input, args.instances, true)?;
    let mut failed = 0;
    for (number, report) in (1..).zip(reports) {
        let mut stdout = std::io::stdout().lock();
        match report.result {
            Ok(output) => {
                let text = String::from_utf8_lossy(&output);
                if text.is_empty() {
                    let _ = writeln!(stdout, "[{number}]");
                }
                for line in text.lines() {
                    let _ = writeln!(stdout, "[{number}] {line}");
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("tollgate: instance {number}: {}", Failure::from(error));
            }
        }
    }
    let _ = std::io::stdout().flush();
    if failed > 0 {
        return Err(Failure::new(
            PLUGIN_FAILED,
            format!("{failed} of {} instances failed", args.instances),
        ));
    }
    Ok(())
}

/// `--inputs FILE`: one invocation per line, in order, each output printed
/// as it comes; exit 1 when any failed.
fn run_lines(plugin: &Plugin, path: &Path, max_input: u64) -> Result<(), Failure> {
    let mut failed = 0;
    for (number, line) in (1..).zip(read_lines(path, max_input)?) {
        let report = LiveOutput::run(plugin, line.as_bytes(), None);
        match report.result {
            Ok(output) => {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&output);
                if !output.is_empty() && !output.ends_with(b"\n") {
                    let _ = stdout.write_all(b"\n");
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("tollgate: line {number}: {}", Failure::from(error));
            }
        }
    }
    if failed > 0 {
        return Err(Failure::new(
            PLUGIN_FAILED,
            match failed {
                1 => "1 invocation failed".to_owned(),
                _ => format!("{failed} invocations failed"),
            },
        ));
    }
    Ok(())
}

/// The lines of an `--inputs` file, each within `--max-input`.
fn read_lines(path: &Path, max_input: u64) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if let Some((number, line)) = (1..).zip(&lines).find(|(_, l)| l.len() as u64 > max_input) {
        return Err(Failure::usage(format!(
            "line {number} of {} is {} bytes, over --max-input {max_input}",
            path.display(),
            line.len()
        )));
    }
    Ok(lines)
}

/// `--json`: every invocation (id, output, what it printed, error) in one
/// document; exit 1 when any failed.
fn print_reports_json(reports: &[RunReport]) -> Result<(), Failure> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let invocations: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| {
            let (output, error) = match &report.result {
                Ok(output) => (Some(text(output)), None),
                Err(error) => (None, Some(super::exit::one_line(&error.to_string()))),
            };
            serde_json::json!({
                "id": report.id,
                "output": output,
                "stdout": text(&report.stdout),
                "stderr": text(&report.stderr),
                "error": error,
            })
        })
        .collect();
    super::operator::print_json(&serde_json::json!({ "invocations": invocations }));
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        return Err(Failure::new(
            PLUGIN_FAILED,
            format!("{failed} of {} invocations failed", reports.len()),
        ));
    }
    Ok(())
}

/// Shows what an invocation prints as it prints it: its stdout on stdout
/// and its stderr on stderr, each line prefixed `[n] ` when several
/// instances run (a line then appears once it is complete).
struct LiveOutput {
    prefix: Option<String>,
    /// The unfinished last line of stdout and of stderr.
    pending: Mutex<[Vec<u8>; 2]>,
}

impl LiveOutput {
    /// Runs one invocation, showing its output live.
    fn run(plugin: &Plugin, input: &[u8], number: Option<u16>) -> RunReport {
        let live = Arc::new(LiveOutput {
            prefix: number.map(|n| format!("[{n}] ")),
            pending: Mutex::default(),
        });
        let sink = Arc::clone(&live);
        let report = plugin.run_streaming(input, move |kind, bytes| sink.show(kind, bytes));
        live.finish();
        report
    }

    fn show(&self, kind: OutputStreamKind, bytes: &[u8]) {
        let Some(prefix) = &self.prefix else {
            let _ = match kind {
                OutputStreamKind::Stdout => std::io::stdout().lock().write_all(bytes),
                OutputStreamKind::Stderr => std::io::stderr().lock().write_all(bytes),
            };
            return;
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let buffer = &mut pending[kind as usize];
        buffer.extend_from_slice(bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            write_line(kind, prefix, &line[..end]);
        }
    }

    /// Shows unfinished last lines.
    fn finish(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, buffer) in [OutputStreamKind::Stdout, OutputStreamKind::Stderr]
            .into_iter()
            .zip(pending.iter_mut())
        {
            if !buffer.is_empty() {
                write_line(kind, self.prefix.as_deref().unwrap_or(""), buffer);
                buffer.clear();
            }
        }
    }
}

fn write_line(kind: OutputStreamKind, prefix: &str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let _ = match kind {
        OutputStreamKind::Stdout => writeln!(std::io::stdout().lock(), "{prefix}{line}"),
        OutputStreamKind::Stderr => writeln!(std::io::stderr().lock(), "{prefix}{line}"),
    };
}

/// Runs `count` invocations at once, one thread each (named `instance-N`,
/// which the store shows as the holder of their locks); their results in
/// instance order. With `live`, each instance's output is shown as it is
/// printed.
fn run_instances(
    plugin: &Plugin,
    input: &[u8],
    count: u16,
    live: bool,
) -> Result<Vec<RunReport>, Failure> {
    thread::scope(|scope| {
        let mut handles = Vec::new();
        for number in 1..=count {
            let handle = thread::Builder::new()
                .name(format!("instance-{number}"))
                .spawn_scoped(scope, move || match live {
                    true => LiveOutput::run(plugin, input, Some(number)),
                    false => plugin.run_reporting(input),
                })
                .map_err(|e| {
                    Failure::new(
                        PLUGIN_FAILED,
                        format!("cannot start instance {number}: {e}"),
                    )
                })?;
            handles.push(handle);
        }
        Ok(handles
            .into_iter()
            .zip(1..)
            .map(|(handle, id)| {
                handle.join().unwrap_or_else(|_| RunReport {
                    id,
                    result: Err(PluginError::Host("the instance's thread panicked".into())),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                })
            })
            .collect())
    })
}

/// The input, refused when larger than `--max-input` (read no further than
/// one byte past it).
fn read_input(args: &RunArgs) -> Result<Vec<u8>, Failure> {
    let too_large = |size: String| {
        Failure::usage(format!(
            "the input is {size}, over --max-input {} bytes (raise it, and --max-memory with it)",
            args.max_input
        ))
    };
    if let Some(text) = &args.input {
        if text.len() as u64 > args.max_input {
            return Err(too_large(format!("{} bytes", text.len())));
        }
        return Ok(text.clone().into_bytes());
    }
    let Some(path) = &args.input_file else {
        return Ok(Vec::new());
    };
    let mut input = Vec::new();
    let limit = args.max_input.saturating_add(1);
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut input)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut input))
    };
    read.map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    if input.len() as u64 > args.max_input {
        return Err(too_large("larger".to_owned()));
    }
    Ok(input)
}

/// The namespace a plugin gets when none is given: its file name without
/// the extension, in the characters a namespace allows (`a-z`, `0-9`, `-`,
/// `_`; anything else becomes `-`).
fn default_namespace(plugin: &Path) -> String {
    let stem = plugin
        .file_stem()
        .map(|stem| stem.to_string_lossy())
        .unwrap_or_default();
    let namespace: String = stem
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if namespace.is_empty() {
        "plugin".to_owned()
    } else {
        namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_namespace_is_the_file_name() {
        let ns = |path: &str| default_namespace(Path::new(path));
        assert_eq!(ns("target/release/order_numbers.wasm"), "order_numbers");
        assert_eq!(ns("My Plugin.v2.wasm"), "my-plugin-v2");
        assert_eq!(ns("/"), "plugin");
        assert_eq!(ns(&"x".repeat(100)).len(), 64);
        assert!(Policy::new(ns("Ünïcode.wasm")).is_ok());
    }
}
