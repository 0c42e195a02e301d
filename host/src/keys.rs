//! Where each object lives in Redis.
//!
//! Every key of one object carries the object's name as its hash tag
//! (`{name}`), so all of them map to one Redis Cluster slot and one script can
//! touch them together. The keys of different names never collide: every key
//! of a name starts with `PREFIX + KIND + ":{" + name + "}"` and the suffixes
//! after it (`""`, `":fence"`, `":waiters"`; `":op:" + hex`; `":YYYYMMDD"`)
//! contain no `}`, so a brace inside a name cannot make its keys another
//! name's.

/// The keys of one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// Hash `{owner, fence, holder}` with the lock's TTL; absent when free.
    pub lock: String,
    /// The last fencing token issued for the name.
    pub fence: String,
    /// Present while some client waits for the lock: release then publishes.
    pub waiters: String,
    /// Channel on which releases are announced (shared by all objects).
    pub channel: String,
}

/// The keys of one idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimKeys {
    /// Hash `{state, owner, fp, result}`: the lease while running, the
    /// result (or cached failure) once finished.
    pub record: String,
    /// Present while some duplicate waits: finishing then publishes.
    pub waiters: String,
    /// Channel on which finished or abandoned claims are announced.
    pub channel: String,
}

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keyspace {
    prefix: String,
}

impl Keyspace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keyspace {
            prefix: prefix.into(),
        }
    }

    /// The channel that carries release notifications for this prefix.
    pub fn channel(&self) -> String {
        format!("{}notify", self.prefix)
    }

    /// The record of `key` in `namespace`. The hash tag is
    /// `{LEN:namespace:key}` with `LEN` the namespace's length in bytes, so
    /// that no two (namespace, key) pairs share a tag.
    pub fn claim(&self, namespace: &str, key: &str) -> ClaimKeys {
        let record = format!(
            "{}idem:{{{}:{namespace}:{key}}}",
            self.prefix,
            namespace.len()
        );
        ClaimKeys {
            waiters: format!("{record}:waiters"),
            record,
            channel: self.channel(),
        }
    }

    /// The marker of a once-per-window submission.
    pub fn once(&self, key: &str) -> String {
        format!("{}once:{{{key}}}", self.prefix)
    }

    /// A Redis glob matching the lock hashes (not their `:fence` or
    /// `:waiters` keys) of the names that match `name_glob`.
    pub fn lock_glob(&self, name_glob: &str) -> String {
        format!("{}lock:{{{name_glob}}}", self.prefix)
    }

    /// The lock name inside a lock hash key.
    pub fn lock_name<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("lock:{")?
            .strip_suffix('}')
    }

    pub fn lock(&self, name: &str) -> LockKeys {
        let lock = format!("{}lock:{{{}}}", self.prefix, name);
        LockKeys {
            fence: format!("{lock}:fence"),
            waiters: format!("{lock}:waiters"),
            lock,
            channel: self.channel(),
        }
    }

    /// The key of counter `name`: an integer as text, no TTL.
    pub fn counter(&self, name: &str) -> String {
        format!("{}counter:{{{}}}", self.prefix, name)
    }

    /// The record of operation `op_id` on counter `name`: a hash
    /// `{delta, value}` that expires with the op id's window. The op id is
    /// hex-encoded, so no op id (and no brace in it) can produce another
    /// object's key.
    pub fn counter_op(&self, name: &str, op_id: &str) -> String {
        let mut key = format!("{}:op:", self.counter(name));
        for byte in op_id.bytes() {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }

    /// The key of sequence `name`; a daily sequence uses this key plus
    /// `:YYYYMMDD`, built by the script from the server's day.
    pub fn sequence(&self, name: &str) -> String {
        format!("{}seq:{{{}}}", self.prefix, name)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_of_a_lock_share_its_hash_tag() {
        let keys = Keyspace::new("tollgate:").lock("orders:42");
        assert_eq!(keys.lock, "tollgate:lock:{orders:42}");
        for key in [&keys.fence, &keys.waiters] {
            assert!(key.starts_with(&keys.lock), "{key}");
        }
    }

    #[test]
    fn the_lock_glob_matches_lock_hashes_only() {
        let space = Keyspace::new("t:");
        let keys = space.lock("a:1");
        assert_eq!(space.lock_glob("a:*"), "t:lock:{a:*}");
        assert_eq!(space.lock_name(&keys.lock), Some("a:1"));
        assert_eq!(space.lock_name(&keys.fence), None);
        assert_eq!(space.lock_name(&keys.waiters), None);
    }

    #[test]
    fn namespace_and_key_cannot_be_confused() {
        let space = Keyspace::new("t:");
        assert_ne!(
            space.claim("a:b", "c").record,
            space.claim("a", "b:c").record
        );
        assert_eq!(space.claim("pay", "1").record, "t:idem:{3:pay:1}");
    }

    #[test]
    fn counter_and_sequence_keys_share_their_hash_tag() {
        let space = Keyspace::new("tollgate:");
        assert_eq!(space.counter("views"), "tollgate:counter:{views}");
        assert_eq!(
            space.counter_op("views", "a}{"),
            "tollgate:counter:{views}:op:617d7b"
        );
        assert_eq!(space.sequence("orders"), "tollgate:seq:{orders}");
    }

    #[test]
    fn an_op_id_cannot_produce_another_counters_key() {
        let space = Keyspace::new("t:");
        // Name "a}:op:61" vs. name "a" with op id "a" (hex 61).
        assert_ne!(space.counter("a}:op:61"), space.counter_op("a", "a"));
        assert_ne!(space.counter_op("a}", "x"), space.counter_op("a", "}x"));
    }

    #[test]
    fn braces_in_a_name_cannot_make_two_names_share_a_key() {
        let space = Keyspace::new("t:");
        let a = space.lock("a");
        let b = space.lock("a}:fence");
        let all_a = [&a.lock, &a.fence, &a.waiters];
        for key in [&b.lock, &b.fence, &b.waiters] {
            assert!(!all_a.contains(&key), "{key} collides");
        }
    }
}
