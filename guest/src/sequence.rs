//! Unique, increasing, formatted serial numbers: [`sequence`], [`Sequence`].

use crate::Result;
use crate::host::sequence as wit;

/// A handle on the sequence `name` (in this plugin's namespace).
///
/// ```
/// use tollgate_guest::Reset;
///
/// # fn main() -> Result<(), tollgate_guest::Error> {
/// let number = tollgate_guest::sequence("orders")
///     .format("ORD-{date}-{seq:06}")
///     .reset(Reset::Daily)
///     .next()?; // "ORD-20261122-000001"
/// # Ok(())
/// # }
/// ```
pub fn sequence(name: impl Into<String>) -> Sequence {
    Sequence {
        name: name.into(),
        format: None,
        reset: Reset::Never,
    }
}

/// When a sequence starts again at 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Reset {
    /// Never (the default).
    #[default]
    Never,
    /// At each midnight of the store's clock (UTC); needs `{date}` in the
    /// format.
    Daily,
}

/// A sequence's name and options; made by [`sequence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    name: String,
    format: Option<String>,
    reset: Reset,
}

impl Sequence {
    /// How [`next`](Self::next) formats numbers, such as
    /// `ORD-{date}-{seq:06}`: `{date}` is the store's day (YYYYMMDD), `{seq}`
    /// the number, `{seq:0N}` the number zero-padded to N digits, `{{` and
    /// `}}` literal braces. Without a format, the bare number.
    #[must_use]
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_owned());
        self
    }

    /// When numbering restarts.
    #[must_use]
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// The sequence's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn options(&self) -> wit::SequenceOptions {
        wit::SequenceOptions {
            format: self.format.clone(),
            reset: match self.reset {
                Reset::Never => wit::Reset::Never,
                Reset::Daily => wit::Reset::Daily,
            },
        }
    }

    /// The next number, formatted.
    // Not `Iterator::next`: this one is fallible and asks the host.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&self) -> Result<String> {
        Ok(wit::next(&self.name, &self.options())?)
    }

    /// The next number, unformatted.
    pub fn next_raw(&self) -> Result<u64> {
        Ok(wit::next_raw(&self.name, &self.options())?)
    }
}
