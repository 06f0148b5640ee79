//! `eagle-server`, for now the embedded default only: opens (or creates) `./eagle.pool`, prints
//! what kind of pool it is and what durability that gives, and holds it open until SIGINT or
//! SIGTERM, then closes it cleanly. The RESP server replaces this body (issue: eagle-server).

use std::process::ExitCode;

use eagle_core::pmem::Durability;
use eagle_core::{Pool, PoolOptions};

fn main() -> ExitCode {
    let path = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "eagle.pool".into());
    // Block the signals before any thread exists, then wait for one synchronously.
    let signals = block_termination_signals();
    let pool = match Pool::open(&path, PoolOptions::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("eagle-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let region = pool.region();
    let durability = Durability::of(pool.kind(), pool.flush_mode(), region.mapping().on_tmpfs());
    println!(
        "EagleDB {} | pool {} ({}, {} bytes, {}) | flush {} ({:?})\n{}",
        env!("CARGO_PKG_VERSION"),
        pool.path().display(),
        pool.kind(),
        pool.header().pool_size,
        if pool.created() {
            "created"
        } else if pool.was_clean() {
            "opened after a clean shutdown"
        } else {
            "opened after a crash"
        },
        pool.flush_mode(),
        region.flush_source(),
        durability.describe(pool.kind(), pool.flush_mode()),
    );
    println!("holding the pool open; Ctrl-C (SIGINT) or SIGTERM closes it cleanly");
    wait_for(&signals);
    match pool.close() {
        Ok(()) => {
            println!("pool closed cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eagle-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the calls only modify it and this thread's signal mask.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn wait_for(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
}
