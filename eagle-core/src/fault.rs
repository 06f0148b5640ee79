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
    /// An insert of a new key publishes its slot without flushing the record (only the slot
    /// is flushed before the fence).
    SkipRecordFlushOnInsert,
    /// An upsert swaps the slot to its new record without flushing the record first.
    SkipRecordFlushOnUpsert,
    /// An insert unlocks its buckets and returns without fencing the alloc bit that publishes
    /// it (acknowledged before it is durable).
    SkipFenceAfterPublish,
    /// A WAL append is acknowledged without being flushed and fenced.
    SkipWalPersist,
    /// A group put publishes its keys without first fencing their records and slots.
    SkipGroupFenceBeforePublish,
    /// A group put unlocks its buckets and returns without fencing the publications.
    SkipGroupFenceAfterPublish,
    /// A multi-key batch is applied without being logged first (so a crash can split it).
    SkipBatchLog,
    /// A batch's log record is written without first fencing the records it names.
    SkipFenceBeforeBatchLog,
    /// A batch returns (releasing its keys) as soon as it is applied, before the log's head has
    /// passed its record: a redo after a crash can then undo a later write to its keys.
    SkipWaitForLogHead,
    /// An atomic transaction writes without logging undo records first (so a crash keeps
    /// part of it).
    SkipUndoLog,
    /// A large hash's in-place append stores the part's header word without first fencing
    /// the pairs it covers.
    SkipFenceBeforeAppend,
    /// A large hash's in-place append returns without fencing the header word that publishes
    /// it (acknowledged before it is durable).
    SkipFenceAfterAppend,
    /// A large hash's rewritten part returns without fencing the word that publishes it.
    SkipFenceAfterPartPublish,
    /// A segment split clears the moved records from the old segment without first fencing
    /// their copies in the new one (so a crash can keep neither copy).
    SkipFenceBeforeSplitUnpublish,
    /// A deletion clears its slot's alloc bit without flushing it: the fence after it makes
    /// nothing durable, so a crash can bring the key back, naming a record already freed.
    SkipUnlinkFlush,
    /// Reads of a large hash take every field of a part's block, not only those that hash to
    /// the part (so a block left half split, as a crash could leave it in a pool written by a
    /// build before splits were logged, shows the other entry's fields).
    UnfilteredParts,
    /// Not a bug: a batch's second operation fails (as a full pool would make it), leaving the
    /// batch half applied, so a test can follow what the engine does then.
    FailBatchMidway,
    /// Not a bug: a run of puts (`Dash::put_run`, `Dash::publish_run`) fails after its first
    /// group of two or more, as a full pool would make it, with that group durable; so a test
    /// can follow a batch left half applied in groups.
    FailRunAfterGroup,
    /// Not a bug: a batch stops after its log record is durable, before it applies anything,
    /// until the test calls [`release_paused`]; so a test can hold an older batch open while
    /// newer ones run.
    PauseAfterBatchLog,
    /// Not a bug: a large hash's writer stops after it published its rewritten parts, before
    /// it retires the old blocks, until the test calls [`release_paused`]; so a test can run
    /// the background sweep in between.
    PauseBeforePartRetire,
    /// Not a bug: the heap's last sweep step (`Heap::finish_sweep`) stops after settling each
    /// chunk that was in use at open, until the test calls [`release_paused`]; so a test can
    /// free blocks between two chunks.
    PauseBetweenSettledChunks,
}

#[cfg(feature = "fault-injection")]
static PAUSE: (parking_lot::Mutex<Pause>, parking_lot::Condvar) = (
    parking_lot::Mutex::new(Pause::Idle),
    parking_lot::Condvar::new(),
);

#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pause {
    Idle,
    Paused,
    Released,
}

/// Called at a pause point: with `fault` (one of the `Pause...` faults) armed on this thread,
/// waits there until [`release_paused`].
pub(crate) fn pause_point(fault: Fault) {
    #[cfg(not(feature = "fault-injection"))]
    let _ = fault;
    #[cfg(feature = "fault-injection")]
    if armed(fault) {
        let mut p = PAUSE.0.lock();
        *p = Pause::Paused;
        PAUSE.1.notify_all();
        while *p != Pause::Released {
            PAUSE.1.wait(&mut p);
        }
        *p = Pause::Idle;
    }
}

/// Waits until a thread stops at the pause point; false if none did within `timeout`.
#[cfg(feature = "fault-injection")]
pub fn wait_paused(timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut p = PAUSE.0.lock();
    while *p != Pause::Paused {
        if PAUSE.1.wait_until(&mut p, deadline).timed_out() {
            return *p == Pause::Paused;
        }
    }
    true
}

/// Lets the thread stopped at the pause point go on.
#[cfg(feature = "fault-injection")]
pub fn release_paused() {
    let mut p = PAUSE.0.lock();
    if *p == Pause::Paused {
        *p = Pause::Released;
        PAUSE.1.notify_all();
    }
}

#[cfg(feature = "fault-injection")]
static SWEEPS_HELD: (parking_lot::Mutex<bool>, parking_lot::Condvar) =
    (parking_lot::Mutex::new(false), parking_lot::Condvar::new());

/// Holds every recovery sweep that starts from now on at its start (`true`) until called with
/// `false`: process-wide, so a test that uses it runs alone in its binary.
#[cfg(feature = "fault-injection")]
pub fn hold_sweeps(held: bool) {
    *SWEEPS_HELD.0.lock() = held;
    SWEEPS_HELD.1.notify_all();
}

/// Called where a recovery sweep starts: waits while [`hold_sweeps`] holds sweeps.
pub(crate) fn sweep_gate() {
    #[cfg(feature = "fault-injection")]
    {
        let mut held = SWEEPS_HELD.0.lock();
        while *held {
            SWEEPS_HELD.1.wait(&mut held);
        }
    }
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

/// Runs `f` with `fault` armed on the calling thread, and disarms it when `f` returns (or
/// panics).
#[cfg(feature = "fault-injection")]
pub fn with<R>(fault: Fault, f: impl FnOnce() -> R) -> R {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            arm(None);
        }
    }
    arm(Some(fault));
    let _disarm = Disarm;
    f()
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
