//! The pool file format: a versioned, checksummed header, the region layout (metadata, WAL,
//! heap), the clean-shutdown marker, and opening/creating a pool crash-safely.
//! The bytes are documented in `docs/format.md`.

mod error;
mod header;
mod layout;
mod open;
mod state;

pub use error::PoolError;
pub use header::{
    FORMAT_VERSION, HEADER_BLOCK, Header, INCOMPAT_APPEND_PARTS, INCOMPAT_FINE_CLASSES,
    INCOMPAT_OWNER_TAGS, INCOMPAT_SHARED_PARTS, MAGIC,
};
pub use layout::{Extent, Layout, MIN_POOL_SIZE};
pub use open::{Pool, PoolOptions};
pub use state::ShutdownState;
