//! Errors of the persistent-memory layer.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::FlushMode;

/// An error mapping a region or choosing how to flush it.
#[derive(Debug)]
pub enum PmemError {
    /// A system call on `path` failed.
    Io {
        /// The file or device.
        path: PathBuf,
        /// What was being done, e.g. "mmap".
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// `require_dax` was set but the path is not on a DAX device or file system.
    DaxRequired {
        /// The file.
        path: PathBuf,
        /// Why it is not DAX (e.g. the MAP_SYNC error).
        reason: String,
    },
    /// A device-dax character device whose sysfs attributes could not be read or make no sense.
    DevDax {
        /// The device.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The requested flush mode cannot run on this CPU.
    UnsupportedFlushMode {
        /// The mode asked for.
        mode: FlushMode,
    },
    /// A flush mode given by name (environment or configuration) is not one we know.
    InvalidFlushMode {
        /// Where the name came from (e.g. `EAGLE_FLUSH`).
        source_name: &'static str,
        /// The parse error.
        message: String,
    },
    /// A mapping request that cannot be satisfied (zero length, size beyond the address space...).
    InvalidLength {
        /// The file or device.
        path: PathBuf,
        /// The length asked for.
        len: u64,
        /// Why it is refused.
        why: &'static str,
    },
}

impl fmt::Display for PmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmemError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            PmemError::DaxRequired { path, reason } => write!(
                f,
                "{}: not a DAX device or file system ({reason}), and require_dax is set",
                path.display()
            ),
            PmemError::DevDax { path, what } => {
                write!(f, "{}: device-dax: {what}", path.display())
            }
            PmemError::UnsupportedFlushMode { mode } => {
                write!(f, "flush mode '{mode}' is not supported by this CPU")
            }
            PmemError::InvalidFlushMode {
                source_name,
                message,
            } => write!(f, "{source_name}: {message}"),
            PmemError::InvalidLength { path, len, why } => {
                write!(f, "{}: cannot map {len} bytes: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for PmemError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PmemError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
