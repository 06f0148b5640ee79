//! Crash-injection harnesses for EagleDB. The harnesses themselves are the tests in `tests/`; this
//! library holds what they share: producing crash images at every fence of a workload run under
//! the power-failure simulator, checking each one, and the one-line summaries scripts read.

mod fence_images;
mod kv_model;
mod scratch;
pub mod server;

pub use fence_images::{
    ACK_IMAGE, CrashImage, FENCE_IMAGE, FenceImages, Report, standard_policies,
};
pub use kv_model::{KvModel, KvOp};
pub use scratch::Scratch;

/// The power-failure simulator under an engine opened with `PoolOptions::simulated`.
///
/// Panics if the engine is not simulated (a harness bug).
pub fn simulator_of(e: &eagle_core::Engine) -> std::sync::Arc<pmem_emulation::Simulator> {
    e.pool()
        .region()
        .persister()
        .simulator()
        .cloned()
        .expect("the engine runs under the simulator")
}

/// Options of a small pool (16 MiB) on a plain file, without flushes: for tests that follow
/// what the engine does after a failure it was made to have (not what a power cut keeps).
pub fn small_unflushed() -> eagle_core::DbOptions {
    eagle_core::DbOptions {
        pool: eagle_core::PoolOptions {
            size: 16 << 20,
            flush: Some(eagle_core::pmem::FlushMode::None),
            ..eagle_core::PoolOptions::default()
        },
        ..eagle_core::DbOptions::default()
    }
}

/// Whether the harnesses run their long mode (`EAGLE_CRASH_LONG` set).
pub fn long_mode() -> bool {
    std::env::var_os("EAGLE_CRASH_LONG").is_some()
}

/// How many workload seeds a long-mode harness runs: `EAGLE_CRASH_SEEDS`, else `default`.
pub fn long_seeds(default: u64) -> u64 {
    std::env::var("EAGLE_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
