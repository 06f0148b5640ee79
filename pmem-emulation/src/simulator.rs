//! The power-failure simulator: a shadow of the durable image at cache-line granularity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::eviction::{Eviction, resolve_line};

/// Cache-line size: the unit of flushing and of hardware eviction.
pub const LINE: usize = 64;

/// Size of the failure-atomic unit (an aligned 8-byte word).
const WORD: usize = 8;
const WORDS_PER_LINE: usize = LINE / WORD;

/// One cache line as native-endian 8-byte words (exactly the bytes in memory).
pub(crate) type LineWords = [u64; WORDS_PER_LINE];

/// The hook type accepted by [`Simulator::set_fence_hook`].
pub type FenceHook = Box<dyn FnMut(&Simulator, u64) + Send>;

/// Read-only view of the simulated region.
///
/// Known limitation: the engine may write the region with plain (non-atomic) stores while the
/// simulator reads it with relaxed atomic loads from another thread. Under Rust's memory model
/// that mixed access is a data race. In practice an aligned 8-byte relaxed load compiles to a
/// single ordinary load on x86-64/aarch64, cannot tear, and the compiler cannot assume anything
/// about memory that foreign code writes; so the simulator observes, per word, either the old or
/// the new value — which is exactly what a cache write-back could persist. Engines that want to be
/// strictly race-free should store through atomics (or volatile) as well.
struct Region {
    base: *const AtomicU64,
    words: usize,
}

// SAFETY: `Region` only reads the region, and only through `&AtomicU64` loads, which may be issued
// from any thread. The contract of `Simulator::new` keeps the mapping alive and readable for the
// simulator's whole life, so the raw pointer stays valid wherever the simulator is sent.
unsafe impl Send for Region {}
// SAFETY: as above — shared access consists solely of atomic loads.
unsafe impl Sync for Region {}

impl Region {
    fn lines(&self) -> usize {
        self.words / WORDS_PER_LINE
    }

    fn load(&self, word: usize) -> u64 {
        assert!(word < self.words);
        // SAFETY: `word < self.words`, so the address lies inside `base..base+len`, which
        // `Simulator::new`'s contract keeps mapped and readable; `base` is 64-byte aligned, so the
        // address is 8-byte aligned as `AtomicU64` requires. We create a shared reference to an
        // `AtomicU64` (interior mutability, so other writers are allowed) and never write through
        // it; a relaxed load of pointer size is documented by std to be fine even on read-only
        // memory. See the limitation note on `Region` about concurrent plain stores.
        let atom = unsafe { &*self.base.add(word) };
        atom.load(Ordering::Relaxed)
    }

    /// The whole region as atomic words.
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `base..base+words*8` is mapped and readable for the simulator's life
        // (`Simulator::new`'s contract) and 8-byte aligned; `AtomicU64` has interior
        // mutability, so concurrent stores by the engine are allowed, and we only load. See the
        // limitation note on `Region` about plain stores.
        unsafe { std::slice::from_raw_parts(self.base, self.words) }
    }

    fn load_line(&self, line: usize) -> LineWords {
        let first = line * WORDS_PER_LINE;
        assert!(first + WORDS_PER_LINE <= self.words);
        let mut out = [0u64; WORDS_PER_LINE];
        for (w, slot) in out.iter_mut().enumerate() {
            // SAFETY: `first + w < self.words` (asserted above for the whole line); the rest is
            // as in `load`.
            let atom = unsafe { &*self.base.add(first + w) };
            *slot = atom.load(Ordering::Relaxed);
        }
        out
    }
}

/// A flushed-but-unfenced copy of one line.
struct Snapshot {
    /// Global flush order (see `State::durable_seq`).
    seq: u64,
    line: usize,
    words: LineWords,
}

struct State {
    /// What survives any power failure, as native-endian words (`len / 8` of them).
    durable: Vec<u64>,
    /// Per-thread pending snapshots, in flush order. Entries of exited threads stay (their
    /// snapshots were never fenced, so they remain candidates for eviction only).
    pending: HashMap<ThreadId, Vec<Snapshot>>,
    /// The next snapshot's sequence number.
    next_seq: u64,
    /// Per line made durable by a fence: the sequence number of the snapshot it holds. An older
    /// snapshot of that line can no longer become durable (write-backs of a line are ordered).
    durable_seq: HashMap<usize, u64>,
    /// Lines whose durable bytes changed, in order, for [`ImageWriter`]s: entry `i` is change
    /// number `landed_base + i`. Bounded: when it grows past [`LANDED_LOG_MAX`] it is dropped and
    /// `landed_base` moves past it, so writers that had not caught up rewrite whole images.
    landed: Vec<usize>,
    landed_base: u64,
}

/// Bound of `State::landed`.
const LANDED_LOG_MAX: usize = 1 << 20;

impl State {
    fn durable_line(&self, line: usize) -> &LineWords {
        let start = line * WORDS_PER_LINE;
        self.durable[start..start + WORDS_PER_LINE]
            .try_into()
            .expect("a line is WORDS_PER_LINE words")
    }

    fn set_durable_line(&mut self, line: usize, words: &LineWords) {
        let start = line * WORDS_PER_LINE;
        self.durable[start..start + WORDS_PER_LINE].copy_from_slice(words);
        if self.landed.len() >= LANDED_LOG_MAX {
            self.forget_landed();
        }
        self.landed.push(line);
    }

    /// Drops the change log; every writer's next image is a whole one.
    fn forget_landed(&mut self) {
        self.landed_base += self.landed.len() as u64 + 1;
        self.landed.clear();
    }

    /// Pending snapshots that may still land, sorted by line (stable: each line's snapshots
    /// keep their flush order).
    fn live_snapshots(&self) -> Vec<&Snapshot> {
        let mut snapshots: Vec<&Snapshot> = self
            .pending
            .values()
            .flatten()
            .filter(|s| self.may_land(s.line, s.seq))
            .collect();
        snapshots.sort_by_key(|s| s.line);
        snapshots
    }

    /// Whether a snapshot of `line` taken at `seq` may still become durable.
    fn may_land(&self, line: usize, seq: u64) -> bool {
        self.durable_seq.get(&line).is_none_or(|&d| seq > d)
    }
}

/// Power-failure simulator for one memory-mapped persistent-memory region.
///
/// See the crate documentation for the model. Cheap to call from many threads: `flush` and
/// `fence` take one short internal lock; crash images scan the whole region.
pub struct Simulator {
    region: Region,
    state: Mutex<State>,
    /// Serializes fences (so fence numbers and their effects happen in the same order) and holds
    /// the hook. Lock order: `fence_gate` before `state`.
    fence_gate: Mutex<Option<FenceHook>>,
    fences: AtomicU64,
    flush_delay_ns: AtomicU64,
    fence_delay_ns: AtomicU64,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("len", &self.len())
            .field("fences", &self.fence_count())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Start simulating `base..base+len`; the durable image is initialised to its current contents.
    ///
    /// Panics if `base` is not 64-byte aligned or `len` is not a multiple of 64.
    ///
    /// # Safety
    /// `base..base+len` must stay mapped and readable for as long as any method other than
    /// [`durable_image`](Self::durable_image) and [`fence_count`](Self::fence_count) is called
    /// (those two read only the simulator's own state, so a test may call them after the region
    /// is unmapped, e.g. to see what survives a power failure right after a clean close);
    /// `base` is 64-byte aligned, `len` a multiple of 64. Other threads may store to the region concurrently
    /// (the simulator reads it with relaxed atomic 8-byte loads; see the note on plain stores in
    /// the crate documentation).
    pub unsafe fn new(base: *const u8, len: usize) -> Simulator {
        assert!(
            base.addr().is_multiple_of(LINE),
            "pmem-emulation: region base {base:p} is not {LINE}-byte aligned"
        );
        assert!(
            len.is_multiple_of(LINE),
            "pmem-emulation: region length {len} is not a multiple of {LINE}"
        );
        let region = Region {
            base: base.cast::<AtomicU64>(),
            words: len / WORD,
        };
        let durable = (0..region.words).map(|w| region.load(w)).collect();
        Simulator {
            region,
            state: Mutex::new(State {
                durable,
                pending: HashMap::new(),
                next_seq: 0,
                durable_seq: HashMap::new(),
                landed: Vec::new(),
                landed_base: 0,
            }),
            fence_gate: Mutex::new(None),
            fences: AtomicU64::new(0),
            flush_delay_ns: AtomicU64::new(0),
            fence_delay_ns: AtomicU64::new(0),
        }
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.region.words * WORD
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.region.words == 0
    }

    /// Capture the current bytes of every line overlapping `[offset, offset+len)` as the calling
    /// thread's pending (flushed, not yet fenced) snapshot. Offsets are relative to `base`.
    ///
    /// Panics if the range is outside the region (a caller bug). `len == 0` flushes nothing.
    pub fn flush(&self, offset: usize, len: usize) {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.len())
            .unwrap_or_else(|| {
                panic!(
                    "pmem-emulation: flush of {len} bytes at offset {offset} is outside the \
                     {}-byte region",
                    self.len()
                )
            });
        if len == 0 {
            return;
        }
        let first = offset / LINE;
        let last = (end - 1) / LINE;
        let tid = thread::current().id();
        {
            let mut state = self.state.lock();
            let seq = state.next_seq;
            state.next_seq += (last - first + 1) as u64;
            let snapshots = state.pending.entry(tid).or_default();
            snapshots.extend((first..=last).map(|line| Snapshot {
                seq: seq + (line - first) as u64,
                line,
                words: self.region.load_line(line),
            }));
        }
        let per_line = self.flush_delay_ns.load(Ordering::Relaxed);
        if per_line != 0 {
            spin_for_ns(per_line.saturating_mul((last - first + 1) as u64));
        }
    }

    /// The calling thread's pending snapshots become durable (latest snapshot of a line wins).
    ///
    /// The fence counter is incremented first; then the fence hook, if any, is called with the new
    /// fence number while the fence has not yet taken effect; then the snapshots become durable.
    /// Fences are serialized, so fence `N`'s hook sees everything made durable by fences `1..N`.
    /// The hook must not call `fence` or `set_fence_hook` (it would deadlock).
    pub fn fence(&self) {
        let delay = self.fence_delay_ns.load(Ordering::Relaxed);
        if delay != 0 {
            spin_for_ns(delay);
        }
        let tid = thread::current().id();
        let mut hook = self.fence_gate.lock();
        let number = self.fences.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(hook) = hook.as_mut() {
            hook(self, number);
        }
        let mut state = self.state.lock();
        let Some(mut snapshots) = state.pending.get_mut(&tid).map(std::mem::take) else {
            return;
        };
        for snapshot in snapshots.drain(..) {
            // Another thread may have made a newer snapshot of this line durable since.
            if state.may_land(snapshot.line, snapshot.seq) {
                state.set_durable_line(snapshot.line, &snapshot.words);
                state.durable_seq.insert(snapshot.line, snapshot.seq);
            }
        }
        // Put the (empty) vector back to reuse its capacity.
        state.pending.insert(tid, snapshots);
    }

    /// Number of fences issued so far (the first fence is number 1). Inside the fence hook this
    /// already counts the fence being issued.
    pub fn fence_count(&self) -> u64 {
        self.fences.load(Ordering::Relaxed)
    }

    /// Hook invoked at every fence, before it takes effect, with `(&Simulator, fence_number)`.
    /// The hook may call any read-only method (`crash_image`, `durable_image`, ...), and `flush`,
    /// but not `fence` or `set_fence_hook`. Must not be called from inside the hook.
    pub fn set_fence_hook(&self, hook: Option<FenceHook>) {
        *self.fence_gate.lock() = hook;
    }

    /// Spin-wait this long in each flush (per line) and each fence: models Optane's latency in
    /// benchmarks. Zero (the default) disables the delay.
    pub fn set_delays(&self, per_line_flush: Duration, per_fence: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.flush_delay_ns
            .store(ns(per_line_flush), Ordering::Relaxed);
        self.fence_delay_ns.store(ns(per_fence), Ordering::Relaxed);
    }

    /// The crash image under `eviction`, as a new vector of `len()` bytes.
    pub fn crash_image(&self, eviction: &Eviction) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        self.crash_image_into(eviction, &mut out);
        out
    }

    /// The crash image under `eviction`, written into `out`.
    ///
    /// Panics unless `out.len() == self.len()`.
    pub fn crash_image_into(&self, eviction: &Eviction, out: &mut [u8]) {
        assert_eq!(
            out.len(),
            self.len(),
            "pmem-emulation: crash image buffer has the wrong length"
        );
        let state = self.state.lock();
        match *eviction {
            Eviction::None => write_words(out, &state.durable),
            Eviction::All => {
                for (word, chunk) in out.chunks_exact_mut(WORD).enumerate() {
                    chunk.copy_from_slice(&self.region.load(word).to_ne_bytes());
                }
            }
            Eviction::Random { seed } => self.randomized_image(&state, seed, false, out),
            Eviction::Strict { seed } => self.randomized_image(&state, seed, true, out),
        }
    }

    fn randomized_image(&self, state: &State, seed: u64, per_word: bool, out: &mut [u8]) {
        // Walked in step with the lines (no per-line lookup).
        let snapshots = state.live_snapshots();
        let mut next = 0;
        let mut pending: Vec<&LineWords> = Vec::new();
        for (line, out_line) in out.chunks_exact_mut(LINE).enumerate() {
            let durable = state.durable_line(line);
            let current = self.region.load_line(line);
            pending.clear();
            while next < snapshots.len() && snapshots[next].line == line {
                pending.push(&snapshots[next].words);
                next += 1;
            }
            let pending = pending.as_slice();
            let chosen = if pending.is_empty() && current == *durable {
                current
            } else {
                resolve_line(seed, per_word, line, durable, pending, &current)
            };
            write_words(out_line, &chosen);
        }
    }

    /// A copy of the durable image. Reads only the simulator's shadow, never the region.
    pub fn durable_image(&self) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        write_words(&mut out, &self.state.lock().durable);
        out
    }

    /// Number of lines whose current bytes differ from the durable image.
    pub fn dirty_lines(&self) -> usize {
        let state = self.state.lock();
        (0..self.region.lines())
            .filter(|&line| self.region.load_line(line) != *state.durable_line(line))
            .count()
    }

    /// Number of flushed-but-unfenced line snapshots across all threads (a line flushed twice
    /// without a fence in between counts twice).
    pub fn pending_lines(&self) -> usize {
        self.state.lock().pending.values().map(Vec::len).sum()
    }

    /// Forget everything pending and make the current bytes durable (e.g. after a test's setup
    /// phase).
    pub fn make_all_durable(&self) {
        let mut state = self.state.lock();
        state.pending.values_mut().for_each(Vec::clear);
        for (word, slot) in state.durable.iter_mut().enumerate() {
            *slot = self.region.load(word);
        }
        state.forget_landed();
    }
}

/// Copy native-endian words into bytes (`out.len() == words.len() * 8`).
fn write_words(out: &mut [u8], words: &[u64]) {
    debug_assert_eq!(out.len(), words.len() * WORD);
    for (chunk, word) in out.chunks_exact_mut(WORD).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
}

fn spin_for_ns(ns: u64) {
    let start = Instant::now();
    let delay = Duration::from_nanos(ns);
    while start.elapsed() < delay {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests;
mod writer;

pub use writer::ImageWriter;
