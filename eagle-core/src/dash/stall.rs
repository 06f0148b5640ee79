//! Waiting on the pool's own words without hanging on damage.
//!
//! Index operations wait for words other threads change: a bucket lock a writer holds for a few
//! microseconds, a segment that a split updates between two stores. A word that is damaged in
//! the pool file (a lock bit set in a pool closed cleanly, a segment pattern that does not match
//! its directory entries) never changes, and the waiter would spin for ever. A [`Stall`] tells
//! the two apart by time: it spins, then yields, then naps, and reports the wait as damage once
//! the word it watches has stayed the same for [`STALLED_FOR`] of time this process ran.
//!
//! Legitimate holds are far shorter: a bucket lock is held for one write or one group of them
//! (at most 64 KiB copied), a segment's locks for one split (a directory doubling included) or
//! for the sweep to mark the blocks of one segment's records. Time the process did not run (it
//! was stopped, or the host suspended) is not counted: a nap that overslept by
//! [`OVERSLEPT`] starts the count again, since the holder did not run either.

use std::time::{Duration, Instant};

/// How long a watched word may stay the same before the wait is called damage.
pub(crate) const STALLED_FOR: Duration = Duration::from_secs(10);

/// Turns spent spinning and yielding before the clock is read at all (the fast path of every
/// contended lock stays as it was: a few microseconds).
const UNTIMED_TURNS: u32 = 1 << 12;
/// After this much time on one value, each turn naps instead of yielding.
const NAP_AFTER: Duration = Duration::from_millis(10);
const NAP: Duration = Duration::from_millis(1);
/// A nap this much longer than asked means the process did not run meanwhile.
const OVERSLEPT: Duration = Duration::from_millis(200);

/// The wait of one operation on one kind of word; see the module documentation.
#[derive(Default)]
pub(crate) struct Stall {
    turns: u32,
    /// The value watched, and since when it has been seen unchanged.
    watching: Option<(u64, Instant)>,
}

/// A wait that saw the same value for [`STALLED_FOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stalled {
    /// The value that never changed.
    pub value: u64,
}

impl Stall {
    /// One more turn of waiting while the watched word holds `value`. `Err` once it has held it
    /// for [`STALLED_FOR`].
    #[inline]
    pub(crate) fn wait(&mut self, value: u64) -> Result<(), Stalled> {
        self.turns = self.turns.saturating_add(1);
        if self.turns < UNTIMED_TURNS {
            if self.turns.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            return Ok(());
        }
        self.timed(value)
    }

    #[cold]
    fn timed(&mut self, value: u64) -> Result<(), Stalled> {
        let now = Instant::now();
        let since = match self.watching {
            Some((seen, since)) if seen == value => since,
            _ => {
                self.watching = Some((value, now));
                now
            }
        };
        let waited = now - since;
        if waited >= STALLED_FOR {
            return Err(Stalled { value });
        }
        if waited < NAP_AFTER {
            std::thread::yield_now();
            return Ok(());
        }
        std::thread::sleep(NAP);
        if now.elapsed() > NAP + OVERSLEPT {
            // Stopped or starved: the holder may not have run either. Count again.
            self.watching = None;
        }
        Ok(())
    }

    /// The watched word changed (or the wait made progress another way): count again.
    #[inline]
    pub(crate) fn progress(&mut self) {
        self.watching = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changing_value_never_stalls_and_a_fixed_one_stalls_after_the_limit() {
        let mut stall = Stall::default();
        let started = Instant::now();
        let mut turns = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            assert_eq!(stall.wait(turns), Ok(()), "a changing value stalled");
            turns += 1;
        }
        let mut stall = Stall::default();
        let started = Instant::now();
        let stalled = loop {
            if let Err(e) = stall.wait(7) {
                break e;
            }
        };
        let took = started.elapsed();
        assert_eq!(stalled, Stalled { value: 7 });
        assert!(took >= STALLED_FOR, "stalled after {took:?}");
        assert!(took < STALLED_FOR * 2, "took {took:?} to call it");
    }

    #[test]
    fn progress_restarts_the_count() {
        let mut stall = Stall::default();
        for _ in 0..UNTIMED_TURNS {
            stall.wait(1).unwrap();
        }
        let first = stall.watching.expect("timed").1;
        stall.progress();
        stall.wait(1).unwrap();
        assert!(stall.watching.expect("timed again").1 > first);
    }
}
