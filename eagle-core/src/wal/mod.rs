//! The write-ahead log: a circular redo log in the pool's WAL region, for every update that is
//! not a single 8-byte store. See `log.rs` for its crash argument and `record.rs` for the bytes.

mod log;
mod record;

pub use log::{HEAD_WORD, Lsn, Wal, WalEntry, WalError, WalStats};
