//! Server-wide state shared by every connection: settings, the client registry, statistics,
//! the watched-key versions, the transaction gate, snapshots and the shutdown signal.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

use crate::config::Config;

/// How the pool was found at startup (for the banner and INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OpenKind {
    /// A new pool.
    #[default]
    Created,
    /// After a clean shutdown.
    Clean,
    /// After a crash (recovered).
    Crash,
}

impl OpenKind {
    /// One word for INFO.
    pub fn word(self) -> &'static str {
        match self {
            OpenKind::Created => "created",
            OpenKind::Clean => "clean",
            OpenKind::Crash => "crash",
        }
    }
}

/// Everything a connection shares with the others.
pub struct ServerState {
    config: RwLock<Config>,
    /// Mirrors `config.requirepass.is_some()`, read on every command.
    password_set: AtomicBool,
    /// Mirrors `config.timeout`, read on every read.
    timeout: AtomicU64,
    /// Mirrors `config.proto_max_bulk_len`, read before every pipeline window is parsed.
    max_bulk_len: AtomicU64,
    /// Connected clients.
    pub clients: Clients,
    /// Counters for INFO and metrics.
    pub stats: Stats,
    /// Versions of watched keys (WATCH).
    pub watches: Watches,
    /// Serialises EXEC against every other command: each command holds it shared (on its
    /// client's shard), EXEC exclusively, which makes a transaction, and its WATCH check, atomic
    /// with respect to every other client's commands. (The background expiry sweep is not
    /// gated here: a key may expire mid-EXEC.)
    pub gate: eagle_core::db::Gate,
    /// SAVE, BGSAVE and what they report.
    pub saves: Arc<crate::save::Saves>,
    shutdown: watch::Sender<bool>,
    /// When the server started.
    pub started: Instant,
    /// The same, as Unix seconds.
    pub started_unix: u64,
    /// A random 40-hex-digit id of this run.
    pub run_id: String,
    /// How the pool was opened.
    pub open_kind: OpenKind,
    /// The addresses actually listened on.
    pub listening: Mutex<Vec<SocketAddr>>,
}

impl Default for ServerState {
    fn default() -> ServerState {
        ServerState::new(Config::default(), OpenKind::Created)
    }
}

impl ServerState {
    /// State for a server with these settings.
    pub fn new(config: Config, open_kind: OpenKind) -> ServerState {
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ServerState {
            password_set: AtomicBool::new(config.requirepass.is_some()),
            timeout: AtomicU64::new(config.timeout),
            max_bulk_len: AtomicU64::new(config.proto_max_bulk_len),
            config: RwLock::new(config),
            clients: Clients::default(),
            stats: Stats::default(),
            watches: Watches::default(),
            gate: eagle_core::db::Gate::default(),
            saves: Arc::new(crate::save::Saves::new(started_unix)),
            shutdown: watch::channel(false).0,
            started: Instant::now(),
            started_unix,
            run_id: random_hex(40),
            open_kind,
            listening: Mutex::new(Vec::new()),
        }
    }

    /// The settings (a copy).
    pub fn config(&self) -> Config {
        self.config.read().clone()
    }

    /// Reads a setting.
    pub fn with_config<T>(&self, f: impl FnOnce(&Config) -> T) -> T {
        f(&self.config.read())
    }

    /// Changes the settings (CONFIG SET).
    pub fn update_config<T>(&self, f: impl FnOnce(&mut Config) -> T) -> T {
        let mut c = self.config.write();
        let out = f(&mut c);
        self.password_set
            .store(c.requirepass.is_some(), Ordering::Relaxed);
        self.timeout.store(c.timeout, Ordering::Relaxed);
        self.max_bulk_len
            .store(c.proto_max_bulk_len, Ordering::Relaxed);
        crate::logger::set_level(c.loglevel);
        out
    }

    /// Whether clients must AUTH.
    pub fn password_set(&self) -> bool {
        self.password_set.load(Ordering::Relaxed)
    }

    /// The longest bulk argument a request may carry (`proto-max-bulk-len`), as set now.
    pub fn max_bulk_len(&self) -> u64 {
        self.max_bulk_len.load(Ordering::Relaxed)
    }

    /// The idle timeout in seconds (0: none).
    pub fn idle_timeout(&self) -> u64 {
        self.timeout.load(Ordering::Relaxed)
    }

    /// Asks the server to stop accepting and to drain (SHUTDOWN, SIGTERM).
    pub fn trigger_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether a shutdown was asked for.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes when the shutdown is asked for.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A random hex string of `len` digits (not cryptographic: a run id).
pub fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(len + 16);
    let mut n = 0u64;
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016x}", h.finish()));
        n += 1;
    }
    out.truncate(len);
    out
}

/// One connected client, as CLIENT LIST shows it.
pub struct ClientInfo {
    /// CLIENT ID.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket descriptor (-1 if none).
    pub fd: i32,
    /// When it connected.
    pub created: Instant,
    /// Last command, ms since the server started.
    pub last_active_ms: AtomicU64,
    /// Last command's name.
    pub last_cmd: Mutex<&'static str>,
    /// CLIENT SETNAME.
    pub name: Mutex<Option<Bytes>>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    pub lib: Mutex<(String, String)>,
    /// 2 or 3.
    pub resp: AtomicU64,
    /// Commands queued in MULTI, -1 outside MULTI.
    pub multi: AtomicI64,
    /// Set by CLIENT KILL.
    pub killed: AtomicBool,
    /// Wakes the connection when killed.
    pub kill: Notify,
    /// Bytes waiting in its read buffer.
    pub qbuf: AtomicUsize,
}

impl ClientInfo {
    /// Asks its connection to close.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Its CLIENT LIST line (without the newline).
    pub fn line(&self, server: &ServerState) -> String {
        let name = self
            .name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let (lib_name, lib_ver) = self.lib.lock().clone();
        let now = server.now_ms();
        let idle = now.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000;
        let multi = self.multi.load(Ordering::Relaxed);
        let flags = if multi >= 0 { "x" } else { "N" };
        let qbuf = self.qbuf.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd={} name={name} age={} idle={idle} flags={flags} db=0 sub=0 \
             psub=0 ssub=0 multi={multi} qbuf={qbuf} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 \
             rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} \
             lib-name={lib_name} lib-ver={lib_ver}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.created.elapsed().as_secs(),
            self.last_cmd.lock(),
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// The registry of connected clients.
#[derive(Default)]
pub struct Clients {
    by_id: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    next_id: AtomicU64,
    connected: AtomicUsize,
}

impl Clients {
    /// Takes a connection slot if fewer than `max` are taken.
    pub fn try_reserve(&self, max: u64) -> bool {
        self.connected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                ((n as u64) < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn release(&self) {
        self.connected.fetch_sub(1, Ordering::AcqRel);
    }

    /// Connected clients (slots taken).
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Acquire)
    }

    /// A new client id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a connection.
    pub fn register(
        &self,
        id: u64,
        addr: SocketAddr,
        laddr: SocketAddr,
        fd: i32,
        now_ms: u64,
    ) -> Arc<ClientInfo> {
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(now_ms),
            last_cmd: Mutex::new("NULL"),
            name: Mutex::new(None),
            lib: Mutex::new(Default::default()),
            resp: AtomicU64::new(2),
            multi: AtomicI64::new(-1),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            qbuf: AtomicUsize::new(0),
        });
        self.by_id.lock().insert(id, info.clone());
        info
    }

    /// Removes a connection.
    pub fn unregister(&self, id: u64) {
        self.by_id.lock().remove(&id);
    }

    /// The client with this id.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.by_id.lock().get(&id).cloned()
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.by_id.lock().values().cloned().collect()
    }
}

/// One command's counters (INFO commandstats, `eagle_commands_total`).
#[derive(Default)]
pub struct CmdStat {
    /// Calls.
    pub calls: AtomicU64,
    /// Microseconds spent.
    pub usec: AtomicU64,
    /// Calls that replied an error.
    pub failed: AtomicU64,
    /// Calls refused before running (unknown arity, NOAUTH).
    pub rejected: AtomicU64,
    /// Calls by duration (`eagle_command_duration_seconds`; CONFIG RESETSTAT leaves it, as
    /// Prometheus counters only grow).
    pub latency: crate::latency::Latency,
}

/// Counters.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused (maxclients).
    pub rejected_connections: AtomicU64,
    /// Commands run.
    pub commands_processed: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Error replies.
    pub error_replies: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Pipelined SETs run in groups of two or more (`cmd::execute_sets`).
    pub grouped_sets: AtomicU64,
    /// Pipelined INCRs and DECRs run in groups of two or more (`cmd::execute_incrs`).
    pub grouped_incrs: AtomicU64,
    /// Error replies by code (`ERR`, `WRONGTYPE`, ...).
    pub errors_by_code: Mutex<HashMap<String, u64>>,
    /// Per-command counters, built on first use from the command table.
    cmds: OnceLock<crate::cmd::NameMap<CmdStat>>,
    /// Instantaneous ops/sec, sampled.
    pub ops_per_sec: AtomicU64,
}

impl Stats {
    /// Counters of every command.
    pub fn cmds(&self) -> &crate::cmd::NameMap<CmdStat> {
        self.cmds.get_or_init(|| {
            crate::cmd::table()
                .keys()
                .map(|name| (*name, CmdStat::default()))
                .collect()
        })
    }

    /// Counts an error reply with this text.
    pub fn error(&self, text: &[u8]) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
        let code = text
            .split(|b| *b == b' ')
            .next()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        *self.errors_by_code.lock().entry(code).or_insert(0) += 1;
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for a in [
            &self.connections_received,
            &self.rejected_connections,
            &self.commands_processed,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.error_replies,
            &self.protocol_errors,
            &self.grouped_sets,
            &self.grouped_incrs,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.errors_by_code.lock().clear();
        for s in self.cmds().values() {
            s.calls.store(0, Ordering::Relaxed);
            s.usec.store(0, Ordering::Relaxed);
            s.failed.store(0, Ordering::Relaxed);
            s.rejected.store(0, Ordering::Relaxed);
        }
    }
}

/// Versions of the keys some client WATCHes, bumped by every write command to them, as
/// Redis's `touchWatchedKey`. Keys nobody watches are not tracked; with nothing watched a write
/// costs one atomic load.
#[derive(Default)]
pub struct Watches {
    watched: AtomicUsize,
    map: Mutex<HashMap<Bytes, WatchEntry>>,
    /// Bumped by FLUSHALL / FLUSHDB, which touch every key.
    flushes: AtomicU64,
}

struct WatchEntry {
    watchers: usize,
    version: u64,
}

impl Watches {
    /// Starts watching `key`; its current version.
    pub fn watch(&self, key: &Bytes) -> u64 {
        let mut map = self.map.lock();
        let e = map.entry(key.clone()).or_insert_with(|| {
            self.watched.fetch_add(1, Ordering::AcqRel);
            WatchEntry {
                watchers: 0,
                version: 0,
            }
        });
        e.watchers += 1;
        e.version
    }

    /// Stops one watcher of `key`.
    pub fn unwatch(&self, key: &Bytes) {
        let mut map = self.map.lock();
        if let Some(e) = map.get_mut(key) {
            e.watchers -= 1;
            if e.watchers == 0 {
                map.remove(key);
                self.watched.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The current version of a watched key.
    pub fn version(&self, key: &Bytes) -> u64 {
        self.map.lock().get(key).map_or(u64::MAX, |e| e.version)
    }

    /// Whether any key is watched.
    pub fn any(&self) -> bool {
        self.watched.load(Ordering::Acquire) > 0
    }

    /// Marks `keys` modified.
    pub fn touch<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        if !self.any() {
            return;
        }
        let mut map = self.map.lock();
        for k in keys {
            if let Some(e) = map.get_mut(k) {
                e.version += 1;
            }
        }
    }

    /// Marks every key modified (FLUSHALL).
    pub fn touch_all(&self) {
        self.flushes.fetch_add(1, Ordering::AcqRel);
    }

    /// FLUSHALLs so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }
}

/// How long a drain may take before the remaining connections are dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
