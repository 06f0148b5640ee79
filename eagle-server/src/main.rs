//! `eagle-server`: opens (or creates) the pool, prints the banner, serves the Redis protocol
//! until SHUTDOWN, SIGTERM or SIGINT, lets connections finish what they have received, then
//! closes the pool cleanly (the next start reports "opened after a clean shutdown").

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use eagle_core::pmem::CpuFlushCaps;
use eagle_core::{Db, DbOptions, FlushMode, PoolOptions};
use eagle_server::cmd::Shared;
use eagle_server::config::{Cli, Config, FlushSetting};
use eagle_server::state::{OpenKind, ServerState};
use eagle_server::{affinity, banner, logger, metrics, net};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("eagle-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    logger::init(config.loglevel);
    raise_fd_limit(config.maxclients);

    // Listen first: a busy port is refused before the pool is touched.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(config.threads)
        .thread_name("eagle-worker")
        .enable_all();
    if let Some(list) = &config.server_cpulist {
        log::info!(
            "Pinning the {} worker threads to CPUs {} (server-cpulist {}), one CPU each in turn",
            config.threads,
            affinity::format_cpulist(&list.cpus),
            list.text
        );
        builder.on_thread_start(affinity::round_robin(list.cpus.clone()));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("Cannot start the worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = runtime.block_on(async {
        let redis = net::listen_all(&config.bind, config.port)?;
        let metrics = match &config.metrics_addr {
            None => None,
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("could not listen on {addr} for metrics: {e}"),
                )
            })?),
        };
        std::io::Result::Ok((redis, metrics))
    });
    let (listeners, metrics_listener) = match bound {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match &metrics_listener {
        None => None,
        Some(_) => match metrics::install() {
            Ok(h) => Some(h),
            Err(e) => {
                log::error!("Cannot install the metrics recorder: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // From here a SIGTERM or SIGINT (even during recovery) means a clean shutdown once serving.
    let signals = {
        let _entered = runtime.enter();
        match net::catch_signals() {
            Ok(s) => s,
            Err(e) => {
                log::error!("Cannot catch SIGTERM/SIGINT: {e}");
                return ExitCode::FAILURE;
            }
        }
    };

    let flush = match config.flush {
        FlushSetting::Default => None,
        FlushSetting::Auto => Some(FlushMode::best_for(CpuFlushCaps::detect())),
        FlushSetting::Mode(m) => Some(m),
    };
    let opts = DbOptions {
        pool: PoolOptions {
            create: true,
            size: config.pool_size,
            require_dax: config.require_dax,
            flush,
            ..PoolOptions::default()
        },
        ..DbOptions::default()
    };
    let db = match Db::open(&config.pool, opts) {
        Ok(db) => db,
        Err(e) => {
            log::error!("Cannot open the pool {}: {e}", config.pool.display());
            return ExitCode::FAILURE;
        }
    };
    db.set_eviction(config.maxmemory_policy);
    let pool = db.engine().pool();
    let open_kind = if pool.created() {
        OpenKind::Created
    } else if pool.was_clean() {
        OpenKind::Clean
    } else {
        OpenKind::Crash
    };

    let listening: Vec<_> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if config.protected_mode
        && config.requirepass.is_none()
        && listening.iter().any(|a| !a.ip().is_loopback())
    {
        log::warn!(
            "Listening beyond the loopback interface without a password: protected mode refuses \
             clients from other hosts (set requirepass, or protected-mode no)"
        );
    }
    let db = Arc::new(db);
    db.start_active_expiry();
    // Chooses the clock that times commands (and measures its rate) before any command runs.
    eagle_server::stopwatch::calibrate();
    log::info!(
        "Command durations from {}",
        if eagle_server::stopwatch::uses_tsc() {
            "the CPU's time-stamp counter (clocksource tsc)"
        } else {
            "the monotonic clock"
        }
    );
    println!(
        "{}",
        banner::banner(&db, &config, open_kind, &listening, metrics_addr)
    );
    let shared = Arc::new(Shared {
        db,
        server: ServerState::new(config, open_kind),
    });
    *shared.server.listening.lock() = listening;
    log::info!("Ready to accept connections tcp");

    runtime.block_on(async {
        if let (Some(l), Some(h)) = (metrics_listener, handle) {
            tokio::spawn(metrics::serve_http(l, h, shared.clone()));
        }
        net::serve(shared.clone(), listeners, signals).await;
    });
    // Drops every task still holding the keyspace (connections past the drain timeout).
    runtime.shutdown_timeout(Duration::from_secs(5));
    // A BGSAVE still running holds the keyspace too: let it finish its file.
    shared.server.saves.wait();

    let Some(shared) = unwrap_arc(shared) else {
        log::error!("The keyspace is still in use; exiting without closing the pool cleanly");
        return ExitCode::FAILURE;
    };
    let Some(db) = unwrap_arc(shared.db) else {
        log::error!("The keyspace is still in use; exiting without closing the pool cleanly");
        return ExitCode::FAILURE;
    };
    log::info!("Closing the pool...");
    match db.close() {
        Ok(()) => {
            log::warn!("EagleDB is now ready to exit, bye bye...");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("Closing the pool failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Takes sole ownership, waiting a moment for short-lived references (the expiry sweep holds
/// one while it runs a cycle).
fn unwrap_arc<T>(mut arc: Arc<T>) -> Option<T> {
    for _ in 0..500 {
        match Arc::try_unwrap(arc) {
            Ok(v) => return Some(v),
            Err(a) => arc = a,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Raises the open-files limit toward what `maxclients` needs, as Redis does.
fn raise_fd_limit(maxclients: u64) {
    let want = maxclients.saturating_add(64);
    // SAFETY: rlimit is plain data, filled by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur as u64 >= want {
        return;
    }
    let target = want.min(lim.rlim_max as u64);
    let new = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 || target < want {
        log::warn!(
            "Open files limit is {target}: fewer than maxclients {maxclients} clients may connect"
        );
    }
}
