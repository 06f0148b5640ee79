//! The heap allocator: size-class chunks with DRAM free bitmaps, whole chunks for large objects.
//!
//! Durability argument. The only allocator state on the media is the chunk table. A chunk's word
//! is written (and fenced) before the first block of it is handed out, and returned to `Free` only
//! once every block in it is free. Whether a block is in use is *not* persisted: it is in use iff
//! the index reaches it, and after every open [`Heap::finish_sweep`] rebuilds the DRAM bitmaps of
//! the chunks that were in use from the index's marks. So a block allocated but never published
//! (crash before the publishing store) or unlinked but not yet freed (crash before the deferred
//! free ran) is found unreachable and reclaimed; no block is both free and reachable, none leaks.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::HeapError;
use super::chunk_table::{ChunkKind, Geometry};
use super::classes::{CHUNK, Classes};
use crate::pool::Pool;
use crate::shard::{self, SHARDS};

/// Space accounting, for metrics and INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of chunks in the heap.
    pub capacity: u64,
    /// Bytes in blocks handed out (block sizes, not requested sizes).
    pub used: u64,
    /// Bytes in chunks assigned to a class or a large object.
    pub chunk_bytes: u64,
    /// Chunks not assigned to anything.
    pub free_chunks: u32,
    /// The size of the reserve: free chunks that only allocations in a `ReserveScope` (HDEL,
    /// RENAME, a logged batch's operations and their redo) may take. Fewer may be free.
    pub reserved_chunks: u32,
}

impl HeapStats {
    /// Bytes not handed out. (`used` sums per-thread stripes while other threads allocate and
    /// free, so it may briefly read above `capacity`: this saturates at 0.)
    pub fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    /// Share of assigned chunk bytes not in use (0.0 = none wasted).
    pub fn fragmentation(&self) -> f64 {
        if self.chunk_bytes == 0 {
            0.0
        } else {
            (1.0 - self.used as f64 / self.chunk_bytes as f64).max(0.0)
        }
    }
}

#[derive(Default)]
struct ClassState {
    /// Free-block bitmaps of this class's chunks (bit set = free).
    chunks: HashMap<u32, Blocks, ChunkIds>,
    /// Chunks with at least one free block.
    partial: BTreeSet<u32>,
}

/// Hashes chunk numbers with one multiply. The heap chooses the keys (distinct small
/// integers), so SipHash's resistance to chosen keys buys nothing, and it cost about 120
/// instructions per allocation.
#[derive(Clone, Copy, Default)]
struct ChunkIds;

impl std::hash::BuildHasher for ChunkIds {
    type Hasher = ChunkHasher;
    fn build_hasher(&self) -> ChunkHasher {
        ChunkHasher(0)
    }
}

struct ChunkHasher(u64);

impl std::hash::Hasher for ChunkHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        // An odd multiplier: distinct in the low bits (the table index), mixed in the high
        // ones (hashbrown's tag byte).
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Blocks {
    free_bits: Vec<u64>,
    free: u32,
    /// Blocks in the chunk (free == total: the chunk is empty).
    total: u32,
    /// No word before this one has a free bit (so `take` does not rescan a full prefix).
    first: usize,
}

impl Blocks {
    fn all_free(n: u32) -> Blocks {
        let mut free_bits = vec![u64::MAX; n.div_ceil(64) as usize];
        if !n.is_multiple_of(64) {
            *free_bits.last_mut().expect("n > 0") = (1u64 << (n % 64)) - 1;
        }
        Blocks {
            free_bits,
            free: n,
            total: n,
            first: 0,
        }
    }

    fn take(&mut self) -> Option<u32> {
        let (w, bits) = self
            .free_bits
            .iter_mut()
            .enumerate()
            .skip(self.first)
            .find(|(_, b)| **b != 0)?;
        self.first = w;
        let bit = bits.trailing_zeros();
        *bits &= !(1 << bit);
        self.free -= 1;
        Some(w as u32 * 64 + bit)
    }

    /// Marks block `i` free; false if it already was (a double free).
    fn put(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if self.free_bits[w] & (1 << b) != 0 {
            return false;
        }
        self.free_bits[w] |= 1 << b;
        self.free += 1;
        self.first = self.first.min(w);
        true
    }
}

struct Chunks {
    /// Free chunks available for allocation (excludes chunks awaiting the sweep).
    free: BTreeSet<u32>,
}

/// What the sweep establishes about one chunk that was in use when the pool was opened.
enum Pending {
    /// Nothing (free at open, a large tail, or assigned after open).
    None,
    /// A small chunk: its live-block bitmap (bit set = reachable).
    Small(Vec<u64>),
    /// The head of a large object: whether it was found reachable.
    Large(bool),
}

/// Chunks in use when the pool was opened, indexed by chunk (a mark is a lookup, not a hash).
struct Sweep {
    chunks: Vec<Pending>,
}

/// The persistent heap.
pub struct Heap {
    pool: Arc<Pool>,
    geo: Geometry,
    /// Per class, per shard: threads allocate from their own shard's chunks, so same-sized
    /// allocations on different threads do not share a lock.
    classes: Vec<[Mutex<ClassState>; SHARDS]>,
    /// Which shard owns each small chunk (frees go back to the owner).
    owner: Vec<std::sync::atomic::AtomicU8>,
    chunks: Mutex<Chunks>,
    /// DRAM mirror of the chunk table, encoded as on the media. Written under `chunks` (with
    /// the free set), read without a lock, so frees and size lookups take no global lock.
    kinds: Vec<std::sync::atomic::AtomicU64>,
    sweep: Mutex<Option<Sweep>>,
    /// Until the sweep ends or fails (a failed sweep leaves `sweep` as it was): fresh chunks
    /// are held back meanwhile. Read without a lock.
    sweeping: std::sync::atomic::AtomicBool,
    /// Chunks in use at open whose blocks the sweep has not settled yet.
    unsettled: Vec<std::sync::atomic::AtomicBool>,
    /// Bytes in allocated blocks, striped: every allocation and free adds to it.
    used: crate::shard::StripedCounter,
    /// Free chunks that only allocations inside a [`ReserveScope`](super::ReserveScope) may
    /// take (see `reserve.rs`).
    reserve: u32,
    /// Whether a chunk handed out has its pages faulted in at once (`populate`, called by
    /// `alloc_small` and `alloc_large`); cleared when the kernel says it cannot.
    populate: std::sync::atomic::AtomicBool,
}

impl Heap {
    /// Opens the heap of `pool`: reads and validates the chunk table. Chunks in use are held
    /// back until [`finish_sweep`](Self::finish_sweep); until then only free chunks serve
    /// allocations.
    pub fn open(pool: Arc<Pool>) -> Result<Heap, HeapError> {
        let region = pool.region();
        let geo = Geometry::for_heap(pool.layout().heap, Classes::for_pool(pool.fine_classes()));
        if pool.created() {
            // A new pool on a reused device may hold old bytes where the table goes.
            let table = geo.chunks as u64 * 8;
            let p = region
                .ptr(geo.table, table)
                .expect("the chunk table lies inside the heap");
            // SAFETY: the pool was just created by this process and nothing else uses it yet.
            unsafe { std::ptr::write_bytes(p, 0, table as usize) };
            // Ordering: the zeroed table is durable before any chunk is assigned (each
            // assignment fences after it). A crash before this fence leaves the pool without
            // an index root, so the next open creates the index again over this same table.
            region.persist(geo.table, table as usize);
        }
        let mut kinds = Vec::with_capacity(geo.chunks as usize);
        let mut free = BTreeSet::new();
        let mut sweep = Sweep {
            chunks: Vec::with_capacity(geo.chunks as usize),
        };
        let mut c = 0;
        while c < geo.chunks {
            let kind = geo.read(region, c).map_err(|w| HeapError::Corrupted {
                what: format!("chunk table entry {c} holds {w:#018x}"),
            })?;
            // No writer places a large object past the last chunk (or of no chunks): a head
            // saying so is damage, and a free of it would reach past the heap.
            if let ChunkKind::LargeHead(n) = kind
                && (n == 0 || c as u64 + n as u64 > geo.chunks as u64)
            {
                return Err(HeapError::Corrupted {
                    what: format!("chunk table entry {c}: a large object of {n} chunks"),
                });
            }
            let pending = match kind {
                ChunkKind::Free => {
                    free.insert(c);
                    Pending::None
                }
                ChunkKind::Small(k) => Pending::Small(vec![
                    0;
                    geo.classes.blocks_per_chunk(k).div_ceil(64)
                        as usize
                ]),
                // A head whose tails do not all follow is a large allocation torn by a crash
                // before it was published: the sweep frees it (nothing reaches it).
                ChunkKind::LargeHead(_) => Pending::Large(false),
                ChunkKind::LargeTail(_) => Pending::None,
            };
            sweep.chunks.push(pending);
            kinds.push(kind);
            c += 1;
        }
        Ok(Heap {
            classes: (0..geo.classes.count())
                .map(|_| std::array::from_fn(|_| Mutex::default()))
                .collect(),
            owner: (0..geo.chunks).map(|_| 0.into()).collect(),
            unsettled: kinds
                .iter()
                .map(|k| (*k != ChunkKind::Free).into())
                .collect(),
            kinds: kinds.iter().map(|k| k.encode().into()).collect(),
            chunks: Mutex::new(Chunks { free }),
            sweep: Mutex::new(Some(sweep)),
            sweeping: true.into(),
            used: Default::default(),
            reserve: super::reserve::reserved_chunks(geo.chunks),
            populate: true.into(),
            pool,
            geo,
        })
    }

    /// The pool this heap lives in.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Gives the pool back (closing).
    pub fn into_pool(self) -> Arc<Pool> {
        self.pool
    }

    /// Allocates `size` bytes and returns the block's offset. The block reads as zeroes (every
    /// free block does, in memory); the caller writes it, persists its first `size` bytes,
    /// then publishes it.
    ///
    /// A freed block's zeroes may not have reached the media yet (see [`free`](Self::free)).
    /// The caller's persist covers every cache line its `size` bytes touch; the lines of the
    /// block wholly past them (its slack) are flushed here, so the caller's publishing fence
    /// makes them durable too. Otherwise a crash could bring a deleted value back into the
    /// slack of a block in use, where no sweep looks. (A block of a chunk just taken is zero
    /// on the media already; its slack is flushed all the same, as telling it apart would
    /// cost more.)
    pub fn alloc(&self, size: u64) -> Result<u64, HeapError> {
        // Read before the attempt: if the sweep had ended by then, the attempt saw every chunk
        // it settled, and a failure is not one the sweep's end cures.
        let during_sweep = self.sweeping.load(std::sync::atomic::Ordering::Acquire);
        let (off, block) = match self.geo.classes.class_for(size) {
            // Inside a reserve scope, a free block of any larger class is taken before a
            // reserved chunk: a later allocation of the same command may need a chunk for a
            // class with no free block at all (a segment for a split, a larger part).
            Some(k) => self
                .alloc_small(k, false)
                .map(|off| (off, self.geo.classes.size(k)))
                .or_else(|| self.alloc_larger_class(k, size))
                .or_else(|| {
                    super::reserve::in_scope()
                        .then(|| self.alloc_small(k, true))
                        .flatten()
                        .map(|off| (off, self.geo.classes.size(k)))
                }),
            // Whole chunks, taken free: a free chunk is zero on the media (`release_chunks`).
            None => self.alloc_large(size).map(|off| (off, size)),
        }
        .ok_or(HeapError::OutOfSpace {
            requested: size,
            during_sweep,
        })?;
        let region = self.pool.region();
        // The caller's flush covers every flush unit its bytes touch (cache line, or page
        // under msync); the slack starts at the next unit.
        let slack = (off + size).next_multiple_of(region.persister().granule() as u64);
        if slack < off + block {
            region.flush(slack, (off + block - slack) as usize);
        }
        Ok(off)
    }

    /// A block of class `k`: from this shard's chunks (taking a free chunk for them if they are
    /// full, a reserved one only if `reserve`), else from another shard's.
    ///
    /// While fewer than half the chunks are free, a fresh chunk is taken only when no shard has
    /// a free block of the class; while fewer than an eighth are, not at all until the sweep
    /// ends (unless `reserve`). The writes of every open's first seconds each took a chunk for
    /// each class they wrote (the chunks in use at open serve no allocation until the sweep
    /// has settled them, and then each open spreads them over the shards), and kept it with a
    /// record or two: after 60 reopens a small pool had all 119 of its chunks assigned for
    /// 484 KB, and a value needing a whole chunk failed. Writers that meet the resulting
    /// `OutOfSpace` wait for the sweep and try again (`Dash::space_may_free_up`): a write
    /// during the background recovery of a pool with fewer than an eighth of its chunks free
    /// waits for the sweep (as in a pool with none free). While chunks are plentiful, a
    /// shard's own chunk spares its allocations the other shards' locks.
    fn alloc_small(&self, k: u8, reserve: bool) -> Option<u64> {
        let home = shard::current();
        if let Some(off) = self.take_block(&mut self.classes[k as usize][home].lock(), k) {
            return Some(off);
        }
        let from_others = || {
            (1..SHARDS).find_map(|d| {
                let mut class = self.classes[k as usize][(home + d) % SHARDS].lock();
                self.take_block(&mut class, k)
            })
        };
        let free = self.chunks.lock().free.len();
        let chunks = self.geo.chunks as usize;
        if free * 2 < chunks
            && let Some(off) = from_others()
        {
            return Some(off);
        }
        let hold_back = free * 8 < chunks
            && !reserve
            && self.sweeping.load(std::sync::atomic::Ordering::Acquire);
        let mut fresh = None;
        let taken = {
            let mut class = self.classes[k as usize][home].lock();
            if class.partial.is_empty()
                && !hold_back
                && let Some(c) = self.take_chunks(1, ChunkKind::Small(k), reserve)
            {
                self.owner[c as usize].store(home as u8, std::sync::atomic::Ordering::Relaxed);
                class
                    .chunks
                    .insert(c, Blocks::all_free(self.geo.classes.blocks_per_chunk(k)));
                class.partial.insert(c);
                fresh = Some(c);
            }
            self.take_block(&mut class, k)
        };
        if let Some(c) = fresh {
            // Once the class's lock is free: other allocations of the class need not wait.
            self.populate(self.geo.chunk_offset(c), CHUNK);
        }
        if taken.is_some() {
            return taken;
        }
        // No free chunk left: take a block from another shard's chunks before giving up.
        from_others()
    }

    /// The sweep has ended, settled or failed: fresh chunks are no longer held back for it.
    pub fn sweep_ended(&self) {
        self.sweeping
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// No free chunk and no free block of class `k` anywhere: a free block of a larger class,
    /// up to four times `k`'s size, still holds the request. Without this a small pool runs out
    /// as soon as every chunk has a class, however empty those chunks are.
    /// A request that is a multiple of 64 bytes only takes a block of a multiple of 64, so it
    /// stays 64-byte aligned as the class table promises.
    fn alloc_larger_class(&self, k: u8, size: u64) -> Option<(u64, u64)> {
        let classes = self.geo.classes;
        let aligned = size.is_multiple_of(64);
        // Inside a reserve scope any larger class will do, rather than fail the delete or
        // rewrite. The cost: the block lives as long as what it holds (a small record may
        // keep a much larger block while its key lives).
        let most = if super::reserve::in_scope() {
            u64::MAX
        } else {
            4 * classes.size(k)
        };
        (k + 1..classes.count() as u8)
            .take_while(|&j| classes.size(j) <= most)
            .filter(|&j| !aligned || classes.size(j).is_multiple_of(64))
            .find_map(|j| {
                (0..SHARDS).find_map(|s| {
                    let mut class = self.classes[j as usize][s].lock();
                    self.take_block(&mut class, j)
                        .map(|off| (off, classes.size(j)))
                })
            })
    }

    fn take_block(&self, class: &mut ClassState, k: u8) -> Option<u64> {
        let c = *class.partial.last()?;
        let blocks = class
            .chunks
            .get_mut(&c)
            .expect("partial chunks have bitmaps");
        let i = blocks.take().expect("partial chunks have a free block");
        if blocks.free == 0 {
            class.partial.remove(&c);
        }
        self.used.add(self.geo.classes.size(k) as i64);
        Some(self.geo.chunk_offset(c) + i as u64 * self.geo.classes.size(k))
    }

    fn alloc_large(&self, size: u64) -> Option<u64> {
        let n = u32::try_from(size.div_ceil(CHUNK)).ok()?;
        let c = self.take_chunks(n, ChunkKind::LargeHead(n), super::reserve::in_scope())?;
        self.used.add((n as u64 * CHUNK) as i64);
        // The bytes the object will hold, not the rest of its last chunk.
        self.populate(self.geo.chunk_offset(c), size);
        Some(self.geo.chunk_offset(c))
    }

    /// Assigns `n` contiguous free chunks to `kind` and makes that durable. Leaves the reserve
    /// alone unless `reserve` (which only a thread in a `ReserveScope` passes).
    fn take_chunks(&self, n: u32, kind: ChunkKind, reserve: bool) -> Option<u32> {
        let mut chunks = self.chunks.lock();
        let keep = if reserve { 0 } else { self.reserve as usize };
        if chunks.free.len() < n as usize + keep {
            return None;
        }
        let first = if n == 1 {
            *chunks.free.first()?
        } else {
            let mut run = (0u32, 0u32);
            let mut found = None;
            for &c in &chunks.free {
                run = if run.1 > 0 && run.0 + run.1 == c {
                    (run.0, run.1 + 1)
                } else {
                    (c, 1)
                };
                if run.1 == n {
                    found = Some(run.0);
                    break;
                }
            }
            found?
        };
        let region = self.pool.region();
        for d in 1..n {
            self.geo.write(region, first + d, ChunkKind::LargeTail(d));
        }
        self.geo.write(region, first, kind);
        // Ordering: the chunk words are durable before any block of the chunk is handed out,
        // so a published block never lies in a chunk that recovery reads as free. A crash
        // before this fence leaves the chunks free or half-assigned with nothing published in
        // them; the sweep returns such chunks to free.
        region.fence();
        for d in 0..n {
            chunks.free.remove(&(first + d));
            let k = if d == 0 {
                kind
            } else {
                ChunkKind::LargeTail(d)
            };
            self.set_kind(first + d, k);
        }
        Some(first)
    }

    /// Faults in the pages of `offset..offset + len`, in a chunk just handed out, in one call
    /// rather than one fault per page as writers first touch them: on this machine a fresh
    /// pool on tmpfs served 0.1-23% more pipelined 1 KiB SETs, with a lower p99 in eight of
    /// ten alternating rounds (docs/benchmarks.md, thirty-second session). The cost: a small
    /// class's chunk is backed whole (256 KiB) however few of its blocks are ever used. Off
    /// for good once the kernel says it cannot (EINVAL: before 5.14, or a mapping that does
    /// not allow it); any other error (a full tmpfs, say) skips this call only.
    fn populate(&self, offset: u64, len: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.populate.load(Relaxed) {
            return;
        }
        let mapping = self.pool.region().mapping();
        if let Err(e) = mapping.populate_write(offset, len) {
            log::debug!("pages of a new chunk are faulted in as written ({e})");
            if e.raw_os_error() == Some(libc::EINVAL) {
                self.populate.store(false, Relaxed);
            }
        }
    }

    /// Returns a block to the heap: zeroes it (so deleted values do not linger in persistent
    /// memory) and makes it available. The caller guarantees that nothing reaches the block any
    /// more and no reader can still be reading it (epoch reclamation).
    pub fn free(&self, offset: u64) -> Result<(), HeapError> {
        let (c, within) = self.geo.locate(offset).ok_or(HeapError::BadFree {
            offset,
            why: "outside the heap's chunks",
        })?;
        let kind = self.kind(c);
        let (size, block) = match kind {
            ChunkKind::Small(k) if let Some(i) = self.geo.classes.block_at(k, within) => {
                (self.geo.classes.size(k), i)
            }
            ChunkKind::LargeHead(n) if within == 0 => (n as u64 * CHUNK, 0),
            _ => {
                return Err(HeapError::BadFree {
                    offset,
                    why: "not the start of an allocated block",
                });
            }
        };
        // Zeroed in memory, not flushed: the zeroes are for privacy, not consistency, and a
        // flush here would make the thread's next locked instruction wait for the write-back
        // (a fifth of a delete's time). They reach the media by write-back, by the flush of
        // whoever reuses the block (`alloc` flushes the slack the new owner does not write),
        // or by `release_chunks`, which flushes a chunk before it frees it. A crash before
        // then leaves old bytes only in a free block of a chunk in use, which the sweep at
        // the next open finds non-zero and zeroes.
        self.zero_in_memory(offset, size);
        if self.unsettled[c as usize].load(std::sync::atomic::Ordering::Acquire)
            && let Some(sweep) = self.sweep.lock().as_mut()
        {
            // Still sweeping and the block is in a chunk that was in use at open: its state is
            // decided by the sweep; clearing its live mark is all that freeing means yet.
            match (kind, &mut sweep.chunks[c as usize]) {
                (ChunkKind::Small(_), Pending::Small(live)) => {
                    live[(block / 64) as usize] &= !(1 << (block % 64));
                    return Ok(());
                }
                (ChunkKind::LargeHead(_), Pending::Large(l)) => {
                    *l = false;
                    return Ok(());
                }
                _ => {}
            }
        }
        // Counted once the block is known to have been allocated: a refused double free
        // changes no accounting.
        let freed = || self.used.add(-(size as i64));
        match kind {
            ChunkKind::Small(k) => {
                let shard = self.owner[c as usize].load(std::sync::atomic::Ordering::Relaxed);
                let mut class = self.classes[k as usize][shard as usize].lock();
                let blocks = class.chunks.get_mut(&c).ok_or(HeapError::BadFree {
                    offset,
                    why: "chunk has no blocks",
                })?;
                if !blocks.put(block) {
                    return Err(HeapError::BadFree {
                        offset,
                        why: "double free",
                    });
                }
                freed();
                if blocks.free == blocks.total {
                    class.chunks.remove(&c);
                    class.partial.remove(&c);
                    // The class no longer knows the chunk: release it (a persist of the whole
                    // chunk) without holding up the class's other allocations and frees.
                    drop(class);
                    self.release_chunks(c, 1);
                } else if blocks.free == 1 {
                    // It was full, so not among the partial chunks (those with a free block);
                    // with more than one free block it already is one.
                    class.partial.insert(c);
                }
            }
            _ => {
                freed();
                self.release_chunks(c, (size / CHUNK) as u32);
            }
        }
        Ok(())
    }

    /// Frees `n` chunks from `first`, all of whose blocks are free and zero in memory.
    fn release_chunks(&self, first: u32, n: u32) {
        let region = self.pool.region();
        // Ordering: the chunks' zeroes are durable before any word that frees them can be. A
        // free chunk is never swept at open, so its bytes must be zero on the media: blocks
        // freed since their last write-back hold their zeroes only in the cache.
        region.persist(self.geo.chunk_offset(first), n as usize * CHUNK as usize);
        let mut chunks = self.chunks.lock();
        // The words may reach the media in any order: a crash can leave a head without some
        // tails or tails without their head; `finish_sweep` frees (and zeroes) both.
        for d in 0..n {
            self.geo.write(region, first + d, ChunkKind::Free);
        }
        // Ordering: every block of these chunks is already free and zeroed (persisted above),
        // so whether or not these words reach the media before a crash, nothing reachable is
        // lost.
        region.fence();
        for d in 0..n {
            self.set_kind(first + d, ChunkKind::Free);
            chunks.free.insert(first + d);
        }
    }

    fn zero_in_memory(&self, offset: u64, size: u64) {
        // SAFETY: the caller of `free` (or the sweep, for unreachable blocks) guarantees that
        // no other thread accesses the block, which lies inside the heap region.
        unsafe { self.pool.region().zero(offset, size as usize) };
    }

    /// Records during the sweep that the index reaches the block at `offset` (idempotent).
    /// Errors name what is wrong with the reference (outside the heap, not a block start).
    pub fn mark(&self, offset: u64) -> Result<(), HeapError> {
        let bad = |why: &'static str| HeapError::BadReference { offset, why };
        let (c, within) = self
            .geo
            .locate(offset)
            .ok_or(bad("outside the heap's chunks"))?;
        let kind = self.kind(c);
        let mut guard = self.sweep.lock();
        let sweep = guard.as_mut().ok_or(bad("marked after the sweep ended"))?;
        match kind {
            ChunkKind::Small(k) if let Some(i) = self.geo.classes.block_at(k, within) => {
                let i = i as usize;
                // A chunk assigned after open is managed live: nothing to establish.
                let Pending::Small(live) = &mut sweep.chunks[c as usize] else {
                    return Ok(());
                };
                // Idempotent: a sweep running beside writers meets a record moved by a split
                // twice. Double references are `Dash::check`'s business.
                live[i / 64] |= 1 << (i % 64);
                Ok(())
            }
            ChunkKind::LargeHead(_) if within == 0 => {
                let Pending::Large(live) = &mut sweep.chunks[c as usize] else {
                    return Ok(());
                };
                *live = true;
                Ok(())
            }
            _ => Err(bad("not the start of an allocated block")),
        }
    }

    /// Keeps a block in use through the sweep: called when it is retired (its free deferred),
    /// so the sweep does not also free it. Nothing to do once the sweep has ended.
    pub fn keep(&self, offset: u64) {
        if let Some((c, _)) = self.geo.locate(offset)
            && self.unsettled[c as usize].load(std::sync::atomic::Ordering::Acquire)
        {
            let _ = self.mark(offset);
        }
    }

    /// Ends the sweep: every block of the chunks in use at open that was not marked is free
    /// (zeroed if it holds anything), chunks left empty return to the free pool. Returns the
    /// number of blocks reclaimed.
    ///
    /// The marks are complete when this is called (every segment visited), so the chunks are
    /// settled one at a time, each under the sweep's lock: a free or a `keep` of a block in a
    /// chunk not settled yet waits for one chunk's settling, not for all of them. (Writers
    /// call `keep` with bucket locks held, which readers and the stall limit watch; settling
    /// every chunk under one hold took about a second at 10M keys, and grows with the pool.)
    ///
    /// `Corrupted` if a large object the index reaches has a chunk whose word does not say it
    /// is one of its tails (damage: no crash leaves a published object torn, since its words
    /// are fenced before it is handed out). Its chunks are then left as they are rather than
    /// freed and zeroed under the value; everything else is settled as usual.
    pub fn finish_sweep(&self) -> Result<u64, HeapError> {
        let (kinds, damage) = {
            let guard = self.sweep.lock();
            let Some(sweep) = guard.as_ref() else {
                return Ok(0);
            };
            // The word of a chunk still unsettled when the loop below reaches it is the word it
            // had at open: only free chunks are assigned, a free in an unsettled chunk only
            // clears a mark, and the chunks of a live large object (damaged words included)
            // are all settled with its head, before a free of the object can release them.
            let kinds = self.kinds_snapshot();
            let damage = self.large_object_damage(sweep, &kinds);
            (kinds, damage)
        };
        let mut reclaimed = 0;
        // The chunks past the head of each live large object (left out of the orphan pass).
        let mut live_spans = vec![false; self.geo.chunks as usize];
        for c in 0..self.geo.chunks {
            if !self.unsettled[c as usize].load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            let mut guard = self.sweep.lock();
            // Another caller ended the sweep (there is one, the recovery thread, but a second
            // would find nothing left to do rather than settle a chunk twice).
            let Some(sweep) = guard.as_mut() else {
                return Ok(reclaimed);
            };
            let pending = std::mem::replace(&mut sweep.chunks[c as usize], Pending::None);
            reclaimed += match pending {
                Pending::None => 0,
                Pending::Small(live) => self.settle_small(c, kinds[c as usize], &live),
                Pending::Large(live) => self.settle_large(sweep, c, live, &kinds, &mut live_spans),
            };
            // Released under the lock, after the chunk's blocks are registered: a free that
            // waited for the lock, or reads this flag clear, finds them.
            self.unsettled[c as usize].store(false, std::sync::atomic::Ordering::Release);
            drop(guard);
            crate::fault::pause_point(crate::fault::Fault::PauseBetweenSettledChunks);
        }
        let mut guard = self.sweep.lock();
        if guard.is_none() {
            return Ok(reclaimed);
        }
        // Tails left without their head (a release or an assignment torn by a crash). Read
        // under the free set's lock: `take_chunks` assigns a head before its tails, and a
        // snapshot taken beside it could see a tail without its head. A chunk of a live large
        // object is not one, whatever its word says (damage the error reports): its bytes are
        // the value's. (Once that object is freed its chunks are free, or assigned anew with
        // their head.)
        let orphans: Vec<u32> = {
            let _chunks = self.chunks.lock();
            let kinds = self.kinds_snapshot();
            (0..self.geo.chunks)
                .filter(|&c| match kinds[c as usize] {
                    _ if live_spans[c as usize] => false,
                    ChunkKind::LargeTail(d) => {
                        d > c
                            || !matches!(kinds[(c - d) as usize], ChunkKind::LargeHead(n) if n > d)
                    }
                    _ => false,
                })
                .collect()
        };
        // Assigned, so out of the free set: nothing can take them between the two locks.
        for c in orphans {
            self.zero_in_memory(self.geo.chunk_offset(c), CHUNK);
            self.release_chunks(c, 1);
        }
        guard.take();
        self.sweep_ended();
        drop(guard);
        match damage {
            Some(what) => Err(HeapError::Corrupted { what }),
            None => Ok(reclaimed),
        }
    }

    /// Settles small chunk `c` (of word `kind`) from its marks `live`: unmarked blocks are
    /// zeroed and free, the chunk joins a shard's class (or is released if nothing in it is
    /// live). Under the sweep's lock. Returns the blocks reclaimed.
    fn settle_small(&self, c: u32, kind: ChunkKind, live: &[u64]) -> u64 {
        let ChunkKind::Small(k) = kind else {
            return 0;
        };
        let n = self.geo.classes.blocks_per_chunk(k);
        let size = self.geo.classes.size(k);
        let mut blocks = Blocks::all_free(n);
        let (mut in_use, mut reclaimed) = (0, 0);
        let mut zeroed = false;
        for i in 0..n {
            let off = self.geo.chunk_offset(c) + i as u64 * size;
            if live[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                blocks.free_bits[(i / 64) as usize] &= !(1 << (i % 64));
                blocks.free -= 1;
                in_use += 1;
            } else if !self.is_zero(off, size) {
                // Flushed here, fenced once below (or persisted with the whole chunk if it
                // turns out empty and is released).
                self.zero_in_memory(off, size);
                self.pool.region().flush(off, size as usize);
                zeroed = true;
                reclaimed += 1;
            }
        }
        if in_use == 0 {
            self.release_chunks(c, 1);
            return reclaimed;
        }
        if zeroed {
            // Ordering: the deleted bytes found here are durably gone before the chunk serves
            // allocations (a free block of a chunk in use is otherwise only looked at again by
            // the next open's sweep).
            self.pool.region().fence();
        }
        self.used.add((in_use * size) as i64);
        // Chunks in use at open are spread over the shards round-robin.
        let shard = c as usize % SHARDS;
        self.owner[c as usize].store(shard as u8, std::sync::atomic::Ordering::Relaxed);
        let mut class = self.classes[k as usize][shard].lock();
        if blocks.free > 0 {
            class.partial.insert(c);
        }
        class.chunks.insert(c, blocks);
        reclaimed
    }

    /// Settles the large object whose head is chunk `c`: counted if `live`, else (unreachable,
    /// or torn before it was published) zeroed and released with the tails that follow it; a
    /// live one's chunks past the head are noted in `live_spans`. Under the sweep's lock.
    /// Returns the objects reclaimed (0 or 1).
    fn settle_large(
        &self,
        sweep: &mut Sweep,
        c: u32,
        live: bool,
        kinds: &[ChunkKind],
        live_spans: &mut [bool],
    ) -> u64 {
        let ChunkKind::LargeHead(n) = kinds[c as usize] else {
            return 0;
        };
        let n = n.min(self.geo.chunks - c);
        if live {
            // Intact, or damaged (in `damage`): kept whole, as far as its words reach. Its
            // chunks are settled with it, whatever their words say: a chunk damaged into a
            // small class's word or a head's holds the value's bytes, which no later step may
            // zero. (Once the head is settled a free of the object releases all of them, and
            // the loop must not then settle one handed out again.)
            for d in 1..n {
                live_spans[(c + d) as usize] = true;
                sweep.chunks[(c + d) as usize] = Pending::None;
                self.unsettled[(c + d) as usize].store(false, std::sync::atomic::Ordering::Release);
            }
            self.used.add((n as u64 * CHUNK) as i64);
            return 0;
        }
        let tails = (1..n)
            .take_while(|&d| kinds[(c + d) as usize] == ChunkKind::LargeTail(d))
            .count() as u32;
        // `release_chunks` persists the zeroes.
        self.zero_in_memory(self.geo.chunk_offset(c), (1 + tails) as u64 * CHUNK);
        for d in 1..=tails {
            // Free now, and perhaps assigned again before the loop reaches them.
            self.unsettled[(c + d) as usize].store(false, std::sync::atomic::Ordering::Release);
        }
        self.release_chunks(c, 1 + tails);
        1
    }

    /// The first chunk of a large object the sweep found reachable whose word does not say it
    /// is one of its tails (damage), if any. A chunk damaged into looking free is also taken
    /// out of the free set, so no later allocation hands it out (one during the sweep may
    /// have: the error says so either way).
    fn large_object_damage(&self, sweep: &Sweep, kinds: &[ChunkKind]) -> Option<String> {
        let mut damage = None;
        for (c, pending) in sweep.chunks.iter().enumerate() {
            let (Pending::Large(true), ChunkKind::LargeHead(n)) = (pending, kinds[c]) else {
                continue;
            };
            // `open` refused heads reaching past the last chunk.
            let n = (n as usize).min(kinds.len() - c);
            for d in 1..n {
                let t = c + d;
                if kinds[t] == ChunkKind::LargeTail(d as u32) {
                    continue;
                }
                if kinds[t] == ChunkKind::Free {
                    self.chunks.lock().free.remove(&(t as u32));
                }
                damage.get_or_insert_with(|| {
                    format!(
                        "chunk {t} of the large object at chunk {c}, which the index reaches, \
                         is marked {:?}",
                        kinds[t]
                    )
                });
            }
        }
        damage
    }

    fn is_zero(&self, offset: u64, size: u64) -> bool {
        let p = self
            .pool
            .region()
            .ptr(offset, size)
            .expect("blocks lie inside the heap region");
        // SAFETY: inside the mapping; during the sweep nothing writes unreachable blocks.
        let bytes = unsafe { std::slice::from_raw_parts(p, size as usize) };
        // A cache line at a time (the OR of 64 bytes vectorises), stopping at the first non-zero.
        bytes
            .chunks(64)
            .all(|line| line.iter().fold(0u8, |acc, &b| acc | b) == 0)
    }

    fn kind(&self, c: u32) -> ChunkKind {
        let w = self.kinds[c as usize].load(std::sync::atomic::Ordering::Acquire);
        ChunkKind::decode(w, self.geo.classes.count())
            .expect("the mirror holds only encodings this module wrote")
    }

    fn set_kind(&self, c: u32, kind: ChunkKind) {
        self.kinds[c as usize].store(kind.encode(), std::sync::atomic::Ordering::Release);
    }

    fn kinds_snapshot(&self) -> Vec<ChunkKind> {
        (0..self.geo.chunks).map(|c| self.kind(c)).collect()
    }

    /// Current space accounting.
    pub fn stats(&self) -> HeapStats {
        let free_chunks = (0..self.geo.chunks)
            .filter(|&c| self.kind(c) == ChunkKind::Free)
            .count() as u32;
        HeapStats {
            capacity: self.geo.chunks as u64 * CHUNK,
            used: self.used.total(),
            chunk_bytes: (self.geo.chunks - free_chunks) as u64 * CHUNK,
            free_chunks,
            reserved_chunks: self.reserve,
        }
    }

    /// Whether `offset..offset + len` lies inside the heap's chunks (not its chunk table, nor
    /// past its last chunk).
    pub fn in_chunks(&self, offset: u64, len: u64) -> bool {
        len > 0
            && offset.checked_add(len - 1).is_some_and(|last| {
                self.geo.locate(offset).is_some() && self.geo.locate(last).is_some()
            })
    }

    /// Usable bytes of the block at `offset` (its class size, or its chunks), if it is a block.
    pub fn block_size(&self, offset: u64) -> Option<u64> {
        let (c, within) = self.geo.locate(offset)?;
        match self.kind(c) {
            ChunkKind::Small(k) if self.geo.classes.block_at(k, within).is_some() => {
                Some(self.geo.classes.size(k))
            }
            ChunkKind::LargeHead(n) if within == 0 => Some(n as u64 * CHUNK),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `take` hands out the lowest free block, as a scan from the first word would, however
    /// blocks were freed before (the `first` hint never skips a free block).
    #[test]
    fn blocks_take_the_lowest_free_block_after_any_frees() {
        let n = 64 * 5 + 17;
        let mut b = Blocks::all_free(n);
        let mut taken: Vec<u32> = (0..n).map(|_| b.take().expect("a free block")).collect();
        assert_eq!(taken, (0..n).collect::<Vec<_>>());
        assert_eq!(b.take(), None);
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng.is_multiple_of(3) || taken.is_empty() {
                let lowest = (0..n).find(|i| !taken.contains(i));
                assert_eq!(b.take(), lowest);
                taken.extend(lowest);
            } else {
                let i = taken.swap_remove(rng as usize % taken.len());
                assert!(b.put(i));
                assert!(!b.put(i), "a double free is refused");
            }
        }
    }
}
