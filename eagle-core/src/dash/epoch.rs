//! Per-thread handles to an index's own epoch `Collector`.
//!
//! `Collector::register` is far too slow for every operation, so each thread keeps its handles in
//! a small thread-local list keyed by the collector, and prunes the handles of indexes that no
//! longer exist. Pinning may run deferred frees, which persist (fence) and so may re-enter this
//! module (a crash harness's fence hook opens another index): the list is never borrowed across
//! a `pin` or the drop of a handle.
//!
//! Every lookup pins, so the handle it used last is remembered next to the list: the common case
//! (one index per thread, or the same one as last time) costs a compare, not a search of the
//! list and a reference count.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Weak};

use crossbeam_epoch::{Collector, Guard, LocalHandle};

type List = Vec<(Weak<Collector>, Rc<LocalHandle>)>;

struct Handles {
    /// The collector and handle of the last `pin` that found its handle in `list`. The handle
    /// lives in an `Rc` of `list`, and the entry stays in `list` while its collector lives (only
    /// dead collectors' entries are pruned, and pruning clears this first); the list's `Weak`
    /// keeps the collector's allocation, so its address is never reused by another collector
    /// while this names it.
    last: Cell<Option<(*const Collector, *const LocalHandle)>>,
    list: RefCell<List>,
}

thread_local! {
    static HANDLES: Handles = const {
        Handles {
            last: Cell::new(None),
            list: RefCell::new(Vec::new()),
        }
    };
}

/// Pins the calling thread in `collector`'s epoch. Only the outermost pin costs a full memory
/// fence (nested ones count), which makes the CPU finish every load before it before any load
/// after it: see `Dash::pinned`.
#[inline]
pub fn pin(collector: &Arc<Collector>) -> Guard {
    let last = HANDLES.with(|h| h.last.get());
    if let Some((c, handle)) = last
        && std::ptr::eq(c, Arc::as_ptr(collector))
    {
        // SAFETY: `last` names a handle held by this thread's list for the live `collector`
        // (the caller holds it): the entry is not pruned while the collector lives, and an
        // `Rc`'s contents do not move when the list does (see `Handles::last`).
        return unsafe { &*handle }.pin();
    }
    match handle(collector) {
        Some(handle) => {
            let guard = handle.pin();
            HANDLES.with(|h| {
                h.last
                    .set(Some((Arc::as_ptr(collector), Rc::as_ptr(&handle))))
            });
            guard
        }
        None => pin_new(collector),
    }
}

/// Whether the calling thread is pinned in `collector`'s epoch.
pub fn is_pinned(collector: &Arc<Collector>) -> bool {
    handle(collector).is_some_and(|h| h.is_pinned())
}

/// This thread's handle for `collector`, if it has one.
#[inline]
fn handle(collector: &Arc<Collector>) -> Option<Rc<LocalHandle>> {
    HANDLES.with(|h| {
        h.list
            .borrow()
            .iter()
            .find(|(c, _)| std::ptr::eq(c.as_ptr(), Arc::as_ptr(collector)))
            .map(|(_, handle)| handle.clone())
    })
}

/// [`pin`] on a thread that has no handle for `collector` yet: registers one.
#[cold]
fn pin_new(collector: &Arc<Collector>) -> Guard {
    // A Weak keeps its allocation, so a dead collector's address is never reused by a live one
    // while its entry exists: address equality above is identity.
    let dead: List = HANDLES.with(|h| {
        // The remembered handle may be among the pruned ones.
        h.last.set(None);
        let mut handles = h.list.borrow_mut();
        let (dead, live) = handles.drain(..).partition(|(c, _)| c.strong_count() == 0);
        *handles = live;
        dead
    });
    drop(dead);
    let handle = Rc::new(collector.register());
    let guard = handle.pin();
    HANDLES.with(|h| {
        h.list
            .borrow_mut()
            .push((Arc::downgrade(collector), handle))
    });
    guard
}
