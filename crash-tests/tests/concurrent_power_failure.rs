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

const POOL: u64 = 6 << 20;
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
    let (rounds, all) = if crash_tests::long_mode() {
        (300, true)
    } else {
        (150, false)
    };
    let report = run("concurrent", rounds, all, None);
    assert!(report.checked > 2000, "{}", report.summary());
    report.assert_clean();
}

#[test]
fn harness_catches_concurrent_batches_acknowledged_before_their_log_record_is_durable() {
    run("concurrent-fault", 60, false, Some(Fault::SkipWalPersist))
        .assert_caught("the log's flush and fence removed");
}

/// Holds an older batch (A) open right after its log record is durable, runs a newer batch (B)
/// on keys `x` and `y`, then a plain SET of `x` (C) on a third thread. B's record cannot leave
/// the log before A's, so B must keep `x` locked until A is done: otherwise C's SET is
/// acknowledged while B's record is still live, and a power failure then redoes B over it.
/// Returns whether C was acknowledged while A was held, and what the crash image taken at that
/// moment (or, if C waited, after everything finished) shows.
fn newer_batch_then_set_while_an_older_batch_is_open(
    fault: Option<Fault>,
) -> (bool, Result<(), String>) {
    use eagle_core::db::SetOptions;
    use pmem_emulation::Eviction;
    use std::sync::mpsc;
    use std::time::Duration;

    // The pause point is process-wide: one scenario at a time (`cargo test` runs tests on
    // threads of one process).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock();
    let scratch = Scratch::new(&format!("older-batch-open-{}", fault.is_some()));
    let opts = PoolOptions {
        size: POOL,
        ..PoolOptions::default()
    }
    .simulated(None);
    let db = Arc::new(Db::open(scratch.path("live.pool"), options(opts)).expect("open"));
    let sim = crash_tests::simulator_of(db.engine());
    // B's and C's keys must not share a key-lock stripe with A's (the low 10 bits of the
    // key's hash, seeded per pool), or they would wait for A's locks rather than for the log
    // (about one pool in 256 with fixed names): pick names by their hashes.
    let stripe = |k: &[u8]| db.engine().index().hash(k) & 1023;
    let taken = [stripe(b"a1"), stripe(b"a2")];
    let pick = |prefix: &str| {
        (0..)
            .map(|i| format!("{prefix}{i}").into_bytes())
            .find(|k| !taken.contains(&stripe(k)))
            .expect("a name outside two stripes")
    };
    let (x, y) = (pick("x"), pick("y"));
    let spawn = |fault: Option<Fault>, f: Box<dyn FnOnce(&Db) + Send>| {
        let db = db.clone();
        std::thread::spawn(move || {
            fault::arm(fault);
            f(&db);
        })
    };
    let a = spawn(
        Some(Fault::PauseAfterBatchLog),
        Box::new(|db| db.mset(&[(b"a1", b"A"), (b"a2", b"A")]).expect("mset a")),
    );
    assert!(
        fault::wait_paused(Duration::from_secs(30)),
        "batch A never reached its pause point"
    );
    let (bx, by) = (x.clone(), y.clone());
    let b = spawn(
        fault,
        Box::new(move |db| {
            db.mset(&[(&bx[..], &b"mset"[..]), (&by[..], &b"mset"[..])])
                .expect("mset b")
        }),
    );
    // C must come after B has locked x: B locks its keys before it appends its record, so wait
    // for the log's second append (A's was the first).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while db.engine().wal().stats().appends < 2 {
        assert!(std::time::Instant::now() < deadline, "batch B never logged");
        std::thread::yield_now();
    }
    let (acked, set_done) = mpsc::channel();
    let cx = x.clone();
    let c = spawn(
        None,
        Box::new(move |db| {
            db.set(&cx, b"set", SetOptions::default()).expect("set");
            acked.send(()).expect("send");
        }),
    );
    // Correct code cannot acknowledge the SET while A is held; the fault lets it through at
    // once. Two seconds is ample for that, and only the correct run waits them out.
    let early = set_done.recv_timeout(Duration::from_secs(2)).is_ok();
    let check = |image: Vec<u8>| -> Result<(), String> {
        let path = scratch.write("image.pool", &image);
        let private = PoolOptions {
            create: false,
            private: true,
            flush: Some(FlushMode::None),
            ..PoolOptions::default()
        };
        let db = Db::open(&path, options(private)).map_err(|e| format!("recovery: {e}"))?;
        let get = |k: &[u8]| db.get(k).map_err(|e| format!("get: {e}"));
        let x = get(&x)?;
        if x.as_deref() != Some(&b"set"[..]) {
            return Err(format!(
                "acknowledged SET x lost: x = {:?}",
                x.map(|v| String::from_utf8_lossy(&v).into_owned())
            ));
        }
        let (a1, a2) = (get(b"a1")?, get(b"a2")?);
        if a1 != a2 {
            return Err(format!("batch A split: {a1:?} / {a2:?}"));
        }
        Ok(())
    };
    let verdict = if early {
        check(sim.crash_image(&Eviction::None))
    } else {
        Ok(())
    };
    fault::release_paused();
    for t in [a, b, c] {
        t.join().expect("writer");
    }
    if !early {
        set_done
            .recv()
            .expect("the SET finishes once A is released");
    }
    let verdict = verdict.and_then(|()| check(sim.crash_image(&Eviction::None)));
    (early, verdict)
}

#[test]
fn a_set_waits_for_a_newer_batch_on_its_key_until_older_batches_finish() {
    let (early, verdict) = newer_batch_then_set_while_an_older_batch_is_open(None);
    assert!(
        !early,
        "the SET was acknowledged while an older batch was open"
    );
    verdict.expect("no write lost");
}

#[test]
fn harness_catches_a_batch_that_releases_its_keys_before_the_log_head_passes_it() {
    let (early, verdict) =
        newer_batch_then_set_while_an_older_batch_is_open(Some(Fault::SkipWaitForLogHead));
    assert!(early, "with the fault the SET should not wait");
    let why = verdict.expect_err("the harness missed a batch returning before the head passed it");
    println!("with batches returning before the log's head passes them: caught: {why}");
}
