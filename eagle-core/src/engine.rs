//! The engine: a pool, its heap and its index, opened and closed together.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::dash::{Dash, IndexError};
use crate::heap::{Heap, HeapError};
use crate::pool::{Pool, PoolError, PoolOptions};

/// An error opening or closing an engine.
#[derive(Debug)]
pub enum EngineError {
    /// From the pool layer.
    Pool(PoolError),
    /// From the heap.
    Heap(HeapError),
    /// From the index.
    Index(IndexError),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Pool(e) => e.fmt(f),
            EngineError::Heap(e) => e.fmt(f),
            EngineError::Index(e) => e.fmt(f),
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

/// An open pool with its index.
pub struct Engine {
    index: Dash,
    recovery_ns: u64,
}

impl Engine {
    /// Opens (or creates) the pool at `path` and its index, repairing after a crash.
    pub fn open(path: impl AsRef<Path>, opts: PoolOptions) -> Result<Engine, EngineError> {
        let started = Instant::now();
        let pool = Arc::new(Pool::open(path, opts)?);
        let heap = Arc::new(Heap::open(pool.clone())?);
        let index = Dash::open(heap)?;
        let recovery_ns = started.elapsed().as_nanos() as u64;
        if !pool.was_clean() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            pool.record_recovery(now, recovery_ns);
        }
        Ok(Engine { index, recovery_ns })
    }

    /// The index.
    pub fn index(&self) -> &Dash {
        &self.index
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        self.index.heap().pool()
    }

    /// Walks everything reachable and checks it against the heap's accounting (quiescent use).
    pub fn check(&self) -> crate::dash::CheckReport {
        self.index.check()
    }

    /// How long opening (and recovering) took.
    pub fn open_ns(&self) -> u64 {
        self.recovery_ns
    }

    /// Closes cleanly: the pool is marked clean once everything is durable.
    pub fn close(self) -> Result<(), EngineError> {
        let Engine { index, .. } = self;
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
