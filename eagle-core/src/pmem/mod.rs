//! The persistent-memory region: mapping a device-dax, fsdax or plain file, and the cache-line
//! flush/fence primitives that make stores durable.

mod cpu;
mod durability;
mod error;
mod flush_mode;
mod mapping;
mod object;
mod persister;
mod region;

pub use cpu::CpuFlushCaps;
pub use durability::Durability;
pub use error::PmemError;
pub use flush_mode::{FLUSH_ENV, FlushMode, FlushSource};
pub use mapping::{Mapping, PoolKind};
pub use object::PmemObject;
pub use persister::{CACHE_LINE, Persister};
pub use region::{FenceHook, Region};
