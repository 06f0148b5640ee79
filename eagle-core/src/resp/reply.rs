//! A reply parser for the client side (tests, fuzzing, tools): one RESP2 or RESP3 frame at a
//! time, from a byte slice. It parses from the start on every call, so it is not meant for large
//! replies arriving in many pieces; it never panics and bounds its recursion.

use std::fmt;

use bytes::Bytes;

use super::frame::Frame;

/// How many aggregates (arrays, maps, sets, pushes) may nest inside one another.
pub const MAX_DEPTH: usize = 128;

/// A malformed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame starting with a byte that is no RESP2 or RESP3 type.
    UnknownType(u8),
    /// A length or element count that is not an integer, or is out of range.
    InvalidLength,
    /// An integer reply that is not an integer.
    InvalidInteger,
    /// A double reply that is not a number, `inf`, `-inf` or `nan`.
    InvalidDouble,
    /// A boolean reply other than `t` or `f`.
    InvalidBoolean,
    /// A big number that is not an optionally signed run of digits.
    InvalidBigNumber,
    /// A null (`_`) line with something on it.
    InvalidNull,
    /// A verbatim string shorter than its `xxx:` format prefix.
    InvalidVerbatim,
    /// A CR not followed by LF, or a payload not followed by CRLF.
    MissingCrlf,
    /// Aggregates nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            FrameError::InvalidLength => f.write_str("invalid length or element count"),
            FrameError::InvalidInteger => f.write_str("invalid integer"),
            FrameError::InvalidDouble => f.write_str("invalid double"),
            FrameError::InvalidBoolean => f.write_str("invalid boolean"),
            FrameError::InvalidBigNumber => f.write_str("invalid big number"),
            FrameError::InvalidNull => f.write_str("invalid null"),
            FrameError::InvalidVerbatim => f.write_str("invalid verbatim string"),
            FrameError::MissingCrlf => f.write_str("missing CRLF"),
            FrameError::TooDeep => write!(f, "aggregates nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Parses one complete frame from the front of `buf`.
///
/// Returns the frame and the number of bytes it took, `Ok(None)` if `buf` holds only the start
/// of a frame, or the first error found. `$-1` parses as [`Frame::Null`] and `*-1` as
/// [`Frame::NullArray`]; a RESP3 blob error (`!`) as [`Frame::Error`].
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut cursor = Cursor { buf, pos: 0 };
    match cursor.frame(0) {
        Ok(frame) => Ok(Some((frame, cursor.pos))),
        Err(Fail::Incomplete) => Ok(None),
        Err(Fail::Bad(e)) => Err(e),
    }
}

enum Fail {
    Incomplete,
    Bad(FrameError),
}

impl From<FrameError> for Fail {
    fn from(e: FrameError) -> Fail {
        Fail::Bad(e)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn frame(&mut self, depth: usize) -> Result<Frame, Fail> {
        let kind = *self.buf.get(self.pos).ok_or(Fail::Incomplete)?;
        self.pos += 1;
        Ok(match kind {
            b'+' => Frame::Simple(Bytes::copy_from_slice(self.line()?)),
            b'-' => Frame::Error(Bytes::copy_from_slice(self.line()?)),
            b':' => Frame::Integer(parse_i64(self.line()?).ok_or(FrameError::InvalidInteger)?),
            b',' => Frame::Double(parse_double(self.line()?)?),
            b'#' => match self.line()? {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(FrameError::InvalidBoolean.into()),
            },
            b'_' => match self.line()? {
                b"" => Frame::Null,
                _ => return Err(FrameError::InvalidNull.into()),
            },
            b'(' => {
                let digits = self.line()?;
                if !is_big_number(digits) {
                    return Err(FrameError::InvalidBigNumber.into());
                }
                Frame::BigNumber(Bytes::copy_from_slice(digits))
            }
            b'$' => match self.length()? {
                None => Frame::Null,
                Some(n) => Frame::Bulk(Bytes::copy_from_slice(self.blob(n)?)),
            },
            b'!' => {
                let n = self.length()?.ok_or(FrameError::InvalidLength)?;
                Frame::Error(Bytes::copy_from_slice(self.blob(n)?))
            }
            b'=' => {
                let n = self.length()?.ok_or(FrameError::InvalidLength)?;
                let blob = self.blob(n)?;
                match blob {
                    [a, b, c, b':', text @ ..] => Frame::Verbatim {
                        format: [*a, *b, *c],
                        text: Bytes::copy_from_slice(text),
                    },
                    _ => return Err(FrameError::InvalidVerbatim.into()),
                }
            }
            b'*' => match self.length()? {
                None => Frame::NullArray,
                Some(n) => Frame::Array(self.items(n, depth)?),
            },
            b'~' => {
                let n = self.length()?.ok_or(FrameError::InvalidLength)?;
                Frame::Set(self.items(n, depth)?)
            }
            b'>' => {
                let n = self.length()?.ok_or(FrameError::InvalidLength)?;
                Frame::Push(self.items(n, depth)?)
            }
            b'%' => {
                let n = self.length()?.ok_or(FrameError::InvalidLength)?;
                let items =
                    self.items(n.checked_mul(2).ok_or(FrameError::InvalidLength)?, depth)?;
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((k, v));
                }
                Frame::Map(pairs)
            }
            other => return Err(FrameError::UnknownType(other).into()),
        })
    }

    /// `n` frames one level deeper than `depth`.
    fn items(&mut self, n: usize, depth: usize) -> Result<Vec<Frame>, Fail> {
        if depth >= MAX_DEPTH {
            return Err(FrameError::TooDeep.into());
        }
        // The count comes from the peer: do not let it size the allocation.
        let mut items = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            items.push(self.frame(depth + 1)?);
        }
        Ok(items)
    }

    /// The rest of the current line, up to CRLF, which is consumed.
    fn line(&mut self) -> Result<&'a [u8], Fail> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let cr = rest
            .iter()
            .position(|&b| b == b'\r')
            .ok_or(Fail::Incomplete)?;
        match rest.get(cr + 1) {
            None => Err(Fail::Incomplete),
            Some(b'\n') => {
                self.pos += cr + 2;
                Ok(rest.get(..cr).unwrap_or_default())
            }
            Some(_) => Err(FrameError::MissingCrlf.into()),
        }
    }

    /// A length line: `None` for -1, the length for 0 or more.
    fn length(&mut self) -> Result<Option<usize>, Fail> {
        match parse_i64(self.line()?) {
            Some(-1) => Ok(None),
            Some(n) => Ok(Some(
                usize::try_from(n).map_err(|_| FrameError::InvalidLength)?,
            )),
            None => Err(FrameError::InvalidLength.into()),
        }
    }

    /// `n` payload bytes and the CRLF after them.
    fn blob(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        let end = self.pos.checked_add(n).ok_or(FrameError::InvalidLength)?;
        let after = end.checked_add(2).ok_or(FrameError::InvalidLength)?;
        if after > self.buf.len() {
            return Err(Fail::Incomplete);
        }
        if self.buf.get(end..after) != Some(b"\r\n".as_slice()) {
            return Err(FrameError::MissingCrlf.into());
        }
        let payload = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = after;
        Ok(payload)
    }
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_double(s: &[u8]) -> Result<f64, FrameError> {
    let text = std::str::from_utf8(s).map_err(|_| FrameError::InvalidDouble)?;
    match text {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| FrameError::InvalidDouble),
    }
}

fn is_big_number(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> Frame {
        match parse_frame(input) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, input.len(), "{input:?}");
                frame
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn every_type() {
        assert_eq!(one(b"+OK\r\n"), Frame::ok());
        assert_eq!(one(b"-ERR no\r\n"), Frame::error("ERR no"));
        assert_eq!(one(b":-12\r\n"), Frame::Integer(-12));
        assert_eq!(one(b"$3\r\na\r\n\r\n"), Frame::bulk("a\r\n"));
        assert_eq!(one(b"$-1\r\n"), Frame::Null);
        assert_eq!(one(b"_\r\n"), Frame::Null);
        assert_eq!(one(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(one(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
        assert_eq!(one(b",1.5\r\n"), Frame::Double(1.5));
        assert!(matches!(one(b",nan\r\n"), Frame::Double(d) if d.is_nan()));
        assert_eq!(one(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(
            one(b"(-123\r\n"),
            Frame::BigNumber(Bytes::from_static(b"-123"))
        );
        assert_eq!(one(b"!5\r\nERR x\r\n"), Frame::error("ERR x"));
        assert_eq!(
            one(b"=6\r\nmkd:hi\r\n"),
            Frame::Verbatim {
                format: *b"mkd",
                text: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(
            one(b"%1\r\n+k\r\n*2\r\n:1\r\n~1\r\n>0\r\n"),
            Frame::Map(vec![(
                Frame::simple("k"),
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Set(vec![Frame::Push(vec![])])
                ])
            )])
        );
    }

    #[test]
    fn incomplete_input_is_none() {
        for input in [
            &b""[..],
            b"+OK",
            b"+OK\r",
            b"$3\r\nfo",
            b"$3\r\nfoo\r",
            b"*2\r\n:1\r\n",
            b"%1\r\n+k\r\n",
        ] {
            assert_eq!(parse_frame(input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn consumes_only_the_first_frame() {
        assert_eq!(
            parse_frame(b":1\r\n:2\r\n"),
            Ok(Some((Frame::Integer(1), 4)))
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let cases: [(&[u8], FrameError); 11] = [
            (b"?x\r\n", FrameError::UnknownType(b'?')),
            (b"$-2\r\n", FrameError::InvalidLength),
            (b"$x\r\n", FrameError::InvalidLength),
            (b"~-1\r\n", FrameError::InvalidLength),
            (b":1.5\r\n", FrameError::InvalidInteger),
            (b",abc\r\n", FrameError::InvalidDouble),
            (b"#x\r\n", FrameError::InvalidBoolean),
            (b"_x\r\n", FrameError::InvalidNull),
            (b"=2\r\ntx\r\n", FrameError::InvalidVerbatim),
            (b"$1\r\nabc\r\n", FrameError::MissingCrlf),
            (b"+a\rb\r\n", FrameError::MissingCrlf),
        ];
        for (input, want) in cases {
            assert_eq!(parse_frame(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn huge_counts_and_lengths_neither_allocate_nor_panic() {
        assert_eq!(parse_frame(b"*9223372036854775807\r\n:1\r\n"), Ok(None));
        assert_eq!(parse_frame(b"%9223372036854775807\r\n"), Ok(None));
        assert_eq!(parse_frame(b"%-1\r\n"), Err(FrameError::InvalidLength));
        assert_eq!(parse_frame(b"$9223372036854775807\r\nab"), Ok(None));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(parse_frame(&deep), Err(FrameError::TooDeep));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":7\r\n");
        assert!(matches!(parse_frame(&ok), Ok(Some((_, n))) if n == ok.len()));
        let mut too_deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        too_deep.extend_from_slice(b":7\r\n");
        assert_eq!(parse_frame(&too_deep), Err(FrameError::TooDeep));
    }
}
