//! The command line: a small hand-written parser (std only) that never panics on bad input.

use std::fmt;
use std::path::PathBuf;

/// Which engine(s) to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// The Dash index on a pool file.
    Eagle,
    /// The DRAM ceiling: sharded std `HashMap`.
    Dram,
    /// Eagle, then DRAM, with the ratio eagle/dram per phase.
    Both,
    /// The calibration peer alone: one std `HashMap`, one thread.
    Std,
    /// Eagle, DRAM, then std, with the ratios eagle/dram and eagle/std per phase.
    All,
}

impl EngineChoice {
    /// Whether the choice runs eagle, dram, std.
    pub fn runs(self) -> (bool, bool, bool) {
        use EngineChoice::*;
        (
            matches!(self, Eagle | Both | All),
            matches!(self, Dram | Both | All),
            matches!(self, Std | All),
        )
    }
}

/// Which phase(s) to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpChoice {
    /// One phase on a freshly preloaded table.
    One(crate::workload::Phase),
    /// Every phase, in order, on one table.
    Full,
}

/// Key shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// 8-byte keys: the key id, little-endian.
    Fixed,
    /// 16-byte keys: the key id as 16 lowercase hex digits.
    Var,
}

impl KeyKind {
    /// The name used on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Fixed => "fixed",
            KeyKind::Var => "var",
        }
    }
}

/// Parsed options.
#[derive(Clone, Debug)]
pub struct Args {
    pub engine: EngineChoice,
    pub op: OpChoice,
    pub preload: u64,
    pub ops: u64,
    pub threads: usize,
    pub key: KeyKind,
    pub pool: PathBuf,
    pub json: bool,
    pub pool_size: u64,
    pub pin_batch: u64,
}

/// What the command line asked for.
pub enum Parsed {
    /// Run with these options.
    Run(Args),
    /// Print the usage and exit 0.
    Help,
}

/// A bad command line, with what is wrong.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Key ids stay below 2^40 (negative-search keys start there), so counts are bounded well under.
const MAX_COUNT: u64 = 1 << 36;
const MAX_THREADS: usize = 1024;

pub const USAGE: &str = "\
usage: eagle-bench [--engine eagle|dram|std|both|all] [--op insert|pos|neg|delete|mixed|full]
                   [--preload N] [--ops M] [--threads T] [--key fixed|var]
                   [--pool PATH] [--pool-size BYTES] [--pin-batch K] [--json]

  --engine     eagle, dram, or both (default: eagle first, then dram, then the ratio
               eagle/dram); std: one std HashMap on one thread, no lock, the peer of
               the Dash reference figures (needs --threads 1); all: eagle, dram, std
  --op         one phase on a preloaded table, or full (default): insert, pos, neg,
               delete, mixed in that order on one table
  --preload    keys loaded (untimed) before the timed phases (default 1000000);
               for --op delete alone, N+M keys are preloaded and the M extra deleted
  --ops        operations per timed phase (default 2000000)
  --threads    worker threads splitting each phase's operations (default 1)
  --key        fixed: 8-byte keys; var: 16-byte keys (default fixed); values are 8 bytes
  --pool       pool file, deleted before and after each eagle run
               (default /dev/shm/eagle-bench.pool)
  --pool-size  pool size in bytes (default (N+M) * 200 + 256 MiB)
  --pin-batch  eagle holds its epoch pin across K operations of a thread (default 1:
               every operation pins and unpins on its own); 1000 is the method of
               Dash's benchmark, which holds its epoch guard that long (-e 1 -ed 1000)
  --json       one JSON line per engine and phase on stdout; the header goes to stderr
  -h, --help   this text";

/// Parses the arguments after the program name.
pub fn parse(argv: &[String]) -> Result<Parsed, UsageError> {
    let mut engine = EngineChoice::Both;
    let mut op = OpChoice::Full;
    let mut preload = 1_000_000u64;
    let mut ops = 2_000_000u64;
    let mut threads = 1usize;
    let mut key = KeyKind::Fixed;
    let mut pool = PathBuf::from("/dev/shm/eagle-bench.pool");
    let mut json = false;
    let mut pool_size: Option<u64> = None;
    let mut pin_batch = 1u64;

    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--json" => {
                if inline.is_some() {
                    return Err(UsageError("--json takes no value".into()));
                }
                json = true;
                continue;
            }
            _ => {}
        }
        let mut value = || -> Result<String, UsageError> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => Err(UsageError(format!("{flag} needs a value"))),
            }
        };
        match flag {
            "--engine" => {
                engine = match value()?.as_str() {
                    "eagle" => EngineChoice::Eagle,
                    "dram" => EngineChoice::Dram,
                    "both" => EngineChoice::Both,
                    "std" => EngineChoice::Std,
                    "all" => EngineChoice::All,
                    v => return Err(bad(flag, v, "eagle, dram, std, both or all")),
                }
            }
            "--op" => {
                let v = value()?;
                op = match v.as_str() {
                    "full" => OpChoice::Full,
                    s => match crate::workload::Phase::from_name(s) {
                        Some(p) => OpChoice::One(p),
                        None => {
                            return Err(bad(flag, s, "insert, pos, neg, delete, mixed or full"));
                        }
                    },
                }
            }
            "--key" => {
                key = match value()?.as_str() {
                    "fixed" => KeyKind::Fixed,
                    "var" => KeyKind::Var,
                    v => return Err(bad(flag, v, "fixed or var")),
                }
            }
            "--preload" => preload = count(flag, &value()?, 0, MAX_COUNT)?,
            "--ops" => ops = count(flag, &value()?, 1, MAX_COUNT)?,
            "--threads" => threads = count(flag, &value()?, 1, MAX_THREADS as u64)? as usize,
            "--pool-size" => pool_size = Some(count(flag, &value()?, 1, u64::MAX)?),
            "--pin-batch" => pin_batch = count(flag, &value()?, 1, MAX_COUNT)?,
            "--pool" => {
                let v = value()?;
                if v.is_empty() {
                    return Err(UsageError("--pool needs a non-empty path".into()));
                }
                pool = PathBuf::from(v);
            }
            _ => return Err(UsageError(format!("unknown argument '{arg}'"))),
        }
    }

    let needs_live_keys = matches!(
        op,
        OpChoice::Full
            | OpChoice::One(crate::workload::Phase::Pos)
            | OpChoice::One(crate::workload::Phase::Mixed)
    );
    if needs_live_keys && preload == 0 {
        return Err(UsageError(
            "--op pos, mixed and full search preloaded keys: --preload must be at least 1".into(),
        ));
    }
    if engine.runs().2 && threads != 1 {
        return Err(UsageError(
            "--engine std and all run the calibration peer, one map on one thread: \
             --threads must be 1"
                .into(),
        ));
    }
    let default_size = (preload + ops)
        .saturating_mul(200)
        .saturating_add(256 << 20);
    Ok(Parsed::Run(Args {
        engine,
        op,
        preload,
        ops,
        threads,
        key,
        pool,
        json,
        pool_size: pool_size.unwrap_or(default_size),
        pin_batch,
    }))
}

fn bad(flag: &str, value: &str, expected: &str) -> UsageError {
    UsageError(format!("{flag}: '{value}' is not one of {expected}"))
}

/// A decimal count in `min..=max`; underscores are allowed as separators (`1_000_000`).
fn count(flag: &str, value: &str, min: u64, max: u64) -> Result<u64, UsageError> {
    let digits: String = value.chars().filter(|&c| c != '_').collect();
    let n: u64 = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits
            .parse()
            .map_err(|_| UsageError(format!("{flag}: '{value}' is too large (at most {max})")))?
    } else {
        return Err(UsageError(format!(
            "{flag}: '{value}' is not a whole number"
        )));
    };
    if n < min || n > max {
        return Err(UsageError(format!(
            "{flag}: {n} is out of range ({min}..={max})"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<Args, String> {
        let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&argv) {
            Ok(Parsed::Run(a)) => Ok(a),
            Ok(Parsed::Help) => Err("help".into()),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let a = run("").unwrap();
        assert_eq!(
            (a.engine, a.op, a.preload, a.ops),
            (EngineChoice::Both, OpChoice::Full, 1_000_000, 2_000_000)
        );
        assert_eq!(a.pool_size, 3_000_000 * 200 + (256 << 20));
        assert_eq!(a.pin_batch, 1);
        assert_eq!(run("--pin-batch 1000").unwrap().pin_batch, 1000);
        assert!(run("--pin-batch 0").is_err());
        let a = run("--engine dram --op=neg --preload 1_000 --ops 5 --threads 2 --key var --json")
            .unwrap();
        assert_eq!(a.engine, EngineChoice::Dram);
        assert_eq!(a.op, OpChoice::One(crate::workload::Phase::Neg));
        assert_eq!(
            (a.preload, a.ops, a.threads, a.key, a.json),
            (1000, 5, 2, KeyKind::Var, true)
        );
        assert_eq!(run("-h").err().as_deref(), Some("help"));
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "--nope",
            "--ops",
            "--ops 0",
            "--ops x",
            "--threads 0",
            "--key big",
            "--json=yes",
            "--preload 0",
            "--engine std --threads 2",
            "--engine all --threads 2",
            "--engine other",
        ] {
            assert!(run(bad).is_err(), "{bad}");
        }
    }
}
