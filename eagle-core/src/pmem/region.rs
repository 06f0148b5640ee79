//! A mapped pool together with the persister for it, and bounds-checked access by offset.
//!
//! Everything above this module addresses the pool by 8-byte offsets from its base; this is where
//! an offset becomes an address, after a bounds (and, for atomics, alignment) check, so an offset
//! read from a corrupted pool yields an error, never a wild access.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use pmem_emulation::Simulator;

use super::PmemObject;

use super::{
    CpuFlushCaps, FLUSH_ENV, FlushMode, FlushSource, Mapping, Persister, PmemError, PoolKind,
};

/// A hook the power-failure simulator calls at every fence (see `pmem_emulation::Simulator`).
pub type FenceHook = Box<dyn FnMut(&Simulator, u64) + Send>;

/// A mapped pool and the means to make its bytes durable.
pub struct Region {
    // Field order matters: the persister (which holds the base address) drops before the mapping.
    persister: Persister,
    mapping: Mapping,
}

impl Region {
    /// Wraps a mapping with the flush mode `flush`, or, when `None`, the one named by
    /// `EAGLE_FLUSH`, or the best the CPU has. `Some(FlushMode::Simulated)` attaches a fresh
    /// power-failure simulator whose durable image is the mapping's current contents.
    pub fn new(mapping: Mapping, flush: Option<FlushMode>) -> Result<Region, PmemError> {
        Self::with_hook(mapping, flush, None)
    }

    /// As [`Region::new`], and installs `hook` on the simulator before anything is written.
    pub fn with_hook(
        mapping: Mapping,
        flush: Option<FlushMode>,
        hook: Option<FenceHook>,
    ) -> Result<Region, PmemError> {
        let caps = CpuFlushCaps::detect();
        let env = std::env::var(FLUSH_ENV).ok();
        let (mode, source) = FlushMode::resolve(flush, env.as_deref(), caps)?;
        let sim = (mode == FlushMode::Simulated).then(|| {
            // SAFETY: the mapping is page aligned, its length a multiple of the page size for files
            // we create (and of the device alignment for devdax), and it outlives the simulator:
            // the region drops the persister (the simulator's only owner besides clones handed to
            // tests, which must not use it after the region is gone) before the mapping.
            let sim = Arc::new(unsafe { Simulator::new(mapping.base(), mapping.len()) });
            if let Some(hook) = hook {
                sim.set_fence_hook(Some(hook));
            }
            sim
        });
        // SAFETY: the mapping lives as long as the region, which owns both; `resolve` checked the
        // mode against the CPU; `sim` is present exactly in simulated mode and observes this mapping.
        let persister = unsafe { Persister::new(mapping.base(), mapping.len(), mode, source, sim) };
        Ok(Region { persister, mapping })
    }

    /// The flush/fence primitives for this region.
    pub fn persister(&self) -> &Persister {
        &self.persister
    }

    /// The flush mode in use.
    pub fn flush_mode(&self) -> FlushMode {
        self.persister.mode()
    }

    /// Who chose the flush mode.
    pub fn flush_source(&self) -> FlushSource {
        self.persister.source()
    }

    /// The underlying mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// What backs the region.
    pub fn kind(&self) -> PoolKind {
        self.mapping.kind()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Whether the region is empty (never, for a mapped pool).
    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
    }

    /// Whether `offset..offset+len` lies inside the region.
    #[inline]
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.mapping.len() as u64)
    }

    /// Copies `out.len()` bytes at `offset` out of the region; `false` (and nothing copied) when
    /// the range is outside it.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> bool {
        if !self.contains(offset, out.len() as u64) {
            return false;
        }
        // SAFETY: the range is inside the mapping (checked above) and `out` is a distinct Rust
        // buffer. Concurrent writers to the same bytes are excluded by the callers' protocols
        // (records are immutable once published; headers are written before publication).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.mapping.base().add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        true
    }

    /// Copies `data` into the region at `offset` (not yet durable: flush and fence it).
    ///
    /// # Safety
    /// - No other thread may read or write `offset..offset+data.len()` concurrently, except
    ///   through a protocol that tolerates torn reads (optimistic readers re-validating a version).
    ///
    /// Panics if the range is outside the region (a caller bug).
    pub unsafe fn write(&self, offset: u64, data: &[u8]) {
        assert!(
            self.contains(offset, data.len() as u64),
            "write of {} bytes at {offset} outside a region of {} bytes",
            data.len(),
            self.len()
        );
        // SAFETY: in bounds (asserted above); exclusivity is the caller's obligation.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.mapping.base().add(offset as usize),
                data.len(),
            )
        };
    }

    /// Overwrites `len` bytes at `offset` with zeroes that the compiler may not elide (nothing
    /// reads them back: they erase deleted data), not yet durable: flush and fence them.
    ///
    /// # Safety
    /// - No other thread may read or write `offset..offset+len` concurrently.
    ///
    /// Panics if the range is outside the region (a caller bug).
    pub unsafe fn zero(&self, offset: u64, len: usize) {
        use zeroize::Zeroize;
        let p = self.ptr(offset, len as u64).unwrap_or_else(|| {
            panic!(
                "zeroing {len} bytes at {offset} outside a region of {} bytes",
                self.len()
            )
        });
        // SAFETY: in bounds (checked by `ptr`); exclusivity is the caller's obligation.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p, len) };
        bytes.zeroize();
    }

    /// The 8-byte word at `offset` as an atomic, or `None` if `offset` is out of range or not
    /// 8-byte aligned. An aligned 8-byte store is the unit the media writes failure-atomically.
    #[inline]
    pub fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || !self.contains(offset, 8) {
            return None;
        }
        // SAFETY: the word is inside the mapping, which lives as long as `self`, and is 8-byte
        // aligned (the mapping base is page aligned). Shared memory may be mutated by other
        // threads; AtomicU64 is made for exactly that.
        Some(unsafe { AtomicU64::from_ptr(self.mapping.base().add(offset as usize).cast()) })
    }

    /// A typed view of the object at `offset`, or `None` if it does not fit in the region or is
    /// misaligned for `T` (so an offset read from a corrupted pool cannot cause a wild access).
    #[inline]
    pub fn object<T: PmemObject>(&self, offset: u64) -> Option<&T> {
        let align = std::mem::align_of::<T>() as u64;
        if !offset.is_multiple_of(align) || !self.contains(offset, std::mem::size_of::<T>() as u64)
        {
            return None;
        }
        // SAFETY: in bounds and aligned (the mapping base is page aligned, and page alignment
        // exceeds every PmemObject's alignment); `T: PmemObject` accepts any bytes and only
        // allows shared mutation through atomics; the mapping outlives `&self`.
        Some(unsafe { &*self.mapping.base().add(offset as usize).cast::<T>() })
    }

    /// A raw pointer to `offset`, for bulk copies by the few modules that own a byte range
    /// exclusively (record writers). `None` when `offset..offset+len` is outside the region.
    #[inline]
    pub fn ptr(&self, offset: u64, len: u64) -> Option<*mut u8> {
        if !self.contains(offset, len) {
            return None;
        }
        // SAFETY: in bounds, so the result points into the live mapping.
        Some(unsafe { self.mapping.base().add(offset as usize) })
    }

    /// Asks the CPU to start loading the cache line at `offset`, so that several misses overlap
    /// (the sweep reads a record line per key). Only a hint: it never faults and changes nothing
    /// the program reads; an offset outside the pool is ignored.
    #[inline]
    pub fn prefetch(&self, offset: u64) {
        self.prefetch_lines(offset, 1);
    }

    /// [`prefetch`](Self::prefetch) of `lines` consecutive cache lines from `offset` (ignored
    /// unless all of them are inside the pool), with one bounds check for them all (a lookup's
    /// hot path: few instructions, so the CPU reaches the next operation's misses sooner).
    #[inline]
    pub fn prefetch_lines(&self, offset: u64, lines: u64) {
        #[cfg(target_arch = "x86_64")]
        if self.contains(offset, lines.saturating_mul(64)) {
            use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let p = self
                .mapping
                .base()
                .wrapping_add(offset as usize)
                .cast::<i8>();
            for line in 0..lines as usize {
                // SAFETY: SSE is part of x86_64's baseline, and a prefetch reads nothing the
                // program sees and never faults; every line is inside the mapping anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line)) };
            }
        }
    }

    /// See [`Persister::flush`].
    #[inline]
    pub fn flush(&self, offset: u64, len: usize) {
        self.persister.flush(offset, len)
    }

    /// See [`Persister::fence`].
    #[inline]
    pub fn fence(&self) {
        self.persister.fence()
    }

    /// See [`Persister::persist`].
    #[inline]
    pub fn persist(&self, offset: u64, len: usize) {
        self.persister.persist(offset, len)
    }
}
