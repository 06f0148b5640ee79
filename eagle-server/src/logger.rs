//! A small stderr logger for the `log` facade, in Redis's format:
//! `pid:M 22 Nov 2025 17:49:01.123 * message`, the mark telling the level
//! (`.` debug, `-` verbose, `*` notice, `#` warning).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::LogLevel;

struct Logger;

static LOGGER: Logger = Logger;

static LEVEL: AtomicUsize = AtomicUsize::new(2);

fn level_index(l: LogLevel) -> usize {
    l as usize
}

/// Installs the logger at `level` (once; later calls only change the level).
pub fn init(level: LogLevel) {
    set_level(level);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Changes the level (CONFIG SET loglevel).
pub fn set_level(level: LogLevel) {
    LEVEL.store(level_index(level), Ordering::Relaxed);
}

/// The Redis level of a `log` record: warning for errors and warnings, notice for info,
/// verbose for debug, debug for trace.
fn redis_level(l: log::Level) -> LogLevel {
    match l {
        log::Level::Error | log::Level::Warn => LogLevel::Warning,
        log::Level::Info => LogLevel::Notice,
        log::Level::Debug => LogLevel::Verbose,
        log::Level::Trace => LogLevel::Debug,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        level_index(redis_level(metadata.level())) >= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mark = match redis_level(record.level()) {
            LogLevel::Debug => '.',
            LogLevel::Verbose => '-',
            LogLevel::Notice => '*',
            LogLevel::Warning => '#',
        };
        let line = format!(
            "{}:M {} {mark} {}\n",
            std::process::id(),
            timestamp(std::time::SystemTime::now()),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// `22 Nov 2025 17:49:01.123` (UTC).
pub fn timestamp(t: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86400) as i64);
    let rem = secs % 86400;
    format!(
        "{day:02} {} {y} {:02}:{:02}:{:02}.{:03}",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
