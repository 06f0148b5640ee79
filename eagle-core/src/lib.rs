//! EagleDB's storage engine: a persistent-memory region, the pool format, and (in later modules) the
//! Dash index, write-ahead log, allocator and keyspace built on it.
//!
//! Module roots only declare and re-export; `unsafe` is confined to [`pmem`] (mapping and cache-line
//! flushes), the few typed accessors built on it, and the CRC instruction in `checksum`.

mod checksum;
pub mod dash;
pub mod db;
pub mod engine;
pub mod fault;
pub mod hashtab;
pub mod heap;
pub mod pmem;
pub mod pool;
pub mod record;
pub mod resp;
mod shard;
pub mod wal;

pub use db::{Db, DbError, DbOptions, SnapshotError};
pub use engine::{Atomic, Engine, EngineError};
pub use pmem::{FlushMode, PmemError, PoolKind};
pub use pool::{Pool, PoolError, PoolOptions};
