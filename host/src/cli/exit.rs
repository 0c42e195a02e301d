//! Exit codes and the one-line failure every command can end with.

use std::fmt;

use crate::Error;
use crate::plugin::PluginError;

/// The command did what it was asked.
pub(crate) const OK: u8 = 0;
/// The plugin returned an error, trapped or ran out of time (with
/// `--instances`, at least one instance did).
pub(crate) const PLUGIN_FAILED: u8 = 1;
/// Bad arguments or configuration: an unknown option, a bad duration, no
/// store given, an unreadable file, `unlock` without `--force`.
pub(crate) const USAGE: u8 = 2;
/// The store could not be reached, or did not answer in time.
pub(crate) const UNAVAILABLE: u8 = 3;
/// The file is not a plugin the host can load (not a component of the
/// `tollgate:coord` plugin world, or it imports what the host does not grant).
pub(crate) const NOT_LOADED: u8 = 4;
/// No such object: `unlock` found no lock held (nothing was removed),
/// `counter` found a name never set.
pub(crate) const NOT_FOUND: u8 = 5;
/// The store refused the request or answered something unexpected (for
/// instance a key holding data tollgate did not write).
pub(crate) const STORE_ERROR: u8 = 6;

/// The exit codes, for `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0  ok
  1  the plugin failed, trapped or timed out (any instance, with --instances)
  2  usage or configuration error (bad arguments, no store for an operator command, unreadable file, unlock without --force)
  3  the store is unavailable (cannot connect, or no reply in time); a plugin
     gets the unavailable error itself and decides (failing: exit 1)
  4  the plugin cannot be loaded (not a tollgate:coord plugin component)
  5  no such object: unlock found no lock held (nothing was removed),
     counter found a name never set
  6  the store refused the request or answered unexpectedly";

/// What each subcommand's help says instead of repeating the table.
pub(crate) const SEE_HELP: &str = "Exit codes: 0 ok; the others are listed by `tollgate --help`.";

/// Why a command stopped: an exit code and one line for stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl fmt::Display) -> Failure {
        Failure {
            code,
            message: one_line(&message.to_string()),
        }
    }

    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure::new(USAGE, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let code = match &error {
            Error::InvalidArgument { .. } | Error::Auth { .. } | Error::EvictionPolicy { .. } => {
                USAGE
            }
            Error::Unavailable { .. }
            | Error::OutcomeUnknown { .. }
            | Error::NotReplicated { .. }
            | Error::NoQuorum { .. } => UNAVAILABLE,
            Error::WrongType { .. }
            | Error::Refused { .. }
            | Error::UnexpectedReply(_)
            | Error::Timeout { .. }
            | Error::NotHeld { .. }
            | Error::WouldDeadlock { .. }
            | Error::InProgress { .. }
            | Error::PayloadMismatch { .. }
            | Error::TooLarge { .. }
            | Error::OutOfBounds { .. }
            | Error::Overflow { .. }
            | Error::OpIdConflict { .. }
            | Error::StaleToken { .. } => STORE_ERROR,
        };
        Failure::new(code, error)
    }
}

impl From<PluginError> for Failure {
    fn from(error: PluginError) -> Failure {
        let code = match &error {
            PluginError::Load(_) => NOT_LOADED,
            PluginError::Failed(_)
            | PluginError::Panicked(_)
            | PluginError::TimedOut { .. }
            | PluginError::Trapped { .. }
            | PluginError::OutOfMemory { .. }
            | PluginError::Host(_) => PLUGIN_FAILED,
            PluginError::InputTooLarge { .. } => USAGE,
        };
        Failure::new(code, error)
    }
}

/// `text` on one line: line breaks (a trap's wasm backtrace, a guest's
/// multi-line message) become single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        assert_eq!(one_line("a\n   b\r\n\nc "), "a b c");
        assert_eq!(Failure::usage("x\ny").to_string(), "x y");
    }

    #[test]
    fn store_errors_map_to_stable_codes() {
        let unavailable = Error::Unavailable {
            reason: "refused".into(),
        };
        assert_eq!(Failure::from(unavailable).code, UNAVAILABLE);
        assert_eq!(
            Failure::from(Error::invalid("lock name", "empty")).code,
            USAGE
        );
        assert_eq!(
            Failure::from(PluginError::Load("not a component".into())).code,
            NOT_LOADED
        );
        assert_eq!(
            Failure::from(PluginError::Failed("no".into())).code,
            PLUGIN_FAILED
        );
    }
}
