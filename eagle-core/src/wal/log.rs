//! The circular write-ahead log in the pool's WAL region.
//!
//! State on the media: the records, and one 8-byte *head word* in the metadata region
//! (`generation << 32 | offset` of the oldest record still needed; 0 means generation 1, offset
//! 0). The tail is not stored: recovery finds it by reading records from the head until one does
//! not validate (torn, never written, or stale from an earlier lap, whose checksum was seeded
//! with another generation).
//!
//! Appends are serialised (space and LSN are assigned under one lock) and each is persisted
//! before it is acknowledged, with **group commit**: an appender writes its record, then enters
//! the sync lock; the first one in flushes every record written and not yet flushed (its own
//! and those of appenders queued behind it) and issues one fence for all of them. A flush
//! writes back a cache line whoever stored to it, and the lock hand-off orders the other
//! appenders' stores before it, so one thread's fence covers them. An appender whose record a
//! previous sync covered returns without a fence. A record is acknowledged only after a fence
//! that followed the flushes of it and of every earlier record, so the durable records always
//! form a prefix of the acknowledged ones: recovery's "truncate at the first invalid record"
//! never drops an acknowledged record. Reads of the mapping cannot fail with an I/O error: a
//! media error surfaces as SIGBUS, never as bytes mistaken for a torn tail.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::record::{self, HEADER, WRAP, footprint};
use crate::fault::{self, Fault};
use crate::pool::Pool;

/// Offset of the head word inside the metadata region (the Dash root is at 0).
pub const HEAD_WORD: u64 = 64;

/// A log sequence number.
pub type Lsn = u64;

/// A record found by recovery: not yet checkpointed, so its effect may be incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    /// Its sequence number.
    pub lsn: Lsn,
    /// The kind the appender gave it.
    pub kind: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A WAL error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalError {
    /// No room until older records are checkpointed.
    Full {
        /// Bytes the record needs.
        needed: usize,
    },
    /// The record can never fit in this log.
    TooLarge {
        /// Its payload length.
        len: usize,
    },
    /// Kind 0xFF is reserved for the end-of-lap marker.
    ReservedKind,
    /// The head word points outside the log.
    Corrupted {
        /// What is wrong.
        what: String,
    },
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalError::Full { needed } => write!(f, "write-ahead log full ({needed} bytes needed)"),
            WalError::TooLarge { len } => {
                write!(f, "a {len}-byte record cannot fit in the write-ahead log")
            }
            WalError::ReservedKind => write!(f, "WAL record kind 0xFF is reserved"),
            WalError::Corrupted { what } => write!(f, "write-ahead log corrupted: {what}"),
        }
    }
}

impl std::error::Error for WalError {}

#[derive(Clone, Copy, Debug)]
struct Live {
    lsn: Lsn,
    pos: u64,
    generation: u32,
    done: bool,
}

struct State {
    /// Byte ranges (position, length) written since the last sync, in log order.
    unflushed: Vec<(u64, u64)>,
    tail: u64,
    tail_gen: u32,
    head: u64,
    head_gen: u32,
    /// While the tail is a lap ahead of the head: the end of the head's lap (just past its
    /// end-of-lap marker). The bytes from there to the end of the ring belong to no record.
    lap_end: u64,
    next_lsn: Lsn,
    live: VecDeque<Live>,
    buf: Vec<u8>,
}

/// The write-ahead log.
pub struct Wal {
    pool: Arc<Pool>,
    start: u64,
    len: u64,
    head_word: u64,
    state: Mutex<State>,
    /// Signalled whenever the head moves or a waiter should give up (see `wait_passed`).
    head_moved: Condvar,
    /// Group commit: the highest LSN known durable; held by the appender doing a sync.
    synced: Mutex<Lsn>,
    appends: AtomicU64,
    syncs: AtomicU64,
}

/// Counters of the log's group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended since open.
    pub appends: u64,
    /// Flush-and-fence rounds that made them durable (fewer than `appends` when appenders
    /// shared a fence).
    pub syncs: u64,
}

/// The smallest record (an end-of-lap marker), kept free at the end of every lap.
const MARKER: u64 = 24;

/// The byte ranges of a ring of `len` bytes from position `from` up to `to` (each a position
/// and its lap's generation, `to` at most one lap ahead): one range, or two when it wraps.
/// From the tail to the head, they are the free space; from an old head to a new one, the
/// records a checkpoint passed.
fn ring_ranges(from: (u64, u32), to: (u64, u32), len: u64) -> impl Iterator<Item = (u64, u64)> {
    let ranges = if from.1 == to.1 {
        [(from.0, to.0), (0, 0)]
    } else {
        [(from.0, len), (0, to.0)]
    };
    ranges.into_iter().filter(|(a, b)| a < b)
}

impl Wal {
    /// Opens the log and returns the records recovery must redo (oldest first). After a crash
    /// (the pool not closed cleanly) the free space is scrubbed before this returns.
    pub fn open(pool: Arc<Pool>) -> Result<(Wal, Vec<WalEntry>), WalError> {
        let ext = pool.layout().wal;
        let head_word = pool.layout().meta.offset + HEAD_WORD;
        let word = pool
            .region()
            .atomic_u64(head_word)
            .expect("the metadata region is mapped")
            .load(Ordering::Acquire);
        let (mut generation, mut pos) = if word == 0 {
            (1, 0)
        } else {
            ((word >> 32) as u32, word & 0xFFFF_FFFF)
        };
        if pos % 8 != 0 || pos + MARKER > ext.len {
            return Err(WalError::Corrupted {
                what: format!("head at {pos} in a log of {} bytes", ext.len),
            });
        }
        let (head, head_gen) = (pos, generation);
        let uuid = pool.header().uuid;
        let region = pool.region();
        let mut entries = Vec::new();
        let mut live = VecDeque::new();
        let mut expect: Option<Lsn> = None;
        let mut hdr = [0u8; HEADER];
        let mut lap_end = ext.len;
        loop {
            if pos + HEADER as u64 > ext.len || !region.read(ext.offset + pos, &mut hdr) {
                break;
            }
            let Some(h) = record::header(&hdr) else { break };
            let size = footprint(h.len) as u64;
            // A record leaves room for the end-of-lap marker after it, as `write` places them:
            // one reaching into that room is not one this log wrote.
            let room = if h.kind == WRAP { 0 } else { MARKER };
            if h.len as u64 > ext.len || pos + size + room > ext.len {
                break;
            }
            let mut rec = vec![0u8; size as usize];
            region.read(ext.offset + pos, &mut rec);
            if !record::valid(&rec, &h, record::seed(&uuid, generation)) {
                break;
            }
            if h.kind == WRAP {
                lap_end = pos + MARKER;
                pos = 0;
                generation = generation.wrapping_add(1);
                continue;
            }
            if expect.is_some_and(|e| e != h.lsn) {
                break;
            }
            let Some(next) = h.lsn.checked_add(1) else {
                break;
            };
            expect = Some(next);
            live.push_back(Live {
                lsn: h.lsn,
                pos,
                generation,
                done: false,
            });
            entries.push(WalEntry {
                lsn: h.lsn,
                kind: h.kind,
                payload: rec[HEADER..HEADER + h.len].to_vec(),
            });
            pos += size;
        }
        let wal = Wal {
            start: ext.offset,
            len: ext.len,
            head_word,
            state: Mutex::new(State {
                unflushed: Vec::new(),
                tail: pos,
                tail_gen: generation,
                head,
                head_gen,
                lap_end,
                next_lsn: expect.unwrap_or(1),
                live,
                buf: Vec::new(),
            }),
            head_moved: Condvar::new(),
            synced: Mutex::new(expect.map_or(0, |e| e - 1)),
            appends: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            pool,
        };
        // After a crash the scan stopped at a record that does not validate: torn, or never
        // written. Records past it may still validate (written before the crash, their lines
        // written back when the torn one's were not; none acknowledged), and nothing may be
        // appended before they are gone: a new record at the tail as long as the torn one would
        // end where the stale one starts, which has the next LSN in the same generation, and the
        // next recovery would redo it (a batch whose prepared records the sweep has freed since:
        // the open would then fail for good); once the new record is checkpointed, the head
        // itself would name the stale one. The background scrub came too late for that.
        if !wal.pool.was_clean() {
            wal.scrub(|| false);
        }
        Ok((wal, entries))
    }

    /// Appends a record; on return it is durable (group commit: see the module documentation).
    /// Its LSN is returned.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<Lsn, WalError> {
        let lsn = self.write(kind, payload)?;
        self.sync(lsn);
        Ok(lsn)
    }

    /// [`append`](Self::append), but a full log throttles instead of failing while records
    /// of other appenders are still live (their checkpoints will free space): waits for the
    /// head to move and tries again, until `give_up()` holds. A log full of nothing but
    /// finished records cannot happen (their checkpoint moved the head), and an empty log
    /// starts a new lap for a record that fits in a lap (`write`), so `Full` from an append
    /// made when no record was live means the record can never fit beside the end-of-lap
    /// reserve.
    pub fn append_waiting(
        &self,
        kind: u8,
        payload: &[u8],
        give_up: impl Fn() -> bool,
    ) -> Result<Lsn, WalError> {
        // Whether the last look found no live record. One look is not enough: the records
        // that filled the log may have been checkpointed after the append failed, so the log
        // is full "of nothing" only if the append failed after a look that found none too.
        let mut none_live = false;
        loop {
            match self.append(kind, payload) {
                Err(e @ WalError::Full { .. }) if !give_up() => {
                    let live = self.wait_for_space();
                    if !live && none_live {
                        return Err(e);
                    }
                    none_live = !live;
                }
                done => return done,
            }
        }
    }

    /// Waits (at most 10 ms) for the head to move if some record is live; false if none is.
    fn wait_for_space(&self) -> bool {
        let mut st = self.state.lock();
        if st.live.is_empty() {
            return false;
        }
        self.head_moved
            .wait_for(&mut st, std::time::Duration::from_millis(10));
        true
    }

    /// Makes every record up to `lsn` durable: returns at once if a sync already covered it,
    /// else flushes every record written so far (other appenders' too) and fences once.
    fn sync(&self, lsn: Lsn) {
        let mut synced = self.synced.lock();
        if *synced >= lsn {
            return; // another appender's fence covered this record
        }
        let (ranges, upto) = {
            let mut st = self.state.lock();
            (std::mem::take(&mut st.unflushed), st.next_lsn - 1)
        };
        let region = self.pool.region();
        // Ordering: the records in `ranges` (and any end-of-lap marker among them) were stored
        // before their writers released the state lock, which this thread took since: the
        // flushes below write back those stores. One fence then makes all of them durable;
        // only after it is `synced` raised and any of them acknowledged. A crash before the
        // fence may keep any subset of these lines; recovery stops at the first torn record,
        // and nothing from it on was acknowledged.
        if !fault::armed(Fault::SkipWalPersist) {
            for (pos, len) in ranges {
                region.flush(self.start + pos, len as usize);
            }
            region.fence();
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *synced = upto;
    }

    /// Writes a record at the tail (not yet flushed) and returns its LSN.
    fn write(&self, kind: u8, payload: &[u8]) -> Result<Lsn, WalError> {
        if kind == WRAP {
            return Err(WalError::ReservedKind);
        }
        let size = footprint(payload.len()) as u64;
        if size + MARKER > self.len {
            return Err(WalError::TooLarge { len: payload.len() });
        }
        let region = self.pool.region();
        let uuid = self.pool.header().uuid;
        let mut st = self.state.lock();
        let st = &mut *st;
        // Where the record goes: at the tail, or at the start of the next lap (`None`: no room).
        let wrap = if st.tail_gen == st.head_gen {
            if st.tail + size + MARKER <= self.len {
                Some(false)
            } else if size + MARKER <= st.head {
                Some(true)
            } else {
                None
            }
        } else if st.tail + size + MARKER <= st.head {
            Some(false)
        } else {
            None
        };
        let wrap = match wrap {
            Some(wrap) => wrap,
            None if st.live.is_empty() => {
                // An empty log whose tail sits too far into its lap for the record (or whose
                // head still sits at an end-of-lap marker after a crash tore the record after
                // it): head and tail both start a new lap, so a record that fits in a lap
                // always fits in an empty log.
                let next = st.tail_gen.wrapping_add(1);
                // Ordering: the head word moves to the new lap's start in one failure-atomic
                // store, persisted before the record is written there. The log is empty, so
                // a crash before the store recovers nothing from the old head (the record was
                // not acknowledged), and one after it recovers the record once it is durable,
                // or nothing (the new lap's seed validates no stale bytes of an earlier lap).
                self.publish_head(0, next);
                (st.head, st.head_gen, st.tail, st.tail_gen) = (0, next, 0, next);
                false
            }
            None => {
                return Err(WalError::Full {
                    needed: size as usize,
                });
            }
        };
        if wrap {
            st.buf.resize(MARKER as usize, 0);
            record::encode(
                &mut st.buf,
                record::seed(&uuid, st.tail_gen),
                WRAP,
                st.next_lsn,
                &[],
            );
            // SAFETY: the bytes from the tail to the end of the lap are not part of any live
            // record (the space check above) and only this thread (holding the state lock)
            // writes the log.
            unsafe { region.write(self.start + st.tail, &st.buf) };
            // Flushed and fenced with the record that follows it (by `sync`).
            let at = st.tail;
            st.unflushed.push((at, MARKER));
            st.lap_end = at + MARKER;
            st.tail = 0;
            st.tail_gen = st.tail_gen.wrapping_add(1);
        }
        let lsn = st.next_lsn;
        st.buf.resize(size as usize, 0);
        record::encode(
            &mut st.buf,
            record::seed(&uuid, st.tail_gen),
            kind,
            lsn,
            payload,
        );
        // SAFETY: as above, the space at the tail is free and only this thread writes the log.
        unsafe { region.write(self.start + st.tail, &st.buf) };
        // Not yet durable: `sync` flushes it (with the marker, if any, and every record written
        // before it) and fences. Recovery validates each by its own checksum, so any of them
        // may be torn; a torn one ends the scan, and nothing from it on was acknowledged.
        let at = st.tail;
        st.unflushed.push((at, size));
        self.appends.fetch_add(1, Ordering::Relaxed);
        st.live.push_back(Live {
            lsn,
            pos: st.tail,
            generation: st.tail_gen,
            done: false,
        });
        st.tail += size;
        st.next_lsn += 1;
        Ok(lsn)
    }

    /// Declares the record `lsn` applied (its effects durable): the log may reuse its space once
    /// every older record is applied too.
    pub fn checkpoint(&self, lsn: Lsn) {
        self.checkpoint_many(&[lsn]);
    }

    /// Declares every record in `lsns` applied, then moves the head at most once: if the
    /// oldest live record is among them, one 8-byte store passes all of them together. (An
    /// atomic transaction's undo records are dropped this way: that store is its commit.)
    pub fn checkpoint_many(&self, lsns: &[Lsn]) {
        let mut st = self.state.lock();
        for &lsn in lsns {
            if let Some(l) = st.live.iter_mut().find(|l| l.lsn == lsn) {
                l.done = true;
            }
        }
        let mut moved = false;
        while st.live.front().is_some_and(|l| l.done) {
            st.live.pop_front();
            moved = true;
        }
        if !moved {
            return;
        }
        let (head, head_gen) = match st.live.front() {
            Some(l) => (l.pos, l.generation),
            None => (st.tail, st.tail_gen),
        };
        let passed = (st.head, st.head_gen);
        st.head = head;
        st.head_gen = head_gen;
        // Ordering: one failure-atomic 8-byte store moves the head; the records it passes were
        // applied durably by the caller before it called checkpoint, so a crash either replays
        // them (old head; redo is idempotent) or not (new head).
        self.publish_head(head, head_gen);
        let region = self.pool.region();
        // The passed records (keys of deleted entries among them) are erased in memory only,
        // after the head word is durable: zeroed before it, a crash could keep the zeroes and
        // the old head, and recovery would stop at them, short of live records after them.
        // Unflushed zeroes may be lost to a crash; the next open's `scrub` erases them again.
        for (at, end) in ring_ranges(passed, (head, head_gen), self.len) {
            // SAFETY: the range lies in the log (ends at most `self.len`) and holds no live
            // record (the head passed it); only holders of the state lock, held here, write
            // the log.
            unsafe { region.zero(self.start + at, (end - at) as usize) };
        }
        self.head_moved.notify_all();
    }

    /// Stores the head word (position and generation) and persists it. Callers hold the state
    /// lock and give the ordering argument.
    fn publish_head(&self, head: u64, head_gen: u32) {
        let region = self.pool.region();
        region
            .atomic_u64(self.head_word)
            .expect("the metadata region is mapped")
            .store((head_gen as u64) << 32 | head, Ordering::Release);
        region.persist(self.head_word, 8);
    }

    /// Erases every byte of the ring outside the live records, durably: records of earlier
    /// laps, a torn record past the tail, and zeroes of `checkpoint` that a crash kept from
    /// the media. Called once per open, after recovery (the engine's recovery thread), so the
    /// keys that logged batches named leave the pool with their entries. Works in pieces under
    /// the state lock, which appenders take too; `cancel` stops it between pieces.
    pub fn scrub(&self, cancel: impl Fn() -> bool) {
        const PIECE: u64 = 64 << 10;
        let region = self.pool.region();
        let line = region.persister().granule() as u64;
        let mut buf = vec![0u8; PIECE as usize];
        let mut flushed = false;
        let mut at = 0;
        while at < self.len && !cancel() {
            let end = (at + PIECE).min(self.len);
            let st = self.state.lock();
            // The free space runs from the tail to the head of the next lap, and, while the
            // tail is a lap ahead, from the head's end-of-lap marker to the end of the ring.
            let next_lap = (st.head, st.head_gen.wrapping_add(1));
            let past_marker = (st.tail_gen != st.head_gen).then_some((st.lap_end, self.len));
            let free = ring_ranges((st.tail, st.tail_gen), next_lap, self.len).chain(past_marker);
            for (a, b) in free {
                let (a, b) = (a.max(at), b.min(end));
                if a >= b {
                    continue;
                }
                let bytes = &mut buf[..(b - a) as usize];
                region.read(self.start + a, bytes);
                let mut from = a;
                while from < b {
                    let to = (self.start + from + 1).next_multiple_of(line) - self.start;
                    let to = to.min(b);
                    let span = (from - a) as usize..(to - a) as usize;
                    if bytes[span].iter().fold(0, |acc, &x| acc | x) != 0 {
                        // SAFETY: the range lies in the log and outside the live records
                        // (`free`, computed under the state lock that every writer of the log
                        // holds, and held here).
                        unsafe { region.zero(self.start + from, (to - from) as usize) };
                        region.flush(self.start + from, (to - from) as usize);
                        flushed = true;
                    }
                    from = to;
                }
            }
            drop(st);
            at = end;
        }
        // Ordering: the zeroes lie outside the live records, so whether any of them reaches
        // the media before a crash changes nothing recovery reads; the fence makes them
        // durable before the scrub returns (`close` waits for it). Lines that are zero in
        // memory are not flushed, so zeroes of a `checkpoint` not yet written back stay in
        // the cache until write-back; a power failure before then is for the next scrub.
        if flushed {
            region.fence();
        }
    }

    /// Blocks until the head has passed `lsn` (every record up to it is checkpointed, durably)
    /// or `give_up()` holds. Records are checkpointed out of order but the head moves in order:
    /// a batch that finished before an older one waits here for it, so its caller keeps its
    /// key locks until no redo can touch its keys again.
    /// Returns whether the head passed `lsn` (false: it gave up first).
    pub fn wait_passed(&self, lsn: Lsn, give_up: impl Fn() -> bool) -> bool {
        let mut st = self.state.lock();
        loop {
            if st.live.front().is_none_or(|l| l.lsn > lsn) {
                return true;
            }
            if give_up() {
                return false;
            }
            // Woken by `checkpoint` or `wake`; the timeout only bounds a missed `give_up`.
            self.head_moved
                .wait_for(&mut st, std::time::Duration::from_millis(10));
        }
    }

    /// The LSN of the newest record appended (0 if none since the log was created).
    pub fn last_lsn(&self) -> Lsn {
        self.state.lock().next_lsn - 1
    }

    /// Wakes every `wait_passed` so it re-checks its `give_up`.
    pub fn wake(&self) {
        let _st = self.state.lock();
        self.head_moved.notify_all();
    }

    /// Group commit counters.
    pub fn stats(&self) -> WalStats {
        WalStats {
            appends: self.appends.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }

    /// Bytes between the head and the tail (what recovery would read).
    pub fn used(&self) -> u64 {
        let st = self.state.lock();
        if st.tail_gen == st.head_gen {
            st.tail - st.head
        } else {
            self.len - st.head + st.tail
        }
    }

    /// The log's capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::FlushMode;
    use crate::pool::PoolOptions;

    /// A 2 MiB pool (a 256 KiB log) in a temporary file, unlinked at once.
    fn pool(name: &str) -> Arc<Pool> {
        let path = std::env::temp_dir().join(format!("eagle-{name}-{}.pool", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let opts = PoolOptions {
            size: 2 << 20,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        };
        let pool = Arc::new(Pool::open(&path, opts).unwrap());
        let _ = std::fs::remove_file(&path);
        pool
    }

    /// Writes a record with a valid checksum (generation 1) at `pos` of the log.
    fn forge(pool: &Pool, pos: u64, lsn: Lsn, payload: &[u8]) {
        let mut rec = vec![0u8; footprint(payload.len())];
        record::encode(
            &mut rec,
            record::seed(&pool.header().uuid, 1),
            1,
            lsn,
            payload,
        );
        // SAFETY: a test's own pool, used by nothing else.
        unsafe { pool.region().write(pool.layout().wal.offset + pos, &rec) };
    }

    #[test]
    fn recovery_refuses_records_no_writer_could_have_placed() {
        // LSN u64::MAX: the next LSN would overflow.
        let p = pool("wal-forged-lsn");
        forge(&p, 0, u64::MAX, b"x");
        let (_, entries) = Wal::open(p).unwrap();
        assert!(entries.is_empty());
        // A record ending inside the end-of-lap marker's room.
        let p = pool("wal-forged-end");
        let len = p.layout().wal.len;
        let payload = vec![7u8; 40];
        let pos = len - footprint(payload.len()) as u64 - 8;
        let head_word = p.layout().meta.offset + HEAD_WORD;
        let head = p.region().atomic_u64(head_word).unwrap();
        head.store((1 << 32) | pos, Ordering::Release);
        forge(&p, pos, 5, &payload);
        let (_, entries) = Wal::open(p).unwrap();
        assert!(entries.is_empty());
    }
}
