//! The command table: every command's name, arity, flags and key positions (what COMMAND
//! reports and what the dispatcher checks), and the function that parses and applies it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use bytes::Bytes;
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::parse::{CmdError, Parse};

/// A command: a type that parses its arguments and applies itself.
pub trait Command: Sized {
    /// Reads the arguments (after the name); must reject extras with `parse.finish()`.
    fn parse(parse: &mut Parse) -> Result<Self, CmdError>;
    /// Runs it.
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError>;
}

/// Parses and applies `C`.
pub fn run<C: Command>(parse: &mut Parse, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
    C::parse(parse)?.apply(ctx)
}

/// One row of the command table.
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: N exactly N arguments (name included), -N at least N.
    pub arity: i32,
    /// COMMAND flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// First key position, last key position (-1: the last argument), step; 0,0,0 without keys.
    pub keys: (i32, i32, i32),
    /// Parses and applies it.
    pub run: fn(&mut Parse, &mut Ctx<'_>) -> Result<Frame, CmdError>,
}

impl Spec {
    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity >= 0 {
            argc == self.arity as i64
        } else {
            argc >= -(self.arity as i64)
        }
    }

    /// Whether it writes.
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The keys among `argv` (name at 0), from the key positions.
    pub fn key_args<'a>(&self, argv: &'a [Bytes]) -> Vec<&'a [u8]> {
        let (first, last, step) = self.keys;
        if first <= 0 || step <= 0 {
            return Vec::new();
        }
        let last = if last < 0 {
            argv.len() as i64 + last as i64
        } else {
            last as i64
        };
        (first as i64..=last.min(argv.len() as i64 - 1))
            .step_by(step as usize)
            .map(|i| &argv[i as usize][..])
            .collect()
    }
}

/// FNV-1a, for maps keyed by command name: every command looks itself up, and SipHash cost
/// about as much as the rest of a pipelined GET's dispatch (perf, twenty-first session). The
/// maps hold only the fixed command names, so a client choosing names cannot flood them.
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> NameHasher {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by command name.
pub type NameMap<V> = HashMap<&'static str, V, BuildHasherDefault<NameHasher>>;

/// Every command, by name.
pub fn table() -> &'static NameMap<&'static Spec> {
    static TABLE: OnceLock<NameMap<&'static Spec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        super::FAMILIES
            .iter()
            .flat_map(|f| f.iter())
            .map(|s| (s.name, s))
            .collect()
    })
}

/// Looks a command up by its (any case) name.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // Lower-cased on the stack: every command name is ASCII and far shorter than this.
    let mut buf = [0u8; 32];
    let lower = buf.get_mut(..name.len())?;
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    table().get(std::str::from_utf8(lower).ok()?).copied()
}

/// Redis's reply to an unknown command.
pub fn unknown_command(argv: &[Bytes]) -> CmdError {
    let name = argv.first().map(|n| lossy(n, 128)).unwrap_or_default();
    let mut text = format!("ERR unknown command '{name}', with args beginning with: ");
    for a in argv.iter().skip(1) {
        if text.len() > 256 {
            break;
        }
        text.push_str(&format!("'{}' ", lossy(a, 128)));
    }
    CmdError::new(text)
}

/// Redis's reply to a wrong argument count.
pub fn wrong_arity(name: &str) -> CmdError {
    CmdError::new(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// A subcommand's name as the command matches it: whole (a NUL in it matches no name, as in
/// Redis), unless it is longer than 128 bytes: then it names no subcommand, and only what an
/// error quotes of it is kept ([`quoted`]), so a client sending 512 MiB does not have the server
/// copy it.
pub fn subcommand(b: &[u8]) -> String {
    if b.len() > 128 {
        lossy(b, 128)
    } else {
        String::from_utf8_lossy(b).into_owned()
    }
}

/// What an error quotes of a subcommand's name: up to a NUL, as Redis's `%.128s`.
pub fn quoted(sub: &str) -> &str {
    sub.split('\0').next().unwrap_or_default()
}

/// At most `max` bytes, cut at a NUL (Redis formats these with `%.*s`).
fn lossy(b: &[u8], max: usize) -> String {
    let b = &b[..b.len().min(max)];
    let b = b.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(b).into_owned()
}

/// Frame helpers shared by the command families.
pub mod reply {
    use bytes::Bytes;
    use eagle_core::resp::Frame;

    /// A bulk string, or nil.
    pub fn opt_bulk(v: Option<Vec<u8>>) -> Frame {
        v.map_or(Frame::Null, bulk)
    }

    /// A bulk string.
    pub fn bulk(v: impl Into<Bytes>) -> Frame {
        Frame::Bulk(v.into())
    }

    /// An integer from a count.
    pub fn int(v: impl TryInto<i64>) -> Frame {
        Frame::Integer(v.try_into().unwrap_or(i64::MAX))
    }
}
