//! Power failures at every fence of a write-ahead-log workload that wraps the log many times:
//! recovery returns exactly the acknowledged, not yet checkpointed records, in order, plus at most
//! the one being appended; a checkpoint in flight either happened or did not.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use crash_tests::{FenceImages, Report, Scratch, standard_policies};
use eagle_core::fault::{self, Fault};
use eagle_core::pmem::FlushMode;
use eagle_core::wal::Wal;
use eagle_core::{Pool, PoolError, PoolOptions};
use parking_lot::Mutex;

#[derive(Clone, Default)]
struct Model {
    /// Acknowledged, not checkpointed: (lsn, payload), oldest first.
    live: VecDeque<(u64, Vec<u8>)>,
    /// An append in flight (its payload; its LSN is the next one).
    appending: Option<Vec<u8>>,
    /// A checkpoint of the oldest live record in flight.
    checkpointing: bool,
    next_lsn: u64,
}

fn payload(i: u64) -> Vec<u8> {
    (0..(i * 53 % 700) as usize)
        .map(|j| (i ^ j as u64) as u8)
        .collect()
}

fn verify(path: &Path, m: &Model) -> Result<(), String> {
    let pool = match Pool::open(
        path,
        PoolOptions {
            create: false,
            private: true,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        },
    ) {
        Ok(p) => p,
        Err(PoolError::NotFound { .. }) if m.live.is_empty() && m.next_lsn == 0 => return Ok(()),
        Err(e) => return Err(format!("open: {e}")),
    };
    let (_, rec) = Wal::open(Arc::new(pool)).map_err(|e| format!("wal: {e}"))?;
    let got: Vec<(u64, Vec<u8>)> = rec.into_iter().map(|e| (e.lsn, e.payload)).collect();
    let base: Vec<(u64, Vec<u8>)> = m.live.iter().cloned().collect();
    let mut allowed = vec![base.clone()];
    if m.checkpointing {
        allowed.push(base[1..].to_vec());
    }
    if let Some(p) = &m.appending {
        let mut with = base.clone();
        with.push((m.next_lsn, p.clone()));
        allowed.push(with);
    }
    if allowed.contains(&got) {
        Ok(())
    } else {
        Err(format!(
            "recovered lsns {:?}, expected {:?}",
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            allowed
                .iter()
                .map(|a| a.iter().map(|r| r.0).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ))
    }
}

/// Returns the report and how many times the workload's bytes filled the log.
fn run(name: &str, appends: u64) -> (Report, u64) {
    let scratch = Arc::new(Scratch::new(name));
    let model = Arc::new(Mutex::new(Model::default()));
    let m = model.clone();
    let (hook, images) = FenceImages::hook_rotating(
        scratch.path("image.pool"),
        standard_policies(4),
        move |_, _, img| verify(img.path, &m.lock().clone()),
    );
    let opts = PoolOptions {
        size: 2 << 20,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let pool = Pool::open(scratch.path("live.pool"), opts).unwrap();
    let (wal, rec) = Wal::open(Arc::new(pool)).unwrap();
    assert!(rec.is_empty());
    model.lock().next_lsn = 1;
    let mut bytes = 0;
    let append = |p: Vec<u8>| {
        model.lock().appending = Some(p.clone());
        let lsn = wal.append(1, &p).unwrap();
        let mut m = model.lock();
        assert_eq!(lsn, m.next_lsn);
        m.appending = None;
        m.live.push_back((lsn, p));
        m.next_lsn += 1;
    };
    let checkpoint_oldest = || {
        let oldest = model.lock().live[0].0;
        model.lock().checkpointing = true;
        wal.checkpoint(oldest);
        let mut m = model.lock();
        m.checkpointing = false;
        m.live.pop_front();
    };
    for i in 0..appends {
        let p = payload(i);
        bytes += p.len() as u64;
        append(p);
        // Keep a window of 5 live records: the log wraps many times.
        if model.lock().live.len() > 5 {
            checkpoint_oldest();
        }
        // Now and then, empty the log and append a record of 90% of a lap: wherever the tail
        // is, it fits neither after it nor before the head, so the log starts a new lap.
        if i % 500 == 250 {
            while !model.lock().live.is_empty() {
                checkpoint_oldest();
            }
            let big = vec![i as u8; (wal.capacity() * 9 / 10) as usize];
            bytes += big.len() as u64;
            append(big);
        }
    }
    (images.report(), bytes / wal.capacity())
}

#[test]
fn wal_recovery_survives_a_power_failure_at_every_fence() {
    let (report, laps) = run("wal", 3000);
    println!("{} ({laps} laps of the log)", report.summary());
    assert!(laps >= 3, "the workload must wrap the log");
    assert!(report.checked > 5000, "{}", report.summary());
    assert!(
        report.violations.is_empty(),
        "{:#?}",
        &report.violations[..report.violations.len().min(5)]
    );
}

#[test]
fn harness_catches_an_append_acknowledged_before_it_is_durable() {
    let (report, _) = fault::with(Fault::SkipWalPersist, || run("wal-fault", 300));
    println!("with the append's persist removed: {}", report.summary());
    assert!(!report.violations.is_empty(), "{}", report.summary());
}
