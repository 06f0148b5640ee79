//! The persistent heap: records, Dash segments and directories live here. See `allocator.rs` for
//! the crash-consistency argument.

mod allocator;
mod chunk_table;
mod classes;
mod error;
mod reserve;

pub use allocator::{Heap, HeapStats};
pub use chunk_table::{ChunkKind, Geometry};
pub use classes::{CHUNK, MAX_SMALL, SEGMENT_CLASS_SIZE};
pub use error::HeapError;
pub use reserve::ReserveScope;
pub(crate) use reserve::in_scope as in_reserve_scope;
