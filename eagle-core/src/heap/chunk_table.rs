//! The persistent chunk table: one 8-byte word per chunk, at the start of the heap region. It is
//! the only allocator state on the media; which blocks of a chunk are in use is derived from what
//! the index reaches (`Dash::sweep` marks, `Heap::finish_sweep` rebuilds).
//!
//! Word encoding (little-endian u64), bits 56..64 the kind:
//! - `0`: free;
//! - `1 << 56 | k`: small chunk of class `k`;
//! - `2 << 56 | n`: first chunk of a large object of `n` chunks;
//! - `3 << 56 | d`: chunk `d` chunks after the first of a large object.

use super::classes::{CHUNK, Classes};
use crate::pmem::Region;
use crate::pool::Extent;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// Nothing.
    Free,
    /// Blocks of one small class.
    Small(u8),
    /// The first of `n` chunks of one large object.
    LargeHead(u32),
    /// Part of a large object whose head is `d` chunks before.
    LargeTail(u32),
}

impl ChunkKind {
    pub(crate) fn encode(self) -> u64 {
        match self {
            ChunkKind::Free => 0,
            ChunkKind::Small(k) => 1 << 56 | k as u64,
            ChunkKind::LargeHead(n) => 2 << 56 | n as u64,
            ChunkKind::LargeTail(d) => 3 << 56 | d as u64,
        }
    }

    /// The kind a word encodes, in a pool with `classes` small classes; `None` for garbage.
    pub(crate) fn decode(w: u64, classes: usize) -> Option<ChunkKind> {
        let low = w & ((1 << 56) - 1);
        match w >> 56 {
            0 if low == 0 => Some(ChunkKind::Free),
            1 if (low as usize) < classes => Some(ChunkKind::Small(low as u8)),
            2 if low >= 1 && low <= u32::MAX as u64 => Some(ChunkKind::LargeHead(low as u32)),
            3 if low >= 1 && low <= u32::MAX as u64 => Some(ChunkKind::LargeTail(low as u32)),
            _ => None,
        }
    }
}

/// Where the table and the chunks are, and the pool's size classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The pool's table of small size classes.
    pub classes: Classes,
    /// Offset of the table (the heap region's start).
    pub table: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Offset of chunk 0 (4 KiB aligned, after the table).
    pub first_chunk: u64,
}

impl Geometry {
    /// Lays the table and as many chunks as fit into the heap region.
    pub fn for_heap(heap: Extent, classes: Classes) -> Geometry {
        // n words of table plus n chunks, the chunks starting 4 KiB aligned after the table.
        let mut n = heap.len / (CHUNK + 8);
        while n > 0 && (heap.offset + n * 8).next_multiple_of(4096) + n * CHUNK > heap.end() {
            n -= 1;
        }
        let n = n.min(u32::MAX as u64);
        Geometry {
            classes,
            table: heap.offset,
            chunks: n as u32,
            first_chunk: (heap.offset + n * 8).next_multiple_of(4096),
        }
    }

    /// Offset of chunk `c`.
    pub fn chunk_offset(&self, c: u32) -> u64 {
        self.first_chunk + c as u64 * CHUNK
    }

    /// The chunk containing `offset` and the offset within it, if it is inside a chunk.
    pub fn locate(&self, offset: u64) -> Option<(u32, u64)> {
        let rel = offset.checked_sub(self.first_chunk)?;
        let c = rel / CHUNK;
        (c < self.chunks as u64).then_some((c as u32, rel % CHUNK))
    }

    fn word_at(&self, c: u32) -> u64 {
        self.table + c as u64 * 8
    }

    /// Reads chunk `c`'s kind; `Err(word)` if the word is not a valid encoding.
    pub fn read(&self, region: &Region, c: u32) -> Result<ChunkKind, u64> {
        let w = region
            .atomic_u64(self.word_at(c))
            .expect("the chunk table lies inside the heap region")
            .load(std::sync::atomic::Ordering::Acquire);
        ChunkKind::decode(w, self.classes.count()).ok_or(w)
    }

    /// Stores chunk `c`'s kind and flushes its word (not fenced: the caller fences, possibly once
    /// for several words).
    pub fn write(&self, region: &Region, c: u32, kind: ChunkKind) {
        let at = self.word_at(c);
        region
            .atomic_u64(at)
            .expect("the chunk table lies inside the heap region")
            .store(kind.encode(), std::sync::atomic::Ordering::Release);
        region.flush(at, 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_words_round_trip_and_garbage_is_refused() {
        for k in [
            ChunkKind::Free,
            ChunkKind::Small(0),
            ChunkKind::Small(35),
            ChunkKind::LargeHead(7),
            ChunkKind::LargeTail(3),
        ] {
            assert_eq!(ChunkKind::decode(k.encode(), 36), Some(k));
        }
        assert_eq!(ChunkKind::decode(1 << 56 | 36, 36), None);
        assert_eq!(
            ChunkKind::decode(1 << 56 | 36, 49),
            Some(ChunkKind::Small(36))
        );
        assert_eq!(ChunkKind::decode(1 << 56 | 200, 49), None);
        assert_eq!(ChunkKind::decode(2 << 56, 36), None);
        assert_eq!(ChunkKind::decode(9 << 56, 36), None);
        assert_eq!(ChunkKind::decode(5, 36), None);
    }

    #[test]
    fn geometry_fits_table_and_chunks_in_the_heap() {
        for len in [1u64 << 20, 3 << 20, 1 << 30, 100 << 30] {
            let heap = Extent {
                offset: 1 << 20,
                len,
            };
            let g = Geometry::for_heap(heap, Classes::FINE);
            assert!(g.first_chunk >= heap.offset + g.chunks as u64 * 8);
            assert!(g.chunk_offset(g.chunks) <= heap.end(), "{len}");
            assert!(
                heap.end() - g.chunk_offset(g.chunks) < 2 * CHUNK + 4096,
                "{len}: too much waste"
            );
            assert_eq!(g.locate(g.first_chunk + CHUNK + 5), Some((1, 5)));
            assert_eq!(g.locate(g.first_chunk - 1), None);
            assert_eq!(g.locate(g.chunk_offset(g.chunks)), None);
        }
    }
}
