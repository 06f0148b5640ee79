//! Holding frees back while an atomic transaction is open (`engine::tx`).
//!
//! A transaction's undo records name the records and words its keys had before it began; a
//! crash before it ends is rolled back to them at the next open. So nothing retired while it is
//! open may be freed (a free zeroes the block and lets it be reused) until it has ended: every
//! retired block is held here instead of going to the epoch, whichever thread retired it, and
//! is handed to the epoch when the transaction ends. A crash meanwhile loses only this list:
//! the blocks are still allocated on the media, and the next open's sweep reclaims the ones
//! nothing reaches after the rollback.
//!
//! The rollback itself (at open, before the sweep) retires nothing at all: a record it replaces
//! may share blocks with the one it restores (RENAME hands a large hash's table to another
//! key), so only reachability can tell what is garbage, and the sweep that follows decides.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::index::Dash;

/// What happens to a retired block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// No transaction: to the epoch, as usual.
    Free,
    /// Held until the open transaction ends.
    Held,
    /// Left alone: a rollback is running, and the sweep after it reclaims what nothing reaches.
    ToSweep,
}

enum Mode {
    Off,
    Hold(Vec<(u64, u64)>),
    Sweep,
}

/// Blocks retired while a transaction is open: (offset, size).
pub(crate) struct Deferral {
    /// Whether the mode is not `Off` (read without the lock first, so the common case costs a
    /// load; the mode under the lock decides).
    active: AtomicBool,
    mode: Mutex<Mode>,
}

impl Default for Deferral {
    fn default() -> Deferral {
        Deferral {
            active: AtomicBool::new(false),
            mode: Mutex::new(Mode::Off),
        }
    }
}

impl Deferral {
    /// Where a retired block goes; a held one is recorded.
    pub(crate) fn route(&self, block: u64, size: u64) -> Route {
        if !self.active.load(Ordering::Acquire) {
            return Route::Free;
        }
        match &mut *self.mode.lock() {
            Mode::Off => Route::Free,
            Mode::Hold(held) => {
                held.push((block, size));
                Route::Held
            }
            Mode::Sweep => Route::ToSweep,
        }
    }

    fn set(&self, mode: Mode) -> Mode {
        let mut m = self.mode.lock();
        self.active
            .store(!matches!(mode, Mode::Off), Ordering::Release);
        std::mem::replace(&mut *m, mode)
    }
}

impl Dash {
    /// From now on every retired block is held until [`release_frees`](Self::release_frees).
    pub(crate) fn hold_frees(&self) {
        self.deferral.set(Mode::Hold(Vec::new()));
    }

    /// From now on retired blocks are left to the sweep (a rollback at open, before it runs),
    /// until [`release_frees`](Self::release_frees).
    pub(crate) fn leave_frees_to_sweep(&self) {
        self.deferral.set(Mode::Sweep);
    }

    /// Ends holding: the held blocks go to the epoch (`free`), or, if the transaction must be
    /// rolled back by the next open (`!free`), stay allocated for that open's sweep.
    pub(crate) fn release_frees(&self, free: bool) {
        let Mode::Hold(held) = self.deferral.set(Mode::Off) else {
            return;
        };
        let guard = self.pin();
        for (block, size) in held {
            if free {
                self.defer_free(&guard, block, size);
            } else {
                self.garbage.bytes.add(-(size as i64));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_held_only_while_a_transaction_is_open() {
        let d = Deferral::default();
        assert_eq!(d.route(64, 64), Route::Free);
        d.set(Mode::Hold(Vec::new()));
        assert_eq!(d.route(128, 64), Route::Held);
        let Mode::Hold(held) = d.set(Mode::Sweep) else {
            panic!("was holding");
        };
        assert_eq!(held, [(128, 64)]);
        assert_eq!(d.route(192, 64), Route::ToSweep);
        d.set(Mode::Off);
        assert_eq!(d.route(256, 64), Route::Free);
    }
}
