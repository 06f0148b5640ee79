//! Errors of the pool layer. Every variant names the path, so a message alone tells the operator
//! which file is affected and what is wrong with it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::pmem::PmemError;

/// An error opening, creating or closing a pool.
#[derive(Debug)]
pub enum PoolError {
    /// Mapping or flush setup failed.
    Pmem(PmemError),
    /// A file-system call failed.
    Io {
        /// The pool file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// No pool at the path and creation was not requested.
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file holds something that is not an EagleDB pool; it is left untouched.
    NotAPool {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// The file is shorter than its header says the pool is.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header (or the format) requires.
        expected: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// The pool was written by a newer EagleDB with a format this build cannot read.
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The header's crc32c does not match its contents.
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// A structure in the pool is inconsistent.
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Which structure, and how.
        what: String,
    },
    /// Another process has the pool open.
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// A requested pool size cannot be used.
    InvalidSize {
        /// The file.
        path: PathBuf,
        /// The size asked for.
        size: u64,
        /// Why not.
        why: String,
    },
    /// An earlier flush (msync) failed: what was written since is not known durable.
    FlushFailed {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Pmem(e) => e.fmt(f),
            PoolError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            PoolError::NotFound { path } => write!(f, "{}: no pool there", path.display()),
            PoolError::NotAPool { path, why } => {
                write!(f, "{}: not an EagleDB pool ({why})", path.display())
            }
            PoolError::Truncated {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{}: pool is truncated: the file has {actual} bytes, the pool needs {expected}",
                path.display()
            ),
            PoolError::FutureVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{}: pool format version {found} is newer than this build supports ({supported}); \
                 upgrade EagleDB",
                path.display()
            ),
            PoolError::ChecksumMismatch {
                path,
                stored,
                computed,
            } => write!(
                f,
                "{}: pool header is corrupted: checksum {stored:#010x} stored, {computed:#010x} computed",
                path.display()
            ),
            PoolError::Corrupted { path, what } => {
                write!(f, "{}: pool is corrupted: {what}", path.display())
            }
            PoolError::Locked { path } => {
                write!(f, "{}: pool is in use by another process", path.display())
            }
            PoolError::InvalidSize { path, size, why } => {
                write!(
                    f,
                    "{}: cannot use a pool of {size} bytes: {why}",
                    path.display()
                )
            }
            PoolError::FlushFailed { path } => write!(
                f,
                "{}: an earlier msync failed; writes since then are not known to be durable",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Pmem(e) => Some(e),
            PoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<PmemError> for PoolError {
    fn from(e: PmemError) -> Self {
        PoolError::Pmem(e)
    }
}
