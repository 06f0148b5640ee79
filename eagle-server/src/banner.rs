//! The startup banner: what runs, on which pool, how durable its writes are, what was recovered
//! and where it listens.

use std::net::SocketAddr;

use eagle_core::Db;
use eagle_core::pmem::{Durability, FlushSource};

use crate::config::Config;
use crate::state::OpenKind;

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The banner's lines.
pub fn banner(
    db: &Db,
    config: &Config,
    open: OpenKind,
    listening: &[SocketAddr],
    metrics: Option<SocketAddr>,
) -> String {
    let engine = db.engine();
    let pool = engine.pool();
    let region = pool.region();
    let mode = pool.flush_mode();
    let durability = Durability::of(pool.kind(), mode, region.mapping().on_tmpfs());
    let source = match region.flush_source() {
        FlushSource::Option => "--flush",
        FlushSource::Environment => "EAGLE_FLUSH",
        FlushSource::Auto => "auto-detected",
    };
    let state = match open {
        OpenKind::Created => "created (new pool)",
        OpenKind::Clean => "opened after a clean shutdown",
        OpenKind::Crash => "recovered after a crash",
    };
    let addrs: Vec<String> = listening.iter().map(|a| a.to_string()).collect();
    let metrics = metrics.map_or_else(
        || "metrics off".to_string(),
        |a| format!("metrics http://{a}/metrics"),
    );
    format!(
        "EagleDB {} (Redis protocol, RESP2/RESP3) pid {} with {} worker threads\n\
         pool:       {} ({}, {}), {state}\n\
         durability: flush {mode} ({source}): {}\n\
         keys:       {}, open took {:.1} ms ({} logged batches redone{})\n\
         listening:  {} ({metrics})",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config.threads,
        pool.path().display(),
        pool.kind(),
        size(pool.header().pool_size),
        durability.describe(pool.kind(), mode),
        keys_line(db, open),
        engine.open_ns() as f64 / 1e6,
        engine.replayed_batches(),
        match engine.rolled_back_undo_records() {
            0 => String::new(),
            _ => ", an interrupted transaction rolled back".to_string(),
        },
        addrs.join(", "),
    )
}

/// The banner's key count. After a crash the count is only known once the background recovery
/// has counted every segment; the banner does not wait for it (serving starts at once).
fn keys_line(db: &Db, open: OpenKind) -> String {
    if open == OpenKind::Crash && !db.engine().index().recovered() {
        "being counted by the background recovery (see DBSIZE or INFO keyspace)".to_string()
    } else {
        format!("{} recovered", db.dbsize())
    }
}
