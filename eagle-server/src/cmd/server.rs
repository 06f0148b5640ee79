//! Server commands: INFO, CONFIG, DBSIZE, FLUSHDB/FLUSHALL, TIME, COMMAND, MEMORY, SHUTDOWN
//! (SAVE, BGSAVE and LASTSAVE are in `save.rs`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use eagle_core::db::glob_match;
use eagle_core::pmem::Durability;
use eagle_core::resp::Frame;

use super::connection::REDIS_VERSION;
use super::ctx::Ctx;
use super::parse::{CmdError, Parse};
use super::table::{Command, Spec, lookup, quoted, run, subcommand, table};
use crate::config::{PARAMS, PROTECTED, param};

fn sub_arity(cmd: &str, sub: &str) -> CmdError {
    CmdError::new(format!(
        "ERR wrong number of arguments for '{cmd}|{}' command",
        sub.to_ascii_lowercase()
    ))
}

fn unknown_sub(cmd: &str, sub: &str) -> CmdError {
    CmdError::new(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        quoted(sub),
        cmd.to_ascii_uppercase()
    ))
}

fn help(lines: &[&'static str]) -> Frame {
    Frame::Array(
        lines
            .iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

fn bulk_str(s: impl Into<String>) -> Frame {
    Frame::Bulk(Bytes::from(s.into()))
}

// ---------------------------------------------------------------------------------------------
// INFO

struct Info(Vec<String>);
impl Command for Info {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Info(
            p.rest()
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        ))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::verbatim_txt(info_text(ctx, &self.0)))
    }
}

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
    "eagle",
];
const ALL_EXTRA: &[&str] = &["commandstats"];

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: rusage is plain data; getrusage fills it and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

fn uname() -> String {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{} {} {}",
        read("ostype"),
        read("osrelease"),
        std::env::consts::ARCH
    )
}

/// The INFO text of `wanted` sections (empty: the default ones).
pub fn info_text(ctx: &Ctx<'_>, wanted: &[String]) -> String {
    let mut sections: Vec<&str> = Vec::new();
    if wanted.is_empty() || wanted.iter().any(|w| w == "default") {
        sections.extend(DEFAULT_SECTIONS);
    }
    if wanted.iter().any(|w| w == "all" || w == "everything") {
        sections.extend(DEFAULT_SECTIONS);
        sections.extend(ALL_EXTRA);
    }
    for w in wanted {
        if DEFAULT_SECTIONS.contains(&w.as_str()) || ALL_EXTRA.contains(&w.as_str()) {
            sections.push(w);
        }
    }
    let mut seen = Vec::new();
    sections.retain(|s| {
        if seen.contains(s) {
            false
        } else {
            seen.push(*s);
            true
        }
    });

    let server = ctx.server();
    let db = ctx.db();
    let stats = db.stats();
    let config = server.config();
    let engine = db.engine();
    let pool = engine.pool();
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let mut s = String::new();
        let mut f = |k: &str, v: &dyn std::fmt::Display| {
            let _ = write!(s, "{k}:{v}\r\n");
        };
        match *section {
            "server" => {
                let uptime = server.started.elapsed().as_secs();
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                let port = server
                    .listening
                    .lock()
                    .first()
                    .map_or(config.port, |a| a.port());
                f("redis_version", &REDIS_VERSION);
                f("redis_git_sha1", &"00000000");
                f("redis_git_dirty", &0);
                f("redis_build_id", &"0");
                f("redis_mode", &"standalone");
                f("os", &uname());
                f("arch_bits", &(usize::BITS));
                f("monotonic_clock", &"POSIX clock_gettime");
                f("multiplexing_api", &"epoll");
                f("atomicvar_api", &"c11-builtin");
                f("gcc_version", &"0.0.0");
                f("process_id", &std::process::id());
                f("process_supervised", &"no");
                f("run_id", &server.run_id);
                f("tcp_port", &port);
                f("server_time_usec", &now_us);
                f("uptime_in_seconds", &uptime);
                f("uptime_in_days", &(uptime / 86400));
                f("hz", &10);
                f("configured_hz", &10);
                f("lru_clock", &0);
                f(
                    "executable",
                    &std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                );
                f(
                    "config_file",
                    &config
                        .config_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                );
                f("io_threads_active", &0);
                f("eagle_version", &env!("CARGO_PKG_VERSION"));
                f("eagle_worker_threads", &config.threads);
            }
            "clients" => {
                f("connected_clients", &server.clients.connected());
                f("cluster_connections", &0);
                f("maxclients", &config.maxclients);
                f("client_recent_max_input_buffer", &0);
                f("client_recent_max_output_buffer", &0);
                f("blocked_clients", &0);
                f("tracking_clients", &0);
                f("clients_in_timeout_table", &0);
            }
            "memory" => {
                let used = stats.heap.used;
                let rss = rss_bytes();
                f("used_memory", &used);
                f("used_memory_human", &human(used));
                f("used_memory_rss", &rss);
                f("used_memory_rss_human", &human(rss));
                f("used_memory_peak", &used);
                f("used_memory_peak_human", &human(used));
                f("used_memory_dataset", &used);
                f("maxmemory", &0);
                f("maxmemory_human", &"0B");
                f("maxmemory_policy", &ctx.db().eviction().name());
                f(
                    "mem_fragmentation_ratio",
                    &format!("{:.2}", 1.0 + stats.heap.fragmentation()),
                );
                f("mem_allocator", &"eagle-pmem-heap");
                f("lazyfree_pending_objects", &0);
            }
            "persistence" => {
                let saves = server.saves.info();
                f("loading", &0);
                f("async_loading", &0);
                f("rdb_changes_since_last_save", &saves.changes);
                f("rdb_bgsave_in_progress", &(saves.bgsave_in_progress as u8));
                f("rdb_last_save_time", &saves.last_save);
                f(
                    "rdb_last_bgsave_status",
                    &if saves.last_bgsave_ok { "ok" } else { "err" },
                );
                f("rdb_last_bgsave_time_sec", &saves.last_bgsave_secs);
                f("rdb_current_bgsave_time_sec", &saves.current_bgsave_secs);
                f("rdb_saves", &saves.saves);
                f("aof_enabled", &0);
                f("aof_rewrite_in_progress", &0);
                f("aof_rewrite_scheduled", &0);
                f("aof_last_bgrewrite_status", &"ok");
                f("aof_last_write_status", &"ok");
                f("eagle_every_write_durable", &1);
            }
            "stats" => {
                let st = &server.stats;
                let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                f("total_connections_received", &r(&st.connections_received));
                f("total_commands_processed", &r(&st.commands_processed));
                f("instantaneous_ops_per_sec", &r(&st.ops_per_sec));
                f("total_net_input_bytes", &r(&st.net_input_bytes));
                f("total_net_output_bytes", &r(&st.net_output_bytes));
                f("rejected_connections", &r(&st.rejected_connections));
                f("expired_keys", &stats.expired_keys);
                f("evicted_keys", &stats.evicted_keys);
                f("keyspace_hits", &stats.keyspace_hits);
                f("keyspace_misses", &stats.keyspace_misses);
                f("pubsub_channels", &0);
                f("pubsub_patterns", &0);
                f("total_error_replies", &r(&st.error_replies));
                f("total_protocol_errors", &r(&st.protocol_errors));
                f("grouped_sets", &r(&st.grouped_sets));
                f("grouped_incrs", &r(&st.grouped_incrs));
            }
            "replication" => {
                f("role", &"master");
                f("connected_slaves", &0);
                f("master_failover_state", &"no-failover");
                f("master_replid", &server.run_id);
                f("master_repl_offset", &0);
            }
            "cpu" => {
                let (sys, user) = cpu_times();
                f("used_cpu_sys", &format!("{sys:.6}"));
                f("used_cpu_user", &format!("{user:.6}"));
            }
            "modules" => {}
            "errorstats" => {
                let mut codes: Vec<(String, u64)> = server
                    .stats
                    .errors_by_code
                    .lock()
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                codes.sort();
                for (code, n) in codes {
                    f(&format!("errorstat_{code}"), &format!("count={n}"));
                }
            }
            "cluster" => f("cluster_enabled", &0),
            "keyspace" if stats.keys > 0 => {
                f(
                    "db0",
                    &format!(
                        "keys={},expires={},avg_ttl={}",
                        stats.keys, stats.expires, stats.avg_ttl_ms
                    ),
                );
            }
            "commandstats" => {
                let mut names: Vec<_> = server.stats.cmds().iter().collect();
                names.sort_by_key(|(n, _)| **n);
                for (name, st) in names {
                    let calls = st.calls.load(Ordering::Relaxed);
                    let rejected = st.rejected.load(Ordering::Relaxed);
                    if calls == 0 && rejected == 0 {
                        continue;
                    }
                    let usec = st.usec.load(Ordering::Relaxed);
                    f(
                        &format!("cmdstat_{name}"),
                        &format!(
                            "calls={calls},usec={usec},usec_per_call={:.2},rejected_calls={rejected},failed_calls={}",
                            usec as f64 / calls.max(1) as f64,
                            st.failed.load(Ordering::Relaxed)
                        ),
                    );
                }
            }
            "eagle" => {
                let on_tmpfs = pool.region().mapping().on_tmpfs();
                let durability = match Durability::of(pool.kind(), pool.flush_mode(), on_tmpfs) {
                    Durability::PowerLoss => "power-loss",
                    Durability::ProcessCrash => "process-crash",
                    Durability::ProcessCrashUntilReboot => "process-crash-until-reboot",
                    Durability::Simulated => "simulated",
                };
                f("pool_path", &pool.path().display());
                f("pool_kind", &pool.kind());
                f("pool_flush_mode", &pool.flush_mode());
                f("pool_durability", &durability);
                f("pool_size", &pool.header().pool_size);
                f("pool_bytes_used", &stats.heap.used);
                f("pool_bytes_free", &stats.heap.free());
                f("pool_heap_capacity", &stats.heap.capacity);
                f("pool_free_chunks", &stats.heap.free_chunks);
                f("pool_reserved_chunks", &stats.heap.reserved_chunks);
                f(
                    "pool_fragmentation",
                    &format!("{:.4}", stats.heap.fragmentation()),
                );
                f("wal_bytes_used", &stats.wal_used);
                f("wal_bytes_capacity", &stats.wal_capacity);
                f("index_segments", &stats.index.segments);
                f(
                    "index_load_factor",
                    &format!("{:.4}", stats.index.load_factor),
                );
                f("epoch_garbage_bytes", &stats.index.garbage_bytes);
                f("hash_part_appends", &stats.hash_part_appends);
                f("hash_part_writes", &stats.hash_part_writes);
                f("hash_table_doublings", &stats.hash_table_doublings);
                f("last_open", &server.open_kind.word());
                f(
                    "recovery_time_ms",
                    &format!("{:.3}", engine.open_ns() as f64 / 1e6),
                );
                f("replayed_batches", &engine.replayed_batches());
                f(
                    "rolled_back_undo_records",
                    &engine.rolled_back_undo_records(),
                );
                f("writable", &(engine.writable() as u8));
            }
            _ => {}
        }
        let title = match *section {
            "cpu" => "CPU".to_string(),
            "errorstats" => "Errorstats".to_string(),
            "commandstats" => "Commandstats".to_string(),
            other => {
                let mut c = other.chars();
                c.next()
                    .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        };
        let _ = write!(out, "# {title}\r\n{s}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// CONFIG

struct Config {
    sub: String,
    args: Vec<Bytes>,
}

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "HELP",
    "    Print this help.",
];

impl Command for Config {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Config {
            sub: subcommand(&p.bytes()?),
            args: p.rest(),
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let server = ctx.server();
        match self.sub.to_ascii_uppercase().as_str() {
            "GET" => {
                if self.args.is_empty() {
                    return Err(sub_arity("config", &self.sub));
                }
                let config = server.config();
                let mut pairs = Vec::new();
                for p in PARAMS {
                    if self
                        .args
                        .iter()
                        .any(|pat| glob_match(&pat.to_ascii_lowercase(), p.name.as_bytes()))
                    {
                        pairs.push((bulk_str(p.name), bulk_str((p.get)(&config))));
                    }
                }
                Ok(Frame::Map(pairs))
            }
            "SET" => {
                if self.args.len() < 2 {
                    return Err(sub_arity("config", &self.sub));
                }
                if !self.args.len().is_multiple_of(2) {
                    return Err(CmdError::syntax());
                }
                let mut names: Vec<&'static str> = Vec::new();
                let mut next = server.config();
                for pair in self.args.chunks(2) {
                    let name = String::from_utf8_lossy(&pair[0]).into_owned();
                    let value = String::from_utf8_lossy(&pair[1]).into_owned();
                    let failed = |why: &str| {
                        CmdError::new(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
                        ))
                    };
                    let Some(p) = param(&name) else {
                        return Err(CmdError::new(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        )));
                    };
                    if names.contains(&p.name) {
                        return Err(failed("duplicate parameter"));
                    }
                    names.push(p.name);
                    let set = match p.set {
                        Some(set) if p.mutable => set,
                        _ => return Err(failed("can't set immutable config")),
                    };
                    let peer = ctx.session.client.as_ref().map(|c| c.addr.ip());
                    if PROTECTED.contains(&p.name) && !next.enable_protected_configs.allows(peer) {
                        return Err(failed("can't set protected config"));
                    }
                    set(&mut next, &value).map_err(|e| failed(&e))?;
                }
                // Inside the update, so the keyspace's policy and CONFIG GET's never disagree.
                server.update_config(|c| {
                    ctx.db().set_eviction(next.maxmemory_policy);
                    *c = next
                });
                Ok(Frame::ok())
            }
            "RESETSTAT" => {
                if !self.args.is_empty() {
                    return Err(sub_arity("config", &self.sub));
                }
                server.stats.reset();
                ctx.db().reset_stats();
                Ok(Frame::ok())
            }
            "REWRITE" => {
                if server.with_config(|c| c.config_file.is_none()) {
                    Err(CmdError::new(
                        "ERR The server is running without a config file",
                    ))
                } else {
                    Err(CmdError::new(
                        "ERR CONFIG REWRITE is not supported: edit the configuration file",
                    ))
                }
            }
            "HELP" if !self.args.is_empty() => Err(sub_arity("config", &self.sub)),
            "HELP" => Ok(help(CONFIG_HELP)),
            _ => Err(unknown_sub("config", &self.sub)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DBSIZE, FLUSHALL, FLUSHDB, TIME, SHUTDOWN

struct DbSize;
impl Command for DbSize {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(DbSize)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(Frame::Integer(ctx.db().dbsize() as i64))
    }
}

struct Flush;
impl Command for Flush {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        if let Some(mode) = p.maybe_bytes()
            && !mode.eq_ignore_ascii_case(b"ASYNC")
            && !mode.eq_ignore_ascii_case(b"SYNC")
        {
            return Err(CmdError::syntax());
        }
        p.finish()?;
        Ok(Flush)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        ctx.db().flushall()?;
        ctx.server().watches.touch_all();
        Ok(Frame::ok())
    }
}

struct Time;
impl Command for Time {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(Time)
    }
    fn apply(self, _ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Frame::Array(vec![
            bulk_str(now.as_secs().to_string()),
            bulk_str(now.subsec_micros().to_string()),
        ]))
    }
}

struct Shutdown {
    abort: bool,
    save: bool,
    force: bool,
}
impl Command for Shutdown {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let (mut abort, mut save, mut force) = (false, false, false);
        let mut save_given = false;
        let mut flags = 0;
        while let Some(opt) = p.maybe_bytes() {
            let opt = String::from_utf8_lossy(&opt).to_ascii_uppercase();
            flags += 1;
            match opt.as_str() {
                "NOSAVE" | "SAVE" if !save_given => {
                    save_given = true;
                    save = opt == "SAVE";
                }
                "NOW" => {}
                "FORCE" => force = true,
                "ABORT" => abort = true,
                _ => return Err(CmdError::syntax()),
            }
        }
        if abort && flags > 1 {
            return Err(CmdError::syntax());
        }
        Ok(Shutdown { abort, save, force })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        if self.abort {
            return Err(CmdError::new("ERR No shutdown in progress."));
        }
        log::warn!("User requested shutdown...");
        // SAVE writes a snapshot first (every write is durable in the pool either way); as in
        // Redis, a failed save cancels the shutdown unless FORCE.
        if self.save {
            let path = ctx.server().with_config(|c| c.snapshot_path());
            if ctx.server().saves.save(ctx.db(), &path).is_err() {
                if !self.force {
                    log::warn!("Error trying to save the DB, can't exit.");
                    return Err(CmdError::new("ERR Errors trying to SHUTDOWN. Check logs."));
                }
                log::warn!("Error trying to save the DB, exiting anyway (FORCE).");
            }
        }
        ctx.server().trigger_shutdown();
        // Like Redis, no reply: the connection closes (the pool is closed cleanly on the way out).
        ctx.session.close = true;
        ctx.session.silent = true;
        Ok(Frame::ok())
    }
}

// ---------------------------------------------------------------------------------------------
// COMMAND

fn command_info(spec: &Spec) -> Frame {
    Frame::Array(vec![
        bulk_str(spec.name),
        Frame::Integer(spec.arity as i64),
        Frame::Set(
            spec.flags
                .iter()
                .map(|f| Frame::Simple(Bytes::from_static(f.as_bytes())))
                .collect(),
        ),
        Frame::Integer(spec.keys.0 as i64),
        Frame::Integer(spec.keys.1 as i64),
        Frame::Integer(spec.keys.2 as i64),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

fn sorted_specs() -> Vec<&'static Spec> {
    let mut specs: Vec<&'static Spec> = table().values().copied().collect();
    specs.sort_by_key(|s| s.name);
    specs
}

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "HELP",
    "    Print this help.",
];

struct CommandCmd {
    sub: Option<String>,
    args: Vec<Bytes>,
}
impl Command for CommandCmd {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(CommandCmd {
            sub: p.maybe_bytes().map(|s| subcommand(&s)),
            args: p.rest(),
        })
    }
    fn apply(self, _ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let Some(sub) = self.sub else {
            return Ok(Frame::Array(
                sorted_specs().into_iter().map(command_info).collect(),
            ));
        };
        let args = &self.args;
        match sub.to_ascii_uppercase().as_str() {
            "COUNT" => {
                if !args.is_empty() {
                    return Err(sub_arity("command", &sub));
                }
                Ok(Frame::Integer(table().len() as i64))
            }
            "INFO" => {
                if args.is_empty() {
                    return Ok(Frame::Array(
                        sorted_specs().into_iter().map(command_info).collect(),
                    ));
                }
                Ok(Frame::Array(
                    args.iter()
                        .map(|n| lookup(n).map_or(Frame::Null, command_info))
                        .collect(),
                ))
            }
            "DOCS" => {
                let specs: Vec<&'static Spec> = if args.is_empty() {
                    sorted_specs()
                } else {
                    args.iter().filter_map(|n| lookup(n)).collect()
                };
                Ok(Frame::Map(
                    specs
                        .into_iter()
                        .map(|s| (bulk_str(s.name), Frame::Map(Vec::new())))
                        .collect(),
                ))
            }
            "LIST" => {
                let pattern = match args.len() {
                    0 => None,
                    3 if args[0].eq_ignore_ascii_case(b"FILTERBY") => {
                        let kind = String::from_utf8_lossy(&args[1]).to_ascii_uppercase();
                        match kind.as_str() {
                            "PATTERN" => Some(args[2].to_ascii_lowercase()),
                            // No modules; ACL categories are not kept.
                            "MODULE" | "ACLCAT" => return Ok(Frame::Array(Vec::new())),
                            _ => return Err(CmdError::syntax()),
                        }
                    }
                    _ => return Err(CmdError::syntax()),
                };
                Ok(Frame::Array(
                    sorted_specs()
                        .into_iter()
                        .filter(|s| {
                            pattern
                                .as_ref()
                                .is_none_or(|p| glob_match(p, s.name.as_bytes()))
                        })
                        .map(|s| bulk_str(s.name))
                        .collect(),
                ))
            }
            "GETKEYS" => {
                if args.len() < 2 {
                    return Err(sub_arity("command", &sub));
                }
                let Some(spec) = lookup(&args[0]) else {
                    return Err(CmdError::new("ERR Invalid command specified"));
                };
                if !spec.arity_ok(args.len()) {
                    return Err(CmdError::new(
                        "ERR Invalid number of arguments specified for command",
                    ));
                }
                let keys = spec.key_args(args);
                if keys.is_empty() {
                    return Err(CmdError::new("ERR The command has no key arguments"));
                }
                Ok(Frame::Array(
                    keys.into_iter()
                        .map(|k| Frame::Bulk(Bytes::copy_from_slice(k)))
                        .collect(),
                ))
            }
            "HELP" if !args.is_empty() => Err(sub_arity("command", &sub)),
            "HELP" => Ok(help(COMMAND_HELP)),
            _ => Err(unknown_sub("command", &sub)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MEMORY

struct Memory {
    sub: String,
    args: Vec<Bytes>,
}

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value (approximate: the record's block",
    "    in the pool and its index slot).",
    "HELP",
    "    Print this help.",
];

impl Command for Memory {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(Memory {
            sub: subcommand(&p.bytes()?),
            args: p.rest(),
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        match self.sub.to_ascii_uppercase().as_str() {
            "USAGE" => {
                let args = &self.args;
                if args.is_empty() {
                    return Err(sub_arity("memory", &self.sub));
                }
                match args.len() {
                    1 => {}
                    3 if args[1].eq_ignore_ascii_case(b"SAMPLES") => {
                        if eagle_core::db::parse_i64(&args[2]).is_none() {
                            return Err(CmdError::not_integer());
                        }
                    }
                    _ => return Err(CmdError::syntax()),
                }
                let db = ctx.db();
                let now = db.now_ms();
                let found = db
                    .engine()
                    .index()
                    .get(&args[0], |r| (r.size(), r.expire_at_ms()))
                    .map_err(|e| CmdError::new(format!("ERR {e}")))?;
                Ok(match found {
                    Some((size, at)) if at == 0 || at > now => {
                        Frame::Integer(approximate_footprint(size) as i64)
                    }
                    _ => Frame::Null,
                })
            }
            "HELP" if !self.args.is_empty() => Err(sub_arity("memory", &self.sub)),
            "HELP" => Ok(help(MEMORY_HELP)),
            _ => Err(unknown_sub("memory", &self.sub)),
        }
    }
}

/// A record of `size` bytes: its heap block (small sizes round up to a 16-byte multiple, large
/// ones take whole 256 KiB chunks) and its 16-byte index slot.
fn approximate_footprint(size: u64) -> u64 {
    let chunk = eagle_core::heap::CHUNK;
    let block = if size > 65536 {
        size.div_ceil(chunk) * chunk
    } else {
        size.div_ceil(16) * 16
    };
    block + 16
}

const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];

/// This family's commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "info", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), run: run::<Info> },
    Spec { name: "config", arity: -2, flags: ADMIN, keys: (0, 0, 0), run: run::<Config> },
    Spec { name: "dbsize", arity: 1, flags: &["readonly", "fast"], keys: (0, 0, 0), run: run::<DbSize> },
    Spec { name: "flushall", arity: -1, flags: &["write"], keys: (0, 0, 0), run: run::<Flush> },
    Spec { name: "flushdb", arity: -1, flags: &["write"], keys: (0, 0, 0), run: run::<Flush> },
    Spec { name: "time", arity: 1, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), run: run::<Time> },
    Spec { name: "command", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), run: run::<CommandCmd> },
    Spec { name: "memory", arity: -2, flags: &["readonly"], keys: (0, 0, 0), run: run::<Memory> },
    Spec { name: "shutdown", arity: -1, flags: &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], keys: (0, 0, 0), run: run::<Shutdown> },
];
