//! Does the flush-mode abstraction cost the hot path anything?
//!
//! Times a loop of "store 8 bytes, persist its line" through `Region::persist` and through raw
//! inline assembly (`clwb`/`clflushopt` + `sfence`) over the same mapping, interleaving the two
//! (A B A B ...) so machine noise hits both alike, and prints the median ns per persist and the
//! ratio. Run: `cargo bench -p eagle-core --bench persist_loop` (pool file on /dev/shm; set
//! `EAGLE_BENCH_DIR` to put it elsewhere).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use eagle_core::pmem::{CpuFlushCaps, FlushMode, Mapping, Region};

const LINES: usize = 4096; // 256 KiB working set: fits in L2, so the flush dominates.
const ITERS: usize = 200_000;
const ROUNDS: usize = 15;

fn main() {
    let dir = std::env::var("EAGLE_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let path =
        std::path::Path::new(&dir).join(format!("eagle-persist-bench-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("create bench file");
    file.set_len((LINES * 64) as u64).expect("size bench file");
    let caps = CpuFlushCaps::detect();
    println!(
        "persist loop: {ITERS} x (8-byte store + persist of its line), {ROUNDS} interleaved rounds, {}",
        path.display()
    );
    println!(
        "{:<11} {:>12} {:>12} {:>8}",
        "mode", "abstraction", "raw asm", "ratio"
    );
    for mode in [FlushMode::Clwb, FlushMode::Clflushopt, FlushMode::Clflush] {
        if !mode.supported_by(caps) {
            println!("{mode:<11} (not supported by this CPU)");
            continue;
        }
        let mapping = Mapping::map(file.try_clone().unwrap(), &path, false).expect("map");
        let region = Region::new(mapping, Some(mode)).expect("region");
        let (mut abs, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            abs.push(time(|| abstraction_loop(&region)));
            raw.push(time(|| raw_loop(&region, mode)));
        }
        let (a, r) = (median(&mut abs), median(&mut raw));
        println!(
            "{:<11} {:>9.1} ns {:>9.1} ns {:>8.3}",
            mode.to_string(),
            a,
            r,
            a / r
        );
    }
    let _ = std::fs::remove_file(&path);
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / ITERS as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn word(region: &Region, i: usize) -> (&AtomicU64, u64) {
    let off = ((i % LINES) * 64) as u64;
    (region.atomic_u64(off).unwrap(), off)
}

fn abstraction_loop(region: &Region) {
    for i in 0..ITERS {
        let (w, off) = word(region, i);
        w.store(i as u64, Ordering::Relaxed);
        region.persist(black_box(off), 8);
    }
}

fn raw_loop(region: &Region, mode: FlushMode) {
    for i in 0..ITERS {
        let (w, _) = word(region, i);
        w.store(i as u64, Ordering::Relaxed);
        let p = w.as_ptr() as *const u8;
        // SAFETY: `p` points into the live mapping; the CPU supports `mode` (checked in main).
        unsafe {
            match mode {
                FlushMode::Clwb => {
                    std::arch::asm!("clwb [{0}]", "sfence", in(reg) p, options(nostack, preserves_flags))
                }
                FlushMode::Clflushopt => {
                    std::arch::asm!("clflushopt [{0}]", "sfence", in(reg) p, options(nostack, preserves_flags))
                }
                _ => std::arch::asm!("clflush [{0}]", in(reg) p, options(nostack, preserves_flags)),
            }
        }
    }
}
