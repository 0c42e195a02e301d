//! What the `metrics` feature reports, read back through a recorder
//! installed on the test's thread (so that parallel tests do not mix in).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use parking_lot::Mutex;
use tollgate::metrics as names;
use tollgate::plugin::Policy;
use tollgate::{Client, Error};
use tollgate_tests::guest::test_plugin;

/// Every counter and histogram recorded, by `name{label=value,...}`.
#[derive(Default, Clone)]
struct Recorded {
    counters: Arc<Mutex<HashMap<String, u64>>>,
    histograms: Arc<Mutex<HashMap<String, Vec<f64>>>>,
}

impl Recorded {
    fn counter(&self, id: &str) -> u64 {
        self.counters.lock().get(id).copied().unwrap_or(0)
    }

    fn samples(&self, id: &str) -> Vec<f64> {
        self.histograms.lock().get(id).cloned().unwrap_or_default()
    }
}

/// `name{a=x,b=y}`, labels in the order given.
fn id(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

struct Slot {
    recorded: Recorded,
    id: String,
}

impl CounterFn for Slot {
    fn increment(&self, value: u64) {
        *self
            .recorded
            .counters
            .lock()
            .entry(self.id.clone())
            .or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.recorded.counters.lock().insert(self.id.clone(), value);
    }
}

impl HistogramFn for Slot {
    fn record(&self, value: f64) {
        let mut histograms = self.recorded.histograms.lock();
        histograms.entry(self.id.clone()).or_default().push(value);
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Slot {
            recorded: self.clone(),
            id: id(key),
        }))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Slot {
            recorded: self.clone(),
            id: id(key),
        }))
    }
}

#[test]
fn grants_refusals_lost_locks_and_claims_are_counted() {
    let client = Client::in_memory();
    let recorded = Recorded::default();
    metrics::with_local_recorder(&recorded, || {
        client.lock("a").acquire().unwrap().release().unwrap();

        // Held on another thread (whose events this recorder does not see).
        let other = client.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _guard = other.lock("a").acquire().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        assert!(client.lock("a").try_acquire().unwrap().is_none());
        done_tx.send(()).unwrap();
        holder.join().unwrap();

        let short = client
            .lock("b")
            .ttl(Duration::from_millis(20))
            .acquire()
            .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(short.release(), Err(Error::NotHeld { .. })));

        let payments = client.idempotency("pay");
        let charge = || Ok::<_, std::io::Error>(b"ch_1".to_vec());
        assert!(!payments.key("k").run(charge).unwrap().replayed);
        assert!(payments.key("k").run(charge).unwrap().replayed);
    });

    assert_eq!(recorded.counter(names::LOCK_GRANTS), 2);
    assert_eq!(recorded.samples(names::LOCK_WAIT_SECONDS).len(), 2);
    assert_eq!(recorded.counter(names::LOCK_NOT_GRANTED), 1);
    let lost = format!("{}{{kind=lock}}", names::LEASES_LOST);
    assert_eq!(recorded.counter(&lost), 1);
    let claims =
        |found: &str| recorded.counter(&format!("{}{{found={found}}}", names::IDEMPOTENCY_CLAIMS));
    assert_eq!((claims("fresh"), claims("replayed")), (1, 1));
}

#[test]
fn plugin_invocations_are_counted_by_outcome_and_traps_by_cause() {
    let client = Client::in_memory();
    let plugin = crate::plugin::runtime()
        .load(&client, test_plugin(), Policy::new("metered").unwrap())
        .unwrap();
    let recorded = Recorded::default();
    metrics::with_local_recorder(&recorded, || {
        plugin.run(b"incr x 1").unwrap();
        plugin.run(b"abort-holding t").unwrap_err();
    });
    let invocations = |outcome: &str| {
        recorded.counter(&format!(
            "{}{{plugin=metered,outcome={outcome}}}",
            names::PLUGIN_INVOCATIONS
        ))
    };
    assert_eq!((invocations("ok"), invocations("trapped")), (1, 1));
    let traps = format!(
        "{}{{plugin=metered,cause=unreachable}}",
        names::PLUGIN_TRAPS
    );
    assert_eq!(recorded.counter(&traps), 1);
    let seconds = format!("{}{{plugin=metered}}", names::PLUGIN_INVOCATION_SECONDS);
    assert_eq!(recorded.samples(&seconds).len(), 2);
    // The guest's own lock, taken inside the invocation, counts as a grant.
    assert_eq!(recorded.counter(names::LOCK_GRANTS), 1);
}
