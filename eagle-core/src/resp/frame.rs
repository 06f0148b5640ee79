//! The reply value the server sends: one type for RESP2 and RESP3, lowered to RESP2 by the encoder.

use bytes::Bytes;

/// One reply frame. RESP3-only variants are lowered by [`encode`](super::encode) when the
/// connection speaks RESP2 (see there for how).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A simple string (`+OK`). CR and LF are replaced by spaces when encoded.
    Simple(Bytes),
    /// An error (`-ERR ...`), its text starting with the error code. CR and LF are replaced by
    /// spaces when encoded.
    Error(Bytes),
    /// An integer (`:42`).
    Integer(i64),
    /// A bulk string (`$3\r\nfoo`), binary safe.
    Bulk(Bytes),
    /// The null reply: the nil bulk `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The nil array `*-1` of RESP2 (`_` in RESP3, as Redis sends it).
    NullArray,
    /// An array of frames (`*n`).
    Array(Vec<Frame>),
    /// RESP3 map (`%n`) of key/value pairs; in RESP2 a flat array `k1, v1, k2, v2, ...`.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 set (`~n`); an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 double (`,1.5`); a bulk string in RESP2.
    Double(f64),
    /// RESP3 boolean (`#t` / `#f`); the integer 1 or 0 in RESP2.
    Boolean(bool),
    /// RESP3 verbatim string (`=n\r\ntxt:...`); a bulk string of `text` in RESP2.
    Verbatim {
        /// The three-byte format, `txt` or `mkd`.
        format: [u8; 3],
        /// The text itself.
        text: Bytes,
    },
    /// RESP3 big number (`(12345...`), its decimal digits; a bulk string in RESP2.
    BigNumber(Bytes),
    /// RESP3 out-of-band push (`>n`); an array in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    /// The `+OK` reply.
    pub fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple string reply.
    pub fn simple(s: impl Into<Bytes>) -> Frame {
        Frame::Simple(s.into())
    }

    /// An error reply; `msg` is the whole text, code included (`"ERR syntax error"`).
    pub fn error(msg: impl Into<Bytes>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A bulk string reply.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// An integer reply.
    pub fn integer(n: i64) -> Frame {
        Frame::Integer(n)
    }

    /// The null reply (nil bulk in RESP2).
    pub fn null() -> Frame {
        Frame::Null
    }

    /// An array reply.
    pub fn array(items: Vec<Frame>) -> Frame {
        Frame::Array(items)
    }

    /// A map reply.
    pub fn map(pairs: Vec<(Frame, Frame)>) -> Frame {
        Frame::Map(pairs)
    }

    /// A double reply.
    pub fn double(d: f64) -> Frame {
        Frame::Double(d)
    }

    /// A boolean reply.
    pub fn boolean(b: bool) -> Frame {
        Frame::Boolean(b)
    }

    /// A verbatim string in the `txt` format.
    pub fn verbatim_txt(text: impl Into<Bytes>) -> Frame {
        Frame::Verbatim {
            format: *b"txt",
            text: text.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_build_the_expected_variants() {
        assert_eq!(Frame::ok(), Frame::Simple(Bytes::from_static(b"OK")));
        assert_eq!(
            Frame::error("ERR x"),
            Frame::Error(Bytes::from_static(b"ERR x"))
        );
        assert_eq!(
            Frame::bulk(vec![0u8, 13]),
            Frame::Bulk(Bytes::from_static(b"\0\r"))
        );
        assert_eq!(Frame::integer(-3), Frame::Integer(-3));
        assert_eq!(Frame::null(), Frame::Null);
        assert_eq!(
            Frame::verbatim_txt("hi"),
            Frame::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hi")
            }
        );
    }
}
