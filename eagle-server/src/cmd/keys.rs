//! Keyspace commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME, RENAMENX, COPY, KEYS, SCAN,
//! RANDOMKEY.

use bytes::Bytes;
use eagle_core::db::{DbError, KeyType};
use eagle_core::resp::Frame;

use super::ctx::Ctx;
use super::parse::{CmdError, Parse};
use super::table::reply::{bulk, int, opt_bulk};
use super::table::{Command, Spec, run};

/// DEL, UNLINK, EXISTS, TOUCH: a count over many keys.
struct ManyKeys {
    keys: Vec<Bytes>,
    name: &'static str,
}
impl Command for ManyKeys {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        Ok(ManyKeys {
            keys: p.rest(),
            name: p.name,
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let keys: Vec<&[u8]> = self.keys.iter().map(|k| &k[..]).collect();
        let db = ctx.db();
        let n = match self.name {
            "del" | "unlink" => db.del(&keys)?,
            "exists" => db.exists(&keys)?,
            _ => db.touch(&keys)?,
        };
        Ok(int(n))
    }
}

struct Type(Bytes);
impl Command for Type {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let k = p.bytes()?;
        p.finish()?;
        Ok(Type(k))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let t = ctx.db().key_type(&self.0)?.map_or("none", KeyType::as_str);
        Ok(Frame::Simple(Bytes::from_static(t.as_bytes())))
    }
}

struct Rename {
    src: Bytes,
    dst: Bytes,
    nx: bool,
}
impl Command for Rename {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let (src, dst) = (p.bytes()?, p.bytes()?);
        p.finish()?;
        Ok(Rename {
            src,
            dst,
            nx: p.name == "renamenx",
        })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let done = ctx.db().rename(&self.src, &self.dst, self.nx)?;
        Ok(if self.nx {
            int(done as i64)
        } else {
            Frame::ok()
        })
    }
}

struct Copy {
    src: Bytes,
    dst: Bytes,
    replace: bool,
}
impl Command for Copy {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let (src, dst) = (p.bytes()?, p.bytes()?);
        let mut replace = false;
        while p.remaining() > 0 {
            match p.keyword()?.as_str() {
                "REPLACE" => replace = true,
                "DB" => {
                    if p.i64()? != 0 {
                        return Err(CmdError::new("ERR DB index is out of range"));
                    }
                }
                _ => return Err(CmdError::syntax()),
            }
        }
        Ok(Copy { src, dst, replace })
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(int(
            ctx.db().copy(&self.src, &self.dst, self.replace)? as i64
        ))
    }
}

struct Keys(Bytes);
impl Command for Keys {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let pat = p.bytes()?;
        p.finish()?;
        Ok(Keys(pat))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let keys = ctx.db().keys(&self.0)?;
        Ok(Frame::Array(keys.into_iter().map(bulk).collect()))
    }
}

/// SCAN's and HSCAN's options after the cursor.
pub(super) struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub of_type: Option<Option<KeyType>>,
}

/// Parses a cursor as Redis does (`strtoull` of the whole argument).
pub(super) fn cursor(p: &mut Parse) -> Result<u64, CmdError> {
    parse_cursor(&p.bytes()?).ok_or_else(|| CmdError::new("ERR invalid cursor"))
}

/// A cursor by Redis's rules (`strtoul` in base 10, refusing a leading space, trailing bytes
/// and overflow): an optional sign, digits, a minus wrapping around (`-1` is 2^64 - 1); the
/// empty string is 0. As C reads the argument, a NUL ends it.
fn parse_cursor(c: &[u8]) -> Option<u64> {
    let c = c.split(|&b| b == 0).next().unwrap_or_default();
    if c.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match c[0] {
        b'-' => (true, &c[1..]),
        b'+' => (false, &c[1..]),
        _ => (false, c),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// The reply to a command whose argument `e` was refused, in Redis's order, which looks the key
/// up first: `missing` for a missing key, WRONGTYPE for a key not of type `want`, else `e`.
/// (Called only on the error path, so a well-formed command looks its key up once.)
pub(super) fn key_before_arguments(
    ctx: &Ctx<'_>,
    key: &[u8],
    want: KeyType,
    missing: Frame,
    e: CmdError,
) -> Result<Frame, CmdError> {
    match ctx.db().key_type(key)? {
        None => Ok(missing),
        Some(t) if t == want => Err(e),
        Some(_) => Err(DbError::WrongType.into()),
    }
}

pub(super) fn scan_options(p: &mut Parse, allow_type: bool) -> Result<ScanOptions, CmdError> {
    let mut o = ScanOptions {
        pattern: None,
        count: 10,
        of_type: None,
    };
    while p.remaining() > 0 {
        match p.keyword()?.as_str() {
            "MATCH" => o.pattern = Some(p.bytes()?),
            "COUNT" => {
                let c = p.i64()?;
                if c < 1 {
                    return Err(CmdError::syntax());
                }
                o.count = c.min(1 << 20) as usize;
            }
            "TYPE" if allow_type => {
                let t = p.bytes()?.to_ascii_lowercase();
                o.of_type = Some(match &t[..] {
                    b"string" => Some(KeyType::String),
                    b"hash" => Some(KeyType::Hash),
                    _ => None, // a type we do not store: nothing matches
                });
            }
            _ => return Err(CmdError::syntax()),
        }
    }
    Ok(o)
}

/// A SCAN-style reply: the next cursor and the items.
pub(super) fn scan_reply(cursor: u64, items: Vec<Frame>) -> Frame {
    Frame::Array(vec![bulk(cursor.to_string()), Frame::Array(items)])
}

struct Scan(u64, ScanOptions);
impl Command for Scan {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        let c = cursor(p)?;
        Ok(Scan(c, scan_options(p, true)?))
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        let o = self.1;
        if o.of_type == Some(None) {
            // TYPE of something never stored: walk nothing, like a scan that matches nothing.
            return Ok(scan_reply(0, Vec::new()));
        }
        let (next, keys) =
            ctx.db()
                .scan(self.0, o.pattern.as_deref(), o.count, o.of_type.flatten())?;
        Ok(scan_reply(next, keys.into_iter().map(bulk).collect()))
    }
}

struct RandomKey;
impl Command for RandomKey {
    fn parse(p: &mut Parse) -> Result<Self, CmdError> {
        p.finish()?;
        Ok(RandomKey)
    }
    fn apply(self, ctx: &mut Ctx<'_>) -> Result<Frame, CmdError> {
        Ok(opt_bulk(ctx.db().randomkey()?))
    }
}

const W: &[&str] = &["write"];
const RF: &[&str] = &["readonly", "fast"];

/// The keyspace commands.
#[rustfmt::skip]
pub static SPECS: &[Spec] = &[
    Spec { name: "del", arity: -2, flags: W, keys: (1, -1, 1), run: run::<ManyKeys> },
    Spec { name: "unlink", arity: -2, flags: &["write", "fast"], keys: (1, -1, 1), run: run::<ManyKeys> },
    Spec { name: "exists", arity: -2, flags: RF, keys: (1, -1, 1), run: run::<ManyKeys> },
    Spec { name: "touch", arity: -2, flags: RF, keys: (1, -1, 1), run: run::<ManyKeys> },
    Spec { name: "type", arity: 2, flags: RF, keys: (1, 1, 1), run: run::<Type> },
    Spec { name: "rename", arity: 3, flags: W, keys: (1, 2, 1), run: run::<Rename> },
    Spec { name: "renamenx", arity: 3, flags: &["write", "fast"], keys: (1, 2, 1), run: run::<Rename> },
    Spec { name: "copy", arity: -3, flags: &["write", "denyoom"], keys: (1, 2, 1), run: run::<Copy> },
    Spec { name: "keys", arity: 2, flags: &["readonly"], keys: (0, 0, 0), run: run::<Keys> },
    Spec { name: "scan", arity: -2, flags: &["readonly"], keys: (0, 0, 0), run: run::<Scan> },
    Spec { name: "randomkey", arity: 1, flags: &["readonly"], keys: (0, 0, 0), run: run::<RandomKey> },
];

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_follow_strtoul_as_redis_reads_them() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+5"), Some(5));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"-18446744073709551615"), Some(1));
        assert_eq!(parse_cursor(b"5\0x"), Some(5));
        assert_eq!(parse_cursor(b"\0"), Some(0));
        for bad in [
            &b"18446744073709551616"[..],
            b"-18446744073709551616",
            b"-",
            b"+",
            b"--1",
            b" 1",
            b"1 ",
            b"0x10",
            b"abc",
        ] {
            assert_eq!(
                parse_cursor(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
