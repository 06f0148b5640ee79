//! Per-thread handles to an index's own epoch `Collector`.
//!
//! `Collector::register` is far too slow for every operation, so each thread keeps its handles in
//! a small thread-local list keyed by the collector, and prunes the handles of indexes that no
//! longer exist. Pinning may run deferred frees, which persist (fence) and so may re-enter this
//! module (a crash harness's fence hook opens another index): the list is never borrowed across
//! a `pin` or the drop of a handle.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use crossbeam_epoch::{Collector, Guard, LocalHandle};

type Handles = Vec<(Weak<Collector>, Rc<LocalHandle>)>;

thread_local! {
    static HANDLES: RefCell<Handles> = const { RefCell::new(Vec::new()) };
}

/// Pins the calling thread in `collector`'s epoch.
#[inline]
pub fn pin(collector: &Arc<Collector>) -> Guard {
    match handle(collector) {
        Some(handle) => handle.pin(),
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
        h.borrow()
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
    let dead: Handles = HANDLES.with(|h| {
        let mut handles = h.borrow_mut();
        let (dead, live) = handles.drain(..).partition(|(c, _)| c.strong_count() == 0);
        *handles = live;
        dead
    });
    drop(dead);
    let handle = Rc::new(collector.register());
    let guard = handle.pin();
    HANDLES.with(|h| h.borrow_mut().push((Arc::downgrade(collector), handle)));
    guard
}
