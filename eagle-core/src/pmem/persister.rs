//! `flush`, `fence` and `persist` over one mapped region, dispatched on the flush mode.
//!
//! The dispatch is one predictable branch on a field that never changes after open; the benchmark
//! `benches/persist_loop.rs` measures it against raw inline assembly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, compiler_fence};

use pmem_emulation::Simulator;

use super::{FlushMode, FlushSource};

/// Cache-line size the engine lays its persistent structures out for.
pub const CACHE_LINE: usize = 64;

/// Makes stores to one mapped region durable.
pub struct Persister {
    mode: FlushMode,
    source: FlushSource,
    base: *mut u8,
    len: usize,
    /// Stride of the flush loop: the smallest data-cache line of the CPU (64 on x86-64).
    stride: usize,
    page: usize,
    sim: Option<Arc<Simulator>>,
    msync_failed: AtomicBool,
}

// SAFETY: the raw base pointer refers to a shared mapping that the owning `Region` keeps alive for
// the persister's whole life; the persister itself only reads it for address arithmetic and hands
// addresses to flush instructions or msync, which are safe to issue from any thread.
unsafe impl Send for Persister {}
// SAFETY: as for `Send`; all mutable state (`msync_failed`) is atomic, the simulator is Sync.
unsafe impl Sync for Persister {}

impl Persister {
    /// Creates a persister for `base..base+len`.
    ///
    /// # Safety
    /// - `base..base+len` must be a mapping that stays valid for as long as the persister lives.
    /// - `mode` must be executable on this CPU (see [`FlushMode::supported_by`]).
    /// - `sim` must be `Some` exactly when `mode` is [`FlushMode::Simulated`], and the simulator
    ///   must observe this same region.
    pub(crate) unsafe fn new(
        base: *mut u8,
        len: usize,
        mode: FlushMode,
        source: FlushSource,
        sim: Option<Arc<Simulator>>,
    ) -> Persister {
        debug_assert_eq!(sim.is_some(), mode == FlushMode::Simulated);
        Persister {
            mode,
            source,
            base,
            len,
            stride: data_cache_line(),
            page: page_size(),
            sim,
            msync_failed: AtomicBool::new(false),
        }
    }

    /// The unit a flush works in: a flush of any byte flushes the whole aligned unit holding it
    /// (a cache line; a page under msync). A caller may rely on it only to skip flushing what
    /// another flush of the same unit already covers.
    pub fn granule(&self) -> usize {
        match self.mode {
            FlushMode::Msync => self.page,
            // The simulator's unit is its cache line.
            FlushMode::Simulated => CACHE_LINE,
            _ => self.stride,
        }
    }

    /// The flush mode in use.
    pub fn mode(&self) -> FlushMode {
        self.mode
    }

    /// Who chose the mode (option, environment or auto-detection).
    pub fn source(&self) -> FlushSource {
        self.source
    }

    /// The simulator observing this region, in [`FlushMode::Simulated`].
    pub fn simulator(&self) -> Option<&Arc<Simulator>> {
        self.sim.as_ref()
    }

    /// Whether an `msync` has failed since the region was opened. After such a failure the data
    /// written since is not known to be durable; the engine must stop acknowledging writes.
    pub fn has_failed(&self) -> bool {
        self.msync_failed.load(Ordering::Relaxed)
    }

    /// Starts writing back the cache lines overlapping `offset..offset+len` of the region. They are
    /// durable only after the next [`fence`](Self::fence) of this thread.
    ///
    /// Panics if the range is outside the region (a caller bug, never data-dependent).
    #[inline]
    pub fn flush(&self, offset: u64, len: usize) {
        let end = offset.checked_add(len as u64);
        assert!(
            end.is_some_and(|e| e <= self.len as u64),
            "flush of {len} bytes at {offset} outside a region of {} bytes",
            self.len
        );
        if len == 0 {
            return;
        }
        let start = offset as usize;
        match self.mode {
            FlushMode::Clwb | FlushMode::Clflushopt | FlushMode::Clflush => {
                self.flush_lines_x86(start, len)
            }
            FlushMode::DcCvap | FlushMode::DcCvac => self.flush_lines_arm(start, len),
            FlushMode::Msync => self.msync(start, len),
            FlushMode::None => {}
            FlushMode::Simulated => {
                if let Some(sim) = &self.sim {
                    sim.flush(start, len);
                }
            }
        }
    }

    /// Waits until every line this thread flushed is durable, and orders later stores after them.
    #[inline]
    pub fn fence(&self) {
        match self.mode {
            FlushMode::Clwb | FlushMode::Clflushopt | FlushMode::None => sfence(),
            // clflush is ordered with respect to stores and other clflushes: a compiler barrier
            // keeps the compiler from moving later stores above it.
            FlushMode::Clflush | FlushMode::Msync => compiler_fence(Ordering::SeqCst),
            FlushMode::DcCvap | FlushMode::DcCvac => dsb_ish(),
            FlushMode::Simulated => {
                if let Some(sim) = &self.sim {
                    sim.fence();
                }
            }
        }
    }

    /// `flush` then `fence`: on return the range is durable.
    #[inline]
    pub fn persist(&self, offset: u64, len: usize) {
        self.flush(offset, len);
        self.fence();
    }

    #[inline]
    fn flush_lines_x86(&self, start: usize, len: usize) {
        let first = start & !(CACHE_LINE - 1);
        let end = start + len;
        let mut at = first;
        while at < end {
            // SAFETY: `at` lies in `base..base+len` (checked in `flush`, rounded down to a line
            // start, which is still inside the page-aligned mapping), so it is a mapped address.
            let p = unsafe { self.base.add(at) };
            match self.mode {
                FlushMode::Clwb => clwb(p),
                FlushMode::Clflushopt => clflushopt(p),
                _ => clflush(p),
            }
            at += CACHE_LINE;
        }
    }

    #[inline]
    fn flush_lines_arm(&self, start: usize, len: usize) {
        let first = start & !(self.stride - 1);
        let end = start + len;
        let mut at = first;
        while at < end {
            // SAFETY: as in `flush_lines_x86`.
            let p = unsafe { self.base.add(at) };
            if self.mode == FlushMode::DcCvap {
                dc_cvap(p)
            } else {
                dc_cvac(p)
            }
            at += self.stride;
        }
    }

    #[cold]
    fn msync(&self, start: usize, len: usize) {
        let first = start & !(self.page - 1);
        let span = start + len - first;
        // SAFETY: `first` is page aligned and `first..first+span` lies inside the mapping
        // (checked by `flush`); msync only reads the page tables of this process.
        let rc = unsafe { libc::msync(self.base.add(first).cast(), span, libc::MS_SYNC) };
        if rc != 0 {
            // An msync error means the kernel could not write the pages: nothing written since
            // the last success is known durable. Record it; the engine refuses further writes.
            self.msync_failed.store(true, Ordering::Relaxed);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

#[cfg(target_arch = "aarch64")]
fn data_cache_line() -> usize {
    let ctr: u64;
    // SAFETY: Linux lets user space read CTR_EL0 (it traps and emulates it where the hardware
    // does not allow it); the read has no side effects.
    unsafe {
        core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags))
    };
    4usize << ((ctr >> 16) & 0xf)
}

#[cfg(not(target_arch = "aarch64"))]
fn data_cache_line() -> usize {
    CACHE_LINE
}

// The instruction wrappers. Each is only reached in a mode that `FlushMode::resolve` checked the
// CPU supports, and each takes an address inside the mapping. They deliberately omit `nomem`: the
// asm then counts as reading and writing memory, so the compiler cannot sink earlier stores below
// the flush or hoist later stores above the fence.

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn clwb(p: *const u8) {
    // SAFETY: clwb writes back a line without faulting semantics beyond a normal load of `p`,
    // which is mapped; the mode was checked against CPUID before this persister was built.
    unsafe { core::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags)) }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn clflushopt(p: *const u8) {
    // SAFETY: as for clwb.
    unsafe { core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags)) }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn clflush(p: *const u8) {
    // SAFETY: as for clwb; clflush exists on every x86-64 CPU with SSE2.
    unsafe { core::arch::asm!("clflush [{0}]", in(reg) p, options(nostack, preserves_flags)) }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sfence() {
    // SAFETY: sfence has no operands and is part of SSE, baseline on x86-64.
    unsafe { core::arch::asm!("sfence", options(nostack, preserves_flags)) }
}

#[cfg(not(target_arch = "x86_64"))]
fn clwb(_: *const u8) {}
#[cfg(not(target_arch = "x86_64"))]
fn clflushopt(_: *const u8) {}
#[cfg(not(target_arch = "x86_64"))]
fn clflush(_: *const u8) {}
#[cfg(not(target_arch = "x86_64"))]
fn sfence() {
    std::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn dc_cvap(p: *const u8) {
    // DC CVAP written as its system-instruction encoding (op1=3, CRn=7, CRm=12, op2=1) so that
    // assemblers without ARMv8.2 enabled accept it.
    // SAFETY: reached only where the CPU reports DPB; `p` is mapped.
    unsafe {
        core::arch::asm!("sys #3, c7, c12, #1, {0}", in(reg) p, options(nostack, preserves_flags))
    }
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn dc_cvac(p: *const u8) {
    // SAFETY: dc cvac is ARMv8.0; `p` is mapped.
    unsafe { core::arch::asm!("dc cvac, {0}", in(reg) p, options(nostack, preserves_flags)) }
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn dsb_ish() {
    // SAFETY: a barrier with no operands.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) }
}

#[cfg(not(target_arch = "aarch64"))]
fn dc_cvap(_: *const u8) {}
#[cfg(not(target_arch = "aarch64"))]
fn dc_cvac(_: *const u8) {}
#[cfg(not(target_arch = "aarch64"))]
fn dsb_ish() {
    std::sync::atomic::fence(Ordering::SeqCst);
}
