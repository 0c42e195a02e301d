//! Compiled components kept on disk, so that a plugin is compiled once per
//! machine instead of once per process (a large Python or JavaScript
//! component takes seconds to compile).
//!
//! An entry is named after the component's SHA-256 digest and the engine's
//! compatibility hash (wasmtime's version and every setting that changes
//! compiled code), so a stale entry is never looked up. Each file starts
//! with a SHA-256 digest of the compiled code, checked before wasmtime reads
//! it: a truncated or altered entry is compiled again, never loaded. Entries
//! are written to a temporary file and renamed, so readers never see half a
//! file. The directory must belong to this user and be writable by nobody
//! else, or it is not used: loading compiled code trusts the directory.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What every entry starts with, before the digest of the rest.
const MAGIC: &[u8] = b"tollgate compiled component v1\n";

/// A directory of compiled components for one engine configuration.
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Mixed into every entry's name: the engine's compatibility hash.
    engine_key: u64,
}

impl DiskCache {
    /// Uses `dir` (created, private to this user, when missing). Refuses a
    /// directory that another user owns or others may write to.
    pub fn open(dir: &Path, engine: &Engine) -> Result<DiskCache, String> {
        create_private_dir(dir)
            .map_err(|e| format!("cannot create the cache directory {}: {e}", dir.display()))?;
        check_private(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Ok(DiskCache {
            dir: dir.to_owned(),
            engine_key: hasher.finish(),
        })
    }

    /// The directory's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, digest: &[u8; 32]) -> PathBuf {
        let mut name = Sha256::new();
        name.update(digest);
        name.update(self.engine_key.to_le_bytes());
        let name: [u8; 32] = name.finalize().into();
        self.dir.join(format!("{}.cwasm", hex(&name[..16])))
    }

    /// The compiled component for the component whose bytes have `digest`,
    /// when a sound entry exists.
    pub fn load(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let path = self.entry(digest);
        let bytes = fs::read(&path).ok()?;
        let code = verified(&bytes)?;
        // SAFETY: `code` is exactly what `Component::serialize` wrote for
        // this engine configuration (its digest matches, in a directory only
        // this user can write); wasmtime checks its header and configuration
        // again, and it is copied, so later changes to the file cannot reach it.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "tollgate: ignoring a compiled component that does not load");
                None
            }
        }
    }

    /// Stores `component`, compiled from bytes with `digest`. Best effort: a
    /// failure is logged and otherwise ignored.
    pub fn store(&self, digest: &[u8; 32], component: &Component) {
        if let Err(error) = self.try_store(digest, component) {
            tracing::warn!(dir = %self.dir.display(), %error, "tollgate: cannot cache a compiled component");
        }
    }

    fn try_store(&self, digest: &[u8; 32], component: &Component) -> Result<(), String> {
        let code = component.serialize().map_err(|e| format!("{e:#}"))?;
        let path = self.entry(digest);
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = private_file(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(&code))?;
            file.write_all(&code)?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            e.to_string()
        })
    }
}

/// The compiled code of an entry, when its header and digest are right.
fn verified(entry: &[u8]) -> Option<&[u8]> {
    let rest = entry.strip_prefix(MAGIC)?;
    if rest.len() < 32 {
        return None;
    }
    let (digest, code) = rest.split_at(32);
    (Sha256::digest(code).as_slice() == digest).then_some(code)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::File::create(path)
}

/// Refuses a directory that is not this user's alone to write.
#[cfg(unix)]
fn check_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "the cache directory {} belongs to another user",
            dir.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the cache directory {} is writable by others (chmod go-w it)",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// Where the command keeps compiled components: `$TOLLGATE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/tollgate`, else `~/.cache/tollgate`; `None` when none
/// of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("TOLLGATE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("tollgate"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache").join("tollgate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_altered_or_truncated_entry_is_not_verified() {
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(b"code"));
        entry.extend_from_slice(b"code");
        assert_eq!(verified(&entry), Some(&b"code"[..]));
        let mut altered = entry.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(verified(&altered), None);
        assert_eq!(verified(&entry[..entry.len() - 1]), None);
        assert_eq!(verified(&entry[..10]), None);
        assert_eq!(verified(b""), None);
    }
}
