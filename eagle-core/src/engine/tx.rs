//! Atomic transactions (the server's EXEC): every write made while one is open survives a
//! crash together or not at all, by undo logging.
//!
//! Protocol (`Engine::atomic` opens one; dropping the returned [`Atomic`] ends it):
//! 1. opening holds every free (`Dash::hold_frees`: nothing retired while the transaction is
//!    open is freed or reused before it ends);
//! 2. before the transaction's first write to a key, and before its first in-place store to a
//!    word (a record's expiry, a large hash's part or count), an *undo record* naming what the
//!    key or word held is appended to the log, durable on return, before the write starts;
//! 3. the writes proceed as usual, each durable on return (a batch is still redo-logged, but
//!    does not wait for the log's head, which the first undo record holds back);
//! 4. ending checkpoints every undo record at once: the log's head jumps past all of them (and
//!    the batches between them, already applied) in one 8-byte store, which is the commit.
//!    Then the held frees go to the epoch.
//!
//! A crash before 4's store leaves every undo record live. The next open redoes the live
//! batches as usual, then applies the undo records newest first, then checkpoints everything
//! in one store (`replay`): each key names its record from before the transaction again (or is
//! absent), each word holds its old value, whatever the transaction got to. Those records and
//! blocks are intact: nothing retired while the transaction was open was freed. The rollback
//! retires nothing; the sweep that follows reclaims what nothing reaches. Redo and undo are
//! idempotent, so a crash during the rollback is rolled back again.
//!
//! Who else may write meanwhile: no other thread. `Db::atomic` guarantees it (the keyspace's
//! writers hold its writers' gate shared, the transaction exclusively); a caller of the engine
//! directly must. Another thread's
//! logged batch between two undo records would break the commit's single store (the head
//! could pass some undo records and stop at that batch, and a crash then would roll back part
//! of the transaction), it could deadlock (it waits for the head, which the transaction holds
//! back, while keeping key locks the transaction may need), and a rollback would undo its
//! writes to the transaction's keys.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::batch::BatchError;
use super::core::Engine;
use super::payload::Reader;
use crate::dash::IndexError;
use crate::wal::Lsn;

/// WAL record kind of undo records.
pub(crate) const KIND_UNDO: u8 = 3;

const UNDO_KEY: u8 = 1;
const UNDO_WORD: u8 = 2;

/// What a key or word held before the transaction's first write to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
    /// `key` named the record at `record` (0: the key was absent).
    Key { key: Vec<u8>, record: u64 },
    /// The word at `offset` held `value`.
    Word { offset: u64, value: u64 },
}

/// A transaction's state, one per engine.
#[derive(Default)]
pub(crate) struct TxState {
    /// Token of the thread with an open transaction (0: none).
    owner: AtomicU64,
    /// Held by the open transaction: one at a time.
    serial: Mutex<()>,
    journal: Mutex<Journal>,
}

#[derive(Default)]
struct Journal {
    lsns: Vec<Lsn>,
    keys: HashSet<Vec<u8>>,
    words: HashSet<u64>,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TOKEN: u64 = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
}

/// A number naming the calling thread (never 0).
pub(crate) fn this_thread() -> u64 {
    TOKEN.with(|t| *t)
}

/// An open atomic transaction; dropping it ends (commits) it. See the module documentation.
pub struct Atomic<'a> {
    engine: &'a Engine,
    /// `None` for a transaction opened inside another on the same thread: part of the outer
    /// one, which alone ends it.
    serial: Option<MutexGuard<'a, ()>>,
}

impl Drop for Atomic<'_> {
    fn drop(&mut self) {
        if self.serial.is_some() {
            self.engine.end_atomic();
        }
    }
}

impl Engine {
    /// Opens an atomic transaction on this thread: until the returned value is dropped, this
    /// thread's writes survive a crash all together or not at all. Waits for another thread's
    /// transaction to end first. The caller keeps every other writer out meanwhile (the expiry
    /// sweep's deletes excepted; see the module documentation). Opened inside another transaction of this thread, it is part of
    /// that one.
    pub fn atomic(&self) -> Atomic<'_> {
        if self.in_atomic() {
            return Atomic {
                engine: self,
                serial: None,
            };
        }
        let serial = self.tx.serial.lock();
        self.index().hold_frees();
        self.tx.owner.store(this_thread(), Ordering::Release);
        Atomic {
            engine: self,
            serial: Some(serial),
        }
    }

    /// Whether this thread has an atomic transaction open.
    pub(crate) fn in_atomic(&self) -> bool {
        let owner = self.tx.owner.load(Ordering::Acquire);
        owner != 0 && owner == this_thread()
    }

    fn end_atomic(&self) {
        self.tx.owner.store(0, Ordering::Release);
        let journal = std::mem::take(&mut *self.tx.journal.lock());
        if !self.writable() {
            // A batch failed half applied: its record holds the head back, so a checkpoint
            // now could drop some undo records and not others. Everything stays for the
            // reopen, which redoes that batch and rolls the transaction back whole.
            self.index().release_frees(false);
            return;
        }
        // Ordering: every write of the transaction was durable on return. This checkpoint
        // passes all its undo records with one failure-atomic head store (the commit): a
        // crash before it rolls the whole transaction back, after it keeps all of it.
        self.wal.checkpoint_many(&journal.lsns);
        // A record older than the transaction's (another thread's batch) may still hold the
        // head back; then the commit is the store that passes it. Until then a crash rolls
        // the transaction back, so it is not over before that.
        if let Some(&last) = journal.lsns.last() {
            let _ = self.wal.wait_passed(last, || !self.writable());
        }
        // Gave up on a poisoned engine: the head may not have passed the undo records, and
        // the reopen may roll back to the blocks they name, so none may be freed.
        self.index().release_frees(self.writable());
    }

    /// Before this thread's transaction (if any) first writes any of `keys` or `words`: logs
    /// what they hold now, durably. A no-op outside a transaction.
    pub(super) fn save_undo<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        words: &[u64],
    ) -> Result<(), BatchError> {
        if !self.in_atomic() {
            return Ok(());
        }
        let mut journal = self.tx.journal.lock();
        let mut undo = Vec::new();
        // Each key and word once (a batch may name one twice; FLUSHALL names every key).
        let mut this_call: HashSet<&[u8]> = HashSet::new();
        for key in keys {
            if !journal.keys.contains(key) && this_call.insert(key) {
                let record = self.index().get(key, |r| r.offset())?.unwrap_or(0);
                undo.push(Undo::Key {
                    key: key.to_vec(),
                    record,
                });
            }
        }
        let mut words_seen = HashSet::new();
        for &offset in words {
            if !journal.words.contains(&offset) && words_seen.insert(offset) {
                let value = self.heap_word(offset)?.load(Ordering::Acquire);
                undo.push(Undo::Word { offset, value });
            }
        }
        if undo.is_empty() {
            return Ok(());
        }
        if !crate::fault::armed(crate::fault::Fault::SkipUndoLog) {
            let mut payload = Vec::new();
            encode(&undo, &mut payload);
            // Not `append_waiting`: the transaction's own records hold the head back, so a
            // full log stays full until it ends. The write fails instead; nothing changed.
            let lsn = self
                .wal
                .append(KIND_UNDO, &payload)
                .map_err(BatchError::Wal)?;
            journal.lsns.push(lsn);
        }
        for u in undo {
            match u {
                Undo::Key { key, .. } => journal.keys.insert(key),
                Undo::Word { offset, .. } => journal.words.insert(offset),
            };
        }
        Ok(())
    }

    /// Before this thread's transaction (if any) first writes one of `keys`: logs the records
    /// they name now, durably. A no-op outside a transaction.
    pub(crate) fn save_undo_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<(), BatchError> {
        self.save_undo(keys, &[])
    }

    /// Before this thread's transaction (if any) first stores to one of `words` in place:
    /// logs what they hold now, durably. A no-op outside a transaction.
    pub(crate) fn save_undo_words(&self, words: &[u64]) -> Result<(), BatchError> {
        self.save_undo(std::iter::empty(), words)
    }

    /// Sets `key`'s expiry in place (`Dash::set_expire_at`), inside a transaction after
    /// logging the old value. False if the key is absent.
    pub fn set_expire_at(&self, key: &[u8], expire_at_ms: u64) -> Result<bool, BatchError> {
        if self.in_atomic()
            && let Some(word) = self.index().get(key, |r| r.expire_at_offset())?
        {
            self.save_undo_words(&[word])?;
        }
        Ok(self.index().set_expire_at(key, expire_at_ms)?)
    }

    /// The 8-byte word at `offset`, which must lie in the heap's chunks: a logged store (redo
    /// or undo) into the chunk table would change chunk kinds on the media behind the heap's
    /// DRAM copy of them.
    pub(crate) fn heap_word(&self, offset: u64) -> Result<&AtomicU64, IndexError> {
        self.pool()
            .region()
            .atomic_u64(offset)
            .filter(|_| self.index().heap().in_chunks(offset, 8))
            .ok_or_else(|| IndexError::Corrupted {
                what: format!("a store to {offset:#x}, outside the heap's chunks"),
            })
    }

    /// Rolls back one undo record (redo is done; called newest first, at open).
    pub(crate) fn apply_undo(&self, payload: &[u8]) -> Result<(), BatchError> {
        let mut undo = decode(payload)?;
        undo.reverse();
        for u in undo {
            match u {
                Undo::Key { key, record: 0 } => {
                    self.index().delete(&key)?;
                }
                // Makes `key` name `record` unless it already does; checks it is intact.
                Undo::Key { key, record } => self.index().replay_put(&key, record)?,
                Undo::Word { offset, value } => {
                    // Ordering: one failure-atomic store, persisted before the next undo; a
                    // crash before the log is checkpointed rolls back again (idempotent).
                    self.heap_word(offset)?.store(value, Ordering::Release);
                    self.pool().region().persist(offset, 8);
                }
            }
        }
        Ok(())
    }
}

/// Encodes undo entries: `u32 count`, then per entry `u8 1 | u32 key_len | key | u64 record`
/// or `u8 2 | u64 offset | u64 value`, little-endian.
fn encode(undo: &[Undo], out: &mut Vec<u8>) {
    out.extend_from_slice(&(undo.len() as u32).to_le_bytes());
    for u in undo {
        match u {
            Undo::Key { key, record } => {
                out.push(UNDO_KEY);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&record.to_le_bytes());
            }
            Undo::Word { offset, value } => {
                out.push(UNDO_WORD);
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
}

fn decode(p: &[u8]) -> Result<Vec<Undo>, BatchError> {
    let mut r = Reader::new(p, "undo record");
    let count = r.u32()? as usize;
    let mut undo = Vec::with_capacity(count.min(r.left() / 17));
    for _ in 0..count {
        undo.push(match r.u8()? {
            UNDO_KEY => {
                let len = r.u32()? as usize;
                Undo::Key {
                    key: r.bytes(len)?.to_vec(),
                    record: r.u64()?,
                }
            }
            UNDO_WORD => Undo::Word {
                offset: r.u64()?,
                value: r.u64()?,
            },
            other => return Err(r.unknown(other)),
        });
    }
    r.finish()?;
    Ok(undo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_encoding_round_trips_and_rejects_damage() {
        let undo = vec![
            Undo::Key {
                key: b"k\0".to_vec(),
                record: 0,
            },
            Undo::Word {
                offset: 4096,
                value: u64::MAX,
            },
            Undo::Key {
                key: vec![3; 200],
                record: 0x40_0000,
            },
        ];
        let mut buf = Vec::new();
        encode(&undo, &mut buf);
        assert_eq!(decode(&buf).unwrap(), undo);
        crate::engine::payload::assert_rejects_damage(&buf, decode);
    }
}
