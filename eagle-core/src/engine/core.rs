//! The engine: a pool, its heap, its index and its log, opened and closed together.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::batch::BatchError;
use crate::dash::{Dash, IndexError};
use crate::heap::{Heap, HeapError};
use crate::pool::{Pool, PoolError, PoolOptions};
use crate::wal::{Wal, WalError};

/// An error opening or closing an engine.
#[derive(Debug)]
pub enum EngineError {
    /// From the pool layer.
    Pool(PoolError),
    /// From the heap.
    Heap(HeapError),
    /// From the index.
    Index(IndexError),
    /// From the write-ahead log.
    Wal(WalError),
    /// Redoing a logged batch failed.
    Batch(BatchError),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Pool(e) => e.fmt(f),
            EngineError::Heap(e) => e.fmt(f),
            EngineError::Index(e) => e.fmt(f),
            EngineError::Wal(e) => e.fmt(f),
            EngineError::Batch(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<PoolError> for EngineError {
    fn from(e: PoolError) -> Self {
        EngineError::Pool(e)
    }
}
impl From<HeapError> for EngineError {
    fn from(e: HeapError) -> Self {
        EngineError::Heap(e)
    }
}
impl From<IndexError> for EngineError {
    fn from(e: IndexError) -> Self {
        EngineError::Index(e)
    }
}
impl From<WalError> for EngineError {
    fn from(e: WalError) -> Self {
        EngineError::Wal(e)
    }
}
impl From<BatchError> for EngineError {
    fn from(e: BatchError) -> Self {
        EngineError::Batch(e)
    }
}

/// When the recovery sweep runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Inside `open`: the first request waits for the whole sweep.
    Foreground,
    /// On a thread of its own (the default): `open` returns once the log is redone, and
    /// operations repair the segments they touch first (Dash's instant recovery).
    Background,
}

impl RecoveryMode {
    /// The mode `EAGLE_RECOVERY` names (`foreground` or `background`), else the default,
    /// background.
    pub fn from_env() -> RecoveryMode {
        match std::env::var("EAGLE_RECOVERY").as_deref() {
            Ok("foreground") => RecoveryMode::Foreground,
            _ => RecoveryMode::Background,
        }
    }
}

/// An open pool with its index. Dropping it without [`close`](Engine::close) is the same as a
/// crash (the background recovery, if still running, is stopped first).
pub struct Engine {
    index: Arc<Dash>,
    pub(super) wal: Arc<Wal>,
    /// Set when a logged batch could not be applied whole: writes are refused until a reopen
    /// redoes it (see `Engine::writable`).
    pub(super) batch_failed: std::sync::atomic::AtomicBool,
    replayed: usize,
    rolled_back: usize,
    /// The open atomic transaction, if any (`tx.rs`).
    pub(super) tx: super::tx::TxState,
    recovery: Option<std::thread::JoinHandle<()>>,
    open_ns: u64,
}

impl Engine {
    /// Opens (or creates) the pool at `path` and its index, and recovers: repair after a crash,
    /// the heap sweep, counting keys (`Dash::run_recovery`), before returning.
    pub fn open(path: impl AsRef<Path>, opts: PoolOptions) -> Result<Engine, EngineError> {
        Self::open_with(path, opts, RecoveryMode::from_env())
    }

    /// Opens with the recovery sweep in the given mode.
    pub fn open_with(
        path: impl AsRef<Path>,
        opts: PoolOptions,
        mode: RecoveryMode,
    ) -> Result<Engine, EngineError> {
        let started = Instant::now();
        let pool = Arc::new(Pool::open(path, opts)?);
        let heap = Arc::new(Heap::open(pool.clone())?);
        let (wal, entries) = Wal::open(pool)?;
        let wal = Arc::new(wal);
        let index = Arc::new(Dash::open(heap)?);
        let mut engine = Engine {
            index,
            wal,
            batch_failed: false.into(),
            replayed: 0,
            rolled_back: 0,
            tx: Default::default(),
            recovery: None,
            open_ns: 0,
        };
        // Redo before the sweep: the logged batches name records that nothing else reaches yet.
        (engine.replayed, engine.rolled_back) = engine.replay(entries)?;
        // Background mode: the first request is served at once (see docs/recovery.md).
        // After the index's recovery, the log's free space is scrubbed (`Wal::scrub`) unless
        // `Wal::open` did it already (after a crash); `close` joins the thread. Records
        // checkpointed later are zeroed in memory only: what a power failure keeps of them, the
        // next open's scrub erases.
        let (index, wal) = (engine.index.clone(), engine.wal.clone());
        let scrubbed = !engine.pool().was_clean();
        let recover = move || {
            index.run_recovery();
            if !scrubbed {
                wal.scrub(|| {
                    index
                        .recovery
                        .cancel
                        .load(std::sync::atomic::Ordering::Relaxed)
                });
            }
        };
        if mode == RecoveryMode::Background {
            let (index, wal) = (engine.index.clone(), engine.wal.clone());
            match std::thread::Builder::new()
                .name("eagle-recovery".into())
                .spawn(recover)
            {
                Ok(handle) => engine.recovery = Some(handle),
                // No thread to be had: recover before returning instead.
                Err(_) => {
                    index.run_recovery();
                    wal.scrub(|| false);
                }
            }
        } else {
            recover();
        }
        engine.open_ns = started.elapsed().as_nanos() as u64;
        Ok(engine)
    }

    /// Logged batches redone by this open.
    pub fn replayed_batches(&self) -> usize {
        self.replayed
    }

    /// Undo records applied by this open: more than 0 if a crash interrupted an atomic
    /// transaction, which was rolled back.
    pub fn rolled_back_undo_records(&self) -> usize {
        self.rolled_back
    }

    /// Whether writes may proceed: false once a logged batch failed half-applied (only a
    /// reopen, which redoes it, can complete it; a write to one of its keys meanwhile would be
    /// overwritten by that redo).
    pub fn writable(&self) -> bool {
        !self.batch_failed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The write-ahead log.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The index.
    pub fn index(&self) -> &Dash {
        &self.index
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        self.index.heap().pool()
    }

    /// Walks everything reachable and checks it against the heap's accounting (quiescent use;
    /// waits for the background recovery).
    pub fn check(&self) -> crate::dash::CheckReport {
        self.index.check()
    }

    /// How long opening took (until requests could be served).
    pub fn open_ns(&self) -> u64 {
        self.open_ns
    }

    /// Closes cleanly: waits for the background recovery, then marks the pool clean once
    /// everything is durable. If recovery failed, the pool is left as after a crash.
    pub fn close(mut self) -> Result<(), EngineError> {
        if let Some(handle) = self.recovery.take() {
            let _ = handle.join();
        }
        self.index.wait_recovered()?;
        if !self.writable() {
            // A logged batch (or a transaction) is half applied: the next open must redo or
            // roll it back, and recount what the stored counts cannot know (a rolled-back
            // expiry word, say). Left as after a crash, which makes it do both.
            return Err(EngineError::Batch(BatchError::Poisoned));
        }
        let index = self.index.clone();
        drop(self); // its Drop has nothing left to join; drops the log's pool reference
        let Ok(index) = Arc::try_unwrap(index) else {
            unreachable!("the engine holds the only reference once recovery has joined");
        };
        let heap = index.into_heap();
        let pool = match Arc::try_unwrap(heap) {
            Ok(heap) => heap.into_pool(),
            Err(_) => unreachable!("the index is the heap's only owner"),
        };
        match Arc::try_unwrap(pool) {
            Ok(pool) => pool.close()?,
            Err(_) => unreachable!("the heap is the pool's only owner"),
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(handle) = self.recovery.take() {
            self.index
                .recovery
                .cancel
                .store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// For unit tests: an engine on a new pool of `size` bytes (flush mode none) in a file under
/// the temporary directory, unlinked at once (the mapping keeps it until the engine drops).
/// Returned once the open's background sweep has ended: a sweep visiting a segment holds its
/// bucket locks, and a group that meets one held closes early, so a test counting what a group
/// took would depend on the sweep's timing (a CI run saw it).
#[cfg(test)]
pub(crate) fn temp_engine(name: &str, size: u64) -> Engine {
    let path = std::env::temp_dir().join(format!("eagle-{name}-{}.pool", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let opts = PoolOptions {
        size,
        flush: Some(crate::pmem::FlushMode::None),
        ..PoolOptions::default()
    };
    let engine = Engine::open(&path, opts).expect("open a temporary pool");
    let _ = std::fs::remove_file(&path);
    engine
        .index()
        .wait_recovered()
        .expect("the sweep of a new pool");
    engine
}

/// For unit tests: [`temp_engine`] holding `n` string keys `key:0`, `key:1`, ... (value `v`),
/// checked clean.
#[cfg(test)]
pub(crate) fn temp_engine_with_keys(name: &str, size: u64, n: u32) -> Engine {
    let engine = temp_engine(name, size);
    for i in 0..n {
        let key = format!("key:{i}");
        let index = engine.index();
        let kind = crate::record::RecordKind::String;
        index
            .put(key.as_bytes(), b"v", kind, 0, crate::dash::PutMode::Insert)
            .unwrap();
    }
    let report = engine.check();
    assert!(report.is_clean(), "{report:?}");
    engine
}
