//! The methods every lease guard of the SDK shares.

/// Gives `$guard` (fields `inner: $resource`, `name: String`, `token:
/// u64`) its name, fencing token, extend, liveness, fenced writes, release
/// and `Debug`; `$what` names the lease in the docs.
macro_rules! lease_guard_api {
    ($guard:ident, $resource:path, $what:literal) => {
        impl $guard {
            /// The name it was asked for by.
            pub fn name(&self) -> &str {
                &self.name
            }

            #[doc = concat!("This ", $what, "'s fencing token: larger than every token issued before for this name.")]
            pub fn fencing_token(&self) -> u64 {
                self.token
            }

            #[doc = concat!("Sets the ", $what, "'s remaining TTL (rounded up to whole milliseconds); [`Error::NotHeld`](crate::Error::NotHeld) when it ended.")]
            pub fn extend(&self, ttl: core::time::Duration) -> crate::Result<()> {
                Ok(self.inner.extend(crate::time::millis(ttl))?)
            }

            #[doc = concat!("Whether the ", $what, " is still live (asks the store).")]
            pub fn is_held(&self) -> crate::Result<bool> {
                Ok(self.inner.is_held()?)
            }

            #[doc = concat!("Writes `value` to the fenced record `record` with this ", $what, "'s fencing token (see [`record`](crate::record)).")]
            ///
            /// Read holds and permits are shared: another holder's newer
            /// token makes this one's writes stale, so write through a
            /// hold that excludes the others when the writes must not race.
            pub fn put(&self, record: &str, value: &[u8]) -> crate::Result<()> {
                crate::record(record).put(value, self.token)
            }

            #[doc = concat!("Gives the ", $what, " back: [`Error::NotHeld`](crate::Error::NotHeld) when it had ended. Another holder's is never touched.")]
            pub fn release(self) -> crate::Result<()> {
                Ok(<$resource>::release(self.inner)?)
            }
        }

        impl core::fmt::Debug for $guard {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("name", &self.name)
                    .field("fencing_token", &self.token)
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use lease_guard_api;

/// The `ttl`, `wait` and `watchdog` setters of a builder with fields `ttl`,
/// `wait` (durations) and `watchdog`; `$what` names what is granted,
/// `$asks` the calls that wait.
macro_rules! lease_builder_setters {
    ($what:literal, $asks:literal) => {
        #[doc = concat!("How long the ", $what, " lives unless extended or renewed (rounded up to whole milliseconds). Zero, the default, asks for the host's default (30 s).")]
        pub fn ttl(mut self, ttl: core::time::Duration) -> Self {
            self.ttl = ttl;
            self
        }

        #[doc = concat!("How long ", $asks, " may block. Zero, the default, asks once. The host also ends the wait at the invocation's deadline.")]
        pub fn wait(mut self, wait: core::time::Duration) -> Self {
            self.wait = wait;
            self
        }

        #[doc = concat!("Has the host renew the ", $what, " at a third of its TTL for as long as its guard lives (as `watchdog` does in the host library).")]
        pub fn watchdog(mut self) -> Self {
            self.watchdog = true;
            self
        }
    };
}

pub(crate) use lease_builder_setters;
