//! The index type, opening it, and optimistic lookups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::{Collector, Guard};
use parking_lot::Mutex;

use super::bucket::set_bits;
use super::bucket::{Bucket, fingerprint, held_for_ever};
use super::directory::{Directory, dir_size};
use super::error::{IndexError, corrupted};
use super::segment::{ALL_BUCKETS, BUCKETS, STASH, Segment, bucket_index, bucket_offset};
use super::stall::Stall;
use crate::heap::{Heap, SEGMENT_CLASS_SIZE};
use crate::pmem::Region;
use crate::record::{RecordRef, SLOT_OWNS_BLOCKS, slot_record};
use crate::shard::StripedCounter;

/// Where a record was found: bucket index in the segment (64.. for stash) and slot, and the
/// record, opened (its header read and bounds-checked) by the key comparison.
#[derive(Clone, Copy)]
pub(crate) struct Found<'a> {
    pub bucket: usize,
    pub slot: usize,
    pub rec: RecordRef<'a>,
}

/// Where `locate` found a segment: the directory, its entry for the hash, the segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located<'a> {
    pub root: u64,
    pub entry: &'a AtomicU64,
    pub segment: u64,
}

/// A pin of the calling thread in an index's epoch, held until dropped ([`Dash::pinned`]).
/// Neither `Send` nor `Sync`: it belongs to the thread that took it; it borrows the index, so
/// it cannot outlive it (nor be held across `into_heap`, whose reclamation it would stop).
pub struct Pinned<'a> {
    _guard: Guard,
    _index: std::marker::PhantomData<&'a Dash>,
}

/// Counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IndexStats {
    /// Records in the index.
    pub len: u64,
    /// Records with an expiry.
    pub expires: u64,
    /// Segments.
    pub segments: u64,
    /// Global depth of the directory.
    pub global_depth: u32,
    /// Records / slots (normal and stash).
    pub load_factor: f64,
    /// Bytes retired to epoch reclamation and not yet freed.
    pub garbage_bytes: u64,
}

/// What every deferred free shares: the count of bytes retired and not yet freed, and the heap
/// the frees go to. Weak: if the index is gone, a block stays allocated on the media and the
/// next open's sweep reclaims it. A deferred free captures one pointer to this, the block and
/// its size: 24 bytes, which crossbeam stores inline (no allocation per retired block).
pub(crate) struct Garbage {
    /// Striped: every retire and deferred free adds to it, from any thread.
    pub(crate) bytes: StripedCounter,
    pub(crate) heap: std::sync::Weak<Heap>,
}

impl Garbage {
    /// Bytes retired and not yet freed (not a snapshot while threads retire or free).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.total()
    }
}

/// The Dash extendible hash index over a pool's heap.
pub struct Dash {
    pub(crate) heap: Arc<Heap>,
    pub(crate) seed: u64,
    pub(crate) collector: Arc<Collector>,
    /// Serialises directory changes (split publication, doubling) and repairs.
    pub(crate) dir_lock: Mutex<()>,
    pub(crate) len: StripedCounter,
    /// Records with an expiry (Redis's `expires=`), counted like `len`.
    pub(crate) expires: StripedCounter,
    /// Bytes retired to the epoch and not yet freed, shared with the deferred frees.
    pub(crate) garbage: Arc<Garbage>,
    pub(crate) segments: AtomicU64,
    pub(crate) epoch: u64,
    pub(crate) root_at: u64,
    /// The root's directory, in DRAM: its offset with its global depth in the top byte (0:
    /// not yet known). Validated from the media at open (after `create` in a new pool, before
    /// any operation), and stored again right after each doubling's store of the root, under
    /// the directory lock; only this index stores the root: lookups read it instead of the root
    /// and the directory header. Between a doubling's root store and this store, readers still
    /// use the old directory, which is not retired before this store and maps every hash as the
    /// new one does (no split can publish until the doubling releases the directory lock). Its depth also names the DRAM
    /// hint table that mirrors the directory (`hints.rs`), filled before this store.
    pub(crate) dir_view: AtomicU64,
    /// Set once every segment is known repaired: at once after a clean close (every segment
    /// was repaired in this epoch), else when the background recovery ends.
    pub(crate) all_repaired: std::sync::atomic::AtomicBool,
    pub(crate) recovery: super::sweep::Recovery,
    /// The pool tags block-owning records in their slots (`record::SLOT_OWNS_BLOCKS`).
    pub(crate) owner_tags: bool,
    /// Whether a large hash's block may be named by a run of part words (`SHARED_PARTS`).
    shared_parts: bool,
    /// Frees held back while an atomic transaction is open (`deferral.rs`).
    pub(crate) deferral: super::deferral::Deferral,
    /// The directory's entries in DRAM, for prefetches ahead of the pin (`hints.rs`).
    pub(crate) hints: super::hints::SegmentHints,
}

/// The error for a slot naming a record whose key cannot be read.
#[cold]
fn unreadable(record: u64) -> IndexError {
    corrupted(format!("record {record:#x} is unreadable"))
}

/// The offset bits of `Dash::dir_view` (a pool is far below 2^56 bytes; depths fit a byte).
const DIR_VIEW_OFFSET: u64 = (1 << 56) - 1;

/// Where the key count is kept across a clean close (metadata region offset).
const LEN_AT: u64 = 8;
/// Where the count of keys with an expiry is kept across a clean close.
const EXPIRES_AT: u64 = 16;

impl Dash {
    /// Opens the index in `heap`'s pool, creating an empty one in a new pool. Returns at once:
    /// the caller runs [`run_recovery`](Self::run_recovery) (on a thread of its own), which
    /// repairs what a crash left, counts the keys after a crash, and sweeps the heap; until it
    /// ends, operations repair the segment they touch first.
    pub fn open(heap: Arc<Heap>) -> Result<Dash, IndexError> {
        let pool = heap.pool().clone();
        let uuid = pool.header().uuid;
        let seed = u64::from_le_bytes(uuid[0..8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(uuid[8..16].try_into().expect("8 bytes"));
        let dash = Dash {
            seed,
            collector: Arc::new(Collector::new()),
            dir_lock: Mutex::new(()),
            len: StripedCounter::default(),
            expires: StripedCounter::default(),
            garbage: Arc::new(Garbage {
                bytes: StripedCounter::default(),
                heap: Arc::downgrade(&heap),
            }),
            segments: AtomicU64::new(0),
            epoch: pool.recovery_epoch(),
            root_at: pool.layout().meta.offset,
            dir_view: AtomicU64::new(0),
            all_repaired: pool.was_clean().into(),
            recovery: Default::default(),
            owner_tags: pool.owner_tags(),
            shared_parts: pool.shared_parts(),
            deferral: Default::default(),
            hints: Default::default(),
            heap,
        };
        if dash.root().load(Ordering::Acquire) == 0 {
            dash.create()?;
        }
        let dir = dash.validated_directory()?;
        dash.note_directory(&dir);
        if pool.was_clean() {
            let len = dash.len_word().load(Ordering::Acquire);
            dash.len.set(len as i64);
            let expires = dash.meta_word(EXPIRES_AT).load(Ordering::Acquire);
            dash.expires.set(expires.min(len) as i64);
        } else {
            dash.recovery.count_from_zero();
        }
        // Every segment the directory names is checked here to be a heap block of the segment
        // class, from the heap's DRAM mirror of the chunk table: a damaged entry naming the
        // header, the metadata, the log or a block of another kind is reported before any
        // write lands where it points. Its magic is not read here (a page fault per segment,
        // which took the first GET after a clean open of 5M keys from 0.5 to 11 ms): repair
        // reads it before it writes into a segment after a crash, and the sweep before it
        // locks one.
        let mut segments = 0;
        dash.for_each_segment(|s| {
            // (At least the class's size: on a nearly full pool a split takes a block of a
            // larger class, `Heap::alloc`'s fallback.)
            if dash
                .heap
                .block_size(s)
                .is_none_or(|b| b < u64::from(SEGMENT_CLASS_SIZE))
            {
                return Err(corrupted(format!(
                    "the directory names {s:#x}, which is no segment block"
                )));
            }
            segments += 1;
            Ok(())
        })?;
        dash.segments.store(segments, Ordering::Relaxed);
        Ok(dash)
    }

    fn len_word(&self) -> &AtomicU64 {
        self.meta_word(LEN_AT)
    }

    fn meta_word(&self, at: u64) -> &AtomicU64 {
        self.region()
            .atomic_u64(self.root_at + at)
            .expect("the metadata region is mapped")
    }

    pub(crate) fn region(&self) -> &Region {
        self.heap.pool().region()
    }

    pub(crate) fn root(&self) -> &AtomicU64 {
        self.region()
            .atomic_u64(self.root_at)
            .expect("the metadata region is mapped")
    }

    /// Builds an empty index: one segment, a directory of depth 0, then the root.
    fn create(&self) -> Result<(), IndexError> {
        let region = self.region();
        let seg_off = self.new_segment(0, 0, 0)?;
        let dir_off = self.alloc(dir_size(0))?;
        let dir = Directory::init(region, dir_off, 0);
        dir.entry(0).store(seg_off, Ordering::Relaxed);
        region.persist(dir_off, dir_size(0) as usize);
        // Ordering: segment and directory are durable (persisted above and in new_segment)
        // before the root's 8-byte store publishes them; a crash before it leaves the root 0
        // (the next open creates again) and both blocks unreachable (the sweep reclaims them).
        self.root().store(dir_off, Ordering::Release);
        region.persist(self.root_at, 8);
        Ok(())
    }

    /// Allocates a segment, zeroes its buckets, writes its header, and persists all of it.
    pub(crate) fn new_segment(
        &self,
        depth: u32,
        pattern: u64,
        parent: u64,
    ) -> Result<u64, IndexError> {
        let region = self.region();
        let off = self.alloc(SEGMENT_CLASS_SIZE as u64)?;
        let zeroes = vec![0u8; SEGMENT_CLASS_SIZE as usize];
        // SAFETY: the block was just allocated and is not reachable by anyone else.
        unsafe { region.write(off, &zeroes) };
        let seg = self.segment(off)?;
        seg.init_header(depth, pattern, parent, self.epoch);
        region.persist(off, SEGMENT_CLASS_SIZE as usize);
        self.segments.fetch_add(1, Ordering::Relaxed);
        Ok(off)
    }

    /// [`segment`](Self::segment) for an offset read from the media where nothing vouches for
    /// it yet (a `parent` or `sibling` word at repair, a directory entry at repair or in the
    /// sweep): it must be a heap block of at least a segment's size (a split on a nearly full
    /// pool takes a block of a larger class) holding the segment magic, or
    /// the pool is reported damaged before anything is written there. (Operations use
    /// `segment`: every directory entry was checked to be a segment block at open, and later
    /// ones are the index's own.)
    pub(crate) fn checked_segment(&self, off: u64, named_by: &str) -> Result<&Segment, IndexError> {
        let seg = self.segment(off)?;
        let too_small = |b| b < u64::from(SEGMENT_CLASS_SIZE);
        if self.heap.block_size(off).is_none_or(too_small) || !seg.has_magic() {
            return Err(corrupted(format!(
                "{named_by} names {off:#x}, which is no segment"
            )));
        }
        Ok(seg)
    }

    #[inline]
    pub(crate) fn segment(&self, off: u64) -> Result<&Segment, IndexError> {
        self.region()
            .object::<Segment>(off)
            .ok_or_else(|| corrupted(format!("segment offset {off:#x} is outside the pool")))
    }

    /// The directory the root names now.
    #[inline]
    pub(crate) fn directory(&self) -> Result<Directory<'_>, IndexError> {
        let view = self.dir_view.load(Ordering::Acquire);
        if view != 0 {
            // Validated when it was noted, and a directory never changes in place.
            let (off, g) = (view & DIR_VIEW_OFFSET, (view >> 56) as u32);
            return Ok(Directory::validated(self.region(), off, g));
        }
        self.validated_directory()
    }

    /// The directory the root names, read and checked from its header.
    #[cold]
    pub(crate) fn validated_directory(&self) -> Result<Directory<'_>, IndexError> {
        let off = self.root().load(Ordering::Acquire);
        Directory::open(self.region(), off)
            .ok_or_else(|| corrupted(format!("no directory at the root's offset {off:#x}")))
    }

    /// Notes `dir` as the root's directory: at open, and right after a doubling's store of the
    /// root (see `dir_view`).
    pub(crate) fn note_directory(&self, dir: &Directory<'_>) {
        debug_assert!(dir.offset & !DIR_VIEW_OFFSET == 0);
        self.hints.note(dir);
        self.dir_view.store(
            dir.offset | (dir.global_depth as u64) << 56,
            Ordering::Release,
        );
    }

    #[inline(always)]
    pub(crate) fn pin(&self) -> Guard {
        super::epoch::pin(&self.collector)
    }

    /// Keeps the calling thread pinned in the index's epoch until the returned value is dropped.
    /// Every operation pins; only the outermost pin costs a full memory fence, which makes the
    /// CPU finish one lookup's cache misses before it starts the next one's. Operations run
    /// while this is held skip that fence (measured in docs/benchmarks.md: it matters once the
    /// rest of a lookup is short): hold it across a batch of operations (a pipeline of
    /// commands), never across a wait. While it is held, nothing any
    /// thread retires from then on is freed, and a write that finds the pool full fails instead
    /// of waiting for reclamation (after waiting for the background recovery, if it still runs).
    pub fn pinned(&self) -> Pinned<'_> {
        Pinned {
            _guard: self.pin(),
            _index: std::marker::PhantomData,
        }
    }

    /// Starts the misses on hash `h`'s home bucket (its four lines) and its neighbour's
    /// header. Called before the epoch pin, so they overlap with the pin's fence and the
    /// directory walk; the segment comes from the DRAM hints (`hints.rs`), which need no pin.
    /// False if there was no hint (a directory deeper than the hints copy).
    #[inline]
    pub(crate) fn prefetch_home(&self, h: u64) -> bool {
        // The depth of the directory the hints mirror (0 before open notes one, when no table
        // exists yet).
        let g = (self.dir_view.load(Ordering::Acquire) >> 56) as u32;
        let Some(seg_off) = self.hints.segment(h, g) else {
            return false;
        };
        self.prefetch_buckets(seg_off, h);
        true
    }

    /// Prefetches the four lines of `h`'s home bucket and its neighbour's header in the segment
    /// at `seg_off`.
    #[inline]
    pub(crate) fn prefetch_buckets(&self, seg_off: u64, h: u64) {
        let (b, b1) = (bucket_index(h), (bucket_index(h) + 1) % BUCKETS);
        let region = self.region();
        // Wrapping: a hint copied from a damaged directory at open may be any word, and a
        // prefetch of any address is harmless.
        region.prefetch_lines(seg_off.wrapping_add(bucket_offset(b)), 4);
        region.prefetch_lines(seg_off.wrapping_add(bucket_offset(b1)), 1);
    }

    /// The key's hash (xxh3-64, seeded per pool so clients cannot aim at one segment).
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed)
    }

    /// The segment that `hash` maps to now, repaired if a crash left it untouched since, with
    /// where it was found (for [`still_current`](Self::still_current)).
    #[inline(always)]
    pub(crate) fn locate(&self, hash: u64) -> Result<(Located<'_>, &Segment), IndexError> {
        loop {
            let dir = self.directory()?;
            let entry = dir.entry(dir.index_of(hash));
            let seg_off = entry.load(Ordering::Acquire);
            let seg = self.segment(seg_off)?;
            // After the open-time sweep every segment is repaired; until then (or if that
            // changes) the header says whether this one is. Skipping the header read saves a
            // cache miss per operation.
            if !self.all_repaired.load(Ordering::Acquire) && self.repair_if_needed(seg_off, seg)? {
                continue;
            }
            let at = Located {
                root: dir.offset,
                entry,
                segment: seg_off,
            };
            return Ok((at, seg));
        }
    }

    /// Repairs the segment if a crash left it untouched since; whether it did.
    #[cold]
    fn repair_if_needed(&self, seg_off: u64, seg: &Segment) -> Result<bool, IndexError> {
        if seg.header.repaired_epoch.load(Ordering::Acquire) != self.epoch
            || seg.header.parent.load(Ordering::Acquire) != 0
        {
            self.repair(seg_off)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the directory still maps the hash to the segment `locate` found. Called after a
    /// bucket version snapshot (or lock): a split updates the directory before it unlocks the
    /// segment's buckets, and a doubling switches the root before any later split, so a segment
    /// that lost the hash meanwhile either fails this check or changes the snapshotted version.
    #[inline]
    pub(crate) fn still_current(&self, at: &Located) -> bool {
        // The directory at `at.root` was validated (magic, depth, size), and the caller's epoch
        // guard keeps it from being freed: while it is still the root's, only the entry needs
        // reading.
        self.dir_view.load(Ordering::Acquire) & DIR_VIEW_OFFSET == at.root
            && at.entry.load(Ordering::Acquire) == at.segment
    }

    /// Looks `key` up and hands its record to `f`. Lock-free: retries while a writer holds one
    /// of the two candidate buckets or changed them meanwhile; never writes to the pool (except
    /// the one-time repair of a segment a crash left behind).
    pub fn get<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(RecordRef<'_>) -> R,
    ) -> Result<Option<R>, IndexError> {
        let h = self.hash(key);
        let hinted = self.prefetch_home(h);
        let _guard = self.pin();
        let (b, b1) = (bucket_index(h), (bucket_index(h) + 1) % BUCKETS);
        let mut stall = Stall::default();
        loop {
            let (at, seg) = self.locate(h)?;
            if !hinted {
                // The slot lines of the home bucket, fetched alongside its header rather than
                // after the fingerprints say which slot to read.
                self.prefetch_buckets(at.segment, h);
            }
            let (Some(v0), Some(v1)) =
                (seg.bucket(b).read_version(), seg.bucket(b1).read_version())
            else {
                // A writer holds one of them, or (if it stays held) the pool has the bit set.
                let words = seg.bucket(b).lock_word() << 32 | seg.bucket(b1).lock_word();
                stall.wait(words).map_err(|s| held_for_ever(s.value))?;
                continue;
            };
            if !self.still_current(&at) {
                continue;
            }
            let found = self.find(seg, h, key);
            if !(seg.bucket(b).validate(v0) && seg.bucket(b1).validate(v1)) {
                continue;
            }
            return Ok(found.map_err(unreadable)?.map(|found| f(found.rec)));
        }
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> Result<bool, IndexError> {
        Ok(self.get(key, |_| ())?.is_some())
    }

    /// Searches the two candidate buckets and, if their overflow metadata says so, the stash.
    /// A writer replaces or removes the record it finds: `find` refuses one whose header is
    /// damaged (as a lookup does), rather than let it be retired without its children.
    pub(crate) fn search(
        &self,
        seg: &Segment,
        h: u64,
        key: &[u8],
    ) -> Result<Option<Found<'_>>, IndexError> {
        self.find(seg, h, key).map_err(unreadable)
    }

    /// [`search`](Self::search) with a one-word error (the offset of a record that cannot be
    /// opened or whose key cannot be read), so the lookup's hot path moves no `IndexError`
    /// around.
    #[inline]
    pub(super) fn find(&self, seg: &Segment, h: u64, key: &[u8]) -> Result<Option<Found<'_>>, u64> {
        let fp = fingerprint(h);
        let b = bucket_index(h);
        // Most negative lookups end here, on one branch: the fewer instructions (and
        // mispredictions) wait for the buckets' cache misses, the sooner the CPU starts the
        // next operation's.
        if seg.bucket(b).may_hold(fp) | seg.bucket((b + 1) % BUCKETS).match_fp(fp) == 0 {
            return Ok(None);
        }
        self.find_candidates(seg, h, key)
    }

    /// The part of [`find`](Self::find) past its fingerprint filter: compares the slots whose
    /// fingerprints match, in the two buckets, then the stash. Kept out of line so that the
    /// negative lookup's path through `get` stays short (docs/benchmarks.md, twentieth session:
    /// a few more instructions on that path cost a quarter of the rate).
    #[inline(never)]
    fn find_candidates(&self, seg: &Segment, h: u64, key: &[u8]) -> Result<Option<Found<'_>>, u64> {
        let fp = fingerprint(h);
        let b = bucket_index(h);
        for bi in [b, (b + 1) % BUCKETS] {
            if let Some(f) = self.search_bucket(seg.bucket(bi), bi, fp, h, key)? {
                return Ok(Some(f));
            }
        }
        for s in set_bits(seg.bucket(b).stash_candidates(fp, STASH)) {
            if let Some(f) = self.search_bucket(seg.stash(s), BUCKETS + s, fp, h, key)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    #[inline(always)]
    fn search_bucket(
        &self,
        bucket: &Bucket,
        bi: usize,
        fp: u8,
        h: u64,
        key: &[u8],
    ) -> Result<Option<Found<'_>>, u64> {
        for i in set_bits(bucket.match_fp(fp)) {
            if bucket.slots[i].hash.load(Ordering::Relaxed) != h {
                continue;
            }
            let record = slot_record(bucket.slots[i].record.load(Ordering::Acquire));
            // The caller holds an epoch guard taken before it read `record` from a slot.
            if let Some(rec) = RecordRef::open_keyed(self.region(), record, key)? {
                return Ok(Some(Found {
                    bucket: bi,
                    slot: i,
                    rec,
                }));
            }
        }
        Ok(None)
    }

    /// The word a slot publishes `record` with: its offset, tagged if it owns heap blocks.
    /// `record` was just written by this thread (its header is in cache).
    pub(crate) fn slot_word(&self, record: u64) -> u64 {
        let owns = self.owner_tags
            && RecordRef::open(self.region(), record)
                .is_some_and(|r| crate::hashtab::owns_blocks(&r));
        if owns {
            record | SLOT_OWNS_BLOCKS
        } else {
            record
        }
    }

    /// The blocks record `r` owns (`hashtab::children`, as this pool's format says).
    pub(crate) fn children(&self, r: &RecordRef<'_>) -> Result<Vec<crate::hashtab::Child>, String> {
        let children = crate::hashtab::children(self.region(), r, self.shared_parts)?;
        // What is named here gets freed (retire) or kept (sweep): the record must be intact,
        // or a damaged table reference would free another hash's table and parts, and the
        // table must fit its heap block (its header has no checksum; a damaged size would
        // have part words read past it, in another owner's bytes). One CRC of a small record
        // and one read of a chunk's kind, for records that own blocks only.
        if let Some(table) = children.first() {
            if !r.verify() {
                return Err(format!("record {:#x} fails its checksum", r.offset()));
            }
            if self
                .heap
                .block_size(table.offset)
                .is_none_or(|b| b < table.size)
            {
                return Err(format!(
                    "hash table {:#x} is larger than the heap block holding it",
                    table.offset
                ));
            }
        }
        Ok(children)
    }

    /// Whether the record a slot's `word` names may own heap blocks (so the sweep, retirement
    /// and check must open it to find them).
    pub(crate) fn may_own_blocks(&self, word: u64) -> bool {
        !self.owner_tags || word & SLOT_OWNS_BLOCKS != 0
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        if self.recovery.counting() {
            // After a crash the count is known only once the recovery has counted every segment.
            let _ = self.wait_recovered();
        }
        self.len.total()
    }

    /// Number of records with an expiry (after a crash, waits for the recovery to count them).
    pub fn expires(&self) -> u64 {
        if self.recovery.counting() {
            let _ = self.wait_recovered();
        }
        self.expires.total()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts for metrics.
    pub fn stats(&self) -> IndexStats {
        let len = self.len();
        let segments = self.segments.load(Ordering::Relaxed);
        let slots = segments * (ALL_BUCKETS * super::bucket::SLOTS) as u64;
        IndexStats {
            len,
            expires: self.expires(),
            segments,
            global_depth: self.directory().map_or(0, |d| d.global_depth),
            load_factor: if slots == 0 {
                0.0
            } else {
                len as f64 / slots as f64
            },
            garbage_bytes: self.garbage.bytes(),
        }
    }

    /// Runs the epoch reclamation as far as it can go now: frees every retired block that no
    /// pinned reader can still see (garbage retired by this thread included), so its cost is
    /// paid here rather than by the operations that happen to pin next. Returns the bytes still
    /// awaiting reclamation (those a pinned thread may see).
    pub fn reclaim(&self) -> u64 {
        // Each round hands this thread's deferred frees to the global queue, tries to advance
        // the epoch and frees a few bags at least two epochs old. A bag needs a couple of
        // rounds to age, so stop only after several rounds in a row free nothing.
        let (mut last, mut idle) = (self.garbage.bytes(), 0);
        while last != 0 && idle < 16 {
            self.pin().flush();
            let now = self.garbage.bytes();
            idle = if now < last { 0 } else { idle + 1 };
            last = now;
        }
        last
    }

    /// Runs the epoch reclamation as far as it can go and gives the heap back (closing).
    /// Records retired but not yet freed stay allocated on the media: nothing reaches them, so
    /// the next open's sweep reclaims them.
    pub fn into_heap(self) -> Arc<Heap> {
        for _ in 0..4 {
            self.pin().flush();
        }
        // The key count and the count of keys with an expiry, for the next open after this
        // clean close. Ordering: both persisted before the caller stores the clean marker,
        // which alone makes the next open trust them (a crash before it: both recounted).
        let len = self.len();
        self.len_word().store(len, Ordering::Release);
        self.region().persist(self.root_at + LEN_AT, 8);
        let expires = self.expires();
        self.meta_word(EXPIRES_AT).store(expires, Ordering::Release);
        self.region().persist(self.root_at + EXPIRES_AT, 8);
        // Writers flush a bucket's first line while they hold its lock, and nothing flushes the
        // unlock: the media may hold lock bits set. After a crash repair clears them; after a
        // clean close nothing would, so write the unlocked words back now. A failure to walk the
        // directory here means a corruption that the next open reports.
        let region = self.region();
        let _ = self.for_each_segment(|s| {
            for bi in 0..super::segment::ALL_BUCKETS {
                region.flush(super::write::bucket_off(s, bi), 8);
            }
            Ok(())
        });
        region.fence();
        self.heap
    }

    /// The heap the index allocates from.
    pub fn heap(&self) -> &Arc<Heap> {
        &self.heap
    }
}
