//! EagleDB's storage engine: a persistent-memory region, the pool format, and (in later modules) the
//! Dash index, write-ahead log, allocator and keyspace built on it.
//!
//! Module roots only declare and re-export; `unsafe` is confined to [`pmem`] (mapping and cache-line
//! flushes) and the few typed accessors built on it.

pub mod fault;
pub mod pmem;
pub mod pool;

pub use pmem::{FlushMode, PmemError, PoolKind};
pub use pool::{Pool, PoolError, PoolOptions};
