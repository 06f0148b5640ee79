//! A power failure at any moment while a pool is being created leaves either no pool (the next
//! open with `create` makes one) or a complete, valid pool; never a pool that fails to open.

use std::sync::Arc;

use crash_tests::{FenceImages, Report, Scratch, standard_policies};
use eagle_core::fault::{self, Fault};
use eagle_core::pmem::FlushMode;
use eagle_core::pool::MIN_POOL_SIZE;
use eagle_core::{Pool, PoolError, PoolOptions};
use parking_lot::Mutex;

fn reopen_opts(create: bool) -> PoolOptions {
    PoolOptions {
        create,
        size: MIN_POOL_SIZE,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    }
}

/// Creates a pool under the simulator, checking a crash image per policy at every fence, and
/// then the final state. Returns the report.
fn crash_pool_creation(name: &str, seeds: u64) -> Report {
    let scratch = Arc::new(Scratch::new(name));
    let uuids = Arc::new(Mutex::new(Vec::new()));
    let (sc, seen) = (scratch.clone(), uuids.clone());
    let image = scratch.path("image.pool");
    let (hook, images) = FenceImages::hook(image, standard_policies(seeds), move |_, _, image| {
        let private = PoolOptions {
            private: true,
            ..reopen_opts(false)
        };
        match Pool::open(image.path, private) {
            Ok(pool) => {
                seen.lock().push(pool.header().uuid);
                Ok(())
            }
            // Blank or still-creating: no pool. Creating one there must then work (on a copy:
            // the image file itself must stay as it is).
            Err(PoolError::NotFound { .. }) => {
                let copy = sc.write("recreate.pool", image.bytes);
                Pool::open(&copy, reopen_opts(true))
                    .map(drop)
                    .map_err(|e| format!("re-creating after the crash failed: {e}"))
            }
            Err(e) => Err(format!("open failed: {e}")),
        }
    });
    let live = scratch.path("live.pool");
    let opts = PoolOptions {
        size: MIN_POOL_SIZE,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let pool = Pool::open(&live, opts).expect("create the live pool");
    let uuid = pool.header().uuid;
    let fences = pool.region().persister().simulator().unwrap().fence_count();
    drop(pool);
    let mut report = images.report();
    for got in uuids.lock().iter() {
        if *got != uuid {
            report
                .violations
                .push("an image opened as a pool with another identity".into());
        }
    }
    assert!(fences >= 3, "creation issued only {fences} fences");
    report
}

#[test]
fn pool_creation_survives_a_power_failure_at_every_fence() {
    let report = crash_pool_creation("create", 16);
    println!("{}", report.summary());
    assert!(report.checked >= 4 * 34, "{}", report.summary());
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
}

#[test]
fn harness_catches_a_header_published_before_it_is_durable() {
    let report = fault::with(Fault::SkipHeaderBodyPersist, || {
        crash_pool_creation("fault", 16)
    });
    println!("with the header persist removed: {}", report.summary());
    assert!(
        !report.violations.is_empty(),
        "the harness did not notice a missing flush: {}",
        report.summary()
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("checksum") || v.contains("corrupted")),
        "{:#?}",
        report.violations
    );
}
