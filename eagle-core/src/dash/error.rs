//! Errors of the index.

use std::fmt;

use crate::heap::HeapError;

/// An index error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// The heap could not serve an allocation (pool full) or reported damage.
    Heap(HeapError),
    /// A structure read from the pool is inconsistent.
    Corrupted {
        /// What, and where.
        what: String,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Heap(e) => e.fmt(f),
            IndexError::Corrupted { what } => write!(f, "index corrupted: {what}"),
        }
    }
}

impl std::error::Error for IndexError {}

impl From<HeapError> for IndexError {
    fn from(e: HeapError) -> Self {
        IndexError::Heap(e)
    }
}

pub(crate) fn corrupted(what: impl Into<String>) -> IndexError {
    IndexError::Corrupted { what: what.into() }
}
