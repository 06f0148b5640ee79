//! The engine: a pool, its heap, its index and its write-ahead log, opened and closed together
//! (`core.rs`), and the logged multi-key batches (`batch.rs`).

mod batch;
mod core;

pub use batch::{BatchError, BatchOp};
pub use core::{Engine, EngineError, RecoveryMode};
