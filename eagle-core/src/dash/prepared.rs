//! Two-phase writes for the keyspace's atomic multi-key operations: a record is *prepared*
//! (allocated, written and flushed, reachable from nothing) and later *published* under its key,
//! possibly after the write-ahead log has named it. Redo after a crash publishes it again
//! (`replay_put`), which is idempotent.

use super::error::{IndexError, corrupted};
use super::index::Dash;
use super::write::{NewRecord, PutMode, PutOutcome};
use crate::record::{RecordKind, RecordRef, record_size, write_record};

impl Dash {
    /// Allocates a record for `key` and writes it, flushed but not fenced and reachable from
    /// nothing. Its offset goes to [`publish`](Self::publish) or [`discard`](Self::discard);
    /// a crash before either leaves it unreachable, and the next open's sweep reclaims it.
    pub fn prepare(
        &self,
        key: &[u8],
        value: &[u8],
        kind: RecordKind,
        expire_at_ms: u64,
    ) -> Result<u64, IndexError> {
        let rec = self.alloc_block(record_size(key, value.len() as u64))?;
        // SAFETY: `rec` was just allocated; nothing else can reach it.
        let len = unsafe { write_record(self.region(), rec, kind, key, value, expire_at_ms) };
        // Flushed now: the log may name the record, and its commit fence must cover it.
        self.region().flush(rec, len as usize);
        Ok(rec)
    }

    /// Allocates a heap block for a structure a record will own (waiting for a running
    /// recovery if the pool is full until it ends, or reclaiming deferred frees).
    pub(crate) fn alloc_block(&self, size: u64) -> Result<u64, IndexError> {
        loop {
            match self.alloc(size) {
                Ok(b) => return Ok(b),
                Err(e) if self.space_may_free_up(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Usable bytes of heap block `block` (its size class), if it is the start of one.
    pub(crate) fn block_size(&self, block: u64) -> Option<u64> {
        self.heap.block_size(block)
    }

    /// Publishes a prepared record under `key` (which must be the key it was prepared with).
    /// With `PutMode::Insert` and the key present, the record is freed and `Exists` returned.
    /// On return the change is durable. A new key takes a slot without displacing a record,
    /// the rule `make_room` (`room.rs`) counts with.
    pub fn publish(
        &self,
        key: &[u8],
        record: u64,
        mode: PutMode,
    ) -> Result<PutOutcome, IndexError> {
        let h = self.hash(key);
        let guard = self.pin();
        let expires = self.has_expiry(record);
        let new = NewRecord {
            offset: record,
            word: self.slot_word(record),
            expires,
            unflushed: 0,
        };
        self.publish_record(key, h, new, mode, false, &guard)
    }

    /// Frees a prepared record that will not be published.
    pub fn discard(&self, record: u64) -> Result<(), IndexError> {
        Ok(self.heap.free(record)?)
    }

    /// Redo of a logged publication: makes `key` name `record` unless it already does. The
    /// record must be intact and hold `key` (it was durable before the log record naming it).
    pub(crate) fn replay_put(&self, key: &[u8], record: u64) -> Result<(), IndexError> {
        // A record is a heap block of its own: one that only looks intact elsewhere in the
        // mapping (a damaged log naming the directory, say) is refused before a slot names it.
        let intact = RecordRef::open(self.region(), record).is_some_and(|r| {
            self.heap.block_size(record).is_some_and(|b| r.size() <= b)
                && r.verify()
                && r.key() == key
        });
        if !intact {
            return Err(corrupted(format!(
                "the log names record {record:#x}, which is not an intact record of its key \
                 in a heap block"
            )));
        }
        let current = self.get(key, |r| r.offset())?;
        if current == Some(record) {
            return Ok(());
        }
        self.publish(key, record, PutMode::Upsert).map(|_| ())
    }

    /// Sets the expiry word of `key`'s record in place (ms since the Unix epoch, 0 = none);
    /// false if the key is absent. The caller excludes other writers of `key` (the keyspace's
    /// key locks), so the record cannot be replaced meanwhile; the key's home buckets are
    /// locked too, so the count of keys with an expiry is ordered with the recovery's count.
    pub fn set_expire_at(&self, key: &[u8], expire_at_ms: u64) -> Result<bool, IndexError> {
        let h = self.hash(key);
        let _guard = self.pin();
        let (seg_off, seg, held) = self.lock_home(h)?;
        let Some(found) = self.search(seg, h, key)? else {
            return Ok(false);
        };
        // `search` opened the record (its header bounds-checked), so its expiry word is readable.
        // It is written only into a heap block of the record's own: a damaged slot naming
        // bytes elsewhere that happen to hold the key (the log, the metadata, a value inside
        // another block) is reported instead. One read of the chunk's kind, in DRAM.
        let at = found.rec.offset();
        if self
            .heap
            .block_size(at)
            .is_none_or(|b| b < found.rec.size())
        {
            return Err(corrupted(format!(
                "the slot of a key names {at:#x}, which is not a heap block holding its record"
            )));
        }
        let word = found.rec.expire_at();
        let before = (word.load(std::sync::atomic::Ordering::Acquire) != 0) as i64;
        // Counted before the persist (bookkeeping first: see `write.rs`).
        self.count(seg_off, 0, (expire_at_ms != 0) as i64 - before);
        word.store(expire_at_ms, std::sync::atomic::Ordering::Release);
        // Ordering: one failure-atomic 8-byte store, persisted before the caller acknowledges;
        // outside the record's checksum, so either value validates.
        self.region().persist(found.rec.expire_at_offset(), 8);
        drop(held);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::dash::{IndexError, PutMode};
    use crate::record::RecordKind;

    /// Bytes that look like an intact record of a key, but lie outside the heap's chunks (in
    /// the metadata region's reserved bytes, as a damaged log or slot could name them): redo
    /// does not publish them, and an expiry change through a slot naming them writes nothing.
    #[test]
    fn a_record_outside_the_heap_is_neither_republished_nor_written() {
        let engine = crate::engine::temp_engine("outside-heap", 8 << 20);
        let index = engine.index();
        index
            .put(b"victim", b"value", RecordKind::String, 0, PutMode::Insert)
            .unwrap();
        let (at, size) = index
            .get(b"victim", |r| (r.offset(), r.size()))
            .unwrap()
            .unwrap();
        let mut bytes = vec![0u8; size as usize];
        assert!(index.region().read(at, &mut bytes));
        // Reserved metadata bytes: zero on a fresh pool, read by nothing.
        let copy = 8192;
        // SAFETY: a test's own pool, no reader of these reserved bytes.
        unsafe { index.region().write(copy, &bytes) };
        assert!(!index.heap().in_chunks(copy, size));
        // The same bytes inside another block (a value a client chose could hold them).
        let inner = index
            .heap()
            .alloc(size + 64)
            .expect("a block for the inner copy");
        // SAFETY: just allocated, reachable from nothing.
        unsafe { index.region().write(inner + 64, &bytes) };

        for fake in [copy, inner + 64] {
            let redo = index.replay_put(b"victim", fake);
            assert!(
                matches!(redo, Err(IndexError::Corrupted { .. })),
                "{redo:?}"
            );
            assert_eq!(index.get(b"victim", |r| r.offset()).unwrap(), Some(at));
        }
        // A slot naming a copy (published directly, as damage would leave it).
        for fake in [copy, inner + 64] {
            index.publish(b"victim", fake, PutMode::Upsert).unwrap();
            let change = index.set_expire_at(b"victim", 777);
            assert!(
                matches!(change, Err(IndexError::Corrupted { .. })),
                "{change:?}"
            );
            let mut word = [0u8; 8];
            assert!(
                index
                    .region()
                    .read(fake + crate::record::EXPIRE_AT, &mut word)
            );
            assert_eq!(
                u64::from_le_bytes(word),
                0,
                "the expiry word of a copy changed"
            );
        }
    }
}
