//! Per-thread handles to an index's own epoch `Collector`.
//!
//! `Collector::register` is far too slow for every operation, so each thread keeps its handles in
//! a small thread-local list keyed by the collector, and prunes the handles of indexes that no
//! longer exist.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crossbeam_epoch::{Collector, Guard, LocalHandle};

thread_local! {
    static HANDLES: RefCell<Vec<(Weak<Collector>, LocalHandle)>> = const { RefCell::new(Vec::new()) };
}

/// Pins the calling thread in `collector`'s epoch.
pub fn pin(collector: &Arc<Collector>) -> Guard {
    HANDLES.with(|h| {
        let mut handles = h.borrow_mut();
        if let Some((_, handle)) = handles
            .iter()
            .find(|(c, _)| std::ptr::eq(c.as_ptr(), Arc::as_ptr(collector)))
        {
            return handle.pin();
        }
        handles.retain(|(c, _)| c.strong_count() > 0);
        let handle = collector.register();
        let guard = handle.pin();
        handles.push((Arc::downgrade(collector), handle));
        guard
    })
}
