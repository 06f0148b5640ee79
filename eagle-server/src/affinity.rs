//! CPU pinning of the worker threads (`server-cpulist`): Redis's CPU list syntax, its checks
//! against this host, and the system calls (`sched_getaffinity`, `sched_setaffinity`).
//!
//! Each worker thread is pinned to one CPU of the list, in turn, as the runtime starts it
//! ([`round_robin`]; the runtime's blocking threads too, should it start any: the server starts
//! none). Threads started elsewhere (the main thread, the expiry sweep, the
//! background recovery) keep the process's CPUs; a thread a worker starts (BGSAVE's) inherits
//! that worker's CPU, as Linux does.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bits in one word of a kernel CPU mask (an array of `unsigned long`).
const WORD_BITS: usize = libc::c_ulong::BITS as usize;

/// Larger CPU ids are refused as they are parsed (Linux supports at most 8192 CPUs).
const MAX_CPU_ID: usize = 1 << 16;

/// Parses a CPU list in Redis's syntax (`server-cpulist`): comma-separated CPU ids and ranges
/// `A-B`, a range with an optional step `A-B:S`, e.g. `0-7:2,12` (CPUs 0, 2, 4, 6 and 12).
/// Returns the CPUs in ascending order, each once; `Err` says what is wrong.
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let bad = || format!("'{item}' is not a CPU id or range (N, N-M or N-M:STEP) in '{text}'");
        let num = |s: &str| -> Result<usize, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (range, step) = match item.split_once(':') {
            Some((range, step)) => (range, Some(num(step)?)),
            None => (item, None),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None if step.is_none() => {
                let a = num(range)?;
                (a, a)
            }
            None => return Err(bad()),
        };
        if first > last {
            return Err(format!("the range '{item}' ends before it starts"));
        }
        if last >= MAX_CPU_ID {
            return Err(format!("CPU {last} does not exist"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("the step of '{item}' is 0"));
        }
        cpus.extend((first..=last).step_by(step));
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Writes CPUs (ascending) compactly: runs of consecutive ids as ranges, e.g. `0-3,8,10`.
pub fn format_cpulist(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&cpus[i].to_string());
        if j > i {
            out.push_str(&format!("-{}", cpus[j]));
        }
        i = j + 1;
    }
    out
}

/// Checks a parsed list against this host: at least one CPU, every id below `configured` (the
/// CPUs the host has, online or not), and, when known, every id among `allowed` (the CPUs this
/// process may run on: taskset, a cgroup's cpuset, offline CPUs).
pub fn check_cpus(
    cpus: &[usize],
    configured: usize,
    allowed: Option<&[usize]>,
) -> Result<(), String> {
    if cpus.is_empty() {
        return Err("the CPU list is empty".into());
    }
    for &cpu in cpus {
        if cpu >= configured {
            return Err(format!(
                "CPU {cpu} does not exist: this host has {configured} CPUs (0-{})",
                configured.saturating_sub(1)
            ));
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&cpu)
        {
            return Err(format!(
                "CPU {cpu} is not available to this process, which may run on CPUs {} only \
                 (see taskset, the cgroup's cpuset, or whether the CPU is online)",
                format_cpulist(allowed)
            ));
        }
    }
    Ok(())
}

/// Parses and checks a `server-cpulist` value against this host (see [`parse_cpulist`] and
/// [`check_cpus`]).
pub fn parse_for_this_host(text: &str) -> Result<Vec<usize>, String> {
    let cpus = parse_cpulist(text)?;
    check_cpus(&cpus, configured_cpus(), allowed_cpus().ok().as_deref())?;
    Ok(cpus)
}

/// The number of CPUs this host has, online or not (`sysconf(_SC_NPROCESSORS_CONF)`).
pub fn configured_cpus() -> usize {
    // SAFETY: sysconf reads a system setting; it has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(0).max(1)
}

/// The CPUs the calling thread may run on (`sched_getaffinity`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // A mask for at least 1024 CPUs (glibc's cpu_set_t), larger while the kernel's is larger.
    let mut words = configured_cpus().max(1024).div_ceil(WORD_BITS);
    loop {
        let mut mask: Vec<libc::c_ulong> = vec![0; words];
        let bytes = std::mem::size_of_val(mask.as_slice());
        // SAFETY: `mask` is writable for `bytes` bytes, in the kernel's layout for a CPU mask (an
        // array of unsigned longs); pid 0 is the calling thread.
        let rc = unsafe { libc::sched_getaffinity(0, bytes, mask.as_mut_ptr().cast()) };
        if rc == 0 {
            return Ok((0..words * WORD_BITS)
                .filter(|&cpu| mask[cpu / WORD_BITS] & (1 << (cpu % WORD_BITS)) != 0)
                .collect());
        }
        let err = io::Error::last_os_error();
        // EINVAL: the kernel's mask is larger than ours.
        if err.raw_os_error() != Some(libc::EINVAL) || words >= 1 << 16 {
            return Err(err);
        }
        words *= 2;
    }
}

/// Pins the calling thread to one CPU (`sched_setaffinity` with a mask of that CPU alone).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut mask: Vec<libc::c_ulong> = vec![0; cpu / WORD_BITS + 1];
    mask[cpu / WORD_BITS] = 1 << (cpu % WORD_BITS);
    let bytes = std::mem::size_of_val(mask.as_slice());
    // SAFETY: `mask` is readable for `bytes` bytes, in the kernel's layout for a CPU mask (an
    // array of unsigned longs, CPU n at bit n % WORD_BITS of word n / WORD_BITS); the kernel
    // only reads it.
    // pid 0 is the calling thread: only its affinity changes.
    if unsafe { libc::sched_setaffinity(0, bytes, mask.as_ptr().cast()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A thread-start hook (for tokio's `on_thread_start`) that pins each thread it runs on to the
/// next CPU of `cpus`, round-robin in start order; a failure is logged and the thread runs
/// unpinned.
pub fn round_robin(cpus: Vec<usize>) -> impl Fn() + Send + Sync + 'static {
    assert!(!cpus.is_empty(), "a CPU list to pin to");
    let next = AtomicUsize::new(0);
    move || {
        let cpu = cpus[next.fetch_add(1, Ordering::Relaxed) % cpus.len()];
        if let Err(e) = pin_current_thread(cpu) {
            log::warn!("Cannot pin a worker thread to CPU {cpu}: {e}");
        }
    }
}
