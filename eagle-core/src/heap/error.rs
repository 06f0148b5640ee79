//! Errors of the heap.

use std::fmt;

/// An allocator error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeapError {
    /// No free space for the request.
    OutOfSpace {
        /// Bytes asked for.
        requested: u64,
        /// The open's sweep had not ended when the allocation began: chunks in use at open
        /// were still held back, so the sweep's end may cure this (`Dash::space_may_free_up`
        /// waits for it and tries again), however soon after the failure it ends.
        during_sweep: bool,
    },
    /// A free of something that is not an allocated block (a bug in the caller).
    BadFree {
        /// The offset freed.
        offset: u64,
        /// Why it is not a block.
        why: &'static str,
    },
    /// A reference found in the index that does not name a block (corruption).
    BadReference {
        /// The offset referenced.
        offset: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// The chunk table is damaged.
    Corrupted {
        /// What was found.
        what: String,
    },
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::OutOfSpace { requested, .. } => {
                write!(f, "out of pool space (allocating {requested} bytes)")
            }
            HeapError::BadFree { offset, why } => write!(f, "bad free at {offset:#x}: {why}"),
            HeapError::BadReference { offset, why } => {
                write!(f, "bad reference to {offset:#x}: {why}")
            }
            HeapError::Corrupted { what } => write!(f, "heap corrupted: {what}"),
        }
    }
}

impl std::error::Error for HeapError {}
