//! Which store a command talks to. Opening a client happens in one place,
//! [`open_client`].

use std::fmt;

use super::exit::Failure;
use crate::Client;

/// The store a command runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A Redis server, shared with every other process that uses it. The URL
    /// is kept without its password, for messages.
    Redis { url: String },
    /// The embedded store of this process: nothing is shared with other
    /// processes, and everything is gone when the command ends.
    Memory,
}

impl StoreKind {
    /// What `run` tells the user on stderr before running, if anything.
    pub fn notice(&self) -> Option<String> {
        match self {
            StoreKind::Redis { .. } => None,
            StoreKind::Memory => Some(
                "no --redis or REDIS_URL: using the embedded in-process store \
                 (shared by this command's instances only, gone when it ends)"
                    .to_owned(),
            ),
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreKind::Redis { url } => write!(f, "Redis at {url}"),
            StoreKind::Memory => f.write_str("the embedded store"),
        }
    }
}

/// Opens the client for a command: Redis when a URL was given (`--redis`
/// or `REDIS_URL`), else the embedded in-process store. Does not connect:
/// the first call does.
pub(crate) fn open_client(redis: Option<&str>) -> Result<(Client, StoreKind), Failure> {
    match given(redis) {
        Some(url) => {
            let client = Client::builder(url)
                .client_name("tollgate-cli")
                .build()
                .map_err(|e| Failure::usage(format!("{} ({})", e, redact(url))))?;
            let kind = StoreKind::Redis { url: redact(url) };
            Ok((client, kind))
        }
        // Operator commands refuse this case through `open_shared`.
        None => Ok((Client::in_memory(), StoreKind::Memory)),
    }
}

/// Opens a store shared with other processes, for the operator commands
/// (`locks`, `unlock`, `counter`, `inspect`): an embedded store would only
/// ever show this process's own, empty, state.
pub(crate) fn open_shared(redis: Option<&str>, command: &str) -> Result<Client, Failure> {
    match given(redis) {
        Some(_) => Ok(open_client(redis)?.0),
        None => Err(Failure::usage(format!(
            "`tollgate {command}` needs the store other processes use: \
             pass --redis URL or set REDIS_URL"
        ))),
    }
}

/// `url` without its password: `redis://user:***@host/`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!(
        "{}{user}{}",
        &url[..authority_start],
        &url[authority_start + at..]
    )
}

/// The Redis URL, unless empty: `REDIS_URL=` (set but empty) means no URL,
/// as in most programs that read it.
fn given(redis: Option<&str>) -> Option<&str> {
    redis.filter(|url| !url.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact("rediss://me:p@ss@host"), "rediss://me:***@host");
        assert_eq!(redact("redis://token@host/"), "redis://***@host/");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn an_empty_url_is_no_url() {
        let err = open_shared(Some(""), "locks").unwrap_err();
        assert_eq!(err.code, super::super::exit::USAGE);
        assert!(matches!(open_client(Some("")), Ok((_, StoreKind::Memory))));
    }

    #[test]
    fn operator_commands_need_a_shared_store() {
        let err = open_shared(None, "locks").unwrap_err();
        assert_eq!(err.code, super::super::exit::USAGE);
        assert!(err.to_string().contains("--redis"), "{err}");
    }
}
