//! Power failures at every fence of a Dash workload with segment splits and directory
//! doublings: each crash image, recovered, holds exactly the acknowledged writes (the one in
//! flight wholly or not at all), and `check` finds no corruption and no leak. Some images are
//! recovered under the simulator too, and crashed again at every fence of their recovery.
//!
//! The same workload runs with its puts in groups (`put_run`) too.
//!
//! `EAGLE_CRASH_LONG=1` runs a longer workload with every policy at every fence.

use std::path::Path;
use std::sync::Arc;

use crash_tests::{
    ACK_IMAGE, CrashImage, FENCE_IMAGE, FenceImages, KvModel, KvOp, Report, Scratch,
    standard_policies,
};
use eagle_core::dash::{IndexStats, MAX_GROUP, PutMode};
use eagle_core::fault::{self, Fault};
use eagle_core::pmem::FlushMode;
use eagle_core::record::RecordKind;
use eagle_core::{Engine, EngineError, PoolError, PoolOptions};
use parking_lot::Mutex;
use pmem_emulation::Eviction;

const POOL: u64 = 3 << 20;

/// How crash images are opened: copy-on-write, so the image file stays as it was.
fn private() -> PoolOptions {
    PoolOptions {
        create: false,
        private: true,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    }
}

/// The workload: inserts that split segments and double the directory, then upserts, deletes
/// and more inserts.
fn workload(inserts: u64) -> Vec<KvOp> {
    let key = |i: u64| format!("key-{i:06}").into_bytes();
    let val = |i: u64, generation: u8| vec![generation; 8 + (i % 40) as usize];
    let mut ops: Vec<KvOp> = (0..inserts).map(|i| KvOp::Put(key(i), val(i, 1))).collect();
    ops.extend(
        (0..inserts)
            .step_by(7)
            .map(|i| KvOp::Put(key(i), val(i + 3, 2))),
    );
    ops.extend((0..inserts).step_by(5).map(|i| KvOp::Delete(key(i))));
    ops.extend((inserts..inserts + inserts / 5).map(|i| KvOp::Put(key(i), val(i, 3))));
    ops
}

/// Recovers the image in the pool file `path` (copy-on-write) and checks it against `model`.
fn verify_image(path: &Path, model: &KvModel) -> Result<(), String> {
    match Engine::open(path, private()) {
        Err(EngineError::Pool(PoolError::NotFound { .. })) if model.acked.is_empty() => Ok(()),
        Err(e) => Err(format!("recovery failed: {e}")),
        Ok(e) => {
            let verdict = model.verify(&e);
            drop(e);
            verdict
        }
    }
}

/// Recovers `image` under the simulator, checking a crash image at every fence of the
/// recovery itself (a second power failure).
fn crash_during_recovery(
    scratch: &Arc<Scratch>,
    image: &[u8],
    model: &KvModel,
    seed: u64,
) -> Report {
    let path = scratch.write("recovering.pool", image);
    let m = model.clone();
    let policies = vec![Eviction::None, Eviction::Strict { seed }];
    let (hook, images) =
        FenceImages::hook(scratch.path("second.pool"), policies, move |_, _, img| {
            verify_image(img.path, &m)
        });
    let opts = PoolOptions {
        create: false,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let mut report = images.report();
    match Engine::open(&path, opts) {
        Ok(e) => {
            // Recovery may run on a background thread: its fences (and the images taken at
            // them) come after open returns.
            if let Err(err) = e.index().wait_recovered() {
                report
                    .violations
                    .push(format!("recovery under the simulator failed: {err}"));
            }
            report.merge(images.report());
            if let Err(v) = model.verify(&e) {
                report
                    .violations
                    .push(format!("after recovery under the simulator: {v}"));
            }
        }
        Err(EngineError::Pool(PoolError::NotFound { .. })) if model.acked.is_empty() => {}
        Err(e) => report
            .violations
            .push(format!("recovery under the simulator failed: {e}")),
    }
    report
}

/// How many operations from the start of `ops` go in one group: consecutive puts of distinct
/// keys, at most `MAX_GROUP`.
fn group_len(ops: &[KvOp]) -> usize {
    let mut n = 0;
    while n < ops.len().min(MAX_GROUP)
        && matches!(ops[n], KvOp::Put(..))
        && !ops[..n].iter().any(|op| op.key() == ops[n].key())
    {
        n += 1;
    }
    n.max(1)
}

/// Puts `ops` (puts of distinct keys) through `put_run`, in groups.
fn put_as_groups(e: &Engine, ops: &[KvOp]) {
    let pairs: Vec<(&[u8], &[u8], u64)> = ops
        .iter()
        .map(|op| match op {
            KvOp::Put(k, v) => (&k[..], &v[..], 0),
            KvOp::Delete(_) => unreachable!("a group holds puts"),
        })
        .collect();
    let done = e.index().put_run(&pairs);
    done.result.expect("group put");
    assert_eq!(done.applied, pairs.len());
}

/// Runs `ops` with a crash image at every fence, and one of only what was fenced (a power
/// failure as the operation returns) after every `ack_every`-th operation. With `grouped`,
/// runs of puts go through `put_run` (`group_len`), each run in flight as a whole.
fn run(
    name: &str,
    ops: &[KvOp],
    grouped: bool,
    all_policies: bool,
    recovery_every: u64,
    ack_every: usize,
) -> (Report, IndexStats) {
    let scratch = Arc::new(Scratch::new(name));
    let model = Arc::new(Mutex::new(KvModel::default()));
    let second = Arc::new(Mutex::new(Report::default()));
    let (sc, m, sec) = (scratch.clone(), model.clone(), second.clone());
    let mut n = 0u64;
    let check = move |fence: u64, _: &Eviction, image: &CrashImage| {
        let model = m.lock(); // held while checking: the workload waits in its fence anyway
        n += 1;
        let verdict = verify_image(image.path, &model);
        if recovery_every > 0 && n.is_multiple_of(recovery_every) {
            sec.lock()
                .merge(crash_during_recovery(&sc, image.bytes, &model, fence));
        }
        verdict
    };
    // Default: one image per fence, rotating through the policies; long mode: every policy at
    // every fence.
    let image = scratch.path("image.pool");
    let (hook, images) = if all_policies {
        FenceImages::hook(image, standard_policies(4), check)
    } else {
        FenceImages::hook_rotating(image, standard_policies(4), check)
    };
    let live = scratch.path("live.pool");
    let opts = PoolOptions {
        size: POOL,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let e = Engine::open(&live, opts).expect("open the live pool");
    let sim = crash_tests::simulator_of(&e);
    let mut acks = Report::default();
    let mut i = 0;
    while i < ops.len() {
        let n = if grouped { group_len(&ops[i..]) } else { 1 };
        let first = i;
        i += n;
        if n > 1 {
            model.lock().begin_group(ops[first..i].to_vec());
            put_as_groups(&e, &ops[first..i]);
        } else {
            model.lock().begin(ops[first].clone());
            match &ops[first] {
                KvOp::Put(k, v) => {
                    e.index()
                        .put(k, v, RecordKind::String, 0, PutMode::Upsert)
                        .expect("put");
                }
                KvOp::Delete(k) => {
                    e.index().delete(k).expect("delete");
                }
            }
        }
        model.lock().ack();
        let i = i - 1;
        if (first..=i).any(|j| j % ack_every == ack_every - 1) {
            // Acknowledged means durable: all of it is in what was fenced.
            let acked = scratch.write("acked.pool", &sim.durable_image());
            acks.checked += 1;
            if let Err(v) = verify_image(&acked, &model.lock()) {
                acks.violations
                    .push(format!("power failure after operation {i} returned: {v}"));
            }
        }
    }
    let stats = e.index().stats();
    // Then a clean close, and a power failure right after it: only what was made durable counts.
    e.close().expect("close");
    let mut report = images.report();
    report.merge(acks);
    report.checked += 1;
    let durable = sim.durable_image();
    let model = model.lock().clone();
    let after_close = scratch.write("after-close.pool", &durable);
    if let Err(v) = verify_image(&after_close, &model) {
        report
            .violations
            .push(format!("clean close, then power failure: {v}"));
    }
    report.merge(second.lock().clone());
    (report, stats)
}

/// The whole workload (`grouped`: its runs of puts in groups), which must split and double,
/// give more than `min_checked` images, and show no violation in any.
fn survives_every_fence(name: &str, grouped: bool, min_checked: u64) {
    let (inserts, all, every, acks) = if crash_tests::long_mode() {
        (6000, true, 101, 7)
    } else {
        (2500, false, 199, 53)
    };
    let (report, stats) = run(name, &workload(inserts), grouped, all, every, acks);
    println!("{} ({stats:?})", report.summary());
    assert!(
        stats.global_depth >= 2 && stats.segments >= 4,
        "the workload must split and double: {stats:?}"
    );
    assert!(report.checked > min_checked, "{}", report.summary());
    assert!(
        report.violations.is_empty(),
        "{}\n{:#?}",
        report.summary(),
        &report.violations[..report.violations.len().min(10)]
    );
}

#[test]
fn recovery_survives_a_power_failure_at_every_fence_of_splits_and_doublings() {
    survives_every_fence("dash", false, 5000);
}

/// Runs 300 inserts and what follows with `fault` armed; the harness must report it with a
/// violation found in the image `by` names (`FENCE_IMAGE` or `ACK_IMAGE`).
fn fault_is_caught(fault: Fault, name: &str, what: &str, by: &str) {
    let grouped = matches!(
        fault,
        Fault::SkipGroupFenceBeforePublish | Fault::SkipGroupFenceAfterPublish
    );
    let (report, _) = fault::with(fault, || run(name, &workload(300), grouped, false, 0, 7));
    report.assert_caught_by(what, by);
}

#[test]
fn harness_catches_a_slot_published_before_its_record_is_durable() {
    fault_is_caught(
        Fault::SkipFenceBeforePublish,
        "dash-fault",
        "the fence before publication removed",
        FENCE_IMAGE,
    );
}

#[test]
fn harness_catches_an_insert_whose_record_is_never_flushed() {
    fault_is_caught(
        Fault::SkipRecordFlushOnInsert,
        "dash-insert-flush-fault",
        "the record flush of an insert removed",
        FENCE_IMAGE,
    );
}

#[test]
fn harness_catches_an_upsert_whose_record_is_never_flushed() {
    fault_is_caught(
        Fault::SkipRecordFlushOnUpsert,
        "dash-upsert-flush-fault",
        "the record flush of an upsert removed",
        FENCE_IMAGE,
    );
}

#[test]
fn harness_catches_an_insert_acknowledged_before_its_alloc_bit_is_durable() {
    fault_is_caught(
        Fault::SkipFenceAfterPublish,
        "dash-ack-fault",
        "the fence after publication removed",
        ACK_IMAGE,
    );
}

#[test]
fn recovery_survives_a_power_failure_at_every_fence_of_group_puts() {
    survives_every_fence("dash-group", true, 1000);
}

#[test]
fn harness_catches_a_group_that_publishes_before_its_records_are_durable() {
    fault_is_caught(
        Fault::SkipGroupFenceBeforePublish,
        "dash-group-fault",
        "the group's fence before publication removed",
        FENCE_IMAGE,
    );
}

#[test]
fn harness_catches_a_group_acknowledged_before_its_publications_are_durable() {
    fault_is_caught(
        Fault::SkipGroupFenceAfterPublish,
        "dash-group-ack-fault",
        "the group's fence after publication removed",
        ACK_IMAGE,
    );
}
