//! A DRAM copy of the directory's entries, read before an operation pins the epoch, so the
//! miss on the key's bucket starts before the pin's fence and the directory walk instead of
//! after them.
//!
//! Only a hint for prefetches: nothing is read through it. An entry may be stale (a split or
//! doubling is under way) or name a block that is no longer a segment; a prefetch of a wrong
//! address costs a wasted line and cannot fault. The directory in the pool stays the truth.
//!
//! Why a copy and not the pool's directory: reading the pool's directory needs the epoch pin
//! (a retired directory's block may be freed and rewritten meanwhile, with plain stores), and
//! the pin is what the hint is read ahead of. These tables are DRAM owned by the index, one per
//! global depth, never freed while it lives, and written only with atomic stores.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::directory::{Directory, MAX_GLOBAL_DEPTH};
use super::segment::prefix;

/// Deepest directory copied: 2^22 entries are 32 MiB of DRAM (about four million segments, a
/// pool of some 70 GiB of segments), and the tables of a pool that grew to it from empty add
/// up to 64 MiB. Deeper directories get no hints (the tables already made stay allocated
/// until the index is dropped); operations then start their misses after the pin, as
/// without this module.
pub(crate) const MAX_HINT_DEPTH: u32 = 22;

const _: () = assert!(MAX_HINT_DEPTH <= MAX_GLOBAL_DEPTH);

/// The tables, one per global depth. Which one mirrors the current directory is the depth in
/// `Dash::dir_view`, stored (Release) after the table is filled.
#[derive(Default)]
pub(crate) struct SegmentHints {
    /// Made when a directory of that depth is first noted. Directories only deepen while an
    /// index lives, so the sum of the tables is under twice the deepest.
    tables: [OnceLock<Box<[AtomicU64]>>; MAX_HINT_DEPTH as usize + 1],
}

impl SegmentHints {
    /// Copies `dir` (the root's directory from now on: at open, after a doubling), before the
    /// caller publishes its depth in `dir_view`. The caller holds the directory lock or is the
    /// only user (open), and is pinned or owns `dir`.
    pub(crate) fn note(&self, dir: &Directory<'_>) {
        let g = dir.global_depth;
        if g > MAX_HINT_DEPTH {
            return;
        }
        let table = self.tables[g as usize]
            .get_or_init(|| (0..dir.len()).map(|_| AtomicU64::new(0)).collect());
        for (i, e) in table.iter().enumerate() {
            e.store(
                dir.entry(i as u64).load(Ordering::Acquire),
                Ordering::Relaxed,
            );
        }
    }

    /// A split repointed entries `first..first + count` of the directory of depth `g` to the
    /// segment at `seg_off`. Directory lock held.
    pub(crate) fn repoint(&self, g: u32, first: u64, count: u64, seg_off: u64) {
        if let Some(table) = self.tables.get(g as usize).and_then(OnceLock::get) {
            for e in table.iter().skip(first as usize).take(count as usize) {
                e.store(seg_off, Ordering::Relaxed);
            }
        }
    }

    /// The segment offset the directory of depth `g` (read from `dir_view`) probably maps
    /// `hash` to, if a table mirrors it.
    #[inline]
    pub(crate) fn segment(&self, hash: u64, g: u32) -> Option<u64> {
        let table = self.tables.get(g as usize)?.get()?;
        Some(table.get(prefix(hash, g) as usize)?.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::MAX_HINT_DEPTH;
    use crate::dash::PutMode;
    use crate::record::RecordKind;

    #[test]
    fn hints_name_the_directory_entries_after_splits_and_doublings() {
        let engine = crate::engine::temp_engine_with_keys("hints", 64 << 20, 30_000);
        let index = engine.index();
        let _guard = index.pin();
        let dir = index.directory().unwrap();
        let g = dir.global_depth;
        assert!((3..=MAX_HINT_DEPTH).contains(&g), "depth {g}");
        let mut segments = std::collections::HashSet::new();
        for i in 0..dir.len() {
            let hash = i << (64 - g);
            let entry = dir.entry(i).load(Ordering::Acquire);
            segments.insert(entry);
            assert_eq!(
                index.hints.segment(hash, g),
                Some(entry),
                "entry {i} of {}",
                dir.len()
            );
        }
        // The workload split segments after doublings (so some entries name segments that only
        // a split's `repoint` can have written to the table of this depth).
        assert!(
            segments.len() as u64 > dir.len() / 2,
            "{} segments",
            segments.len()
        );
    }

    #[test]
    fn a_hint_of_any_value_only_costs_a_prefetch() {
        let engine = crate::engine::temp_engine("hints-garbage", 16 << 20);
        let index = engine.index();
        index
            .put(b"k", b"v", RecordKind::String, 0, PutMode::Insert)
            .unwrap();
        // One key: the directory has depth 0, whose table is the one repointed below.
        assert_eq!(index.directory().unwrap().global_depth, 0);
        // As if copied at open from a damaged directory entry.
        for garbage in [u64::MAX, u64::MAX - 100, 1 << 60, 0, 3] {
            index.hints.repoint(0, 0, 1, garbage);
            assert!(index.prefetch_home(index.hash(b"k")));
            assert!(index.get(b"k", |r| r.value() == b"v").unwrap().unwrap());
            assert!(index.get(b"absent", |_| ()).unwrap().is_none());
        }
    }
}
