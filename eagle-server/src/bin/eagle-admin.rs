//! `eagle-admin`: inspect and verify a pool.
//!
//! Both subcommands open the pool as the server does, so a pool that was not closed cleanly is
//! recovered first, and close it cleanly afterwards; the pool must not be in use (it is locked
//! while open). `check` exits 1 if it finds damage, 2 if the pool cannot be opened.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eagle_core::pmem::Durability;
use eagle_core::{Engine, PoolOptions};

#[derive(Parser)]
#[command(
    name = "eagle-admin",
    version,
    about = "Inspect and verify an EagleDB pool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Format version, size, space, keys, shutdown state and last recovery of a pool.
    Info {
        /// The pool file or device.
        pool: PathBuf,
    },
    /// Walk every reachable structure: checksums, placement, references, space accounting.
    Check {
        /// The pool file or device.
        pool: PathBuf,
    },
}

fn open(pool: &PathBuf) -> Result<Engine, ExitCode> {
    Engine::open(
        pool,
        PoolOptions {
            create: false,
            ..PoolOptions::default()
        },
    )
    .map_err(|e| {
        eprintln!("eagle-admin: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Info { pool } => info(&pool),
        Command::Check { pool } => check(&pool),
    }
}

fn info(path: &PathBuf) -> ExitCode {
    let e = match open(path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let p = e.pool();
    let h = p.header();
    let heap = e.index().heap().stats();
    let idx = e.index().stats();
    let uuid: String = h.uuid.iter().map(|b| format!("{b:02x}")).collect();
    println!("pool:             {}", path.display());
    println!("kind:             {}", p.kind());
    println!("flush mode:       {}", p.flush_mode());
    println!(
        "durability:       {}",
        Durability::of(p.kind(), p.flush_mode(), p.region().mapping().on_tmpfs())
            .describe(p.kind(), p.flush_mode())
    );
    println!("format version:   {}", h.version);
    println!("uuid:             {uuid}");
    println!("size:             {} bytes", h.pool_size);
    println!(
        "wal:              {} bytes at {:#x}",
        h.layout.wal.len, h.layout.wal.offset
    );
    println!(
        "heap:             {} bytes at {:#x}",
        h.layout.heap.len, h.layout.heap.offset
    );
    println!("heap used:        {} bytes", heap.used);
    println!(
        "heap free:        {} bytes ({} free chunks)",
        heap.free(),
        heap.free_chunks
    );
    println!("fragmentation:    {:.1}%", heap.fragmentation() * 100.0);
    println!("keys:             {}", idx.len);
    println!(
        "segments:         {} (global depth {}, load factor {:.3})",
        idx.segments, idx.global_depth, idx.load_factor
    );
    println!(
        "clean shutdown:   {}",
        if p.was_clean() {
            "yes"
        } else {
            "no (recovered by this open)"
        }
    );
    println!("recovery epoch:   {}", p.recovery_epoch());
    match p.last_recovery() {
        Some((at, ns)) => println!(
            "last recovery:    at {at} ms since the Unix epoch, took {:.3} ms",
            ns as f64 / 1e6
        ),
        None => println!("last recovery:    never"),
    }
    close(e)
}

fn check(path: &PathBuf) -> ExitCode {
    let e = match open(path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let r = e.check();
    println!(
        "check: {} records in {} segments, {} bytes reachable, {} bytes accounted in use, {} awaiting reclamation",
        r.records, r.segments, r.reachable_bytes, r.heap_used, r.garbage
    );
    let clean = r.is_clean();
    for p in &r.problems {
        println!("problem: {p}");
    }
    let code = close(e);
    if !clean {
        println!("check: DAMAGED ({} problems)", r.problems.len());
        return ExitCode::from(1);
    }
    println!("check: ok");
    code
}

fn close(e: Engine) -> ExitCode {
    match e.close() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("eagle-admin: closing: {err}");
            ExitCode::from(2)
        }
    }
}
