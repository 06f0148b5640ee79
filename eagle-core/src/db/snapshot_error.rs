//! Errors of snapshots (`snapshot.rs`, `snapshot_file.rs`). Every variant about a file names it,
//! and a damaged file's error names the entry and the byte offset where reading stopped.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::error::DbError;

/// An error writing, reading or restoring a snapshot.
#[derive(Debug)]
pub enum SnapshotError {
    /// A file-system call failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file does not start with a snapshot header.
    NotASnapshot {
        /// The file.
        path: PathBuf,
    },
    /// The file was written by a newer EagleDB, in a format this build cannot read.
    FutureVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file fails validation: a checksum, a length, the trailer, bytes past its end.
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What, and where (entry number and byte offset).
        what: String,
    },
    /// A restore into a keyspace that has keys, without `replace`.
    NotEmpty {
        /// Keys in the keyspace.
        keys: u64,
    },
    /// A restore failed after it had begun writing: the keyspace holds part of the snapshot.
    Interrupted {
        /// Keys restored before the failure.
        restored: u64,
        /// Why it stopped.
        cause: Box<SnapshotError>,
    },
    /// The keyspace failed (a damaged record in the pool, a full pool, a write refused).
    Db(DbError),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            SnapshotError::NotASnapshot { path } => write!(
                f,
                "{}: not an EagleDB snapshot (no EAGLSNAP header)",
                path.display()
            ),
            SnapshotError::FutureVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{}: snapshot format version {found} is newer than this build reads ({supported}); \
                 upgrade EagleDB",
                path.display()
            ),
            SnapshotError::Corrupted { path, what } => {
                write!(f, "{}: snapshot is corrupted: {what}", path.display())
            }
            SnapshotError::NotEmpty { keys } => write!(
                f,
                "the target keyspace is not empty ({keys} keys); restoring would mix two data \
                 sets (replace them with the force option, or restore into a new pool)"
            ),
            SnapshotError::Interrupted { restored, cause } => write!(
                f,
                "restore stopped after {restored} keys, which stay in the keyspace (restore again \
                 with the force option to replace them): {cause}"
            ),
            SnapshotError::Db(DbError::OutOfMemory) => {
                f.write_str("the pool is full (restore into a larger pool)")
            }
            SnapshotError::Db(e) => {
                let text = e.to_string();
                f.write_str(text.strip_prefix("ERR ").unwrap_or(&text))
            }
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io { source, .. } => Some(source),
            SnapshotError::Interrupted { cause, .. } => Some(cause.as_ref()),
            SnapshotError::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DbError> for SnapshotError {
    fn from(e: DbError) -> Self {
        SnapshotError::Db(e)
    }
}
