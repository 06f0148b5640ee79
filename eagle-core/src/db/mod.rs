//! The keyspace: Redis strings, hashes and expiry over the engine, as an embedded API (`Db`).
//! Semantics and error texts are Redis 7's; every write is durable when its call returns.
//!
//! `core.rs` (the type, key locks, lookups), `strings.rs`, `keys.rs`, `expire.rs`,
//! `hash.rs` (with `hash_store.rs` and `hash_codec.rs`, the stored forms), `glob.rs` (Redis's pattern matching),
//! `active_expire.rs` (the background sweep of expired keys), `evict.rs` (eviction from a full pool), `snapshot.rs` (dumps and restores,
//! with `snapshot_file.rs`, the file format, and `snapshot_error.rs`).

mod active_expire;
mod clock;
mod core;
mod error;
mod evict;
mod expire;
mod gate;
mod glob;
mod hash;
mod hash_codec;
mod hash_store;
mod keys;
mod num;
mod snapshot;
mod snapshot_error;
mod snapshot_file;
#[cfg(test)]
mod snapshot_file_tests;
mod strings;
mod stripes;

pub use clock::Clock;
pub use core::{Db, DbOptions, DbStats, KeyType, MAX_KEY_LEN, Transaction};
pub use error::DbError;
pub use evict::{EVICTION_ROUNDS, EvictionPolicy};
pub use expire::{ExpireCondition, Ttl};
pub use gate::Gate;
pub use glob::glob_match;
pub use hash::MAX_RANDOM_REPEATS;
pub use num::{format_f64, parse_f64, parse_i64};
pub use snapshot::{RestoreOptions, RestoreStats, SnapshotInfo, SnapshotStats, verify_snapshot};
pub use snapshot_error::SnapshotError;
pub use snapshot_file::{SNAPSHOT_VERSION, SnapshotHeader};
pub use strings::{GetExExpiry, SetCondition, SetExpiry, SetOptions, SetOutcome};
