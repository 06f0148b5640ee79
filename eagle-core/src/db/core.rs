//! The `Db` type: the engine, the key locks, and the lookups every command builds on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::clock::Clock;
use super::error::DbError;
use super::stripes::{Held, Stripes};
use crate::dash::{IndexStats, PutMode};
use crate::engine::Engine;
use crate::heap::{HeapStats, ReserveScope};
use crate::pool::PoolOptions;
use crate::record::RecordKind;
use crate::shard::StripedCounter;

/// The type of a key, as TYPE names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// A string.
    String,
    /// A hash.
    Hash,
}

impl KeyType {
    /// TYPE's reply.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Hash => "hash",
        }
    }

    pub(crate) fn of(kind: RecordKind) -> KeyType {
        match kind {
            RecordKind::String => KeyType::String,
            RecordKind::Hash => KeyType::Hash,
        }
    }
}

/// How to open a keyspace.
#[derive(Default)]
pub struct DbOptions {
    /// The pool's options.
    pub pool: PoolOptions,
    /// Where time comes from.
    pub clock: Clock,
    /// When the recovery sweep runs; `None`: `RecoveryMode::from_env()`.
    pub recovery: Option<crate::engine::RecoveryMode>,
}

/// An open atomic transaction (`Db::atomic`); dropping it ends it, then lets other writers in.
pub struct Transaction<'a> {
    _atomic: crate::engine::Atomic<'a>,
    _gate: Vec<parking_lot::RwLockWriteGuard<'a, ()>>,
}

/// A write's key locks, and its place at the writers' gate.
pub(super) struct WriteHeld<'a> {
    _keys: Held<'a>,
    _gate: Option<parking_lot::RwLockReadGuard<'a, ()>>,
}

/// Counts for INFO and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct DbStats {
    /// Keys (expired ones not yet removed included, as in Redis's DBSIZE).
    pub keys: u64,
    /// Keys with an expiry (Redis's `expires=`), expired ones not yet removed included.
    pub expires: u64,
    /// Average time to live of the keys with an expiry, in ms, estimated from the expiry
    /// sweep's samples as Redis does (`avg_ttl=`; 0 until a sample saw one).
    pub avg_ttl_ms: u64,
    /// Keys removed because they expired (lazily or by the sweep), since the open or the last
    /// [`Db::reset_stats`].
    pub expired_keys: u64,
    /// Live keys removed by eviction (`Db::evict`), since the open or the last
    /// [`Db::reset_stats`].
    pub evicted_keys: u64,
    /// Lookups by read commands that found their key (Redis's `keyspace_hits`).
    pub keyspace_hits: u64,
    /// Lookups by read commands that found no live key (Redis's `keyspace_misses`).
    pub keyspace_misses: u64,
    /// Heap accounting.
    pub heap: HeapStats,
    /// Index counts.
    pub index: IndexStats,
    /// Changes to a large hash's part made by appending fields in place, since the open.
    pub hash_part_appends: u64,
    /// Large-hash parts written anew (a change that is not only new fields, or a part with no
    /// room left), since the open.
    pub hash_part_writes: u64,
    /// Large-hash tables doubled without rewriting their parts (pools with shared parts),
    /// since the open.
    pub hash_table_doublings: u64,
    /// Bytes of the write-ahead log in use, and its capacity.
    pub wal_used: u64,
    /// The log's capacity.
    pub wal_capacity: u64,
}

/// A value read from the keyspace (copied out of the pool).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub kind: RecordKind,
    pub value: Vec<u8>,
    pub expire_at: u64,
}

/// The longest key a pool holds, and the most bytes a hash field and its value take with
/// their two 4-byte lengths: records and hash parts store those lengths in 4 bytes
/// (docs/format.md). Longer ones are refused with [`DbError::TooLong`].
pub const MAX_KEY_LEN: usize = u32::MAX as usize;

/// A Redis keyspace in a pool.
pub struct Db {
    pub(super) engine: Engine,
    stripes: Stripes,
    /// Writers hold it shared, an atomic transaction exclusively: no other thread writes while
    /// one is open (see `engine::tx`).
    writers: super::gate::Gate,
    pub(super) clock: Clock,
    /// Keys removed because they expired (lazily or by the sweep).
    pub(super) expired: AtomicU64,
    /// Live keys removed by eviction.
    pub(super) evicted: AtomicU64,
    /// The eviction policy's code (`EvictionPolicy::code`).
    pub(super) eviction_code: AtomicU8,
    /// Read lookups that found their key, and those that did not (striped: every read counts).
    hits: StripedCounter,
    misses: StripedCounter,
    /// Large-hash parts appended to in place, and parts written anew.
    pub(super) part_appends: StripedCounter,
    pub(super) part_writes: StripedCounter,
    pub(super) table_doublings: StripedCounter,
    pub(super) expiry_cursor: AtomicU64,
    /// The expiry sweep's estimate of the average TTL (ms).
    pub(super) avg_ttl: AtomicU64,
    stop: Arc<AtomicBool>,
    sweeper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Db {
    /// Opens (or creates) the keyspace in the pool at `path`, recovering as `Engine::open` does.
    pub fn open(path: impl AsRef<Path>, opts: DbOptions) -> Result<Db, crate::EngineError> {
        let mode = opts
            .recovery
            .unwrap_or_else(crate::engine::RecoveryMode::from_env);
        let engine = Engine::open_with(path, opts.pool, mode)?;
        Ok(Db {
            engine,
            stripes: Stripes::new(),
            writers: Default::default(),
            clock: opts.clock,
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            eviction_code: AtomicU8::new(0),
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            part_appends: StripedCounter::default(),
            part_writes: StripedCounter::default(),
            table_doublings: StripedCounter::default(),
            expiry_cursor: AtomicU64::new(0),
            avg_ttl: AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            sweeper: Mutex::new(None),
        })
    }

    /// Starts the background sweep of expired keys (Redis's active expiry); it holds only a
    /// weak reference and stops at [`close`](Self::close) or when the last `Arc` is dropped.
    pub fn start_active_expiry(self: &Arc<Self>) {
        let weak: Weak<Db> = Arc::downgrade(self);
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name("eagle-expire".into())
            .spawn(move || super::active_expire::run(weak, stop));
        if let Ok(h) = handle {
            *self.sweeper.lock() = Some(h);
        }
    }

    /// Closes cleanly (see `Engine::close`).
    pub fn close(self) -> Result<(), crate::EngineError> {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.sweeper.lock().take() {
            let _ = h.join();
        }
        self.engine.close()
    }

    /// Opens an atomic transaction on this thread (the server's EXEC): until the returned
    /// value is dropped, this thread's writes survive a crash all together or not at all (see
    /// `Engine::atomic`). It waits for the writes other threads have under way, and their
    /// later writes wait for it to end (reads go on, and may see it part done). Opened inside
    /// another transaction of this thread, it is part of that one.
    pub fn atomic(&self) -> Transaction<'_> {
        let gate = if self.engine.in_atomic() {
            Vec::new()
        } else {
            self.writers.exclusive()
        };
        Transaction {
            _atomic: self.engine.atomic(),
            _gate: gate,
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The time as this keyspace sees it (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Counts for INFO and metrics.
    pub fn stats(&self) -> DbStats {
        let index = self.engine.index().stats();
        DbStats {
            keys: index.len,
            expires: index.expires,
            avg_ttl_ms: self.avg_ttl.load(Ordering::Relaxed),
            expired_keys: self.expired.load(Ordering::Relaxed),
            evicted_keys: self.evicted.load(Ordering::Relaxed),
            keyspace_hits: self.hits.total(),
            keyspace_misses: self.misses.total(),
            hash_part_appends: self.part_appends.total(),
            hash_part_writes: self.part_writes.total(),
            hash_table_doublings: self.table_doublings.total(),
            heap: self.engine.index().heap().stats(),
            index,
            wal_used: self.engine.wal().used(),
            wal_capacity: self.engine.wal().capacity(),
        }
    }

    /// Zeroes the statistics counters (`expired_keys`, `evicted_keys`, `keyspace_hits`,
    /// `keyspace_misses`), as Redis's CONFIG RESETSTAT does. Counts made by commands running
    /// meanwhile may be kept or lost.
    pub fn reset_stats(&self) {
        self.expired.store(0, Ordering::Relaxed);
        self.evicted.store(0, Ordering::Relaxed);
        self.hits.reset();
        self.misses.reset();
    }

    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.engine.index().hash(key)
    }

    /// Shared locks on `keys`.
    pub(super) fn lock_read<'a>(&'a self, keys: impl IntoIterator<Item = &'a [u8]>) -> Held<'a> {
        self.stripes.read(keys.into_iter().map(|k| self.hash(k)))
    }

    /// Exclusive locks on `keys`; refused while the engine is not writable. Outside a
    /// transaction of this thread, waits first while another thread's is open.
    pub(super) fn lock_write<'a>(
        &'a self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<WriteHeld<'a>, DbError> {
        let gate = self.writer_gate();
        let mut too_long = false;
        let held = self.stripes.write(keys.into_iter().map(|k| {
            // A record stores its key's length in 4 bytes: a longer key is refused below,
            // unread (its bytes may span gigabytes).
            if k.len() > MAX_KEY_LEN {
                too_long = true;
                return 0;
            }
            self.hash(k)
        }));
        if too_long {
            return Err(DbError::TooLong);
        }
        if !self.engine.writable() {
            return Err(DbError::ReadOnly);
        }
        Ok(WriteHeld {
            _keys: held,
            _gate: gate,
        })
    }

    /// [`lock_write`](Self::lock_write) for a command that Redis accepts on a full server
    /// (not `denyoom`) and that rewrites a record or a part (HDEL, RENAME): until the guard
    /// drops, its allocations may also take the heap's reserve (`heap/reserve.rs`). (EXPIRE,
    /// PERSIST and GETEX need none: they store the expiry word in place.)
    pub(super) fn lock_write_when_full<'a>(
        &'a self,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(WriteHeld<'a>, ReserveScope), DbError> {
        Ok((self.lock_write(keys)?, ReserveScope::enter()))
    }

    /// The writers' gate, shared, unless this thread's own transaction holds it.
    fn writer_gate(&self) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        (!self.engine.in_atomic()).then(|| self.writers.shared(crate::engine::tx::this_thread()))
    }

    /// Every key lock, shared (a snapshot: writes wait, reads go on).
    pub(super) fn lock_read_all(&self) -> Held<'_> {
        self.stripes.read_all()
    }

    /// Every key lock (FLUSHALL).
    pub(super) fn lock_all(&self) -> Result<WriteHeld<'_>, DbError> {
        let gate = self.writer_gate();
        let held = self.stripes.write_all();
        if !self.engine.writable() {
            return Err(DbError::ReadOnly);
        }
        Ok(WriteHeld {
            _keys: held,
            _gate: gate,
        })
    }

    fn live(&self, expire_at: u64) -> bool {
        expire_at == 0 || expire_at > self.clock.now_ms()
    }

    /// The key's entry, copied out; `None` if absent or expired. Caller holds its lock.
    pub(super) fn load(&self, key: &[u8]) -> Result<Option<Entry>, DbError> {
        self.visit(key, |kind, expire_at, value| Entry {
            kind,
            value: value.to_vec(),
            expire_at,
        })
    }

    /// Calls `f(kind, expire_at, value)` on the key's record, its value borrowed from the pool;
    /// `None` if absent or expired. Caller holds the key's lock. `f` runs pinned (see
    /// [`Dash::get`](crate::dash::Dash::get)) and under that lock: it must not call back into
    /// the database or wait (see [`Db::get_with`]).
    pub(super) fn visit<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(RecordKind, u64, &[u8]) -> R,
    ) -> Result<Option<R>, DbError> {
        // Values are verified against their checksum as they are read (crc32c runs at several
        // GB/s): damage in the pool is an error, never a wrong value.
        let e = self.engine.index().get(key, |r| {
            if !r.verify() {
                return Err(r.offset());
            }
            let expire_at = r.expire_at_ms();
            Ok(self
                .live(expire_at)
                .then(|| f(r.kind(), expire_at, r.value())))
        })?;
        match e {
            None => Ok(None),
            Some(Err(at)) => Err(DbError::Corrupted {
                what: format!("the record of this key (at {at:#x}) fails its checksum"),
            }),
            Some(Ok(r)) => Ok(r),
        }
    }

    /// The key's entry if it is of `kind`; `WrongType` if it is of another.
    pub(super) fn load_as(&self, key: &[u8], kind: RecordKind) -> Result<Option<Entry>, DbError> {
        of_kind(self.load(key)?, kind)
    }

    /// Counts a read command's lookup of one key: a keyspace hit if it found the key (whatever
    /// its type), a miss if not. Only read lookups count, as in Redis (`lookupKeyRead`; writes
    /// look keys up with `lookupKeyWrite`, which does not count).
    pub(super) fn count_read(&self, found: bool) {
        if found {
            self.hits.add(1);
        } else {
            self.misses.add(1);
        }
    }

    /// [`load`](Self::load) for a read command: counted as a keyspace hit or miss.
    pub(super) fn load_read(&self, key: &[u8]) -> Result<Option<Entry>, DbError> {
        let e = self.load(key)?;
        self.count_read(e.is_some());
        Ok(e)
    }

    /// [`load_as`](Self::load_as) for a read command: counted (a key of another type is a hit,
    /// then `WrongType`, as in Redis).
    pub(super) fn load_read_as(
        &self,
        key: &[u8],
        kind: RecordKind,
    ) -> Result<Option<Entry>, DbError> {
        of_kind(self.load_read(key)?, kind)
    }

    /// [`peek`](Self::peek) for a read command: counted as a keyspace hit or miss.
    pub(super) fn peek_read(&self, key: &[u8]) -> Result<Option<(RecordKind, u64, u64)>, DbError> {
        let p = self.peek(key)?;
        self.count_read(p.is_some());
        Ok(p)
    }

    /// Type, expiry and value length without copying the value; `None` if absent or expired.
    pub(super) fn peek(&self, key: &[u8]) -> Result<Option<(RecordKind, u64, u64)>, DbError> {
        let e = self.engine.index().get(key, |r| {
            (r.kind(), r.expire_at_ms(), r.value().len() as u64)
        })?;
        Ok(e.filter(|e| self.live(e.1)))
    }

    /// Writes `key` (replacing whatever it held), durable on return. Caller holds its lock.
    pub(super) fn store(
        &self,
        key: &[u8],
        kind: RecordKind,
        value: &[u8],
        expire_at: u64,
    ) -> Result<(), DbError> {
        self.engine.save_undo_keys([key])?;
        self.engine
            .index()
            .put(key, value, kind, expire_at, PutMode::Upsert)?;
        Ok(())
    }

    /// Deletes `key` if present and not expired (an expired one is removed too, uncounted).
    /// Caller holds its lock.
    pub(super) fn remove(&self, key: &[u8]) -> Result<bool, DbError> {
        let expire_at = match self.engine.index().get(key, |r| r.expire_at_ms())? {
            None => return Ok(false),
            Some(at) => at,
        };
        self.engine.save_undo_keys([key])?;
        self.engine.index().delete(key)?;
        if self.live(expire_at) {
            Ok(true)
        } else {
            self.expired.fetch_add(1, Ordering::Relaxed);
            Ok(false)
        }
    }

    /// Removes `key` if it has expired (under its lock); true if it did.
    pub(super) fn remove_if_expired(&self, key: &[u8]) -> Result<bool, DbError> {
        let _held = self.lock_write([key])?;
        let at = self.engine.index().get(key, |r| r.expire_at_ms())?;
        match at {
            Some(at) if !self.live(at) => {
                self.engine.index().delete(key)?;
                self.expired.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// `e` if it is of `kind` (or absent); `WrongType` if it is of another.
fn of_kind(e: Option<Entry>, kind: RecordKind) -> Result<Option<Entry>, DbError> {
    match e {
        Some(e) if e.kind != kind => Err(DbError::WrongType),
        other => Ok(other),
    }
}
