//! Dash: extendible hashing for persistent memory (Lu et al., VLDB 2020), as a type stack:
//! bucket (`bucket.rs`) → segment (`segment.rs`) → directory (`directory.rs`) → the index
//! (`index.rs`: open and lookups; `write.rs`: inserts and deletes; `group.rs`: a pipeline's
//! puts under two fences; `run.rs`: runs of them; `split.rs`; `repair.rs`:
//! recovery and the heap sweep; `scan.rs`; `prefetch.rs`: for operations known ahead). Layouts
//! are drawn in `docs/format.md`.

mod bucket;
mod check;
mod deferral;
mod directory;
mod epoch;
mod error;
mod group;
mod hints;
mod index;
mod prefetch;
mod prepared;
mod repair;
mod room;
mod run;
mod scan;
mod segment;
mod split;
mod stall;
mod sweep;
mod version_lock;
mod write;

pub use bucket::{Bucket, SLOTS, Slot};
pub use check::CheckReport;
pub use error::IndexError;
pub use group::MAX_GROUP;
pub use index::{Dash, IndexStats, Pinned};
pub use run::RunDone;
pub use segment::{BUCKETS, STASH, Segment, bucket_index};
pub use stall::{set_stall_limit, stall_limit};
pub use write::{PutMode, PutOutcome};
