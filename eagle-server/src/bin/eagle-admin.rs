//! `eagle-admin`: inspect, verify, back up and restore a pool.
//!
//! Every subcommand opens the pool as the server does, so a pool that was not closed cleanly is
//! recovered first, and closes it cleanly afterwards (`info` and `check` with `--no-repair`
//! recover into memory only and never write the file); the pool must not be in use (it is
//! locked while open: back up a running server with `SAVE` or `BGSAVE`). `check` exits 1 if it finds
//! damage; `backup` and `restore` exit 1 if they fail; all exit 2 if the pool cannot be opened.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eagle_core::db::RestoreOptions;
use eagle_core::pmem::Durability;
use eagle_core::{Db, DbOptions, Engine, EngineError, PoolError, PoolOptions, SnapshotError};

#[derive(Parser)]
#[command(
    name = "eagle-admin",
    version,
    about = "Inspect, verify, back up and restore an EagleDB pool"
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
        /// Recover into this process's memory only: the pool file is never written, so a pool
        /// that was not closed cleanly stays as it was (a file, not a device-dax device).
        #[arg(long)]
        no_repair: bool,
    },
    /// Walk every reachable structure: checksums, placement, references, space accounting.
    Check {
        /// The pool file or device.
        pool: PathBuf,
        /// Recover into this process's memory only: the pool file is never written, so a pool
        /// that was not closed cleanly stays as it was (a file, not a device-dax device).
        #[arg(long)]
        no_repair: bool,
    },
    /// Write a snapshot of every key to FILE.
    ///
    /// The file is written as FILE.tmp and renamed once durable. The pool must not be in use: for
    /// a pool a running server has open, use the server's SAVE or BGSAVE instead.
    Backup {
        /// The pool file or device.
        pool: PathBuf,
        /// The snapshot file to write.
        file: PathBuf,
    },
    /// Load a snapshot into POOL (verified whole before anything is written).
    ///
    /// A missing pool file is created, built as POOL.restoring and renamed when complete. An
    /// existing pool must have no keys, unless --force.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The pool file or device.
        pool: PathBuf,
        /// Size of a new pool file, e.g. 64mb, 8gb [default: 1gb]; ignored for an existing pool.
        #[arg(long, value_name = "SIZE")]
        pool_size: Option<String>,
        /// Replace the keys an existing pool has (removed once the snapshot is verified).
        #[arg(long)]
        force: bool,
    },
}

fn open(pool: &PathBuf, no_repair: bool) -> Result<Engine, ExitCode> {
    Engine::open(
        pool,
        PoolOptions {
            create: false,
            private: no_repair,
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
        Command::Info { pool, no_repair } => info(&pool, no_repair),
        Command::Check { pool, no_repair } => check(&pool, no_repair),
        Command::Backup { pool, file } => backup(&pool, &file),
        Command::Restore {
            file,
            pool,
            pool_size,
            force,
        } => restore(&file, &pool, pool_size.as_deref(), force),
    }
}

fn info(path: &PathBuf, no_repair: bool) -> ExitCode {
    let e = match open(path, no_repair) {
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
        match (p.was_clean(), no_repair) {
            (true, _) => "yes",
            (false, false) => "no (recovered by this open)",
            (false, true) => "no (recovered in memory only: the file was not written)",
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
    closed(e.close())
}

fn check(path: &PathBuf, no_repair: bool) -> ExitCode {
    let e = match open(path, no_repair) {
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
    let code = closed(e.close());
    if !clean {
        println!("check: DAMAGED ({} problems)", r.problems.len());
        return ExitCode::from(1);
    }
    println!("check: ok");
    code
}

/// The exit code of closing the pool (`Engine::close`, `Db::close`).
fn closed(result: Result<(), EngineError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("eagle-admin: closing: {err}");
            ExitCode::from(2)
        }
    }
}

/// Opens the keyspace in `pool` (creating a pool of `size` bytes if `create`).
fn open_db(pool: &Path, create: bool, size: u64) -> Result<Db, ExitCode> {
    let opts = DbOptions {
        pool: PoolOptions {
            create,
            size,
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    };
    Db::open(pool, opts).map_err(|e| {
        eprintln!("eagle-admin: {e}");
        if matches!(e, EngineError::Pool(PoolError::Locked { .. })) {
            eprintln!(
                "eagle-admin: a running server has it open: back it up through the server \
                 (redis-cli SAVE, or BGSAVE; the file is CONFIG GET dir + dbfilename), or stop \
                 the server first"
            );
        }
        ExitCode::from(2)
    })
}

fn backup(pool: &Path, file: &Path) -> ExitCode {
    let db = match open_db(pool, false, 0) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let result = db.snapshot_to(file);
    let code = closed(db.close());
    match result {
        Ok(s) => {
            println!(
                "backup: {} keys ({} expired left out), {} bytes in {} ms -> {}",
                s.keys,
                s.expired,
                s.bytes,
                s.elapsed.as_millis(),
                file.display()
            );
            code
        }
        Err(e) => {
            eprintln!("eagle-admin: backup failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn restore(file: &Path, pool: &Path, size: Option<&str>, force: bool) -> ExitCode {
    let size = match size.map(eagle_server::config::parse_size) {
        None => eagle_server::config::Config::default().pool_size,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("eagle-admin: --pool-size: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = RestoreOptions { replace: force };
    if pool.exists() {
        let db = match open_db(pool, false, 0) {
            Ok(db) => db,
            Err(code) => return code,
        };
        let result = db.restore_from(file, opts);
        let code = closed(db.close());
        return report(result, pool, code);
    }
    // A new pool is built under another name and renamed once complete: a restore that fails or
    // is interrupted never leaves a partial pool under the name the server opens.
    let mut building = pool.as_os_str().to_owned();
    building.push(".restoring");
    let building = PathBuf::from(building);
    if building.exists() {
        eprintln!(
            "eagle-admin: {} exists (left by an interrupted restore?): remove it first",
            building.display()
        );
        return ExitCode::from(2);
    }
    let db = match open_db(&building, true, size) {
        Ok(db) => db,
        Err(code) => {
            let _ = std::fs::remove_file(&building);
            return code;
        }
    };
    let result = db.restore_from(file, opts);
    let mut code = closed(db.close());
    if result.is_ok()
        && code == ExitCode::SUCCESS
        && let Err(e) = rename_durably(&building, pool)
    {
        eprintln!(
            "eagle-admin: renaming {} to {}: {e}",
            building.display(),
            pool.display()
        );
        code = ExitCode::from(2);
    }
    if result.is_err() || code != ExitCode::SUCCESS {
        let _ = std::fs::remove_file(&building);
    }
    report(result, pool, code)
}

fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
}

fn report(
    result: Result<eagle_core::db::RestoreStats, SnapshotError>,
    pool: &Path,
    code: ExitCode,
) -> ExitCode {
    match result {
        Ok(r) => {
            println!(
                "restore: {} keys ({} expired since the snapshot left out, {} replaced), {} bytes in {} ms -> {}",
                r.keys,
                r.expired,
                r.replaced,
                r.bytes,
                r.elapsed.as_millis(),
                pool.display()
            );
            code
        }
        Err(e) => {
            eprintln!("eagle-admin: restore failed: {e}");
            if matches!(
                e,
                SnapshotError::NotEmpty { .. } | SnapshotError::Interrupted { .. }
            ) {
                eprintln!("eagle-admin: --force replaces the keys the pool has");
            }
            ExitCode::from(1)
        }
    }
}
