//! Typed views of persistent objects: a `&T` into the mapping, after bounds and alignment checks.

/// A type that may be viewed in place in the mapping.
///
/// # Safety
/// Implementors must guarantee that:
/// - every bit pattern is a valid value (the bytes come from a file that may be corrupted);
/// - every field that may change while shared is an atomic (or inside one), so that `&T` to memory
///   written concurrently by other threads is sound;
/// - the type has no padding whose contents matter and no `Drop`.
pub unsafe trait PmemObject: Sized {}

// SAFETY: atomics accept every bit pattern and are made for shared mutation.
unsafe impl PmemObject for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl PmemObject for std::sync::atomic::AtomicU32 {}
// SAFETY: as above.
unsafe impl PmemObject for std::sync::atomic::AtomicU8 {}
// SAFETY: an array of valid PmemObjects is one.
unsafe impl<T: PmemObject, const N: usize> PmemObject for [T; N] {}
