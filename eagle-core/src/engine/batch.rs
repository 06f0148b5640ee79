//! Atomic batches: several publications and deletions that a crash must not split (MSET,
//! RENAME, multi-key DEL, ...), made all-or-nothing by redo logging.
//!
//! Protocol (`Engine::apply_batch`), with the caller holding the keyspace locks of every key:
//! 1. every new record is *prepared* (written and flushed, reachable from nothing), and the
//!    index splits what its new keys need (`Dash::make_room`; a split is crash consistent by
//!    itself and changes no key), so that step 3 finds its slots (`room.rs` says what another
//!    thread can still take);
//! 2. a fence makes the prepared records durable; then one WAL record lists the operations
//!    (`Put{key, record offset}`, `Delete{key}`), persisted by its append;
//! 3. the operations are applied to the index, in order, each durable on return, except that
//!    consecutive puts go in groups (`Dash::publish_run`) that are durable together at their
//!    last fence (a crash may keep any subset of a group; the redo completes the rest);
//! 4. the WAL record is checkpointed.
//!
//! A crash before 2 is durable leaves the prepared records unreachable (the sweep reclaims them)
//! and nothing changed. A crash after it redoes every operation at the next open, before the
//! sweep (`replay`): a put makes the key name the logged record unless it already does, a delete
//! deletes if present, so redo is idempotent, and a crash during redo is redone again.
//!
//! Concurrent batches touch disjoint keys (each caller holds its keys' locks), so they run in
//! parallel and share the log's fences (group commit, `Wal::append`); redo replays them in LSN
//! order, which is correct for disjoint keys.
//!
//! Why redo cannot undo a later write: a batch returns (and its caller releases its key locks)
//! only once the log's head has passed its record (`Wal::wait_passed`), and the head moves in
//! LSN order. So every record the log still holds belongs to a batch whose caller still holds
//! its key locks, and no other write to those keys has happened since it was logged. (After a
//! half-applied batch the engine refuses every write until reopened, so waiters give up then.)

use std::collections::HashMap;
use std::fmt;

use super::core::Engine;
use super::payload::Reader;
use super::tx::KIND_UNDO;
use crate::dash::{IndexError, MAX_GROUP, PutMode};
use crate::heap::ReserveScope;
use crate::wal::{WalEntry, WalError};

/// WAL record kind of a batch.
pub(crate) const KIND_BATCH: u8 = 1;
/// WAL record kind of FLUSHALL (no payload): redo deletes every key.
pub(crate) const KIND_FLUSH: u8 = 2;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_DETACH: u8 = 3;
const OP_SET_WORD: u8 = 4;

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Make `key` name the prepared record at `record` (see `Dash::prepare`).
    Put {
        /// The key.
        key: Vec<u8>,
        /// The prepared record's offset.
        record: u64,
    },
    /// Delete `key` if present.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Delete `key` if present, but not the blocks its record owns (handed to another key).
    Detach {
        /// The key.
        key: Vec<u8>,
    },
    /// Store `value` in the 8-byte word at `offset` (a large hash's part or count), persisted.
    /// Only for words owned by a record whose key the caller holds locked.
    SetWord {
        /// The word's offset in the pool.
        offset: u64,
        /// The value.
        value: u64,
    },
}

/// A batch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// From the index.
    Index(IndexError),
    /// From the log (e.g. a batch too large for it).
    Wal(WalError),
    /// An earlier batch failed half-applied; writes wait for a reopen to redo it.
    Poisoned,
    /// This batch failed half-applied (why, from the index); writes wait for a reopen to
    /// redo it.
    HalfApplied(IndexError),
    /// This batch is applied, but an older one failed half-applied while this one waited for
    /// the log's head to pass its record: the record stays for the next open's redo, which
    /// applies it again, so the caller must touch nothing more of what it changed.
    Unfinished,
    /// The batch names a key again after a put of it (a caller's error): applying the later
    /// operation retires the put's record, and a redo after a crash could then not replay the
    /// put. Refused before anything is logged.
    KeyAfterPut {
        /// The key.
        key: Vec<u8>,
    },
    /// A logged batch that cannot be decoded.
    Corrupted {
        /// What is wrong.
        what: String,
    },
}

impl BatchError {
    /// Whether the batch's log record stays live (it may have published some of its blocks,
    /// and the next open's redo publishes them all): its caller must not free what it prepared.
    pub fn logged(&self) -> bool {
        matches!(self, BatchError::HalfApplied(_) | BatchError::Unfinished)
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Index(e) => e.fmt(f),
            BatchError::Wal(e) => e.fmt(f),
            BatchError::Poisoned => write!(
                f,
                "an atomic batch could not be completed (pool full?); reopen the pool to finish it"
            ),
            BatchError::HalfApplied(cause) => write!(
                f,
                "an atomic batch failed half-applied ({cause}); reopen the pool to finish it"
            ),
            BatchError::Unfinished => write!(
                f,
                "an atomic batch is applied but an older one failed half-applied; reopen the \
                 pool to finish both"
            ),
            BatchError::KeyAfterPut { key } => write!(
                f,
                "an atomic batch names key {:?} again after its put",
                String::from_utf8_lossy(key)
            ),
            BatchError::Corrupted { what } => write!(f, "logged batch corrupted: {what}"),
        }
    }
}

impl std::error::Error for BatchError {}

impl From<IndexError> for BatchError {
    fn from(e: IndexError) -> Self {
        BatchError::Index(e)
    }
}

/// What a batch's operations so far leave of each key they name (in the index or not): a
/// list while short (most batches name a few keys, and hashing them costs more), a map once
/// long.
#[derive(Default)]
struct Presence<'a> {
    few: Vec<(&'a [u8], bool)>,
    many: HashMap<&'a [u8], bool>,
}

impl<'a> Presence<'a> {
    const FEW: usize = 32;

    /// Records `key`'s presence; what was recorded before, if anything.
    fn set(&mut self, key: &'a [u8], present: bool) -> Option<bool> {
        if self.many.is_empty() {
            if let Some(e) = self.few.iter_mut().find(|e| e.0 == key) {
                return Some(std::mem::replace(&mut e.1, present));
            }
            if self.few.len() < Self::FEW {
                self.few.push((key, present));
                return None;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(key, present)
    }
}

/// Encodes a batch: `u32 count`, then per operation `u8 op | u32 key_len | key [| u64 record]`,
/// little-endian.
fn encode(ops: &[BatchOp], out: &mut Vec<u8>) {
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        let (code, key) = match op {
            BatchOp::Put { key, .. } => (OP_PUT, &key[..]),
            BatchOp::Delete { key } => (OP_DELETE, &key[..]),
            BatchOp::Detach { key } => (OP_DETACH, &key[..]),
            BatchOp::SetWord { .. } => (OP_SET_WORD, &[][..]),
        };
        out.push(code);
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        match op {
            BatchOp::Put { record, .. } => out.extend_from_slice(&record.to_le_bytes()),
            BatchOp::SetWord { offset, value } => {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
            _ => {}
        }
    }
}

fn decode(p: &[u8]) -> Result<Vec<BatchOp>, BatchError> {
    let mut r = Reader::new(p, "batch");
    let count = r.u32()? as usize;
    let mut ops = Vec::with_capacity(count.min(r.left() / 5));
    for _ in 0..count {
        let code = r.u8()?;
        let len = r.u32()? as usize;
        let key = r.bytes(len)?.to_vec();
        ops.push(match code {
            OP_PUT => BatchOp::Put {
                key,
                record: r.u64()?,
            },
            OP_DELETE => BatchOp::Delete { key },
            OP_DETACH => BatchOp::Detach { key },
            OP_SET_WORD => BatchOp::SetWord {
                offset: r.u64()?,
                value: r.u64()?,
            },
            other => return Err(r.unknown(other)),
        });
    }
    r.finish()?;
    Ok(ops)
}

impl Engine {
    /// Applies `ops` all-or-nothing across a crash (see the module documentation). The caller
    /// holds the keyspace locks of every key in `ops` and has prepared every `Put`'s record.
    /// On return every operation is durable. On an error before the log record is durable,
    /// nothing changed and the prepared records are freed.
    pub fn apply_batch(&self, ops: &[BatchOp]) -> Result<(), BatchError> {
        let mut payload = Vec::new();
        encode(ops, &mut payload);
        if !self.writable() {
            self.discard_prepared(ops);
            return Err(BatchError::Poisoned);
        }
        // Once logged, a batch must not fail half-way for lack of space (only a reopen could
        // finish it). Its records are allocated already; what its puts may still need is index
        // room for new keys, made now, before anything is logged (`dash/room.rs`). The
        // operations run with the heap's reserve behind them, for a concurrent insert that
        // takes a counted slot meanwhile.
        if let Err(e) = self.make_room(ops) {
            self.discard_prepared(ops);
            return Err(e);
        }
        // Inside an atomic transaction: what these keys and words hold now is logged first.
        if self.in_atomic() {
            let words: Vec<u64> = ops
                .iter()
                .filter_map(|op| match op {
                    BatchOp::SetWord { offset, .. } => Some(*offset),
                    _ => None,
                })
                .collect();
            let keys = ops.iter().filter_map(|op| match op {
                BatchOp::Put { key, .. } | BatchOp::Delete { key } | BatchOp::Detach { key } => {
                    Some(&key[..])
                }
                BatchOp::SetWord { .. } => None,
            });
            if let Err(e) = self.save_undo(keys, &words) {
                self.discard_prepared(ops);
                return Err(e);
            }
        }
        let _reserve = ReserveScope::enter();
        // Ordering: the prepared records (flushed, not fenced) are durable before any byte of
        // the log record naming them is written. Without this fence a power failure could keep
        // the log record (its lines evicted early) and lose a record's lines, and the redo
        // would publish a torn record (the crash harness found exactly that).
        // (SetWord publishes prepared blocks too: a large hash's new parts. Fencing always is
        // simplest; a batch of deletes alone pays one fence it does not need.)
        if !crate::fault::armed(crate::fault::Fault::SkipFenceBeforeBatchLog) {
            self.pool().region().fence();
        }
        let logged = if crate::fault::armed(crate::fault::Fault::SkipBatchLog) {
            Ok(None)
        } else if self.in_atomic() {
            // The transaction's undo records hold the head back until it ends: waiting for
            // space would wait for ever.
            self.wal.append(KIND_BATCH, &payload).map(Some)
        } else {
            // A log full of other batches' records throttles this one until they finish.
            self.wal
                .append_waiting(KIND_BATCH, &payload, || !self.writable())
                .map(Some)
        };
        let lsn = match logged {
            Ok(lsn) => lsn,
            Err(e) => {
                self.discard_prepared(ops);
                return Err(BatchError::Wal(e));
            }
        };
        crate::fault::pause_point(crate::fault::Fault::PauseAfterBatchLog);
        let fail_midway = crate::fault::armed(crate::fault::Fault::FailBatchMidway);
        let mut i = 0;
        while i < ops.len() {
            let done = if i == 1 && fail_midway {
                Err(IndexError::Corrupted {
                    what: "fault injected: the batch's second operation failed".into(),
                })
            } else if fail_midway {
                self.apply_op(&ops[i], false).map(|()| 1)
            } else {
                self.apply_ops(&ops[i..])
            };
            match done {
                Ok(n) => i += n,
                Err(e) => {
                    // Half applied: only the redo at the next open may finish it.
                    self.poison();
                    return Err(BatchError::HalfApplied(e));
                }
            }
        }
        // Every operation above was durable on return, so the record is no longer needed.
        // On an error above the record stays live and the next open redoes it whole.
        if let Some(lsn) = lsn {
            self.wal.checkpoint(lsn);
            // (Inside a transaction the head waits for its end, and so do these keys: the
            // transaction's caller holds them until then.)
            if !crate::fault::armed(crate::fault::Fault::SkipWaitForLogHead)
                && !self.in_atomic()
                && !self.wal.wait_passed(lsn, || !self.writable())
            {
                // An older batch failed half-applied: the redo at the next open applies this
                // record again, so the caller must not go on as if it were done (a large hash
                // would retire the table these words are in, and the redo write into it).
                return Err(BatchError::Unfinished);
            }
        }
        Ok(())
    }

    /// Deletes every key, all or nothing across a crash: logged first, so a crash part way is
    /// finished by the redo (deleting everything again is idempotent). The caller holds every
    /// key lock. Returns the number of keys deleted.
    pub fn flush_all(&self) -> Result<u64, BatchError> {
        if !self.writable() {
            return Err(BatchError::Poisoned);
        }
        let lsn = if self.in_atomic() {
            // Every key's record is logged for the rollback (it fails if the log cannot hold
            // them all, before anything is deleted).
            let mut keys = Vec::new();
            let mut cursor = 0;
            loop {
                cursor = self
                    .index()
                    .scan(cursor, 1024, |r| keys.push(r.key().to_vec()))?;
                if cursor == 0 {
                    break;
                }
            }
            self.save_undo(keys.iter().map(|k| &k[..]), &[])?;
            self.wal.append(KIND_FLUSH, &[])
        } else {
            self.wal
                .append_waiting(KIND_FLUSH, &[], || !self.writable())
        }
        .map_err(BatchError::Wal)?;
        match self.delete_all() {
            Ok(n) => {
                self.wal.checkpoint(lsn);
                if !self.in_atomic() && !self.wal.wait_passed(lsn, || !self.writable()) {
                    return Err(BatchError::Unfinished);
                }
                Ok(n)
            }
            Err(e) => {
                self.poison();
                Err(match e {
                    BatchError::Index(e) => BatchError::HalfApplied(e),
                    other => other,
                })
            }
        }
    }

    fn delete_all(&self) -> Result<u64, BatchError> {
        let index = self.index();
        let (mut cursor, mut deleted) = (0u64, 0u64);
        let mut keys = Vec::new();
        loop {
            keys.clear();
            cursor = index.scan(cursor, 1024, |r| keys.push(r.key().to_vec()))?;
            for k in &keys {
                deleted += index.delete(k)? as u64;
            }
            if cursor == 0 {
                return Ok(deleted);
            }
        }
    }

    /// Splits what the batch's new keys need before it is logged (see `Dash::make_room`).
    /// Also refuses a batch that names a key again after a put of it
    /// ([`BatchError::KeyAfterPut`]): only puts set a key's presence to true here.
    fn make_room(&self, ops: &[BatchOp]) -> Result<u32, BatchError> {
        // Whether each key is in the index after the operations so far, where the batch
        // itself decides it: a put after a delete inserts, and a key's first put inserts if
        // the index lacks it.
        let mut present = Presence::default();
        let mut puts = Vec::new();
        let after_put = |key: &[u8]| BatchError::KeyAfterPut { key: key.to_vec() };
        for op in ops {
            match op {
                BatchOp::Put { key, .. } => match present.set(key, true) {
                    Some(true) => return Err(after_put(key)),
                    Some(false) => puts.push((&key[..], true)),
                    None => puts.push((&key[..], false)),
                },
                BatchOp::Delete { key } | BatchOp::Detach { key } => {
                    if present.set(key, false) == Some(true) {
                        return Err(after_put(key));
                    }
                }
                BatchOp::SetWord { .. } => {}
            }
        }
        if puts.is_empty() {
            return Ok(0);
        }
        Ok(self.index().make_room(&puts)?)
    }

    /// Applies the leading operations of `ops`, durable on return: a run of puts as a run
    /// (`Dash::publish_run`: their publications share fences), else one operation. Returns how
    /// many it applied; on an error, some of them may be applied.
    fn apply_ops(&self, ops: &[BatchOp]) -> Result<usize, IndexError> {
        let mut puts: [(&[u8], u64); MAX_GROUP] = [(&[], 0); MAX_GROUP];
        let mut n = 0;
        for op in ops.iter().take(MAX_GROUP) {
            let BatchOp::Put { key, record } = op else {
                break;
            };
            puts[n] = (key, *record);
            n += 1;
        }
        if n < 2 {
            return self.apply_op(&ops[0], false).map(|()| 1);
        }
        // Ordering: each publication as a put's (see `dash/group.rs`); every record was
        // fenced before the log record, which redoes the publications a crash interrupts.
        let run = self.index().publish_run(&puts[..n]);
        run.result.map(|()| n)
    }

    /// Applies one operation (redo: `replay`), durable on return.
    fn apply_op(&self, op: &BatchOp, replay: bool) -> Result<(), IndexError> {
        let index = self.index();
        match op {
            BatchOp::Put { key, record } if replay => index.replay_put(key, *record),
            BatchOp::Put { key, record } => index.publish(key, *record, PutMode::Upsert).map(drop),
            BatchOp::Delete { key } => index.delete(key).map(drop),
            BatchOp::Detach { key } => index.delete_detached(key).map(drop),
            BatchOp::SetWord { offset, value } => {
                let region = self.pool().region();
                let word = self.heap_word(*offset)?;
                // Ordering: one failure-atomic 8-byte store, persisted before the next
                // operation. The block it names (a new part) was fenced before the log record
                // was appended; a crash before this persist leaves the old word, and redo
                // stores it again (idempotent).
                word.store(*value, std::sync::atomic::Ordering::Release);
                region.persist(*offset, 8);
                Ok(())
            }
        }
    }

    /// Refuses every write until the pool is reopened (a logged batch is half applied), and
    /// wakes the batches waiting for the log's head, which will never pass it now.
    fn poison(&self) {
        self.batch_failed
            .store(true, std::sync::atomic::Ordering::Release);
        self.wal.wake();
    }

    /// Frees the prepared records of a batch that was not logged.
    pub fn discard_prepared(&self, ops: &[BatchOp]) {
        for op in ops {
            if let BatchOp::Put { record, .. } = op {
                let _ = self.index().discard(*record);
            }
        }
    }

    /// Redoes the batches a crash left in the log, oldest first, then checkpoints them.
    ///
    /// Undo records (an atomic transaction a crash interrupted, `tx.rs`) are applied after
    /// every redo, newest first; then all the records are checkpointed in one head store, so
    /// a crash before it redoes and rolls back again. The rollback retires nothing: the
    /// sweep that follows reclaims what nothing reaches.
    ///
    /// Returns the number of records redone and the number of undo records applied.
    pub(crate) fn replay(&self, entries: Vec<WalEntry>) -> Result<(usize, usize), BatchError> {
        let rollback = entries.iter().any(|e| e.kind == KIND_UNDO);
        if rollback {
            self.index().leave_frees_to_sweep();
        }
        // The redo's puts may take the reserve's chunks too. Only the chunks free at open can
        // serve them (those in use are held back until the sweep, which runs after this): a
        // redo that needs more fails the open.
        let _reserve = ReserveScope::enter();
        let mut undo = Vec::new();
        for entry in &entries {
            match entry.kind {
                KIND_FLUSH => {
                    self.delete_all()?;
                }
                KIND_BATCH => {
                    for op in decode(&entry.payload)? {
                        self.apply_op(&op, true)?;
                    }
                }
                KIND_UNDO => undo.push(&entry.payload),
                other => {
                    return Err(BatchError::Corrupted {
                        what: format!("unknown WAL record kind {other}"),
                    });
                }
            }
            if !rollback {
                self.wal.checkpoint(entry.lsn);
            }
        }
        let (undone, redone) = (undo.len(), entries.len() - undo.len());
        if rollback {
            for payload in undo.into_iter().rev() {
                self.apply_undo(payload)?;
            }
            let lsns: Vec<_> = entries.iter().map(|e| e.lsn).collect();
            // Ordering: every redo and undo above was durable on return; one head store
            // passes all of the records.
            self.wal.checkpoint_many(&lsns);
            self.index().release_frees(false);
        }
        Ok((redone, undone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_remembers_each_key_past_the_switch_from_list_to_map() {
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
        let mut p = Presence::default();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(p.set(k, i % 3 == 0), None);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(p.set(k, true), Some(i % 3 == 0), "key {i}");
        }
        assert!(p.few.is_empty() && p.many.len() == keys.len());
    }

    /// A batch that names a key again after its put is refused before it is logged (its redo
    /// could not replay the put, whose record the later operation retires), and changes
    /// nothing: the key keeps its value and the prepared records are freed.
    #[test]
    fn a_batch_naming_a_key_again_after_its_put_is_refused_unlogged() {
        let e = crate::engine::temp_engine("key-after-put", 8 << 20);
        let index = e.index();
        index
            .put(
                b"k",
                b"old",
                crate::record::RecordKind::String,
                0,
                crate::dash::PutMode::Insert,
            )
            .unwrap();
        let used = index.heap().stats().used;
        for second in [true, false] {
            let prepare = |v: &[u8]| index.prepare(b"k", v, crate::record::RecordKind::String, 0);
            let mut ops = vec![BatchOp::Put {
                key: b"k".to_vec(),
                record: prepare(b"one").unwrap(),
            }];
            ops.push(if second {
                BatchOp::Put {
                    key: b"k".to_vec(),
                    record: prepare(b"two").unwrap(),
                }
            } else {
                BatchOp::Delete { key: b"k".to_vec() }
            });
            assert_eq!(
                e.apply_batch(&ops),
                Err(BatchError::KeyAfterPut { key: b"k".to_vec() })
            );
            assert_eq!(
                index.get(b"k", |r| r.value().to_vec()).unwrap().as_deref(),
                Some(&b"old"[..])
            );
            assert_eq!(index.heap().stats().used, used, "prepared records freed");
        }
        // A put after a delete of the same key is fine.
        let ops = [
            BatchOp::Delete { key: b"k".to_vec() },
            BatchOp::Put {
                key: b"k".to_vec(),
                record: index
                    .prepare(b"k", b"new", crate::record::RecordKind::String, 0)
                    .unwrap(),
            },
        ];
        e.apply_batch(&ops).unwrap();
        assert_eq!(
            index.get(b"k", |r| r.value().to_vec()).unwrap().as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn a_logged_store_into_the_chunk_table_is_refused() {
        let e = crate::engine::temp_engine("setword-chunk-table", 8 << 20);
        let table = e.pool().layout().heap.offset;
        let word = e.pool().region().atomic_u64(table).unwrap();
        let before = word.load(std::sync::atomic::Ordering::Relaxed);
        let store = BatchOp::SetWord {
            offset: table,
            value: !before,
        };
        assert!(matches!(
            e.apply_batch(&[store]),
            Err(BatchError::HalfApplied(IndexError::Corrupted { .. }))
        ));
        assert_eq!(word.load(std::sync::atomic::Ordering::Relaxed), before);
    }

    #[test]
    fn batch_encoding_round_trips_and_rejects_truncation() {
        let ops = vec![
            BatchOp::Put {
                key: b"a\0\r\n".to_vec(),
                record: 0x1234_5678_9abc,
            },
            BatchOp::Delete { key: Vec::new() },
            BatchOp::Detach { key: b"x".to_vec() },
            BatchOp::SetWord {
                offset: 4096,
                value: u64::MAX,
            },
            BatchOp::Put {
                key: vec![7; 300],
                record: 64,
            },
        ];
        let mut buf = Vec::new();
        encode(&ops, &mut buf);
        assert_eq!(decode(&buf).unwrap(), ops);
        crate::engine::payload::assert_rejects_damage(&buf, decode);
    }
}
