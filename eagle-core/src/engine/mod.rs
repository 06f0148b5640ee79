//! The engine: a pool, its heap, its index and its write-ahead log, opened and closed together
//! (`core.rs`), the logged multi-key batches (`batch.rs`) and atomic transactions (`tx.rs`).

mod batch;
mod core;
mod payload;
pub(crate) mod tx;

pub use batch::{BatchError, BatchOp};
pub use core::{Engine, EngineError, RecoveryMode};
#[cfg(test)]
pub(crate) use core::{temp_engine, temp_engine_with_keys};
pub use tx::Atomic;
