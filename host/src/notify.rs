//! Wake-ups for waiters: a board of generation counters, one per watched
//! object, bumped when a release of that object is announced.
//!
//! A waiter reads the generation, tries its step, and if refused sleeps until
//! the generation moves or its own deadline passes. Because the generation is
//! read before the attempt, a release that lands between the attempt and the
//! sleep is never missed. Notifications are hints: losing one costs latency
//! (the waiter's fallback poll), never correctness.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Generation counters of the objects that somebody waits for.
#[derive(Default)]
pub(crate) struct WakeBoard {
    slots: Mutex<HashMap<String, Weak<Slot>>>,
}

#[derive(Default)]
struct Slot {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Slot {
    fn bump(&self) {
        *self.generation.lock() += 1;
        self.changed.notify_all();
    }
}

impl WakeBoard {
    /// Registers interest in `key`; the interest lasts as long as the `Watch`.
    pub fn watch(self: &Arc<Self>, key: &str) -> Watch {
        let mut slots = self.slots.lock();
        let slot = match slots.get(key).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                // Drop entries whose last watch went while a wake-up held it.
                slots.retain(|_, slot| slot.strong_count() > 0);
                let slot = Arc::new(Slot::default());
                slots.insert(key.to_owned(), Arc::downgrade(&slot));
                slot
            }
        };
        Watch {
            board: Arc::clone(self),
            key: key.to_owned(),
            slot,
        }
    }

    /// Wakes the waiters of `key`.
    pub fn wake(&self, key: &str) {
        let slot = self.slots.lock().get(key).and_then(Weak::upgrade);
        if let Some(slot) = slot {
            slot.bump();
        }
    }

    /// Whether somebody waits for `key` now.
    pub fn is_watched(&self, key: &str) -> bool {
        self.slots
            .lock()
            .get(key)
            .is_some_and(|slot| slot.strong_count() > 0)
    }

    /// Wakes every waiter: used when notifications may have been lost.
    pub fn wake_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for slot in slots {
            slot.bump();
        }
    }
}

/// One waiter's interest in one object.
pub(crate) struct Watch {
    board: Arc<WakeBoard>,
    key: String,
    slot: Arc<Slot>,
}

impl Watch {
    /// The current generation; pass it to [`Watch::wait_for_change`].
    pub fn generation(&self) -> u64 {
        *self.slot.generation.lock()
    }

    /// Sleeps until the generation differs from `seen` or `until` passes.
    /// Returns `true` when woken by a change.
    pub fn wait_for_change(&self, seen: u64, until: Instant) -> bool {
        let mut generation = self.slot.generation.lock();
        while *generation == seen {
            if self
                .slot
                .changed
                .wait_until(&mut generation, until)
                .timed_out()
            {
                return *generation != seen;
            }
        }
        true
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut slots = self.board.slots.lock();
        // The map holds weak references, so ours is the last strong one when
        // nobody else watches this key.
        if Arc::strong_count(&self.slot) == 1 {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k");
        let seen = watch.generation();
        board.wake("k");
        let start = Instant::now();
        assert!(watch.wait_for_change(seen, start + Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn waking_another_key_does_not_wake_this_one() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k");
        let seen = watch.generation();
        board.wake("other");
        assert!(!watch.wait_for_change(seen, Instant::now() + Duration::from_millis(50)));
    }

    #[test]
    fn the_last_watch_removes_its_slot() {
        let board = Arc::new(WakeBoard::default());
        let a = board.watch("k");
        let b = board.watch("k");
        drop(a);
        assert_eq!(board.slots.lock().len(), 1);
        drop(b);
        assert!(board.slots.lock().is_empty());
    }
}
