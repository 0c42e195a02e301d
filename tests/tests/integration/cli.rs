//! The `tollgate` command, run as a process: argument errors, each example
//! plugin against a private redis-server, and the operator's commands.
//!
//! The binary under test is `tollgate-cli` of this package (see
//! `tests/src/bin/tollgate-cli.rs`): the same `tollgate::cli::main` as the
//! `tollgate` binary, built by Cargo before the tests run.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tollgate_tests::RedisServer;
use tollgate_tests::guest::plugin_file;

use crate::client;

/// Runs the command with `args` (no `REDIS_URL` from the environment).
fn tollgate(args: &[&str]) -> Output {
    tollgate_with(args, None)
}

fn tollgate_with(args: &[&str], redis_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate-cli"));
    // Compiled plugins are cached in a directory of this test process,
    // never in the user's own cache.
    command
        .args(args)
        .env_remove("REDIS_URL")
        .env("TOLLGATE_CACHE_DIR", cli_cache_dir());
    if let Some(url) = redis_url {
        command.env("REDIS_URL", url);
    }
    command.output().expect("the tollgate command starts")
}

/// The cache of compiled plugins the commands of this test process use,
/// removed when the process exits.
fn cli_cache_dir() -> std::path::PathBuf {
    extern "C" fn remove_cache() {
        let _ = std::fs::remove_dir_all(cache_path());
    }
    fn cache_path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tollgate-cli-cache-{}", std::process::id()))
    }
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain `extern "C"` function that removes a
    // directory of ours.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(remove_cache);
    });
    cache_path()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts the exit code, and that stderr is one `tollgate: ` line when the
/// command failed.
#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    if code != 0 {
        let err = stderr(output);
        assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
        assert!(err.starts_with("tollgate: "), "{err:?}");
    }
}

fn plugin(package: &str) -> String {
    let file: PathBuf = plugin_file(package);
    file.to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn argument_errors_exit_2_with_one_line_on_stderr() {
    let order_numbers = plugin("order-numbers");
    let p = order_numbers.as_str();
    let dead = "redis://127.0.0.1:1/";
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["run"],
        &["run", p, "--bogus"],
        &["run", p, "--timeout", "5"],
        &["run", p, "--timeout", "2 weeks"],
        &["run", p, "--timeout", "0s", "--redis", dead],
        &["run", p, "--timeout", "2h", "--redis", dead],
        &["run", p, "--max-memory", "0", "--redis", dead],
        &["run", p, "--instances", "0"],
        &["run", p, "--input", "a", "--input-file", "b"],
        &["run", p, "--namespace", "Not Valid", "--redis", dead],
        &["run", "/no/such/plugin.wasm", "--redis", dead],
        &["run", p, "--input-file", "/no/such/input", "--redis", dead],
        &["run", p, "--redis", "http://example.invalid/"],
        &["locks", "--limit", "0"],
        &["locks"],
        &["unlock", "orders:42", "--redis", dead],
        &["counter"],
        &["inspect", "x"],
    ];
    for args in cases {
        let output = tollgate(args);
        assert_exit(&output, 2);
        assert!(output.stdout.is_empty(), "{args:?}: {}", stdout(&output));
    }
    let output = tollgate(&["locks"]);
    assert!(stderr(&output).contains("REDIS_URL"), "{}", stderr(&output));
}

#[test]
fn run_without_a_store_uses_the_embedded_one_and_says_so() {
    let charge_once = plugin("charge-once");
    let output = tollgate(&[
        "run",
        &charge_once,
        "--input",
        "pay-1 4200 alice",
        "--instances",
        "4",
    ]);
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("embedded"), "{}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(out.matches("charged ").count(), 1, "{out}");
    assert_eq!(out.matches("replayed ").count(), 3, "{out}");
}

#[test]
fn help_lists_commands_and_exit_codes() {
    let output = tollgate(&["--help"]);
    assert_exit(&output, 0);
    let help = stdout(&output);
    for word in ["run", "locks", "unlock", "counter", "inspect", "Exit codes"] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    // The table is in the main help only; each command's points to it.
    for command in ["run", "locks", "unlock", "counter", "inspect"] {
        let output = tollgate(&[command, "--help"]);
        assert_exit(&output, 0);
        let help = stdout(&output);
        assert!(!help.contains("  3  the store is unavailable"), "{help}");
        assert!(help.contains("tollgate --help"), "{help}");
    }
}

#[test]
fn an_unreachable_store_exits_3_and_a_failing_plugin_1_and_a_non_plugin_4() {
    let dead = "redis://127.0.0.1:1/";
    assert_exit(&tollgate(&["counter", "x", "--redis", dead]), 3);
    assert_exit(&tollgate(&["locks", "--redis", dead]), 3);

    let server = RedisServer::start();
    let url = server.url();
    let order_numbers = plugin("order-numbers");
    let output = tollgate(&["run", &order_numbers, "--input", "many", "--redis", &url]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("the plugin failed"),
        "{}",
        stderr(&output)
    );

    let not_a_plugin =
        std::env::temp_dir().join(format!("not-a-plugin-{}.wasm", std::process::id()));
    std::fs::write(&not_a_plugin, b"\0asm but not really").unwrap();
    let output = tollgate(&["run", not_a_plugin.to_str().unwrap(), "--redis", &url]);
    let _ = std::fs::remove_file(&not_a_plugin);
    assert_exit(&output, 4);
}

#[test]
fn run_order_numbers_hands_out_daily_serial_numbers() {
    let server = RedisServer::start();
    let url = server.url();
    let order_numbers = plugin("order-numbers");
    let output = tollgate(&["run", &order_numbers, "--input", "3", "--redis", &url]);
    assert_exit(&output, 0);
    let numbers: Vec<String> = stdout(&output).lines().map(String::from).collect();
    assert_eq!(numbers.len(), 3, "{numbers:?}");
    for (number, seq) in numbers.iter().zip(1..) {
        let date = &number["ORD-".len()..number.len() - "-000000".len()];
        assert!(number.starts_with("ORD-"), "{number}");
        assert!(
            date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()),
            "{number}"
        );
        assert!(number.ends_with(&format!("-{seq:06}")), "{number}");
    }
    // Empty input: one more, and the numbering goes on (REDIS_URL works too).
    let output = tollgate_with(&["run", &order_numbers], Some(&url));
    assert_exit(&output, 0);
    assert!(
        stdout(&output).trim_end().ends_with("-000004"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn four_instances_of_charge_once_charge_once_and_replay_the_receipt() {
    let server = RedisServer::start();
    let url = server.url();
    let charge_once = plugin("charge-once");
    let run = |input: &str, instances: &str| {
        let args = [
            "run",
            &charge_once,
            "--input",
            input,
            "--instances",
            instances,
            "--redis",
            &url,
        ];
        let output = tollgate(&args);
        assert_exit(&output, 0);
        stdout(&output)
    };

    let out = run("pay-1 4200 alice", "4");
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, number) in lines.iter().zip(1..) {
        assert!(line.starts_with(&format!("[{number}] ")), "{out}");
    }
    lines.sort_by_key(|line| &line[4..]);
    let outcomes: Vec<&str> = lines.iter().map(|line| &line[4..]).collect();
    assert_eq!(
        outcomes,
        [
            "charged ch_000001",
            "replayed ch_000001",
            "replayed ch_000001",
            "replayed ch_000001"
        ],
        "{out}"
    );
    assert_eq!(
        client(&server)
            .counter("charge_once/charges")
            .get()
            .unwrap(),
        1
    );

    // Another request id, same customer and amount, within 10 s: a double
    // submission; and it stays one when retried.
    assert!(run("pay-2 4200 alice", "1").starts_with("duplicate: "));
    assert!(run("pay-2 4200 alice", "1").starts_with("duplicate: "));
    // The first request id with another amount: refused, not replayed.
    assert!(run("pay-1 5000 alice", "1").starts_with("mismatch: "));
    // Another customer is charged.
    assert_eq!(run("pay-3 4200 bob", "1"), "charged ch_000002\n");

    let output = tollgate(&["counter", "charge_once/charges", "--redis", &url]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "2\n");
}

#[test]
fn inventory_reserves_until_the_stock_runs_out() {
    let server = RedisServer::start();
    let url = server.url();
    let inventory = plugin("inventory");
    let output = tollgate(&[
        "run",
        &inventory,
        "--input",
        "sku9 30",
        "--instances",
        "4",
        "--redis",
        &url,
    ]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert_eq!(out.matches("] reserved 30 sku9").count(), 3, "{out}");
    assert_eq!(
        out.matches("] refused 30 sku9 (10 left)").count(),
        1,
        "{out}"
    );

    let output = tollgate(&["run", &inventory, "--input", "sku9 10", "--redis", &url]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "reserved 10 sku9 (0 left)\n");

    let output = tollgate(&["counter", "inventory/stock/sku9", "--redis", &url]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "0\n");
}

#[test]
fn wallet_deposits_at_once_all_count_and_the_balance_is_a_fenced_record() {
    let server = RedisServer::start();
    let url = server.url();
    let wallet = plugin("wallet");
    let output = tollgate(&[
        "run",
        &wallet,
        "--input",
        "deposit acct-7 1200",
        "--instances",
        "4",
        "--redis",
        &url,
    ]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    for n in 1..=4 {
        let plural = if n == 1 { "" } else { "s" };
        let line = format!("balance {} ({n} movement{plural})", 1200 * n);
        assert_eq!(out.matches(&line).count(), 1, "{line}: {out}");
    }
    let output = tollgate(&["inspect", "wallet/balance/acct-7", "--redis", &url]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("record         \"4800 4\" (6 bytes, token "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn locks_lists_a_held_lock_and_unlock_force_removes_it() {
    let server = RedisServer::start();
    let url = server.url();
    let client = client(&server);
    let guard = client
        .lock("orders:42")
        .ttl(Duration::from_secs(60))
        .acquire()
        .unwrap();
    let token = guard.fencing_token().to_string();

    let output = tollgate(&["locks", "--redis", &url]);
    assert_exit(&output, 0);
    let table = stdout(&output);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..2], ["orders:42", token.as_str()], "{table}");
    assert!(row[2].ends_with('s'), "a TTL in seconds: {table}");
    assert!(lines[1].contains("pid"), "the holder: {table}");
    // The store may be named before the subcommand too.
    let before = tollgate(&["--redis", &url, "locks"]);
    assert_exit(&before, 0);
    let listed = stdout(&before);
    let first: Vec<&str> = listed
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .take(2)
        .collect();
    assert_eq!(first, row[..2], "{listed}");

    let output = tollgate(&["locks", "invoices:*", "--redis", &url]);
    assert_exit(&output, 0);
    assert!(output.stdout.is_empty(), "{}", stdout(&output));

    let output = tollgate_with(&["inspect", "orders:42"], Some(&url));
    assert_exit(&output, 0);
    let inspect = stdout(&output);
    assert!(inspect.contains("lock           held"), "{inspect}");
    assert!(
        inspect.contains(&format!("fencing token  {token}")),
        "{inspect}"
    );

    // Refused without --force: the lock is still held.
    assert_exit(&tollgate(&["unlock", "orders:42", "--redis", &url]), 2);
    assert!(client.lock_info("orders:42").unwrap().is_some());

    let output = tollgate(&["unlock", "orders:42", "--force", "--redis", &url]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).starts_with("removed lock orders:42"),
        "{}",
        stdout(&output)
    );
    assert!(client.lock_info("orders:42").unwrap().is_none());
    assert!(
        guard.release().is_err(),
        "the holder learns it lost the lock"
    );

    // Nothing left to remove: exit code 5.
    assert_exit(
        &tollgate(&["unlock", "orders:42", "--force", "--redis", &url]),
        5,
    );
}

#[test]
fn locks_are_listed_by_name_and_the_limit_notice_means_more_are_held() {
    let server = RedisServer::start();
    let url = server.url();
    let client = client(&server);
    let guards: Vec<_> = ["c", "a", "d", "b"]
        .iter()
        .map(|name| client.lock(*name).acquire().unwrap())
        .collect();
    let names = |output: &Output| -> Vec<String> {
        stdout(output)
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let exactly = tollgate(&["locks", "--limit", "4", "--redis", &url]);
    assert_exit(&exactly, 0);
    assert_eq!(names(&exactly), ["a", "b", "c", "d"]);
    assert_eq!(stderr(&exactly), "", "exactly 4 held: no notice");
    let fewer = tollgate(&["locks", "--limit", "3", "--redis", &url]);
    assert_exit(&fewer, 0);
    assert_eq!(names(&fewer).len(), 3);
    assert!(
        stderr(&fewer).contains("more are held"),
        "{}",
        stderr(&fewer)
    );
    drop(guards);
}

#[test]
fn locks_skips_a_key_tollgate_did_not_write_with_a_warning() {
    let server = RedisServer::start();
    let url = server.url();
    let _held = client(&server).lock("orders:42").acquire().unwrap();
    redis::cmd("SET")
        .arg("tollgate:lock:{foreign}")
        .arg("not a lock")
        .exec(&mut server.conn())
        .unwrap();
    let output = tollgate(&["locks", "--redis", &url]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("orders:42"), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("WARN") && stderr(&output).contains("{foreign}"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_timeout_may_have_a_fraction() {
    let output = tollgate(&[
        "run",
        &plugin("order-numbers"),
        "--timeout",
        "1.5s",
        "--input",
        "1",
    ]);
    assert_exit(&output, 0);
}

#[test]
fn a_misspelt_command_gets_clap_s_suggestion_in_its_one_line() {
    let output = tollgate(&["runn"]);
    assert_exit(&output, 2);
    let err = stderr(&output);
    assert!(err.contains("'run'"), "{err}");
}

#[test]
fn run_shows_what_the_plugin_prints_while_it_runs() {
    use std::io::{BufRead, BufReader};
    let server = RedisServer::start();
    let gate = crate::client(&server).lock("t/gate").acquire().unwrap();
    // The plugin prints, then waits for the gate, which opens only once
    // its line was seen: shown afterwards, the line would never come in time.
    let test_plugin = plugin("tollgate-test-plugin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-cli"))
        .args(["run", &test_plugin, "--namespace", "t", "--timeout", "30s"])
        .args(["--input", "print-then-lock early gate 5000"])
        .env("REDIS_URL", server.url())
        .env("TOLLGATE_CACHE_DIR", cli_cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "early");
    gate.release().unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "locked");
    assert!(child.wait().unwrap().success());
}

#[test]
fn run_shows_what_the_plugin_printed_and_why_it_panicked() {
    let test_plugin = plugin("tollgate-test-plugin");
    let output = tollgate(&["run", &test_plugin, "--input", "print hello"]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "hello\nprinted\n");
    assert!(
        stderr(&output).contains("err: hello"),
        "{}",
        stderr(&output)
    );

    let output = tollgate(&[
        "run",
        &test_plugin,
        "--input",
        "print hi",
        "--instances",
        "2",
    ]);
    assert_exit(&output, 0);
    let out = stdout(&output);
    for n in 1..=2 {
        // Printed lines come as they are printed, the results at the end.
        assert!(out.contains(&format!("[{n}] hi\n")), "{out}");
        assert!(out.contains(&format!("[{n}] printed\n")), "{out}");
        assert!(
            stderr(&output).contains(&format!("[{n}] err: hi")),
            "{}",
            stderr(&output)
        );
    }

    let output = tollgate(&["run", &test_plugin, "--input", "panic-holding p"]);
    assert_eq!(output.status.code(), Some(1));
    let last = stderr(&output)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("tollgate: the plugin panicked: panic-holding: panicking while holding"),
        "{last}"
    );
}

#[test]
fn policy_flags_reach_the_plugin_and_a_large_input_is_refused_before_it_runs() {
    let test_plugin = plugin("tollgate-test-plugin");
    let output = tollgate(&[
        "run",
        &test_plugin,
        "--max-locks",
        "1",
        "--input",
        "hold-many 2",
    ]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("error at 1: quota-exceeded"),
        "{}",
        stdout(&output)
    );

    let output = tollgate(&[
        "run",
        &test_plugin,
        "--max-input",
        "8",
        "--input",
        "print 123456789",
    ]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("--max-input"),
        "{}",
        stderr(&output)
    );

    let big = std::env::temp_dir().join(format!("tollgate-big-input-{}", std::process::id()));
    std::fs::write(&big, vec![b'x'; 2 << 20]).unwrap();
    let output = tollgate(&[
        "run",
        &test_plugin,
        "--max-input",
        "1MiB",
        "--input-file",
        big.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&big);
    assert_exit(&output, 2);

    let output = tollgate(&[
        "run",
        &test_plugin,
        "--max-memory",
        "1MiB",
        "--input",
        "alloc 4194304",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("memory"), "{}", stderr(&output));
}

#[test]
fn counter_of_a_name_never_set_exits_5_and_says_so() {
    let server = RedisServer::start();
    let url = server.url();
    let output = tollgate(&["counter", "never", "--redis", &url]);
    assert_exit(&output, 5);
    assert!(stderr(&output).contains("never set"), "{}", stderr(&output));
    client(&server).counter("zero").set(0).unwrap();
    let output = tollgate(&["counter", "zero", "--redis", &url]);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "0\n");
}

#[test]
fn verbose_shows_what_tollgate_did() {
    let order_numbers = plugin("order-numbers");
    let output = tollgate(&["run", &order_numbers, "--input", "1", "--verbose"]);
    assert_exit(&output, 0);
    let err = stderr(&output);
    assert!(err.contains("invocation ended"), "{err}");
    let quiet = tollgate(&["run", &order_numbers, "--input", "1"]);
    assert!(!stderr(&quiet).contains("invocation ended"));

    // Each operation is a span: its close says what, on which name, how it
    // ended; the guest's calls nest in the invocation's.
    let test_plugin = plugin("tollgate-test-plugin");
    let output = tollgate(&["run", &test_plugin, "--input", "hold l", "--verbose"]);
    assert_exit(&output, 0);
    let err = stderr(&output);
    let lock_span = err
        .lines()
        .find(|line| line.contains("op=\"lock\"") && line.contains("close"))
        .unwrap_or_else(|| panic!("no lock span closed:\n{err}"));
    assert!(
        lock_span.contains("op=\"plugin\"")
            && lock_span.contains("outcome=\"granted\"")
            && lock_span.contains("elapsed_ms="),
        "{lock_span}"
    );
}

#[test]
fn inputs_runs_each_line_in_order_on_one_embedded_store() {
    let test_plugin = plugin("tollgate-test-plugin");
    let file = std::env::temp_dir().join(format!("tollgate-inputs-{}", std::process::id()));
    std::fs::write(&file, "incr c 5\nincr c 2\nget c\n").unwrap();
    let output = tollgate(&["run", &test_plugin, "--inputs", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "value 5\nvalue 7\nvalue 7\n");
    let both = tollgate(&["run", &test_plugin, "--inputs", "x", "--input", "y"]);
    assert_exit(&both, 2);
}

#[test]
fn inspect_shows_a_names_sequences_and_its_idempotency_record() {
    let server = RedisServer::start();
    let url = server.url();
    let client = client(&server);
    // A plugin's names: its sequence billing/invoices, and the key
    // `invoices` of its namespace `billing`.
    let invoices = client.sequence("billing/invoices");
    invoices.next().unwrap();
    invoices.next().unwrap();
    client
        .sequence("billing/invoices")
        .reset(tollgate::Reset::Daily)
        .next_raw()
        .unwrap();
    client
        .idempotency("billing")
        .key("invoices")
        .fingerprint(b"p")
        .run(|| Ok::<_, std::io::Error>(b"INV-1".to_vec()))
        .unwrap();

    let output = tollgate(&["inspect", "billing/invoices", "--redis", &url]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("sequence       2 reserved\n"), "{text}");
    assert!(text.contains("sequence/day   1 reserved today\n"), "{text}");
    assert!(
        text.contains("idempotency    completed, a 5 byte result (TTL ")
            && text.contains(", tied to a payload)"),
        "{text}"
    );
    // Reading drew no number.
    assert_eq!(invoices.last_reserved().unwrap(), Some(2));

    client
        .record("billing/invoices")
        .put(b"last=INV-1", 42)
        .unwrap();
    let text = stdout(&tollgate(&["inspect", "billing/invoices", "--redis", &url]));
    assert!(
        text.contains("record         \"last=INV-1\" (10 bytes, token 42, no TTL)\n"),
        "{text}"
    );
    let _permit = client
        .semaphore("billing/invoices", 3)
        .acquire_many(2)
        .unwrap();
    let text = stdout(&tollgate(&["inspect", "billing/invoices", "--redis", &url]));
    assert!(
        text.contains("permits        2 (token ") && text.contains("pid"),
        "{text}"
    );
    client.record("billing/invoices").delete(43).unwrap();
    let text = stdout(&tollgate(&["inspect", "billing/invoices", "--redis", &url]));
    assert!(
        text.contains("record         deleted, token 43\n"),
        "{text}"
    );

    let json = stdout(&tollgate(&[
        "inspect",
        "billing/invoices",
        "--json",
        "--redis",
        &url,
    ]));
    assert!(
        json.contains("\"sequence\":2")
            && json.contains("\"daily_sequence\":1")
            && json.contains("\"state\":\"completed\"")
            && json.contains("\"value\":\"INV-1\""),
        "{json}"
    );
}

#[test]
fn json_output_is_one_document_for_run_locks_counter_and_inspect() {
    let server = RedisServer::start();
    let url = server.url();
    let client = client(&server);
    let _guard = client.lock("j").acquire().unwrap();
    client.counter("j").set(3).unwrap();
    let locks = tollgate(&["locks", "--json", "--redis", &url]);
    assert_exit(&locks, 0);
    let text = stdout(&locks);
    assert!(
        text.starts_with("{\"locks\":[{") && text.contains("\"name\":\"j\""),
        "{text}"
    );
    let counter = tollgate(&["counter", "j", "--json", "--redis", &url]);
    assert_eq!(stdout(&counter), "{\"name\":\"j\",\"value\":3}\n");
    let inspect = tollgate(&["inspect", "j", "--json", "--redis", &url]);
    assert!(
        stdout(&inspect).contains("\"counter\":3"),
        "{}",
        stdout(&inspect)
    );
    let run = tollgate(&[
        "run",
        &plugin("tollgate-test-plugin"),
        "--json",
        "--input",
        "print x",
    ]);
    assert_exit(&run, 0);
    let doc = stdout(&run);
    assert!(doc.starts_with("{\"invocations\":[{"), "{doc}");
    assert!(
        doc.contains("\"output\":\"printed\"") && doc.contains("\"stdout\":\"x\\n\""),
        "{doc}"
    );
}
