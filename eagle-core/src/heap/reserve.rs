//! The heap's reserve: a few free chunks that ordinary allocations leave alone, for what must
//! not fail for lack of space on a full pool. The commands Redis accepts on a full server
//! (none is `denyoom`) that rewrite a record or a hash part into a new block before the old one
//! is freed (copy on write, for crash consistency): HDEL and RENAME, which need a block for a
//! moment even when they shrink the data. And a logged batch's operations (`engine/batch.rs`):
//! the batch made its new keys' index room before it was logged (`dash/room.rs`), but another
//! thread's insert may take a counted slot meanwhile, and the put must then split although the
//! batch can no longer back out.
//!
//! A thread running such a command holds a [`ReserveScope`]; its allocations may take the
//! reserved chunks. Once they are taken, the command fails as any write does
//! (`OutOfSpace`): the reserve makes these commands work on a full pool in practice, it does
//! not promise they always will. The reserve is a DRAM policy only: nothing about it is on the
//! media, and it refills as chunks become free again.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    /// Whether this thread's allocations may take the reserve (inside a `ReserveScope`).
    static IN_SCOPE: Cell<bool> = const { Cell::new(false) };
}

/// Free chunks held back from ordinary allocations in a heap of `chunks` chunks: one in 32,
/// at least 1 and at most 64 (16 MiB).
pub(crate) fn reserved_chunks(chunks: u32) -> u32 {
    (chunks / 32).clamp(1, 64)
}

/// Whether this thread is inside a [`ReserveScope`].
pub(crate) fn in_scope() -> bool {
    IN_SCOPE.with(Cell::get)
}

/// While it lives, this thread's heap allocations may take the reserved chunks. Hold it only
/// around what the module documentation names: a delete or a rewrite to the same or a smaller
/// size (the reserve comes back as its frees land), or a logged batch that can no longer back
/// out.
pub struct ReserveScope {
    was: bool,
    /// Tied to the thread whose flag it set.
    _not_send: PhantomData<*const ()>,
}

impl ReserveScope {
    /// Enters the scope (scopes nest).
    pub fn enter() -> ReserveScope {
        ReserveScope {
            was: IN_SCOPE.with(|s| s.replace(true)),
            _not_send: PhantomData,
        }
    }
}

impl Drop for ReserveScope {
    fn drop(&mut self) {
        IN_SCOPE.with(|s| s.set(self.was));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore_the_outer_state() {
        assert!(!in_scope());
        {
            let _outer = ReserveScope::enter();
            assert!(in_scope());
            {
                let _inner = ReserveScope::enter();
                assert!(in_scope());
            }
            assert!(in_scope(), "leaving the inner scope keeps the outer one");
        }
        assert!(!in_scope());
    }

    #[test]
    fn the_reserve_is_a_thirty_second_of_the_heap_within_bounds() {
        assert_eq!(reserved_chunks(4), 1);
        assert_eq!(reserved_chunks(320), 10);
        assert_eq!(reserved_chunks(1 << 20), 64);
    }
}
