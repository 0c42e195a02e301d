//! Telling a quiet listening connection from a dead one.

use std::time::{Duration, Instant};

/// A listening connection quiet this long asks its node (`PING`) whether it
/// is still there.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// When a listening connection last heard from its node, and whether its
/// `PING` is unanswered.
pub(crate) struct Heartbeat {
    answer_within: Duration,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

/// What a quiet connection should do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// Nothing yet.
    Wait,
    /// Send a `PING` (counted as sent).
    Ping,
    /// The `PING` went unanswered too long: the node is lost.
    Lost,
}

impl Heartbeat {
    /// A node must answer a `PING` within `answer_within`.
    pub fn new(answer_within: Duration) -> Self {
        Heartbeat {
            answer_within,
            last_heard: Instant::now(),
            ping_sent: None,
        }
    }

    /// The node sent something (a message, a reply, an error): it is there.
    pub fn heard(&mut self) {
        (self.last_heard, self.ping_sent) = (Instant::now(), None);
    }

    /// A read found nothing: what to do about it.
    pub fn quiet(&mut self) -> Quiet {
        match self.ping_sent {
            Some(sent) if sent.elapsed() >= self.answer_within => Quiet::Lost,
            Some(_) => Quiet::Wait,
            None if self.last_heard.elapsed() >= HEARTBEAT => {
                self.ping_sent = Some(Instant::now());
                Quiet::Ping
            }
            None => Quiet::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_node_is_pinged_after_a_heartbeat_and_lost_when_it_does_not_answer() {
        let mut heartbeat = Heartbeat::new(Duration::from_millis(50));
        assert_eq!(heartbeat.quiet(), Quiet::Wait, "not quiet for long yet");
        std::thread::sleep(HEARTBEAT);
        assert_eq!(heartbeat.quiet(), Quiet::Ping);
        assert_eq!(heartbeat.quiet(), Quiet::Wait, "one PING at a time");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(heartbeat.quiet(), Quiet::Lost);
        heartbeat.heard();
        assert_eq!(heartbeat.quiet(), Quiet::Wait, "an answer resets it");
    }
}
