//! Crash images at every fence: a fence hook that, each time the engine issues a fence, asks the
//! simulator for one crash image per eviction policy and hands each to a checker.

use std::sync::Arc;

use eagle_core::pmem::FenceHook;
use parking_lot::Mutex;
use pmem_emulation::{Eviction, Simulator};

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

    /// Adds another report's counts.
    pub fn merge(&mut self, other: Report) {
        self.checked += other.checked;
        self.violations.extend(other.violations);
    }
}

/// Images between two progress lines on stderr.
const PROGRESS_EVERY: u64 = 25_000;

/// Builds fence hooks that check crash images and collects the results.
pub struct FenceImages {
    report: Arc<Mutex<Report>>,
}

impl FenceImages {
    /// A hook that, at every fence, takes an image under each of `policies` and calls
    /// `check(fence, policy, image)`; an `Err(why)` is recorded as a violation. The returned
    /// collector gives the report once the workload is done.
    pub fn hook<F>(policies: Vec<Eviction>, check: F) -> (FenceHook, FenceImages)
    where
        F: FnMut(u64, &Eviction, &[u8]) -> Result<(), String> + Send + 'static,
    {
        Self::hook_choosing(move |_| policies.clone(), check)
    }

    /// One image per fence, the policy rotating through `policies` (fence n uses policy
    /// n mod len): every policy is exercised at a fraction of the cost.
    pub fn hook_rotating<F>(policies: Vec<Eviction>, check: F) -> (FenceHook, FenceImages)
    where
        F: FnMut(u64, &Eviction, &[u8]) -> Result<(), String> + Send + 'static,
    {
        Self::hook_choosing(
            move |fence| vec![policies[(fence % policies.len() as u64) as usize]],
            check,
        )
    }

    /// The general form: `choose(fence)` gives the policies for that fence.
    pub fn hook_choosing<C, F>(mut choose: C, mut check: F) -> (FenceHook, FenceImages)
    where
        C: FnMut(u64) -> Vec<Eviction> + Send + 'static,
        F: FnMut(u64, &Eviction, &[u8]) -> Result<(), String> + Send + 'static,
    {
        let report = Arc::new(Mutex::new(Report::default()));
        let sink = report.clone();
        let mut buf = Vec::new();
        let hook: FenceHook = Box::new(move |sim: &Simulator, fence: u64| {
            buf.resize(sim.len(), 0);
            for policy in &choose(fence) {
                sim.crash_image_into(policy, &mut buf);
                let verdict = check(fence, policy, &buf);
                let mut r = sink.lock();
                r.checked += 1;
                // Long runs report as they go, so a run stopped early still has its figures.
                if r.checked.is_multiple_of(PROGRESS_EVERY) {
                    eprintln!("progress: {}", r.summary());
                }
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
