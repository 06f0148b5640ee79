//! Errors of the keyspace. `Display` is Redis 7's reply text, which clients match on.

use std::fmt;

use crate::dash::IndexError;
use crate::engine::{BatchError, EngineError};

/// A keyspace error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The key holds another type.
    WrongType,
    /// A string (or argument) that must be an integer is not, or is out of range.
    NotInteger,
    /// INCR and friends would overflow.
    Overflow,
    /// A string (or argument) that must be a float is not.
    NotFloat,
    /// INCRBYFLOAT would produce NaN or an infinity.
    NanOrInfinity,
    /// HINCRBY on a field that is not an integer.
    HashNotInteger,
    /// HINCRBYFLOAT on a field that is not a float.
    HashNotFloat,
    /// RENAME of a missing key.
    NoSuchKey,
    /// COPY onto itself.
    SameObject,
    /// SETRANGE/APPEND past the longest string allowed (512 MiB, or the caller's limit).
    StringTooLong,
    /// A negative SETRANGE offset.
    OffsetOutOfRange,
    /// A count beyond what the command allows (HRANDFIELD's repeats).
    ValueOutOfRange,
    /// A key, or a hash field and its value, longer than the pool's format holds
    /// ([`MAX_KEY_LEN`](super::MAX_KEY_LEN) bytes; for a hash field, with its value and 8
    /// bytes of lengths). Nothing was written.
    TooLong,
    /// The pool is full.
    OutOfMemory,
    /// An atomic batch (this one or an earlier one) failed half-applied; writes wait for a
    /// reopen.
    ReadOnly,
    /// A batch, or a transaction's undo records, too large for the write-ahead log.
    BatchTooLarge,
    /// A batch the engine refused before logging anything (it names a key again after its
    /// put): a bug in the caller, not damage. Nothing was written.
    InvalidBatch {
        /// What the engine said.
        what: String,
    },
    /// Persistent data failed validation.
    Corrupted {
        /// What, and where.
        what: String,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            }
            DbError::NotInteger => "ERR value is not an integer or out of range",
            DbError::Overflow => "ERR increment or decrement would overflow",
            DbError::NotFloat => "ERR value is not a valid float",
            DbError::NanOrInfinity => "ERR increment would produce NaN or Infinity",
            DbError::HashNotInteger => "ERR hash value is not an integer",
            DbError::HashNotFloat => "ERR hash value is not a float",
            DbError::NoSuchKey => "ERR no such key",
            DbError::SameObject => "ERR source and destination objects are the same",
            DbError::StringTooLong => {
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
            }
            DbError::OffsetOutOfRange => "ERR offset is out of range",
            DbError::ValueOutOfRange => "ERR value is out of range",
            DbError::TooLong => {
                "ERR key, or hash field and value, longer than 4294967295 bytes (the pool's limit)"
            }
            DbError::OutOfMemory => "OOM command not allowed when used memory > 'maxmemory'.",
            DbError::ReadOnly => {
                "ERR an atomic batch could not be completed; restart the server to finish it"
            }
            DbError::BatchTooLarge => {
                "ERR too many keys in one atomic command or transaction for the write-ahead log"
            }
            DbError::InvalidBatch { what } => {
                return write!(f, "ERR internal error, nothing was written: {what}");
            }
            DbError::Corrupted { what } => return write!(f, "ERR pool corrupted: {what}"),
        })
    }
}

impl std::error::Error for DbError {}

impl From<IndexError> for DbError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Heap(crate::heap::HeapError::OutOfSpace { .. }) => DbError::OutOfMemory,
            other => DbError::Corrupted {
                what: other.to_string(),
            },
        }
    }
}

impl From<BatchError> for DbError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Index(e) => e.into(),
            BatchError::Poisoned | BatchError::HalfApplied(_) | BatchError::Unfinished => {
                DbError::ReadOnly
            }
            BatchError::Wal(_) => DbError::BatchTooLarge,
            BatchError::Corrupted { what } => DbError::Corrupted { what },
            // A caller's error, which no command makes.
            e @ BatchError::KeyAfterPut { .. } => DbError::InvalidBatch {
                what: e.to_string(),
            },
        }
    }
}

impl From<EngineError> for DbError {
    fn from(e: EngineError) -> Self {
        DbError::Corrupted {
            what: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_naming_a_key_after_its_put_is_a_callers_error_not_damage() {
        let e = DbError::from(BatchError::KeyAfterPut { key: b"k".to_vec() });
        assert!(matches!(e, DbError::InvalidBatch { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("ERR internal error, nothing was written: "),
            "{text}"
        );
        assert!(!text.contains("corrupted"), "{text}");
    }
}
