//! The directory: `2^global_depth` 8-byte segment offsets, indexed by the hash's top bits (so a
//! segment's entries are contiguous), behind a 64-byte header. The pool's metadata region holds
//! the offset of the current directory (the root) at byte 0.
//!
//! ```text
//! 0        8              16                 64
//! | magic  | global_depth | reserved          | entry 0 | entry 1 | ... | entry 2^G - 1 |
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pmem::Region;

/// `DASHDIR1`.
pub const DIR_MAGIC: u64 = u64::from_le_bytes(*b"DASHDIR1");
/// Bytes before the entries.
pub const DIR_HEADER: u64 = 64;
/// Deepest directory we build (2^40 segments is far beyond any pool).
pub const MAX_GLOBAL_DEPTH: u32 = 40;

/// Bytes of a directory of depth `g`.
pub fn dir_size(g: u32) -> u64 {
    DIR_HEADER + (8 << g)
}

/// Byte offset of entry `i` of the directory at `dir`.
#[inline]
pub fn entry_offset(dir: u64, i: u64) -> u64 {
    dir + DIR_HEADER + 8 * i
}

/// A validated view of a directory.
#[derive(Clone, Copy)]
pub struct Directory<'a> {
    region: &'a Region,
    /// Its offset.
    pub offset: u64,
    /// Its global depth.
    pub global_depth: u32,
}

impl<'a> Directory<'a> {
    /// Reads the directory at `offset`; `None` if it is not one.
    pub fn open(region: &'a Region, offset: u64) -> Option<Directory<'a>> {
        if region.atomic_u64(offset)?.load(Ordering::Acquire) != DIR_MAGIC {
            return None;
        }
        let g = region.atomic_u64(offset + 8)?.load(Ordering::Acquire);
        if g > MAX_GLOBAL_DEPTH as u64 || !region.contains(offset, dir_size(g as u32)) {
            return None;
        }
        Some(Directory {
            region,
            offset,
            global_depth: g as u32,
        })
    }

    /// A view of the directory at `offset` of depth `g` that [`open`](Self::open) accepted
    /// before (a directory never changes in place, and the region never shrinks).
    ///
    /// Reads nothing: a caller that is not pinned may hold a view of a directory retired
    /// meanwhile, and only its entries' reads must be pinned.
    #[inline]
    pub fn validated(region: &'a Region, offset: u64, g: u32) -> Directory<'a> {
        Directory {
            region,
            offset,
            global_depth: g,
        }
    }

    /// Writes a fresh header (the caller persists the directory).
    pub fn init(region: &'a Region, offset: u64, g: u32) -> Directory<'a> {
        let word = |at| region.atomic_u64(at).expect("directory inside the heap");
        word(offset).store(DIR_MAGIC, Ordering::Relaxed);
        word(offset + 8).store(g as u64, Ordering::Relaxed);
        Directory {
            region,
            offset,
            global_depth: g,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        1 << self.global_depth
    }

    /// Entry `i`.
    #[inline]
    pub fn entry(&self, i: u64) -> &'a AtomicU64 {
        debug_assert!(i < self.len());
        self.region
            .atomic_u64(entry_offset(self.offset, i))
            .expect("entries lie inside the validated directory")
    }

    /// Byte offset of entry `i` (for flushing).
    pub fn entry_offset(&self, i: u64) -> u64 {
        entry_offset(self.offset, i)
    }

    /// The entry for `hash`.
    #[inline]
    pub fn index_of(&self, hash: u64) -> u64 {
        super::segment::prefix(hash, self.global_depth)
    }
}
