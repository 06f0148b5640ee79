//! Power failures at every fence while several threads write at once. Each thread, in round
//! `g`, runs an MSET of generation `g` over its own four keys, then a plain SET of its first key
//! (no log record). So batches run concurrently, share the log's group commit and checkpoint out
//! of order, and a plain write follows each batch on the same key: a redo that undid it would
//! show. A thread's progress is a step: `2g - 1` once round `g`'s MSET is done, `2g` once its SET
//! is. Each crash image, recovered, must show every thread's keys 1..3 from one MSET (never
//! split), key 0 from that MSET or the SET after it, at a step no earlier than the last one
//! acknowledged before the image was taken and no later than the last one begun after it;
//! `check` must find no leak or overlap.
//!
//! The model is read twice around each image (acknowledgements before it: what must be there;
//! beginnings after it: what may be there), since the other threads keep running while a fence's
//! images are taken. Prints `crash-images: N checked, M violations`.
//! `EAGLE_CRASH_LONG=1` runs a longer workload with every policy at every fence.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crash_tests::{CrashImage, FenceImages, Report, Scratch, standard_policies};
use eagle_core::fault::{self, Fault};
use eagle_core::pmem::FlushMode;
use eagle_core::{Db, DbOptions, EngineError, PoolError, PoolOptions};
use parking_lot::Mutex;

const POOL: u64 = 4 << 20;
const THREADS: usize = 3;
const KEYS: usize = 4;

/// Per thread: its last acknowledged step and its last begun one.
#[derive(Default)]
struct Progress {
    acked: [AtomicU64; THREADS],
    begun: [AtomicU64; THREADS],
}

impl Progress {
    fn acked(&self) -> [u64; THREADS] {
        std::array::from_fn(|t| self.acked[t].load(Ordering::SeqCst))
    }
    fn begun(&self) -> [u64; THREADS] {
        std::array::from_fn(|t| self.begun[t].load(Ordering::SeqCst))
    }
}

fn key(t: usize, k: usize) -> Vec<u8> {
    format!("t{t}:k{k}").into_bytes()
}

/// Generation `g`'s value: the generation, then padding whose length varies with `g` and `k`.
fn value(g: u64, k: usize) -> Vec<u8> {
    let mut v = format!("{g:08}-").into_bytes();
    v.resize(9 + ((g as usize * 7 + k * 13) % 90), b'x');
    v
}

/// The plain SET of key 0 that follows round `g`'s MSET.
fn set_value(g: u64) -> Vec<u8> {
    let mut v = value(g, 0);
    v.extend_from_slice(b"+set");
    v
}

fn generation(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v.get(..8)?).ok()?.parse().ok()
}

fn options(pool: PoolOptions) -> DbOptions {
    DbOptions {
        pool,
        ..DbOptions::default()
    }
}

/// Recovers `image` and checks it against `must` (acknowledged before) and `may` (begun after).
fn verify_image(path: &Path, must: [u64; THREADS], may: [u64; THREADS]) -> Result<(), String> {
    let opts = PoolOptions {
        create: false,
        private: true,
        size: POOL,
        flush: Some(FlushMode::None),
        ..PoolOptions::default()
    };
    let db = match Db::open(path, options(opts)) {
        Err(EngineError::Pool(PoolError::NotFound { .. })) if must == [0; THREADS] => return Ok(()),
        Err(e) => return Err(format!("recovery failed: {e}")),
        Ok(db) => db,
    };
    for t in 0..THREADS {
        let mut gens = Vec::new();
        let mut set_after = false;
        for k in 0..KEYS {
            let v = db.get(&key(t, k)).map_err(|e| format!("get: {e}"))?;
            let g = match v {
                None => 0,
                Some(v) => {
                    let g = generation(&v).ok_or("a value no write wrote")?;
                    if k == 0 && v == set_value(g) {
                        set_after = true;
                    } else if v != value(g, k) {
                        return Err(format!("thread {t} key {k}: torn value of generation {g}"));
                    }
                    g
                }
            };
            gens.push(g);
        }
        if gens.iter().any(|&g| g != gens[0]) {
            return Err(format!(
                "thread {t}: an MSET split by the crash: generations {gens:?}"
            ));
        }
        let g = gens[0];
        let step = if g == 0 {
            0
        } else {
            2 * g - 1 + set_after as u64
        };
        if step < must[t] || step > may[t] {
            return Err(format!(
                "thread {t}: step {step}, acknowledged {} before the image, begun {} after",
                must[t], may[t]
            ));
        }
    }
    db.engine()
        .index()
        .wait_recovered()
        .map_err(|e| format!("recovery: {e}"))?;
    let report = db.engine().check();
    if !report.is_clean() {
        return Err(format!("check: {:?}", report.problems));
    }
    Ok(())
}

/// Runs `rounds` MSETs on each of the threads under the simulator, checking crash images at
/// every fence (one policy per fence, rotating, or every policy). `fault` is armed in every
/// writer thread (fault knobs are per thread).
fn run(name: &str, rounds: u64, all_policies: bool, fault: Option<Fault>) -> Report {
    let scratch = Arc::new(Scratch::new(name));
    let progress = Arc::new(Progress::default());
    // The acknowledgements read before a fence's images (by `choose`), for its checks.
    let before = Arc::new(Mutex::new([0u64; THREADS]));
    let policies = standard_policies(4);
    let (p, b) = (progress.clone(), before.clone());
    let choose = move |fence: u64| {
        *b.lock() = p.acked();
        if all_policies {
            policies.clone()
        } else {
            vec![policies[(fence % policies.len() as u64) as usize]]
        }
    };
    let (p, b) = (progress.clone(), before.clone());
    let check = move |_: u64, _: &pmem_emulation::Eviction, image: &CrashImage| {
        let must = *b.lock();
        verify_image(image.path, must, p.begun())
    };
    let (hook, images) = FenceImages::hook_choosing(scratch.path("image.pool"), choose, check);
    let opts = PoolOptions {
        size: POOL,
        ..PoolOptions::default()
    }
    .simulated(Some(hook));
    let db = Arc::new(Db::open(scratch.path("live.pool"), options(opts)).expect("open"));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, progress) = (db.clone(), progress.clone());
            std::thread::spawn(move || {
                fault::arm(fault);
                for g in 1..=rounds {
                    let keys: Vec<Vec<u8>> = (0..KEYS).map(|k| key(t, k)).collect();
                    let values: Vec<Vec<u8>> = (0..KEYS).map(|k| value(g, k)).collect();
                    let pairs: Vec<(&[u8], &[u8])> = keys
                        .iter()
                        .zip(&values)
                        .map(|(k, v)| (&k[..], &v[..]))
                        .collect();
                    progress.begun[t].store(2 * g - 1, Ordering::SeqCst);
                    db.mset(&pairs).expect("mset");
                    progress.acked[t].store(2 * g - 1, Ordering::SeqCst);
                    progress.begun[t].store(2 * g, Ordering::SeqCst);
                    db.set(&keys[0], &set_value(g), Default::default())
                        .expect("set");
                    progress.acked[t].store(2 * g, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let stats = db.engine().wal().stats();
    println!("{name}: {stats:?}");
    let db = Arc::into_inner(db).expect("writers joined");
    db.close().expect("close");
    images.report()
}

#[test]
fn concurrent_batches_are_all_or_nothing_at_every_fence() {
    let long = std::env::var_os("EAGLE_CRASH_LONG").is_some();
    let (rounds, all) = if long { (300, true) } else { (150, false) };
    let report = run("concurrent", rounds, all, None);
    assert!(report.checked > 2000, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn harness_catches_concurrent_batches_acknowledged_before_their_log_record_is_durable() {
    run("concurrent-fault", 60, false, Some(Fault::SkipWalPersist))
        .assert_caught("the log's flush and fence removed");
}

/// Timing-dependent: the bug shows only when a batch finishes while an older one is still being
/// applied and a crash image falls before the older one's checkpoint. It was caught in two runs
/// (54 violations in 5,831 images) and missed in a third, so it stays out of the default run:
/// `cargo nextest run -p crash-tests --test concurrent_power_failure --run-ignored only`.
#[test]
#[ignore = "timing-dependent; run explicitly (see the comment)"]
fn harness_catches_a_batch_that_releases_its_keys_before_the_log_head_passes_it() {
    let fault = Some(Fault::SkipWaitForLogHead);
    run("concurrent-wait-fault", 150, false, fault)
        .assert_caught("batches returning before the log's head passes them");
}
