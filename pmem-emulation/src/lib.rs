//! Power-failure simulator for a memory-mapped persistent-memory (PMEM) region.
//!
//! This is a leaf crate: it knows nothing about keys or values. The engine calls
//! [`Simulator::flush`] where it would execute `clwb` and [`Simulator::fence`] where it would
//! execute `sfence`; the simulator keeps a shadow *durable image* at 64-byte cache-line
//! ([`LINE`]) granularity and can produce *crash images*: what the media would hold if power
//! failed now.
//!
//! # Model
//!
//! * **Stores** go to the region itself (the simulator never intercepts them). A line whose
//!   current bytes differ from its durable bytes is *dirty*.
//! * **Flush** captures the current bytes of every line it covers as a *pending* snapshot of the
//!   calling thread. Stores made after the flush are not part of that snapshot.
//! * **Fence** makes the calling thread's pending snapshots durable (the latest snapshot of a line
//!   wins). Like `sfence`, it orders only the issuing thread's flushes: pending snapshots are kept
//!   per [`std::thread::ThreadId`], and another thread's flushes stay pending.
//! * **Write-backs of one line reach the media in flush order**, whichever threads flushed: a
//!   snapshot taken before a newer snapshot of the same line became durable can no longer land
//!   (a fence skips it, crash images do not offer it). On x86 the home agent serialises the
//!   transactions of one address, so a line cannot go back to older bytes once newer ones are
//!   durable; without this rule thread A's unfenced flush of a freed block could overwrite,
//!   at A's next fence, what thread B has since written there, flushed and fenced. Fences are numbered
//!   from 1; a hook ([`Simulator::set_fence_hook`]) runs at each fence *before* it takes effect,
//!   so tests can take a crash image at the moment fence `N` is issued.
//! * **Crash images** ([`Eviction`]) decide what each not-durable line holds after the failure:
//!   - [`Eviction::None`]: only what was flushed and fenced;
//!   - [`Eviction::All`]: the whole cache was written back (current bytes everywhere);
//!   - [`Eviction::Random`]: every dirty or pending line independently holds its durable bytes,
//!     one of its pending snapshots, or its current bytes (whole lines);
//!   - [`Eviction::Strict`]: like `Random` per aligned 8-byte word, so lines tear at the only
//!     failure-atomic granularity x86 PMEM guarantees.
//!
//! # Limitations
//!
//! Real hardware (and emulators such as QEMU/TCG) may evict a dirty line to the media at *any*
//! moment, not only when asked; `Random`/`Strict` model that by letting every unfenced line land
//! in any of the states it could have been written back in. They choose among the durable bytes,
//! the flushed snapshots and the current bytes only; intermediate store states that were never
//! flushed are not enumerated.
//!
//! The simulator reads the region with relaxed 8-byte atomic loads while the engine may write it
//! with plain stores from other threads. That is formally a data race in Rust's memory model; in
//! practice an aligned 8-byte load cannot tear on the supported targets, so the simulator sees
//! each word either old or new. Engines can store through atomics to avoid the issue entirely.
//!
//! # Example
//!
//! ```
//! use pmem_emulation::{Eviction, Simulator, LINE};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! #[repr(align(64))]
//! struct Line([AtomicU64; 8]);
//! let region = [Line(Default::default()), Line(Default::default())];
//! // SAFETY: `region` is 64-byte aligned, 128 bytes long and outlives `sim`.
//! let sim = unsafe { Simulator::new(region.as_ptr().cast(), 2 * LINE) };
//!
//! region[1].0[0].store(7, Ordering::Relaxed);
//! assert_eq!(sim.crash_image(&Eviction::None)[LINE], 0); // not flushed: lost
//! sim.flush(LINE, 8);
//! sim.fence();
//! assert_eq!(sim.crash_image(&Eviction::None)[LINE..LINE + 8], 7u64.to_ne_bytes());
//! ```

mod eviction;
mod rng;
mod simulator;

pub use eviction::Eviction;
/// Also the crash harnesses' workload generator (reproducible from a seed).
pub use rng::SplitMix64;
pub use simulator::{FenceHook, ImageWriter, LINE, Simulator};
