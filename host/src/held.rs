//! Which lock names each thread holds through live guards, so that a
//! second acquisition of the same name on the same thread is refused
//! instead of waiting for itself.

use std::collections::HashMap;
use std::thread::ThreadId;

use parking_lot::Mutex;

/// Names held per thread; lookups allocate nothing.
#[derive(Debug, Default)]
pub(crate) struct HeldByThread(Mutex<HashMap<ThreadId, Vec<String>>>);

impl HeldByThread {
    /// Whether `thread` holds `name`.
    pub fn contains(&self, name: &str, thread: ThreadId) -> bool {
        self.0
            .lock()
            .get(&thread)
            .is_some_and(|names| names.iter().any(|held| held == name))
    }

    /// Records that `thread` holds `name`.
    pub fn insert(&self, name: &str, thread: ThreadId) {
        self.0
            .lock()
            .entry(thread)
            .or_default()
            .push(name.to_owned());
    }

    /// Records that `thread` no longer holds `name`.
    pub fn remove(&self, name: &str, thread: ThreadId) {
        let mut held = self.0.lock();
        if let Some(names) = held.get_mut(&thread) {
            if let Some(at) = names.iter().position(|held| held == name) {
                names.swap_remove(at);
            }
            if names.is_empty() {
                held.remove(&thread);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_by_one_thread_until_removed() {
        let held = HeldByThread::default();
        let me = std::thread::current().id();
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        held.insert("a", me);
        assert!(held.contains("a", me));
        assert!(!held.contains("a", other));
        assert!(!held.contains("b", me));
        held.remove("a", me);
        assert!(!held.contains("a", me));
        assert!(held.0.lock().is_empty());
    }
}
