//! [`Failure`]: the error of a plugin's `run` and of an idempotent action.

use core::fmt;

/// Why a plugin's [`run`](crate::Plugin::run), or an action given to
/// [`Idempotent::run`](crate::Idempotent::run), failed: the message of any
/// error that implements `Display`, so `?` works on every error type.
///
/// ```
/// use tollgate_guest::Failure;
///
/// fn parse(input: &[u8]) -> Result<u32, Failure> {
///     let text = std::str::from_utf8(input)?; // Utf8Error
///     let number = text.trim().parse::<u32>()?; // ParseIntError
///     if number == 0 {
///         return Err("the number must not be zero".into());
///     }
///     Ok(number)
/// }
///
/// assert_eq!(parse(b"12").unwrap(), 12);
/// assert_eq!(parse(b"x").unwrap_err().message(), "invalid digit found in string");
/// ```
///
/// `Failure` is not itself an error type (it could not then convert from
/// every error type); [`message`](Self::message) gives its text.
pub struct Failure {
    message: String,
}

impl Failure {
    /// The failure's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The failure's text, owned.
    pub fn into_message(self) -> String {
        self.message
    }
}

impl<E: fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            message: error.to_string(),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl From<Failure> for String {
    fn from(failure: Failure) -> String {
        failure.message
    }
}
