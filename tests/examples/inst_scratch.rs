use std::time::{Duration, Instant};
use tollgate::plugin::{Policy, Runtime};
fn main() {
    let n: u32 = std::env::args().nth(1).unwrap().parse().unwrap();
    let client = tollgate::Client::in_memory();
    let pooled = Runtime::builder().pooled_instances(64).build().unwrap();
    let plugin = pooled
        .load(
            &client,
            tollgate_tests::guest::test_plugin(),
            Policy::new("bench")
                .unwrap()
                .timeout(Duration::from_secs(60)),
        )
        .unwrap();
    for _ in 0..1000 {
        plugin.run(b"noop").unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        plugin.run(b"noop").unwrap();
    }
    println!("{:.2} µs/run", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
