//! The shutdown-state line of the header block (bytes 128..192). Unlike the identity, it changes
//! while the pool is in use, so each field is one aligned 8-byte word that is written with a single
//! failure-atomic store and validated by value rather than by a checksum.

use crate::pmem::Region;

/// Offset of the clean-shutdown marker.
pub const CLEAN_MARKER_AT: u64 = 128;
/// Offset of the recovery epoch: incremented on every open after an unclean shutdown. Lazily
/// repaired structures (Dash segments) remember the epoch they were last repaired in.
pub const RECOVERY_EPOCH_AT: u64 = 136;
/// Offset of the wall-clock time (Unix ms) of the last recovery, 0 if none.
pub const LAST_RECOVERY_MS_AT: u64 = 144;
/// Offset of how long the last recovery took, in nanoseconds.
pub const LAST_RECOVERY_NS_AT: u64 = 152;

const CLEAN: u64 = u64::from_le_bytes(*b"CLEANSHT");
const RUNNING: u64 = u64::from_le_bytes(*b"RUNNING!");

/// What the marker says about the last shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownState {
    /// Closed cleanly: every structure is consistent, nothing to recover.
    Clean,
    /// Open, or the process died while it was: recovery needed.
    Running,
}

impl ShutdownState {
    pub(crate) fn word(self) -> u64 {
        match self {
            ShutdownState::Clean => CLEAN,
            ShutdownState::Running => RUNNING,
        }
    }

    pub(crate) fn from_word(w: u64) -> Option<ShutdownState> {
        match w {
            CLEAN => Some(ShutdownState::Clean),
            RUNNING => Some(ShutdownState::Running),
            _ => None,
        }
    }
}

/// Reads an 8-byte state word. The header block is always mapped (the pool is at least 2 MiB), so
/// this cannot fail for the fixed offsets above.
pub(crate) fn load(region: &Region, at: u64) -> u64 {
    region
        .atomic_u64(at)
        .expect("state words lie inside the mapped header block")
        .load(std::sync::atomic::Ordering::Acquire)
}

/// Stores an 8-byte state word and persists it: on return the new value is durable, and a crash
/// at any point leaves either the old or the new word (aligned 8-byte stores are failure-atomic).
pub(crate) fn store_durable(region: &Region, at: u64, value: u64) {
    region
        .atomic_u64(at)
        .expect("state words lie inside the mapped header block")
        .store(value, std::sync::atomic::Ordering::Release);
    region.persist(at, 8);
}
