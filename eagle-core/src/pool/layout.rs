//! Where the metadata, WAL and heap regions sit in a pool.

use super::HEADER_BLOCK;

/// Smallest pool we create: header, metadata, the minimum WAL and a 1 MiB heap fit.
pub const MIN_POOL_SIZE: u64 = 2 << 20;

/// Granularity of every region boundary.
pub const REGION_ALIGN: u64 = 4096;

/// End of the metadata region (fixed in format version 1).
const META_END: u64 = 256 << 10;
const MIN_WAL: u64 = 256 << 10;
const MAX_WAL: u64 = 64 << 20;
const MIN_HEAP: u64 = 1 << 20;

/// A byte range of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Offset from the pool base.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The regions of a pool, in address order after the 4 KiB header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Roots of the engine's structures (index directory root, allocator roots).
    pub meta: Extent,
    /// The write-ahead log.
    pub wal: Extent,
    /// Records, segments and directories.
    pub heap: Extent,
}

impl Layout {
    /// The layout for a new pool of `size` bytes (already validated and 4 KiB aligned). The WAL
    /// gets 1/32 of the pool, between 256 KiB and 64 MiB, unless `wal_len` says otherwise.
    pub fn for_size(size: u64, wal_len: Option<u64>) -> Result<Layout, String> {
        if size < MIN_POOL_SIZE {
            return Err(format!("the minimum is {MIN_POOL_SIZE} bytes"));
        }
        let wal_len = match wal_len {
            Some(l) => round_up(l, REGION_ALIGN).max(MIN_WAL),
            None => round_up(size / 32, REGION_ALIGN).clamp(MIN_WAL, MAX_WAL),
        };
        let meta = Extent {
            offset: HEADER_BLOCK,
            len: META_END - HEADER_BLOCK,
        };
        let wal = Extent {
            offset: META_END,
            len: wal_len,
        };
        let heap_start = wal.end();
        let heap_end = size - size % REGION_ALIGN;
        if heap_end < heap_start.saturating_add(MIN_HEAP) {
            return Err(format!(
                "too small for a {wal_len}-byte WAL and a {MIN_HEAP}-byte heap"
            ));
        }
        let layout = Layout {
            meta,
            wal,
            heap: Extent {
                offset: heap_start,
                len: heap_end - heap_start,
            },
        };
        layout.validate(size)?;
        Ok(layout)
    }

    /// Checks a layout read from a pool of `pool_size` bytes: regions aligned, non-empty, in
    /// order, not overlapping, inside the pool. Returns what is wrong.
    pub fn validate(&self, pool_size: u64) -> Result<(), String> {
        let regions = [
            ("metadata", self.meta),
            ("WAL", self.wal),
            ("heap", self.heap),
        ];
        let mut prev_end = HEADER_BLOCK;
        for (name, e) in regions {
            if !e.offset.is_multiple_of(REGION_ALIGN) || !e.len.is_multiple_of(REGION_ALIGN) {
                return Err(format!("{name} region {e:?} is not 4 KiB aligned"));
            }
            if e.len == 0 {
                return Err(format!("{name} region is empty"));
            }
            if e.offset < prev_end {
                return Err(format!("{name} region {e:?} overlaps what precedes it"));
            }
            if e.offset
                .checked_add(e.len)
                .is_none_or(|end| end > pool_size)
            {
                return Err(format!(
                    "{name} region {e:?} extends past the pool's {pool_size} bytes"
                ));
            }
            prev_end = e.end();
        }
        Ok(())
    }
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_for_many_sizes_are_valid_and_fill_the_pool() {
        for size in [
            MIN_POOL_SIZE,
            4 << 20,
            64 << 20,
            1 << 30,
            1 << 40,
            (1 << 30) + 12345,
        ] {
            let l = Layout::for_size(size, None).unwrap();
            l.validate(size).unwrap();
            assert!(l.heap.end() <= size && size - l.heap.end() < REGION_ALIGN);
            assert!((MIN_WAL..=MAX_WAL).contains(&l.wal.len));
        }
        assert_eq!(Layout::for_size(1 << 30, None).unwrap().wal.len, 32 << 20);
        assert_eq!(
            Layout::for_size(1 << 30, Some(5000)).unwrap().wal.len,
            MIN_WAL
        );
    }

    #[test]
    fn too_small_pools_are_refused() {
        assert!(Layout::for_size(MIN_POOL_SIZE - 1, None).is_err());
        assert!(Layout::for_size(4 << 20, Some(4 << 20)).is_err());
    }

    #[test]
    fn validate_rejects_overlap_misalignment_and_overflow() {
        let good = Layout::for_size(4 << 20, None).unwrap();
        let mut l = good;
        l.wal.offset -= REGION_ALIGN;
        assert!(l.validate(4 << 20).unwrap_err().contains("overlaps"));
        let mut l = good;
        l.heap.offset += 1;
        assert!(l.validate(4 << 20).unwrap_err().contains("aligned"));
        let mut l = good;
        l.heap.len = u64::MAX - 4095;
        assert!(l.validate(4 << 20).unwrap_err().contains("past"));
        let mut l = good;
        l.meta.len = 0;
        assert!(l.validate(4 << 20).unwrap_err().contains("empty"));
        assert!(good.validate(good.heap.end() - 1).is_err());
    }
}
