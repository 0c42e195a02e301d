//! A child process for tests that must kill a tollgate user with SIGKILL.
//!
//! `tollgate-test-helper hold-lock URL NAME TTL_MS`: takes the lock, prints
//! `granted FENCE` on stdout, then sleeps until killed.

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
        _ => {
            eprintln!("usage: tollgate-test-helper hold-lock URL NAME TTL_MS");
            std::process::exit(2);
        }
    }
}
