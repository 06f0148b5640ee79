//! The server's settings: command-line flags (`clap`), a redis.conf-style file, and the table of
//! parameters that the file, the flags and `CONFIG GET` / `CONFIG SET` share, so that a value is
//! parsed and checked the same way wherever it comes from.
//!
//! Precedence: built-in defaults, then the `--config` file, then command-line flags.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Parser;
use eagle_core::FlushMode;
use eagle_core::db::EvictionPolicy;

/// Command-line flags. Every setting is optional so that an absent flag leaves the file's value.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "eagle-server",
    version,
    about = "EagleDB: a Redis-protocol (RESP2/RESP3) server whose keyspace lives in persistent memory.",
    long_about = "EagleDB: a Redis-protocol (RESP2/RESP3) server whose keyspace lives in persistent \
memory (a DAX device, or a file that emulates one). Every acknowledged write is durable: a restart \
after a clean shutdown, a kill -9 or (on DAX or with --flush msync) a power failure finds it again \
without reloading anything.\n\nSettings come from built-in defaults, then the --config file (redis.conf \
syntax: one `key value` per line, `#` comments, quoted values), then these flags. Sizes accept \
redis.conf suffixes: 64mb, 1gb (powers of 1024), 1m, 1g (powers of 1000).",
    after_help = "Examples:\n  eagle-server --pool /mnt/pmem/eagle.pool --pool-size 8gb\n  \
eagle-server --config eagle.conf --port 6380\n  eagle-server --bind 0.0.0.0 --requirepass s3cret"
)]
pub struct Cli {
    /// Settings file (redis.conf syntax); flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TCP port to listen on [default: 6379].
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Addresses to listen on, space separated [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Pool file or DAX device holding the keyspace; created if missing [default: ./eagle.pool].
    #[arg(long, value_name = "PATH")]
    pub pool: Option<String>,
    /// Size of a new pool file (sparse), e.g. 64mb, 1gb [default: 1gb]; ignored for existing pools.
    #[arg(long, value_name = "SIZE")]
    pub pool_size: Option<String>,
    /// How writes are made durable: auto, clwb, clflushopt, clflush, msync or none [default: the
    /// EAGLE_FLUSH variable, else auto: the best flush instruction this CPU has].
    #[arg(long, value_name = "MODE")]
    pub flush: Option<String>,
    /// Refuse to start unless the pool is on DAX (real persistent memory).
    #[arg(long)]
    pub require_dax: bool,
    /// Password clients must AUTH with (as user `default`); empty: none.
    #[arg(long, value_name = "PASSWORD")]
    pub requirepass: Option<String>,
    /// Most clients connected at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub maxclients: Option<String>,
    /// Close a client idle for this many seconds; 0 never [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// Prometheus /metrics and /health listener; "off" or empty disables [default: 127.0.0.1:9121].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Log verbosity: debug, verbose, notice or warning [default: notice].
    #[arg(long, value_name = "LEVEL")]
    pub loglevel: Option<String>,
    /// Worker threads serving clients [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<String>,
    /// Pin each worker thread to one CPU of this list, in turn: CPU ids and ranges with an
    /// optional step, e.g. 0-7:2,12 (Redis's syntax) [default: no pinning].
    #[arg(long, value_name = "CPUS")]
    pub server_cpulist: Option<String>,
    /// yes: without a password, refuse clients that are not on the loopback interface [default: yes].
    #[arg(long, value_name = "yes|no")]
    pub protected_mode: Option<String>,
    /// Directory SAVE and BGSAVE write their snapshot to [default: the working directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// File name of the snapshot in --dir [default: dump.eagle].
    #[arg(long, value_name = "NAME")]
    pub dbfilename: Option<String>,
    /// Whether CONFIG SET may change dir and dbfilename: no, yes, or local (loopback clients
    /// only) [default: no].
    #[arg(long, value_name = "no|yes|local")]
    pub enable_protected_configs: Option<String>,
    /// What a write that does not fit in the full pool does: fail with -OOM (noeviction), or
    /// evict keys (allkeys-random, volatile-random, volatile-ttl) [default: noeviction].
    #[arg(long, value_name = "POLICY")]
    pub maxmemory_policy: Option<String>,
}

/// Log verbosity, Redis's four levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Rarely useful details.
    Verbose,
    /// What a production server should say.
    Notice,
    /// Only what needs attention.
    Warning,
}

impl LogLevel {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }

    /// The `log` crate filter that shows this level and above.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Debug => log::LevelFilter::Trace,
            LogLevel::Verbose => log::LevelFilter::Debug,
            LogLevel::Notice => log::LevelFilter::Info,
            LogLevel::Warning => log::LevelFilter::Warn,
        }
    }
}

/// Who may change a protected parameter (`dir`, `dbfilename`) with CONFIG SET: Redis's
/// `enable-protected-configs`. Writing a file anywhere the server may is a classic attack on an
/// exposed Redis, hence `No` by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protected {
    /// Nobody.
    No,
    /// Every client.
    Yes,
    /// Clients on the loopback interface.
    Local,
}

impl Protected {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Protected::No => "no",
            Protected::Yes => "yes",
            Protected::Local => "local",
        }
    }

    /// Whether a client at `peer` (`None`: not a network client) may change one.
    pub fn allows(self, peer: Option<std::net::IpAddr>) -> bool {
        match self {
            Protected::No => false,
            Protected::Yes => true,
            Protected::Local => peer.is_some_and(|ip| ip.is_loopback()),
        }
    }
}

/// The parameters that `enable-protected-configs` guards.
pub const PROTECTED: &[&str] = &["dir", "dbfilename"];

/// The flush mode asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushSetting {
    /// Not set: `EAGLE_FLUSH`, else the best the CPU has.
    Default,
    /// `auto`: the best the CPU has, whatever `EAGLE_FLUSH` says.
    Auto,
    /// This mode.
    Mode(FlushMode),
}

/// `server-cpulist`: the CPUs the worker threads are pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList {
    /// As given (CONFIG GET shows it so).
    pub text: String,
    /// The CPUs, ascending, each once; never empty.
    pub cpus: Vec<usize>,
}

/// Every setting, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// TCP port.
    pub port: u16,
    /// Addresses to listen on.
    pub bind: Vec<String>,
    /// Pool path.
    pub pool: PathBuf,
    /// Size of a new pool.
    pub pool_size: u64,
    /// Flush mode.
    pub flush: FlushSetting,
    /// Refuse a non-DAX pool.
    pub require_dax: bool,
    /// The default user's password; `None`: no password.
    pub requirepass: Option<String>,
    /// Most clients at once.
    pub maxclients: u64,
    /// Idle timeout in seconds (0: none).
    pub timeout: u64,
    /// Metrics listener address; `None`: disabled.
    pub metrics_addr: Option<String>,
    /// Log verbosity.
    pub loglevel: LogLevel,
    /// Worker threads.
    pub threads: usize,
    /// CPUs to pin the worker threads to; `None`: no pinning.
    pub server_cpulist: Option<CpuList>,
    /// Protected mode.
    pub protected_mode: bool,
    /// Largest bulk argument accepted (new connections).
    pub proto_max_bulk_len: u64,
    /// Redis's `save`: accepted and reported, no effect (every write is durable).
    pub save: String,
    /// Where SAVE and BGSAVE write (an absolute directory).
    pub dir: PathBuf,
    /// The snapshot's file name in `dir`.
    pub dbfilename: String,
    /// Who may CONFIG SET `dir` and `dbfilename`.
    pub enable_protected_configs: Protected,
    /// What a write that does not fit in the full pool does.
    pub maxmemory_policy: EvictionPolicy,
    /// The file the settings were read from.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            port: 6379,
            bind: vec!["127.0.0.1".into()],
            pool: PathBuf::from("eagle.pool"),
            pool_size: 1 << 30,
            flush: FlushSetting::Default,
            require_dax: false,
            requirepass: None,
            maxclients: 10000,
            timeout: 0,
            metrics_addr: Some("127.0.0.1:9121".into()),
            loglevel: LogLevel::Notice,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            server_cpulist: None,
            protected_mode: true,
            proto_max_bulk_len: 512 << 20,
            save: String::new(),
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            dbfilename: "dump.eagle".into(),
            enable_protected_configs: Protected::No,
            maxmemory_policy: EvictionPolicy::NoEviction,
            config_file: None,
        }
    }
}

/// Parses a value into the settings; `Err` says why not, in Redis's words.
pub type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// A parameter as `CONFIG GET` / `CONFIG SET` and the file see it.
pub struct Param {
    /// Lower-case name.
    pub name: &'static str,
    /// Its current value as text.
    pub get: fn(&Config) -> String,
    /// Parses and stores a value (`Err`: the reason, in Redis's words). `None`: fixed.
    pub set: Option<Setter>,
    /// Whether `CONFIG SET` may change it while running.
    pub mutable: bool,
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn parse_yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

fn parse_int<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

/// Parses a size as redis.conf does (`memtoll`): a number and an optional unit, `k`/`m`/`g`
/// (powers of 1000) or `kb`/`mb`/`gb` (powers of 1024), any case; `b` or none: bytes.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let lower = v.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err("argument must be a memory value".into()),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "argument must be a memory value".to_string())?;
    n.checked_mul(mul)
        .ok_or_else(|| "argument must be a memory value".to_string())
}

fn set_port(c: &mut Config, v: &str) -> Result<(), String> {
    c.port = parse_int(v)?;
    Ok(())
}
fn set_bind(c: &mut Config, v: &str) -> Result<(), String> {
    let addrs: Vec<String> = v.split_whitespace().map(str::to_string).collect();
    if addrs.is_empty() {
        return Err("at least one address is needed".into());
    }
    for a in &addrs {
        // Redis's `-` prefix (optional address) is accepted and ignored.
        let a = a.strip_prefix('-').unwrap_or(a);
        a.parse::<std::net::IpAddr>()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
    }
    c.bind = addrs;
    Ok(())
}
fn set_pool(c: &mut Config, v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("the pool path is empty".into());
    }
    c.pool = PathBuf::from(v);
    Ok(())
}
fn set_pool_size(c: &mut Config, v: &str) -> Result<(), String> {
    c.pool_size = parse_size(v)?;
    Ok(())
}
fn set_flush(c: &mut Config, v: &str) -> Result<(), String> {
    c.flush = if v.eq_ignore_ascii_case("auto") {
        FlushSetting::Auto
    } else {
        FlushSetting::Mode(v.parse::<FlushMode>().map_err(|e| e.to_string())?)
    };
    Ok(())
}
fn set_require_dax(c: &mut Config, v: &str) -> Result<(), String> {
    c.require_dax = parse_yes_no(v)?;
    Ok(())
}
fn set_requirepass(c: &mut Config, v: &str) -> Result<(), String> {
    c.requirepass = (!v.is_empty()).then(|| v.to_string());
    Ok(())
}
fn set_maxclients(c: &mut Config, v: &str) -> Result<(), String> {
    let n: u64 = parse_int(v)?;
    if n == 0 {
        return Err("argument must be between 1 and 4294967295 inclusive".into());
    }
    c.maxclients = n;
    Ok(())
}
fn set_timeout(c: &mut Config, v: &str) -> Result<(), String> {
    let n: i64 = parse_int(v)?;
    if !(0..=i32::MAX as i64).contains(&n) {
        return Err("argument must be between 0 and 2147483647 inclusive".into());
    }
    c.timeout = n as u64;
    Ok(())
}
fn set_metrics_addr(c: &mut Config, v: &str) -> Result<(), String> {
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        c.metrics_addr = None;
    } else {
        v.parse::<std::net::SocketAddr>()
            .map_err(|_| format!("'{v}' is not an address:port"))?;
        c.metrics_addr = Some(v.to_string());
    }
    Ok(())
}
fn set_loglevel(c: &mut Config, v: &str) -> Result<(), String> {
    c.loglevel = match v.to_ascii_lowercase().as_str() {
        "debug" => LogLevel::Debug,
        "verbose" => LogLevel::Verbose,
        "notice" => LogLevel::Notice,
        "warning" => LogLevel::Warning,
        _ => {
            return Err(
                "argument(s) must be one of the following: debug, verbose, notice, warning".into(),
            );
        }
    };
    Ok(())
}
fn set_threads(c: &mut Config, v: &str) -> Result<(), String> {
    let n: usize = parse_int(v)?;
    if n == 0 || n > 1024 {
        return Err("argument must be between 1 and 1024 inclusive".into());
    }
    c.threads = n;
    Ok(())
}
fn set_server_cpulist(c: &mut Config, v: &str) -> Result<(), String> {
    // Empty: no pinning (Redis's default, which CONFIG GET shows as "").
    c.server_cpulist = if v.is_empty() {
        None
    } else {
        Some(CpuList {
            text: v.to_string(),
            cpus: crate::affinity::parse_for_this_host(v)?,
        })
    };
    Ok(())
}
fn set_protected_mode(c: &mut Config, v: &str) -> Result<(), String> {
    c.protected_mode = parse_yes_no(v)?;
    Ok(())
}
fn set_proto_max_bulk_len(c: &mut Config, v: &str) -> Result<(), String> {
    let n = parse_size(v)?;
    if n < 1024 * 1024 {
        return Err("argument must be between 1048576 and 9223372036854775807 inclusive".into());
    }
    c.proto_max_bulk_len = n;
    Ok(())
}
fn set_save(c: &mut Config, v: &str) -> Result<(), String> {
    c.save = v.to_string();
    Ok(())
}
fn set_dir(c: &mut Config, v: &str) -> Result<(), String> {
    // Stored absolute (CONFIG GET shows it so, as in Redis), resolved once: a later change of
    // the working directory cannot move it.
    let dir = std::fs::canonicalize(v).map_err(|e| {
        let text = e.to_string();
        text.split(" (os error").next().unwrap_or(&text).to_string()
    })?;
    if !dir.is_dir() {
        return Err("Not a directory".into());
    }
    c.dir = dir;
    Ok(())
}
fn set_dbfilename(c: &mut Config, v: &str) -> Result<(), String> {
    if v.is_empty() || v.contains('/') || v == "." || v == ".." {
        return Err("dbfilename can't be a path, just a filename".into());
    }
    c.dbfilename = v.to_string();
    Ok(())
}
fn set_enable_protected_configs(c: &mut Config, v: &str) -> Result<(), String> {
    c.enable_protected_configs = match v.to_ascii_lowercase().as_str() {
        "no" => Protected::No,
        "yes" => Protected::Yes,
        "local" => Protected::Local,
        _ => return Err("argument(s) must be one of the following: no, yes, local".into()),
    };
    Ok(())
}

fn set_maxmemory_policy(c: &mut Config, v: &str) -> Result<(), String> {
    c.maxmemory_policy = EvictionPolicy::parse(v).ok_or_else(|| {
        let names: Vec<&str> = EvictionPolicy::ALL.iter().map(|p| p.name()).collect();
        format!(
            "argument must be one of the following: {} (EagleDB keeps no access times, so it \
             offers no LRU or LFU policy)",
            names.join(", ")
        )
    })?;
    Ok(())
}

/// Every parameter: EagleDB's own, and Redis's that clients ask about (fixed values that say
/// how EagleDB behaves: one database, no AOF, no memory limit but the pool's size).
#[rustfmt::skip]
pub static PARAMS: &[Param] = &[
    Param { name: "port", get: |c| c.port.to_string(), set: Some(set_port), mutable: false },
    Param { name: "bind", get: |c| c.bind.join(" "), set: Some(set_bind), mutable: false },
    Param { name: "pool", get: |c| c.pool.display().to_string(), set: Some(set_pool), mutable: false },
    Param { name: "pool-size", get: |c| c.pool_size.to_string(), set: Some(set_pool_size), mutable: false },
    Param { name: "flush", get: |c| match c.flush {
        FlushSetting::Default | FlushSetting::Auto => "auto".to_string(),
        FlushSetting::Mode(m) => m.to_string(),
    }, set: Some(set_flush), mutable: false },
    Param { name: "require-dax", get: |c| yes_no(c.require_dax), set: Some(set_require_dax), mutable: false },
    Param { name: "requirepass", get: |c| c.requirepass.clone().unwrap_or_default(), set: Some(set_requirepass), mutable: true },
    Param { name: "maxclients", get: |c| c.maxclients.to_string(), set: Some(set_maxclients), mutable: true },
    Param { name: "timeout", get: |c| c.timeout.to_string(), set: Some(set_timeout), mutable: true },
    Param { name: "metrics-addr", get: |c| c.metrics_addr.clone().unwrap_or_else(|| "off".into()), set: Some(set_metrics_addr), mutable: false },
    Param { name: "loglevel", get: |c| c.loglevel.name().to_string(), set: Some(set_loglevel), mutable: true },
    Param { name: "threads", get: |c| c.threads.to_string(), set: Some(set_threads), mutable: false },
    Param { name: "server-cpulist", get: |c| c.server_cpulist.as_ref().map(|l| l.text.clone()).unwrap_or_default(), set: Some(set_server_cpulist), mutable: false },
    Param { name: "protected-mode", get: |c| yes_no(c.protected_mode), set: Some(set_protected_mode), mutable: true },
    Param { name: "proto-max-bulk-len", get: |c| c.proto_max_bulk_len.to_string(), set: Some(set_proto_max_bulk_len), mutable: true },
    Param { name: "save", get: |c| c.save.clone(), set: Some(set_save), mutable: true },
    Param { name: "dir", get: |c| c.dir.display().to_string(), set: Some(set_dir), mutable: true },
    Param { name: "dbfilename", get: |c| c.dbfilename.clone(), set: Some(set_dbfilename), mutable: true },
    Param { name: "enable-protected-configs", get: |c| c.enable_protected_configs.name().to_string(), set: Some(set_enable_protected_configs), mutable: false },
    Param { name: "appendonly", get: |_| "no".into(), set: None, mutable: false },
    Param { name: "databases", get: |_| "1".into(), set: None, mutable: false },
    Param { name: "maxmemory", get: |_| "0".into(), set: None, mutable: false },
    Param { name: "maxmemory-policy", get: |c| c.maxmemory_policy.name().into(), set: Some(set_maxmemory_policy), mutable: true },
    Param { name: "cluster-enabled", get: |_| "no".into(), set: None, mutable: false },
    Param { name: "io-threads", get: |_| "1".into(), set: None, mutable: false },
];

/// The parameter called `name` (any case).
pub fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// A settings error: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Where SAVE and BGSAVE write: `dir` / `dbfilename`.
    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }

    /// Defaults, then the file `cli.config` names, then the flags.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "{}: cannot read the configuration file: {e}",
                    path.display()
                ))
            })?;
            config.apply_file(path, &text)?;
            config.config_file = Some(path.clone());
        }
        let flags: [(&str, &Option<String>); 17] = [
            ("port", &cli.port),
            ("bind", &cli.bind),
            ("pool", &cli.pool),
            ("pool-size", &cli.pool_size),
            ("flush", &cli.flush),
            ("requirepass", &cli.requirepass),
            ("maxclients", &cli.maxclients),
            ("timeout", &cli.timeout),
            ("metrics-addr", &cli.metrics_addr),
            ("loglevel", &cli.loglevel),
            ("threads", &cli.threads),
            ("server-cpulist", &cli.server_cpulist),
            ("protected-mode", &cli.protected_mode),
            ("dir", &cli.dir),
            ("dbfilename", &cli.dbfilename),
            ("enable-protected-configs", &cli.enable_protected_configs),
            ("maxmemory-policy", &cli.maxmemory_policy),
        ];
        for (name, value) in flags {
            if let Some(v) = value {
                config
                    .set(name, v)
                    .map_err(|e| ConfigError(format!("--{name} '{v}': {e}")))?;
            }
        }
        if cli.require_dax {
            config.require_dax = true;
        }
        Ok(config)
    }

    /// Sets parameter `name` from text.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let p = param(name).ok_or_else(|| format!("unknown key '{name}'"))?;
        let set = p
            .set
            .ok_or_else(|| "can't set immutable config".to_string())?;
        set(self, value)
    }

    /// Applies a redis.conf-style text read from `path`; errors name the file, the line and the key.
    pub fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file = path.display();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let args =
                split_config_line(line).map_err(|e| ConfigError(format!("{file}:{n}: {e}")))?;
            let Some((key, values)) = args.split_first() else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            let Some(p) = param(&key) else {
                return Err(ConfigError(format!("{file}:{n}: unknown key '{key}'")));
            };
            let value = if p.name == "bind" {
                values.join(" ")
            } else if values.len() == 1 {
                values[0].clone()
            } else {
                return Err(ConfigError(format!(
                    "{file}:{n}: '{key}' takes exactly one value, got {}",
                    values.len()
                )));
            };
            self.set(&key, &value)
                .map_err(|e| ConfigError(format!("{file}:{n}: '{key}': {e}")))?;
        }
        Ok(())
    }
}

/// Splits a configuration line into words as redis.conf does (`sdssplitargs`): spaces separate,
/// "double quotes" allow `\n \r \t \b \a \\ \" \xHH` escapes, 'single quotes' allow `\'`.
pub fn split_config_line(line: &str) -> Result<Vec<String>, String> {
    let unbalanced = || "unbalanced quotes in configuration line".to_string();
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(unbalanced()),
                    Some(c) if c == first => break,
                    Some('\\') if first == '"' => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('r') => word.push('\r'),
                        Some('t') => word.push('\t'),
                        Some('b') => word.push('\u{8}'),
                        Some('a') => word.push('\u{7}'),
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) if hex.len() == 2 => word.push(b as char),
                                _ => {
                                    word.push('x');
                                    word.push_str(&hex);
                                }
                            }
                        }
                        Some(c) => word.push(c),
                        None => return Err(unbalanced()),
                    },
                    Some('\\') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    Some(c) => word.push(c),
                }
            }
            // A closing quote must be followed by a space or the end of the line.
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(unbalanced());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
}
