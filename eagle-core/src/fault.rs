//! Test-only fault knobs that remove one flush or reorder one publication, so the crash harnesses
//! can prove they catch such a bug. Compiled in only with the `fault-injection` feature, and even
//! then inert until a test arms a fault on its own thread.

/// A deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pool creation publishes the magic without first persisting the rest of the header.
    SkipHeaderBodyPersist,
    /// An insert publishes its slot's alloc bit without first fencing the record and slot.
    SkipFenceBeforePublish,
    /// A WAL append is acknowledged without being flushed and fenced.
    SkipWalPersist,
    /// A multi-key batch is applied without being logged first (so a crash can split it).
    SkipBatchLog,
    /// A batch's log record is written without first fencing the records it names.
    SkipFenceBeforeBatchLog,
    /// A batch returns (releasing its keys) as soon as it is applied, before the log's head has
    /// passed its record: a redo after a crash can then undo a later write to its keys.
    SkipWaitForLogHead,
}

#[cfg(feature = "fault-injection")]
thread_local! {
    static ARMED: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

/// Arms `fault` (or disarms, with `None`) for the calling thread.
#[cfg(feature = "fault-injection")]
pub fn arm(fault: Option<Fault>) {
    ARMED.with(|a| a.set(fault));
}

/// Whether `fault` is armed on the calling thread. Always false without the feature, so the
/// check compiles away.
#[inline(always)]
pub(crate) fn armed(fault: Fault) -> bool {
    #[cfg(feature = "fault-injection")]
    {
        ARMED.with(|a| a.get() == Some(fault))
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = fault;
        false
    }
}
