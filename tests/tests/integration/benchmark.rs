//! The benchmark keeps working: its quick mode runs every row (no figure is
//! asserted but command counts, which do not depend on the machine).

use tollgate_tests::bench::{self, Options};

#[test]
fn the_quick_benchmark_measures_every_row() {
    let mut out = Vec::new();
    let options = Options {
        worker_exe: Some(env!("CARGO_BIN_EXE_tollgate-test-helper").into()),
        ..Options::quick()
    };
    let rows = bench::run(&options, Vec::new(), &mut out).expect("the benchmark runs");
    let printed = String::from_utf8(out).unwrap();
    let titles: Vec<&str> = rows.iter().map(|r| r.title.as_str()).collect();
    for expected in [
        "lock cycle (acquire + release)",
        "try_acquire on a held lock",
        "idempotent action replayed",
        "idempotent action, fresh key",
        "counters and serial numbers",
        "8 threads on one lock (grants)",
        "16 threads on one lock (grants)",
        "4 processes × 4 threads on one lock (grants)",
        "lock cycle inside a wasm guest",
        "instantiate + one call (no Redis)",
        "lock cycle by topology (servers on this machine)",
    ] {
        assert!(
            titles.contains(&expected),
            "no row {expected:?} in\n{printed}"
        );
        assert!(printed.contains(expected));
    }
    for row in &rows {
        for v in &row.variants {
            assert!(
                v.per_sec.is_finite() && v.per_sec > 0.0,
                "{} / {}: {} ops/s",
                row.title,
                v.variant,
                v.per_sec
            );
        }
    }
    // Redis commands per uncontended lock cycle, scripts' own included: a
    // count, not a timing, so it holds on any machine.
    let cycle = rows[0]
        .variants
        .iter()
        .find(|v| v.variant == "tollgate lock")
        .unwrap();
    assert_eq!(cycle.commands, Some(7.0), "{printed}");
}
