//! Waiting on the pool's own words without hanging on damage.
//!
//! Index operations wait for words other threads change: a bucket lock a writer holds for a few
//! microseconds, a segment that a split updates between two stores. A word that is damaged in
//! the pool file (a lock bit set in a pool closed cleanly, a segment pattern that does not match
//! its directory entries) never changes, and the waiter would spin for ever. A [`Stall`] tells
//! the two apart by time: it spins, then yields, then naps, and reports the wait as damage once
//! the word it watches has stayed the same for the stall limit ([`stall_limit`], 60 s unless
//! [`set_stall_limit`] changed it) of time this process ran.
//!
//! Legitimate holds are far shorter: a bucket lock is held for one write or one group of them
//! (at most 64 KiB copied), a segment's locks for one split (a directory doubling included) or
//! for the sweep to mark the blocks of one segment's records. The longest known: a writer that
//! retires a record in a chunk the open's sweep has not settled waits, under its bucket locks,
//! for `Heap::finish_sweep` to settle that chunk (it settles one 256 KiB chunk at a time), and
//! under `msync` flushing, for the disk. Time the process did not run (it was stopped, or the
//! host suspended) is not counted: a gap of [`OVERSLEPT`] between two turns starts the count
//! again, since the holder did not run either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The stall limit in milliseconds (see [`set_stall_limit`]).
static LIMIT_MS: AtomicU64 = AtomicU64::new(60_000);

/// How long a watched word may stay the same before the wait is called damage.
pub fn stall_limit() -> Duration {
    Duration::from_millis(LIMIT_MS.load(Ordering::Relaxed))
}

/// Sets the stall limit for the whole process (tests shorten it to see damage reported
/// quickly; at least 1 ms).
pub fn set_stall_limit(limit: Duration) {
    LIMIT_MS.store((limit.as_millis() as u64).max(1), Ordering::Relaxed);
}

/// Turns spent spinning and yielding before the clock is read at all (the fast path of every
/// contended lock stays as it was: a few microseconds).
const UNTIMED_TURNS: u32 = 1 << 12;
/// After this much time on one value, each turn naps instead of yielding.
const NAP_AFTER: Duration = Duration::from_millis(10);
const NAP: Duration = Duration::from_millis(1);
/// A gap this long between two timed turns (each naps 1 ms at most) means the process did not
/// run meanwhile.
const OVERSLEPT: Duration = Duration::from_millis(200);

/// The wait of one operation on one kind of word; see the module documentation.
#[derive(Default)]
pub(crate) struct Stall {
    turns: u32,
    /// The value watched, and since when it has been seen unchanged.
    watching: Option<(u64, Instant)>,
    /// When the last timed turn ended.
    last: Option<Instant>,
}

/// A wait that saw the same value for the stall limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stalled {
    /// The value that never changed.
    pub value: u64,
}

impl Stall {
    /// One more turn of waiting while the watched word holds `value`. `Err` once it has held it
    /// for the stall limit.
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
        if self.last.is_some_and(|last| now - last > OVERSLEPT) {
            // Stopped or starved since the last turn: the holder may not have run either.
            self.watching = None;
        }
        let since = match self.watching {
            Some((seen, since)) if seen == value => since,
            _ => {
                self.watching = Some((value, now));
                now
            }
        };
        let waited = now - since;
        if waited >= stall_limit() {
            return Err(Stalled { value });
        }
        if waited < NAP_AFTER {
            std::thread::yield_now();
        } else {
            std::thread::sleep(NAP);
        }
        self.last = Some(Instant::now());
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
        set_stall_limit(Duration::from_secs(1));
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
        assert!(took >= stall_limit(), "stalled after {took:?}");
        assert!(took < stall_limit() * 2, "took {took:?} to call it");
    }

    /// A stall past its untimed turns, watching one value: it and when the count started.
    fn timed() -> (Stall, Instant) {
        let mut stall = Stall::default();
        for _ in 0..UNTIMED_TURNS {
            stall.wait(1).unwrap();
        }
        let since = stall.watching.expect("timed").1;
        (stall, since)
    }

    #[test]
    fn a_gap_between_turns_restarts_the_count() {
        let (mut stall, first) = timed();
        // As if the process had been stopped for a while between two turns.
        std::thread::sleep(OVERSLEPT + Duration::from_millis(50));
        stall.wait(1).unwrap();
        assert!(stall.watching.expect("timed again").1 > first);
    }

    #[test]
    fn progress_restarts_the_count() {
        let (mut stall, first) = timed();
        stall.progress();
        stall.wait(1).unwrap();
        assert!(stall.watching.expect("timed again").1 > first);
    }
}
