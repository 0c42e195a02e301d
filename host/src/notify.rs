//! Wake-ups for waiters: one queue per watched object, woken when a release
//! of that object is announced.
//!
//! A waiter joins the object's queue, tries its step, and if refused sleeps
//! until it is woken or its own deadline passes. A wake-up that lands while
//! the waiter is busy trying is kept for its next sleep, so none is missed.
//! Notifications are hints: losing one costs latency (the waiter's fallback
//! poll), never correctness.
//!
//! Queues of locks are *fair*: a release wakes only the waiter that has
//! waited longest (the others would find the lock taken again), and a new
//! waiter in this process lines up behind the ones already waiting instead
//! of taking the lock past them. Across processes, a board with lock
//! waiters queues itself (by [`WakeBoard::process`]) beside the lock, and
//! a release names the board whose turn it is: only that one wakes a
//! waiter (see `store/lock_record.lua`). Queues of idempotency records wake
//! every waiter: a stored result serves them all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How many times in a row a lock's release may hand it to a waiter of the
/// same process when another process's turn has come: each hop between
/// processes costs a notification and a wake-up, so a short run here serves
/// more waiters per second, while the other process waits at most this
/// many more grants.
const MAX_KEPT: u32 = 4;

/// A process id is this many lowercase hex digits. The keys announced
/// without one end in `}` (their hash tag), so the two never mix.
const PROCESS_ID_LEN: usize = 16;

fn is_process_id(text: &str) -> bool {
    text.len() == PROCESS_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits the tail of a lock's release announcement, `<process>:<fence>`:
/// the process whose turn it is and the fencing token the release left.
fn parse_turn(tail: &str) -> Option<(&str, &str)> {
    let (process, fence) = tail.split_once(':')?;
    let fence_ok =
        !fence.is_empty() && fence.len() <= 20 && fence.bytes().all(|b| b.is_ascii_digit());
    (is_process_id(process) && fence_ok).then_some((process, fence))
}

/// Gives a lock's turn that reached this process when nobody here could
/// take it to the next waiting process: called with the lock key and the
/// fencing token of the release that gave the turn (the turn is passed only
/// if the lock was not granted since). Must not block: it is called on the
/// listener thread and by leaving waiters.
pub(crate) type TurnPasser = Box<dyn Fn(&str, &str) + Send + Sync>;

/// How long a release made here waits for its own announcement to come back
/// from the server (which it then skips, having woken a waiter already).
const ANNOUNCEMENT_WINDOW: Duration = Duration::from_millis(50);

/// The wait queues of the objects that somebody waits for.
pub(crate) struct WakeBoard {
    slots: Mutex<HashMap<String, Weak<Slot>>>,
    /// This board's name in the lock's queue of waiting processes (see
    /// `store/lock_record.lua`): random, one per client.
    process: String,
    /// Passes on turns nobody here can take (boards of stores shared
    /// between processes).
    passer: OnceLock<TurnPasser>,
}

impl Default for WakeBoard {
    fn default() -> WakeBoard {
        WakeBoard {
            slots: Mutex::default(),
            process: uuid::Uuid::new_v4().simple().to_string()[..PROCESS_ID_LEN].to_owned(),
            passer: OnceLock::new(),
        }
    }
}

struct Slot {
    fair: bool,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Waiters in arrival order: ticket, and whether a wake-up waits for it.
    queue: VecDeque<Waiter>,
    next_ticket: u64,
    /// Releases made in this process (already woken here) whose server
    /// announcement may still arrive, and when each was made.
    expected: VecDeque<Instant>,
    /// Hand-overs in a row to this process's waiters past another
    /// process's turn (locks).
    kept: u32,
    /// The fencing token of the release that gave this process its last
    /// turn (locks), kept until it is passed on or the slot goes: the last
    /// waiter here may leave with that turn unused. (Once the lock was
    /// granted again, passing it is refused, so an old one does no harm.)
    turn: Option<String>,
}

struct Waiter {
    ticket: u64,
    woken: bool,
    /// What a releasing holder in this process may grant this waiter
    /// directly (fair queues of locks only).
    offer: Option<Arc<Offer>>,
    /// Where this waiter sleeps (with its slot's state lock): each waiter
    /// has its own, so waking one wakes no other thread.
    bell: Arc<Condvar>,
}

impl Waiter {
    fn wake(&mut self) {
        self.woken = true;
        self.bell.notify_one();
    }
}

/// A waiter's standing request for a lock, which a holder in this process
/// may fulfil as it releases (a hand-over: one step instead of a release
/// and an acquire).
#[derive(Debug)]
pub(crate) struct Offer {
    /// The waiter's owner token, TTL (ms) and holder text.
    pub owner: String,
    pub ttl_ms: u64,
    pub holder: String,
    state: Mutex<OfferState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OfferState {
    Open,
    /// A release that may grant it is under way.
    Claimed,
    /// Granted: the waiter holds the lock.
    Handed(HandedGrant),
    /// The waiter took a grant (handed or its own).
    Closed,
    /// The waiter gave up without the lock.
    Left,
}

/// A claimed offer; settled when dropped if not before (as not granted), so
/// that its waiter is never left waiting on a release that went away.
pub(crate) struct OfferClaim<'b> {
    board: &'b WakeBoard,
    key: &'b str,
    offer: Arc<Offer>,
    settled: bool,
}

impl OfferClaim<'_> {
    /// The waiter's request.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Ends the claim: see [`WakeBoard::settle`].
    pub fn settle(mut self, granted: Option<HandedGrant>) {
        self.settled = true;
        self.board.settle(self.key, &self.offer, granted);
    }

    /// Ends the claim without a grant and without waking the waiter: the
    /// release gave the turn to another process, so asking now would only
    /// find the lock taken. The waiter waits for its process's turn.
    pub fn pass(mut self) {
        self.settled = true;
        self.board.reopen(self.key, &self.offer);
    }
}

impl Drop for OfferClaim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.board.settle(self.key, &self.offer, None);
        }
    }
}

/// A lock granted to a waiter by its holder's release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandedGrant {
    pub fence: u64,
    /// When the release that granted it was sent (the lease starts then).
    pub sent: Instant,
    /// The server generation the release saw.
    pub generation: u64,
}

impl SlotState {
    /// Wakes the longest waiter not yet woken; `false` when there is none.
    fn wake_next(&mut self) -> bool {
        match self.queue.iter_mut().find(|w| !w.woken) {
            Some(waiter) => {
                waiter.wake();
                true
            }
            None => false,
        }
    }

    fn wake_every(&mut self) {
        for waiter in &mut self.queue {
            waiter.wake();
        }
    }

    /// Whether an announcement is that of a release made here (whose
    /// waiter was woken already): forgets it then. Expectations older than
    /// [`ANNOUNCEMENT_WINDOW`] are dropped first.
    fn skip_expected(&mut self) -> bool {
        let now = Instant::now();
        while self
            .expected
            .front()
            .is_some_and(|made| now.duration_since(*made) > ANNOUNCEMENT_WINDOW)
        {
            self.expected.pop_front();
        }
        self.expected.pop_front().is_some()
    }

    /// The entry of the waiter that made `offer`.
    fn offered_by(&mut self, offer: &Offer) -> Option<&mut Waiter> {
        self.queue
            .iter_mut()
            .find(|w| w.offer.as_ref().is_some_and(|o| std::ptr::eq(&**o, offer)))
    }
}

impl Slot {
    fn wake(&self) {
        let mut state = self.state.lock();
        if self.fair {
            state.wake_next();
        } else {
            state.wake_every();
        }
    }
}

impl WakeBoard {
    /// Lines up for `key`; the place is kept as long as the `Watch`. `fair`:
    /// the queue of a lock (see the module docs); every watch of one key
    /// must pass the same.
    pub fn watch(self: &Arc<Self>, key: &str, fair: bool) -> Watch {
        let mut slots = self.slots.lock();
        let slot = match slots.get(key).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                // Drop entries whose last watch went while a wake-up held it.
                slots.retain(|_, slot| slot.strong_count() > 0);
                let slot = Arc::new(Slot {
                    fair,
                    state: Mutex::default(),
                });
                slots.insert(key.to_owned(), Arc::downgrade(&slot));
                slot
            }
        };
        drop(slots);
        let mut state = slot.state.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let bell = Arc::new(Condvar::new());
        state.queue.push_back(Waiter {
            ticket,
            woken: false,
            offer: None,
            bell: Arc::clone(&bell),
        });
        drop(state);
        Watch {
            board: Arc::clone(self),
            key: key.to_owned(),
            slot,
            ticket,
            bell,
        }
    }

    fn slot(&self, key: &str) -> Option<Arc<Slot>> {
        self.slots.lock().get(key).and_then(Weak::upgrade)
    }

    /// This board's name among the processes waiting for a lock.
    pub fn process(&self) -> &str {
        &self.process
    }

    /// Whether a release of lock `key` may hand it to a waiter here once
    /// more though another process's turn has come: [`MAX_KEPT`] times in
    /// a row at most.
    pub fn may_keep(&self, key: &str) -> bool {
        self.slot(key)
            .is_some_and(|slot| slot.state.lock().kept < MAX_KEPT)
    }

    /// Counts a hand-over of lock `key` here: `past_others` when another
    /// process's turn had come (else the run of such hand-overs ends).
    pub fn kept(&self, key: &str, past_others: bool) {
        if let Some(slot) = self.slot(key) {
            let mut state = slot.state.lock();
            state.kept = if past_others { state.kept + 1 } else { 0 };
        }
    }

    /// How many waiters of `key` are lined up here.
    pub fn waiters(&self, key: &str) -> usize {
        self.slot(key)
            .map_or(0, |slot| slot.state.lock().queue.len())
    }

    /// Passes on, with `passer`, the turns of locks that reach this board
    /// when nobody here can take them; without one they are dropped and the
    /// processes after this one wait for their poll. Set once.
    pub fn pass_turns_with(&self, passer: TurnPasser) {
        let _ = self.passer.set(passer);
    }

    fn pass_turn(&self, key: &str, fence: &str) {
        if let Some(passer) = self.passer.get() {
            passer(key, fence);
        }
    }

    /// A release that left fencing token `fence` gave process `process` the
    /// turn for lock `key`: when it is this one, wakes its longest waiter
    /// (unless this process made the release and woke one already), or
    /// passes the turn on when nobody here waits any more.
    fn take_turn(&self, key: &str, process: &str, fence: &str) {
        if process != self.process {
            return;
        }
        let Some(slot) = self.slot(key) else {
            return self.pass_turn(key, fence);
        };
        let mut state = slot.state.lock();
        if state.queue.is_empty() {
            state.expected.clear();
            drop(state);
            return self.pass_turn(key, fence);
        }
        state.turn = Some(fence.to_owned());
        if !state.skip_expected() {
            state.wake_next();
        }
    }

    /// Acts on a release announced with `message`: a lock's ends in a line
    /// `<process>:<fence>` naming the process whose turn it is (a key may
    /// hold newlines, that line never does, and the keys of other objects
    /// end in `}`); any other wakes every waiter of its key.
    pub fn announced(&self, message: &str) {
        match message
            .rsplit_once('\n')
            .and_then(|(key, tail)| Some((key, parse_turn(tail)?)))
        {
            Some((key, (process, fence))) => self.take_turn(key, process, fence),
            None => self.wake(message),
        }
    }

    /// A release of `key` was announced: wakes its longest waiter (fair
    /// queues) or all of them. An announcement of a release made here, whose
    /// waiter was woken already, is skipped.
    pub fn wake(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            if slot.state.lock().skip_expected() {
                return;
            }
            slot.wake();
        }
    }

    /// Before a release of `key` is sent from this process: when somebody
    /// here waits for it, notes that its announcement will come back (to be
    /// skipped) and returns `true`; then call [`released_here`](Self::released_here).
    /// Noted before sending, so an announcement that overtakes the reply is
    /// skipped too.
    pub fn expect_release(&self, key: &str) -> bool {
        let Some(slot) = self.slot(key) else {
            return false;
        };
        let mut state = slot.state.lock();
        if state.queue.is_empty() {
            return false;
        }
        state.expected.push_back(Instant::now());
        true
    }

    /// After [`expect_release`](Self::expect_release) returned `true`: when
    /// the release happened, wakes the next waiter at once; when it did not,
    /// forgets the expected announcement.
    pub fn released_here(&self, key: &str, released: bool) {
        if let Some(slot) = self.slot(key) {
            if released {
                slot.wake();
            } else {
                slot.state.lock().expected.pop_back();
            }
        }
    }

    /// Forgets the announcement [`expect_release`](Self::expect_release)
    /// expected, without waking anyone: the release did not announce itself
    /// (it was refused, or it handed the lock over).
    pub fn cancel_expected(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            slot.state.lock().expected.pop_back();
        }
    }

    /// Wakes the next waiter for `key` in this process, if any: a waiter
    /// that was served and saw more left (free permits) passes it on.
    pub fn wake_next(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            slot.wake();
        }
    }

    /// Whether somebody waits for `key` now.
    pub fn is_watched(&self, key: &str) -> bool {
        self.slot(key).is_some()
    }

    /// Claims the open offer of the longest waiter of `key` that has one,
    /// for a release about to grant it; settle it with
    /// [`settle`](Self::settle).
    pub fn claim_offer<'b>(&'b self, key: &'b str) -> Option<OfferClaim<'b>> {
        let slot = self.slot(key)?;
        let state = slot.state.lock();
        for offer in state.queue.iter().filter_map(|w| w.offer.as_ref()) {
            let mut offer_state = offer.state.lock();
            if *offer_state == OfferState::Open {
                *offer_state = OfferState::Claimed;
                return Some(OfferClaim {
                    board: self,
                    key,
                    offer: Arc::clone(offer),
                    settled: false,
                });
            }
        }
        None
    }

    /// Ends a claim: the waiter got the lock (`Some`), or it did not and
    /// competes as before. Wakes the waiter either way (or, if it is gone,
    /// the next one: the release may have freed the lock).
    pub fn settle(&self, key: &str, offer: &Offer, granted: Option<HandedGrant>) {
        {
            let mut offer_state = offer.state.lock();
            if *offer_state == OfferState::Claimed {
                *offer_state = match granted {
                    Some(grant) => OfferState::Handed(grant),
                    None => OfferState::Open,
                };
            }
        }
        let Some(slot) = self.slot(key) else {
            return;
        };
        let mut state = slot.state.lock();
        match state.offered_by(offer) {
            Some(waiter) => waiter.wake(),
            None => {
                state.wake_next();
            }
        }
    }

    /// Reopens a claimed offer. Only a waiter blocked on the claim (leaving,
    /// or waiting for a hand-over) is woken, to see it reopened; none is
    /// marked woken.
    fn reopen(&self, key: &str, offer: &Offer) {
        {
            let mut offer_state = offer.state.lock();
            if *offer_state == OfferState::Claimed {
                *offer_state = OfferState::Open;
            }
        }
        let Some(slot) = self.slot(key) else {
            return;
        };
        let mut state = slot.state.lock();
        if let Some(waiter) = state.offered_by(offer) {
            waiter.bell.notify_one();
        }
    }

    /// Wakes every waiter of `key`, fair queue or not: its notifications
    /// may have been lost.
    pub fn wake_every(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            slot.state.lock().wake_every();
        }
    }

    /// Wakes every waiter: used when notifications may have been lost.
    pub fn wake_all(&self) {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for slot in slots {
            slot.state.lock().wake_every();
        }
    }
}

/// One waiter's place in one object's queue.
pub(crate) struct Watch {
    board: Arc<WakeBoard>,
    key: String,
    slot: Arc<Slot>,
    ticket: u64,
    /// The bell of this waiter's entry.
    bell: Arc<Condvar>,
}

impl Watch {
    /// Whether others here waited for the object before this waiter.
    pub fn has_waiters_ahead(&self) -> bool {
        let state = self.slot.state.lock();
        state.queue.front().is_some_and(|w| w.ticket != self.ticket)
    }

    /// Lets a releasing holder in this process grant the lock to this waiter
    /// directly, as `owner` with `ttl_ms` (see [`Offer`]).
    pub fn offer(&self, owner: &str, ttl_ms: u64, holder: &str) {
        let mut state = self.slot.state.lock();
        if let Some(me) = self.me(&mut state) {
            me.offer = Some(Arc::new(Offer {
                owner: owner.to_owned(),
                ttl_ms,
                holder: holder.to_owned(),
                state: Mutex::new(OfferState::Open),
            }));
        }
    }

    /// The grant a release handed to this waiter, if any. While a release
    /// that may grant it is under way, waits for its outcome first (at most
    /// until `limit`), so that the waiter neither asks again meanwhile nor
    /// leaves without a lock granted to it.
    pub fn handed(&self, limit: Instant) -> Option<HandedGrant> {
        self.take_grant(Some(limit))
    }

    /// Withdraws this waiter's offer before it gives up: waits out a release
    /// that may be granting it the lock (that release always settles, if
    /// only by being dropped), and returns the grant if one was handed over.
    pub fn leave(&self) -> Option<HandedGrant> {
        self.take_grant(None)
    }

    /// [`handed`](Self::handed) with `Some(limit)`, [`leave`](Self::leave)
    /// with `None` (no limit, and the offer is withdrawn).
    fn take_grant(&self, limit: Option<Instant>) -> Option<HandedGrant> {
        let mut state = self.slot.state.lock();
        let offer = self.me(&mut state)?.offer.clone()?;
        loop {
            let mut offer_state = offer.state.lock();
            match *offer_state {
                OfferState::Claimed => {
                    drop(offer_state);
                    match limit {
                        Some(limit) => {
                            if self.bell.wait_until(&mut state, limit).timed_out() {
                                return None;
                            }
                        }
                        None => self.bell.wait(&mut state),
                    }
                }
                OfferState::Handed(grant) => {
                    *offer_state = OfferState::Closed;
                    drop(offer_state);
                    // The wake-up that came with it is used: not passed on.
                    if let Some(me) = self.me(&mut state) {
                        me.woken = false;
                    }
                    return Some(grant);
                }
                OfferState::Open if limit.is_none() => {
                    *offer_state = OfferState::Left;
                    return None;
                }
                OfferState::Open | OfferState::Closed | OfferState::Left => return None,
            }
        }
    }

    /// This waiter's entry in its queue.
    fn me<'s>(&self, state: &'s mut SlotState) -> Option<&'s mut Waiter> {
        state.queue.iter_mut().find(|w| w.ticket == self.ticket)
    }

    /// Sleeps until this waiter is woken (now, if a wake-up came since its
    /// last sleep) or `until` passes. Returns `true` when woken.
    pub fn wait(&self, until: Instant) -> bool {
        let mut state = self.slot.state.lock();
        loop {
            let Some(me) = self.me(&mut state) else {
                return false;
            };
            if me.woken {
                me.woken = false;
                return true;
            }
            if self.bell.wait_until(&mut state, until).timed_out() {
                let me = self.me(&mut state);
                return me.is_some_and(|w| std::mem::replace(&mut w.woken, false));
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut unused_turn = None;
        let mut slots = self.board.slots.lock();
        let mut state = self.slot.state.lock();
        if let Some(at) = state.queue.iter().position(|w| w.ticket == self.ticket) {
            let left = state.queue.remove(at);
            // Whether the lock was handed to this waiter, which took it (or
            // is gone with it, unwinding).
            let handed = left
                .as_ref()
                .and_then(|w| w.offer.as_ref())
                .is_some_and(|offer| {
                    let mut offer_state = offer.state.lock();
                    let handed = !matches!(*offer_state, OfferState::Open | OfferState::Left);
                    if *offer_state != OfferState::Left {
                        *offer_state = OfferState::Closed;
                    }
                    handed
                });
            // A wake-up this waiter never used goes to the next one: it may
            // be the release that frees the object (not a hand-over's, which
            // was for this waiter alone). With nobody left here, a lock's
            // turn goes to the next process. (A turn recorded earlier and
            // used since is refused where it is passed: the lock was
            // granted since.)
            if self.slot.fair && !handed && left.is_some_and(|w| w.woken) {
                if state.queue.is_empty() {
                    unused_turn = state.turn.take();
                } else {
                    state.wake_next();
                }
            }
        }
        drop(state);
        // The map holds weak references, so ours is the last strong one when
        // nobody else watches this key.
        if Arc::strong_count(&self.slot) == 1 {
            slots.remove(&self.key);
        }
        drop(slots);
        if let Some(fence) = unused_turn {
            self.board.pass_turn(&self.key, &fence);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k", true);
        board.wake("k");
        let start = Instant::now();
        assert!(watch.wait(start + Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn waking_another_key_does_not_wake_this_one() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k", true);
        board.wake("other");
        assert!(!watch.wait(Instant::now() + Duration::from_millis(50)));
    }

    #[test]
    fn a_fair_queue_wakes_its_longest_waiter_only() {
        let board = Arc::new(WakeBoard::default());
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        assert!(second.has_waiters_ahead() && !first.has_waiters_ahead());
        board.wake("k");
        let soon = || Instant::now() + Duration::from_millis(20);
        assert!(!second.wait(soon()));
        assert!(first.wait(soon()));
        // The first, refused again, keeps its place.
        board.wake("k");
        assert!(first.wait(soon()));
        assert!(!second.wait(soon()));
    }

    #[test]
    fn an_unused_wake_passes_to_the_next_waiter() {
        let board = Arc::new(WakeBoard::default());
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        board.wake("k");
        drop(first);
        assert!(second.wait(Instant::now() + Duration::from_millis(20)));
    }

    #[test]
    fn an_unfair_queue_wakes_everyone() {
        let board = Arc::new(WakeBoard::default());
        let watches: Vec<Watch> = (0..3).map(|_| board.watch("k", false)).collect();
        board.wake("k");
        for watch in &watches {
            assert!(watch.wait(Instant::now() + Duration::from_millis(20)));
        }
    }

    #[test]
    fn a_release_made_here_is_woken_once() {
        let board = Arc::new(WakeBoard::default());
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        assert!(board.expect_release("k"));
        board.wake("k"); // its announcement, overtaking the reply: skipped
        board.released_here("k", true);
        let soon = || Instant::now() + Duration::from_millis(20);
        assert!(first.wait(soon()));
        assert!(!second.wait(soon()));
    }

    /// The turns a board passed on: lock key and fence.
    type Passed = Arc<Mutex<Vec<(String, String)>>>;

    /// A board whose passed-on turns are recorded.
    fn board_passing_turns() -> (Arc<WakeBoard>, Passed) {
        let board = Arc::new(WakeBoard::default());
        let passed = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&passed);
        board.pass_turns_with(Box::new(move |key, fence| {
            record.lock().push((key.to_owned(), fence.to_owned()));
        }));
        (board, passed)
    }

    #[test]
    fn an_announced_turn_wakes_only_its_process_even_under_a_name_with_newlines() {
        let (board, passed) = board_passing_turns();
        let key = "lock:{a\nb}";
        let watch = board.watch(key, true);
        let soon = || Instant::now() + Duration::from_millis(20);
        board.announced(&format!("{key}\n0123456789abcdef:7"));
        assert!(!watch.wait(soon()), "another process's turn woke it");
        let ours = format!("{key}\n{}:7", board.process());
        board.announced(&ours);
        assert!(watch.wait(soon()));
        drop(watch);
        assert!(passed.lock().is_empty(), "the turn was used");
        board.announced(&ours);
        assert_eq!(
            *passed.lock(),
            [(key.to_owned(), "7".to_owned())],
            "a turn nobody here can take is passed on"
        );
    }

    #[test]
    fn a_turn_the_last_waiter_leaves_unused_is_passed_on() {
        let (board, passed) = board_passing_turns();
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        board.announced(&format!("k\n{}:42", board.process()));
        // The first leaves without using its wake-up: the second gets it.
        drop(first);
        assert!(passed.lock().is_empty());
        // The second leaves too, the turn unused: it goes to the next process.
        drop(second);
        assert_eq!(*passed.lock(), [("k".to_owned(), "42".to_owned())]);
    }

    #[test]
    fn a_turn_is_not_passed_on_while_a_woken_waiter_remains_here() {
        let (board, passed) = board_passing_turns();
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        board.wake_every("k"); // both woken (say, after a reconnection)
        board.announced(&format!("k\n{}:9", board.process()));
        drop(first);
        assert!(
            passed.lock().is_empty(),
            "the second, awake, takes the turn"
        );
        drop(second);
        assert_eq!(*passed.lock(), [("k".to_owned(), "9".to_owned())]);
    }

    #[test]
    fn a_turn_for_a_release_made_here_wakes_nobody_twice_and_is_not_passed() {
        let (board, passed) = board_passing_turns();
        let first = board.watch("k", true);
        let second = board.watch("k", true);
        assert!(board.expect_release("k"));
        board.released_here("k", true);
        board.announced(&format!("k\n{}:5", board.process()));
        let soon = || Instant::now() + Duration::from_millis(20);
        assert!(first.wait(soon()));
        assert!(
            !second.wait(soon()),
            "the release's own announcement woke another"
        );
        // The first used its wake-up (it asked), the second never had one:
        // nothing is left to pass on when they go.
        drop(first);
        drop(second);
        assert!(passed.lock().is_empty());
    }

    #[test]
    fn an_announcement_without_a_turn_wakes_its_key_whatever_its_newlines() {
        let board = Arc::new(WakeBoard::default());
        // A semaphore named "x\n0123456789abcdef:1": its key ends in its tag.
        let key = "sem:{x\n0123456789abcdef:1}";
        let watches: Vec<Watch> = (0..2).map(|_| board.watch(key, false)).collect();
        board.announced(key);
        for watch in &watches {
            assert!(watch.wait(Instant::now() + Duration::from_millis(20)));
        }
    }

    #[test]
    fn only_a_process_id_and_a_decimal_fence_make_a_turn() {
        assert_eq!(
            parse_turn("0123456789abcdef:12"),
            Some(("0123456789abcdef", "12"))
        );
        for tail in [
            "0123456789abcdef",
            "0123456789abcdef:",
            "0123456789abcdef:1x",
            "0123456789ABCDEF:1",
            "0123456789abcde:1",
            "0123456789abcdef:123456789012345678901",
            "0123456789abcdef}",
        ] {
            assert_eq!(parse_turn(tail), None, "{tail:?}");
        }
    }

    fn grant() -> HandedGrant {
        HandedGrant {
            fence: 7,
            sent: Instant::now(),
            generation: 0,
        }
    }

    #[test]
    fn a_waiter_leaving_during_a_hand_over_waits_and_takes_the_grant() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k", true);
        watch.offer("o", 1000, "h");
        let given = grant();
        let settler = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                let claim = board.claim_offer("k").expect("an open offer");
                std::thread::sleep(Duration::from_millis(50));
                claim.settle(Some(given));
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(watch.leave(), Some(given));
        settler.join().unwrap();
    }

    #[test]
    fn a_claim_dropped_unsettled_frees_its_waiter() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k", true);
        watch.offer("o", 1000, "h");
        drop(board.claim_offer("k").expect("an open offer"));
        assert_eq!(watch.leave(), None, "not stuck on the claim");
    }

    #[test]
    fn a_waiter_that_left_is_never_handed_the_lock() {
        let board = Arc::new(WakeBoard::default());
        let watch = board.watch("k", true);
        watch.offer("o", 1000, "h");
        assert_eq!(watch.leave(), None);
        assert!(board.claim_offer("k").is_none());
    }

    #[test]
    fn a_hand_over_goes_to_the_longest_waiter_with_an_open_offer() {
        let board = Arc::new(WakeBoard::default());
        let first = board.watch("k", true);
        first.offer("first", 1000, "h");
        let second = board.watch("k", true);
        second.offer("second", 1000, "h");
        let claimed = board.claim_offer("k").unwrap();
        assert_eq!(claimed.offer().owner, "first");
        let second_claim = board.claim_offer("k").unwrap();
        assert_eq!(second_claim.offer().owner, "second");
        let given = grant();
        claimed.settle(Some(given));
        assert_eq!(first.handed(Instant::now()), Some(given));
        assert_eq!(first.handed(Instant::now()), None, "taken once");
    }

    #[test]
    fn the_last_watch_removes_its_slot() {
        let board = Arc::new(WakeBoard::default());
        let a = board.watch("k", true);
        let b = board.watch("k", true);
        drop(a);
        assert_eq!(board.slots.lock().len(), 1);
        drop(b);
        assert!(board.slots.lock().is_empty());
    }
}
