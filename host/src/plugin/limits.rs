//! Resource limits of one invocation: memory and table space summed over
//! every memory and table the component creates, and caps on how many it may
//! create.

use wasmtime::ResourceLimiter;

/// Most table elements one invocation may hold across all its tables.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most core instances, tables and memories one invocation may create (a
/// Rust wasip2 component uses a handful).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;

/// Tracks what an invocation has grown; refusing growth traps the guest with
/// a message saying which limit it hit.
pub(crate) struct InvocationLimits {
    memory_limit: usize,
    memory_used: usize,
    table_elements_used: usize,
    refused: bool,
    /// The memory growth refused, if one was: (bytes asked for, limit).
    memory_refused: Option<(usize, usize)>,
}

impl InvocationLimits {
    pub fn new(memory_limit: usize) -> Self {
        InvocationLimits {
            memory_limit,
            memory_used: 0,
            table_elements_used: 0,
            refused: false,
            memory_refused: None,
        }
    }

    /// Whether a growth (or an instance's initial memory) was refused.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// The memory growth that was refused: (bytes in all it would have
    /// made, the limit).
    pub fn memory_refused(&self) -> Option<(usize, usize)> {
        self.memory_refused
    }
}

/// Records growth from `current` to `desired` of one memory or table in
/// `used`, the total over all of them; refuses (trapping the guest) past
/// `limit`.
fn grow(
    used: &mut usize,
    current: usize,
    desired: usize,
    limit: usize,
    what: &str,
) -> wasmtime::Result<bool> {
    let total = used.saturating_sub(current).saturating_add(desired);
    if total > limit {
        wasmtime::bail!("{what} limit exceeded: {total} in all, over the policy's {limit}");
    }
    *used = total;
    Ok(true)
}

impl ResourceLimiter for InvocationLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.memory_limit;
        let before = self.memory_used;
        let grown = grow(
            &mut self.memory_used,
            current,
            desired,
            limit,
            "memory (bytes)",
        );
        if grown.is_err() {
            self.refused = true;
            let requested = before.saturating_sub(current).saturating_add(desired);
            self.memory_refused = Some((requested, limit));
        }
        grown
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = grow(
            &mut self.table_elements_used,
            current,
            desired,
            MAX_TABLE_ELEMENTS,
            "table (elements)",
        );
        self.refused |= grown.is_err();
        grown
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_limited_across_all_memories() {
        let mut limits = InvocationLimits::new(100);
        assert!(limits.memory_growing(0, 60, None).unwrap());
        // A second memory may not take the remaining budget and more.
        assert!(limits.memory_growing(0, 50, None).is_err());
        assert!(limits.memory_growing(0, 40, None).unwrap());
        // Growing the first memory counts only the difference.
        assert!(limits.memory_growing(60, 61, None).is_err());
        assert!(limits.memory_growing(60, 60, None).unwrap());
    }
}
