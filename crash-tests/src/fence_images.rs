//! Crash images at every fence: a fence hook that, each time the engine issues a fence, asks the
//! simulator for one crash image per eviction policy and hands each to a checker.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eagle_core::pmem::FenceHook;
use memmap2::MmapMut;
use parking_lot::Mutex;
use pmem_emulation::{Eviction, ImageWriter, Simulator};

/// The policies every harness runs: nothing unfenced survives, everything does, and `seeds`
/// random subsets of whole lines and of 8-byte words (tearing).
pub fn standard_policies(seeds: u64) -> Vec<Eviction> {
    let mut v = vec![Eviction::None, Eviction::All];
    for seed in 0..seeds {
        v.push(Eviction::Random { seed });
        v.push(Eviction::Strict { seed });
    }
    v
}

/// What the message of every violation found in an image taken at a fence begins with (each is
/// `fence N, <policy>: <what>`), for [`Report::assert_caught_by`].
pub const FENCE_IMAGE: &str = "fence ";

/// What the message of every violation found in the image taken as an operation returns
/// begins with (`power failure after ... returned: <what>`, as the harnesses write it; the image
/// after a clean close is `clean close, then power failure: <what>`), for
/// [`Report::assert_caught_by`].
pub const ACK_IMAGE: &str = "power failure after ";

/// What the checker found over all images.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Images checked.
    pub checked: u64,
    /// One line per image that failed its check.
    pub violations: Vec<String>,
}

impl Report {
    /// The summary line scripts read: `crash-images: N checked, M violations`.
    pub fn summary(&self) -> String {
        format!(
            "crash-images: {} checked, {} violations",
            self.checked,
            self.violations.len()
        )
    }

    /// Prints the summary line and fails (showing the first violations) unless there are none.
    pub fn assert_clean(&self) {
        println!("{}", self.summary());
        assert!(
            self.violations.is_empty(),
            "{}\n{:#?}",
            self.summary(),
            &self.violations[..self.violations.len().min(8)]
        );
    }

    /// For a run with a fault armed: prints `with <fault>: <summary>` and fails unless the
    /// harness reported at least one violation (proof that it can catch the fault).
    pub fn assert_caught(&self, fault: &str) {
        println!("with {fault}: {}", self.summary());
        assert!(
            !self.violations.is_empty(),
            "the harness missed {fault}: {}",
            self.summary()
        );
    }

    /// [`assert_caught`](Self::assert_caught), where the violations that count are those whose
    /// message begins with `prefix` ([`FENCE_IMAGE`] or [`ACK_IMAGE`]: so the image meant to
    /// catch `fault` is the one that did). Prints the first of them.
    pub fn assert_caught_by(&self, fault: &str, prefix: &str) {
        let by: Vec<&String> = self
            .violations
            .iter()
            .filter(|v| v.starts_with(prefix))
            .collect();
        println!(
            "with {fault}: {} ({} beginning {prefix:?}; the first: {:?})",
            self.summary(),
            by.len(),
            by.first()
        );
        assert!(
            !by.is_empty(),
            "the harness missed {fault}: no violation begins {prefix:?}: {}",
            self.summary()
        );
    }

    /// Adds another report's counts.
    pub fn merge(&mut self, other: Report) {
        self.checked += other.checked;
        self.violations.extend(other.violations);
    }
}

/// Images checked and violations found by every hook in this process (progress lines only).
static PROGRESS_IMAGES: AtomicU64 = AtomicU64::new(0);
static PROGRESS_VIOLATIONS: AtomicU64 = AtomicU64::new(0);

/// Images between two progress lines on stderr: `EAGLE_CRASH_PROGRESS`, else 25,000.
fn progress_every() -> u64 {
    std::env::var("EAGLE_CRASH_PROGRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(25_000)
}

/// One crash image, handed to a checker: its bytes, and a pool file holding them.
///
/// The file is rewritten in place for the next image, only where the images differ, so a
/// checker must not change it: open it with `PoolOptions { private: true, .. }` (copy-on-write;
/// recovery then repairs a private copy) and do not keep it open past the check.
pub struct CrashImage<'a> {
    /// The image.
    pub bytes: &'a [u8],
    /// The pool file holding exactly `bytes`.
    pub path: &'a Path,
}

/// The image file: a shared mapping that the images are written into.
struct ImageFile {
    path: PathBuf,
    map: MmapMut,
}

impl ImageFile {
    fn create(path: &Path, len: usize) -> ImageFile {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("create the crash image file");
        file.set_len(len as u64).expect("size the crash image file");
        // SAFETY: the file was just created in the harness's own scratch directory and is never
        // truncated while mapped; checkers open it copy-on-write (`CrashImage`'s contract), so
        // nothing else writes it while we hold `&mut` to the bytes.
        let map = unsafe { MmapMut::map_mut(&file) }.expect("map the crash image file");
        ImageFile {
            path: path.to_path_buf(),
            map,
        }
    }
}

/// Builds fence hooks that check crash images and collects the results.
pub struct FenceImages {
    report: Arc<Mutex<Report>>,
}

impl FenceImages {
    /// A hook that, at every fence, takes an image under each of `policies` into the file
    /// `image` and calls `check(fence, policy, image)`; an `Err(why)` is recorded as a
    /// violation. The returned collector gives the report once the workload is done.
    pub fn hook<F>(image: PathBuf, policies: Vec<Eviction>, check: F) -> (FenceHook, FenceImages)
    where
        F: FnMut(u64, &Eviction, &CrashImage) -> Result<(), String> + Send + 'static,
    {
        Self::hook_choosing(image, move |_| policies.clone(), check)
    }

    /// One image per fence, the policy rotating through `policies` (fence n uses policy
    /// n mod len): every policy is exercised at a fraction of the cost.
    pub fn hook_rotating<F>(
        image: PathBuf,
        policies: Vec<Eviction>,
        check: F,
    ) -> (FenceHook, FenceImages)
    where
        F: FnMut(u64, &Eviction, &CrashImage) -> Result<(), String> + Send + 'static,
    {
        Self::hook_choosing(
            image,
            move |fence| vec![policies[(fence % policies.len() as u64) as usize]],
            check,
        )
    }

    /// The general form: `choose(fence)` gives the policies for that fence.
    ///
    /// Images are written incrementally ([`ImageWriter`]): one scan of the region per fence,
    /// then per policy only the lines that differ from the previous image.
    pub fn hook_choosing<C, F>(
        image: PathBuf,
        mut choose: C,
        mut check: F,
    ) -> (FenceHook, FenceImages)
    where
        C: FnMut(u64) -> Vec<Eviction> + Send + 'static,
        F: FnMut(u64, &Eviction, &CrashImage) -> Result<(), String> + Send + 'static,
    {
        let report = Arc::new(Mutex::new(Report::default()));
        let sink = report.clone();
        let mut file: Option<ImageFile> = None;
        let mut writer = ImageWriter::new();
        let every = progress_every();
        let hook: FenceHook = Box::new(move |sim: &Simulator, fence: u64| {
            let file = file.get_or_insert_with(|| ImageFile::create(&image, sim.len()));
            writer.scan(sim);
            for policy in &choose(fence) {
                writer.write(sim, policy, &mut file.map[..]);
                let verdict = check(
                    fence,
                    policy,
                    &CrashImage {
                        bytes: &file.map[..],
                        path: &file.path,
                    },
                );
                // Long runs report as they go, so a run stopped early still has its figures.
                // Counted process-wide: a harness's second crashes (images taken by a hook
                // inside a check) are merged into its report only at the end.
                let seen = PROGRESS_IMAGES.fetch_add(1, Ordering::Relaxed) + 1;
                if verdict.is_err() {
                    PROGRESS_VIOLATIONS.fetch_add(1, Ordering::Relaxed);
                }
                if seen.is_multiple_of(every) {
                    eprintln!(
                        "progress: crash-images: {seen} checked, {} violations (all levels)",
                        PROGRESS_VIOLATIONS.load(Ordering::Relaxed)
                    );
                }
                let mut r = sink.lock();
                r.checked += 1;
                if let Err(why) = verdict {
                    r.violations
                        .push(format!("fence {fence}, {policy:?}: {why}"));
                }
            }
        });
        (hook, FenceImages { report })
    }

    /// The results so far.
    pub fn report(&self) -> Report {
        self.report.lock().clone()
    }
}
