//! Where each object lives in Redis.
//!
//! Every key of one object carries the object's name as its hash tag
//! (`{name}`), so all of them map to one Redis Cluster slot and one script can
//! touch them together. Release notifications go to the sharded channel
//! named like the object's waiters key (`SPUBLISH`), so they stay on the
//! object's node too. Inside the tag, `%` and `}` are written `%25` and
//! `%7D`: Redis ends a tag at its first `}`, so a name with a `}` (or one
//! that starts with it, which would leave the tag empty and hash each key
//! whole) could otherwise split one object's keys over several slots. Names
//! without `%` or `}` appear as they are.
//!
//! The keys of different names never collide: every key of a name starts
//! with `PREFIX + KIND + ":{" + tag + "}"`, the escaping is one to one, and
//! the suffixes after it (`""`, `":fence"`, `":turns"`, `":waiters"`; `":op:" + hex`;
//! `":daily"`) contain no `}`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The keys of one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// On Redis, one string: `FENCE EXPIRES OWNER HOLDER` while granted,
    /// `FENCE` once released, kept until the grant's end plus the fencing
    /// counter's retention (see `store/lock_record.lua`).
    pub lock: String,
    /// The sharded channel every release publishes on, for the waiters.
    pub waiters: String,
}

impl LockKeys {
    /// The keys of the lock whose key is `lock`.
    pub fn of(lock: String) -> Self {
        LockKeys {
            waiters: waiters_of(&lock),
            lock,
        }
    }

    /// The in-process store's fencing counter (Redis keeps it in `lock`).
    pub fn fence(&self) -> String {
        [&self.lock, ":fence"].concat()
    }

    /// On Redis, the sorted set of the processes waiting for the lock, in
    /// the order their turns come.
    pub fn turns(&self) -> String {
        [&self.lock, ":turns"].concat()
    }
}

/// The keys of one idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimKeys {
    /// Hash `{state, owner, fp, result}`: the lease while running, the
    /// result (or cached failure) once finished.
    pub record: String,
    /// Present while some duplicate waits: finishing then publishes on the
    /// sharded channel of the same name.
    pub waiters: String,
}

/// The keys of one semaphore or read-write lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantKeys {
    /// A hash: the last fencing token, and one field per grant (see
    /// `store/semaphore_record.lua` and `store/rw_record.lua`).
    pub key: String,
    /// The sharded channel every release publishes on, for the waiters.
    pub waiters: String,
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

    /// The record of `key` in `namespace`. The hash tag is
    /// `{LEN:namespace:key}` with `LEN` the namespace's length in bytes, so
    /// that no two (namespace, key) pairs share a tag.
    pub fn claim(&self, namespace: &str, key: &str) -> ClaimKeys {
        let (tagged_namespace, tagged_key) = (tag(namespace), tag(key));
        let mut record = String::with_capacity(
            self.prefix.len() + tagged_namespace.len() + tagged_key.len() + 32,
        );
        record.push_str(&self.prefix);
        record.push_str("idem:{");
        // Writing to a String cannot fail.
        let _ = write!(record, "{}:", namespace.len());
        record.push_str(&tagged_namespace);
        record.push(':');
        record.push_str(&tagged_key);
        record.push('}');
        ClaimKeys {
            waiters: waiters_of(&record),
            record,
        }
    }

    /// The marker of a once-per-window submission.
    pub fn once(&self, key: &str) -> String {
        self.tagged("once", key)
    }

    /// A Redis glob matching the lock keys (not their `:fence` or
    /// `:waiters` names) of the names that match `name_glob`.
    pub fn lock_glob(&self, name_glob: &str) -> String {
        self.tagged("lock", name_glob)
    }

    /// The lock name inside a lock key.
    pub fn lock_name<'k>(&self, key: &'k str) -> Option<Cow<'k, str>> {
        let tagged = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("lock:{")?
            .strip_suffix('}')?;
        untag(tagged)
    }

    pub fn lock(&self, name: &str) -> LockKeys {
        LockKeys::of(self.tagged("lock", name))
    }

    /// The key of counter `name`: an integer as text, no TTL.
    pub fn counter(&self, name: &str) -> String {
        self.tagged("counter", name)
    }

    /// The record of operation `op_id` on counter `name`: the text
    /// `DELTA VALUE`, which expires with the op id's window. The op id is
    /// hex-encoded, so no op id (and no brace in it) can produce another
    /// object's key.
    pub fn counter_op(&self, name: &str, op_id: &str) -> String {
        let counter = self.counter(name);
        let mut key = String::with_capacity(counter.len() + 4 + 2 * op_id.len());
        key.push_str(&counter);
        key.push_str(":op:");
        for byte in op_id.bytes() {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        key
    }

    pub fn semaphore(&self, name: &str) -> GrantKeys {
        self.grant_keys("sem", name)
    }

    pub fn rw_lock(&self, name: &str) -> GrantKeys {
        self.grant_keys("rw", name)
    }

    fn grant_keys(&self, kind: &str, name: &str) -> GrantKeys {
        let key = self.tagged(kind, name);
        GrantKeys {
            waiters: waiters_of(&key),
            key,
        }
    }

    /// The key of fenced record `name`: a hash `{fence, value}`; after a
    /// delete, `{fence}` alone, so a stale writer cannot bring it back.
    pub fn record(&self, name: &str) -> String {
        self.tagged("rec", name)
    }

    /// The key of sequence `name` (an integer).
    pub fn sequence(&self, name: &str) -> String {
        self.tagged("seq", name)
    }

    /// The key of daily sequence `name`: a hash of the server's current and
    /// previous day's counts.
    pub fn daily_sequence(&self, name: &str) -> String {
        [&self.sequence(name), ":daily"].concat()
    }

    /// `PREFIX + kind + ":{" + tag + "}"`: the key of object `name` of
    /// `kind`, built in one allocation (keys are made on every call).
    fn tagged(&self, kind: &str, name: &str) -> String {
        [&self.prefix, kind, ":{", &tag(name), "}"].concat()
    }
}

/// The waiters key, and release channel, of the object whose key is `key`.
pub(crate) fn waiters_of(key: &str) -> String {
    [key, ":waiters"].concat()
}

/// `name` as the inside of a hash tag: `%` as `%25` and `}` as `%7D`.
fn tag(name: &str) -> Cow<'_, str> {
    if !name.contains(['%', '}']) {
        return Cow::Borrowed(name);
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '}' => escaped.push_str("%7D"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The name inside a tag made by [`tag`]; `None` for a tag it cannot make.
fn untag(tagged: &str) -> Option<Cow<'_, str>> {
    if !tagged.contains('%') {
        return (!tagged.contains('}')).then_some(Cow::Borrowed(tagged));
    }
    let mut name = String::with_capacity(tagged.len());
    let mut rest = tagged;
    while let Some(at) = rest.find('%') {
        name.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%25") => name.push('%'),
            Some("%7D") => name.push('}'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(Cow::Owned(name))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_of_a_lock_share_its_hash_tag() {
        let keys = Keyspace::new("tollgate:").lock("orders:42");
        assert_eq!(keys.lock, "tollgate:lock:{orders:42}");
        for key in [&keys.fence(), &keys.waiters] {
            assert!(key.starts_with(&keys.lock), "{key}");
        }
    }

    #[test]
    fn the_lock_glob_matches_lock_hashes_only() {
        let space = Keyspace::new("t:");
        let keys = space.lock("a:1");
        assert_eq!(space.lock_glob("a:*"), "t:lock:{a:*}");
        assert_eq!(space.lock_name(&keys.lock).as_deref(), Some("a:1"));
        assert_eq!(space.lock_name(&keys.fence()), None);
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

    fn cluster_tag(key: &str) -> &str {
        std::str::from_utf8(crate::store::hash_tag(key.as_bytes())).unwrap()
    }

    #[test]
    fn every_key_of_an_object_hashes_the_same_tag_whatever_its_name() {
        let space = Keyspace::new("t:");
        for name in ["}", "}x", "{", "{}", "}{", "a}b", "%7D", "a%b}", "plain"] {
            let lock = space.lock(name);
            let fence = lock.fence();
            let tags: Vec<&str> = [&lock.lock, &fence, &lock.waiters]
                .iter()
                .map(|k| cluster_tag(k))
                .collect();
            assert!(tags.iter().all(|t| *t == tags[0]), "{name}: {tags:?}");
            assert_ne!(tags[0], lock.lock, "{name}: no tag");
            let counter = space.counter(name);
            assert_eq!(
                cluster_tag(&counter),
                cluster_tag(&space.counter_op(name, "}{"))
            );
            assert_eq!(space.lock_name(&lock.lock).as_deref(), Some(name));
            let claim = space.claim(name, name);
            assert_eq!(cluster_tag(&claim.record), cluster_tag(&claim.waiters));
            assert_ne!(cluster_tag(&space.once(name)), space.once(name));
            assert_eq!(
                cluster_tag(&space.sequence(name)),
                cluster_tag(&space.daily_sequence(name))
            );
        }
    }

    #[test]
    fn escaping_keeps_names_apart() {
        let space = Keyspace::new("t:");
        assert_ne!(space.lock("%7D").lock, space.lock("}").lock);
        assert_ne!(space.lock("%25").lock, space.lock("%").lock);
        assert_eq!(space.lock("}").lock, "t:lock:{%7D}");
        assert_eq!(space.lock_name("t:lock:{%zz}"), None);
    }

    #[test]
    fn braces_in_a_name_cannot_make_two_names_share_a_key() {
        let space = Keyspace::new("t:");
        let a = space.lock("a");
        let b = space.lock("a}:fence");
        let all_a = [&a.lock, &a.fence(), &a.waiters];
        for key in [&b.lock, &b.fence(), &b.waiters] {
            assert!(!all_a.contains(&key), "{key} collides");
        }
    }
}
