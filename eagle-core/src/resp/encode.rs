//! Writing [`Frame`]s as RESP2 or RESP3 bytes.

use bytes::{BufMut, BytesMut};

use super::frame::Frame;

/// The protocol version a connection speaks (`HELLO 2` / `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, with native maps, sets, doubles, booleans, nulls, verbatim strings, big numbers and
    /// pushes.
    Resp3,
}

/// Appends `frame` to `out` in the wire form of `proto`.
///
/// In RESP2 the RESP3-only types are lowered the way Redis lowers them: a map becomes a flat
/// array `k1, v1, k2, v2, ...`, a set or a push an array, a double a bulk string, a boolean the
/// integer 1 or 0, a verbatim string a bulk of its text, a big number a bulk of its digits, and
/// both nulls `$-1` / `*-1`. In RESP3 both nulls are `_`. CR and LF inside simple strings, errors
/// and big numbers are replaced by spaces so the reply stays well formed.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    let resp3 = proto == Protocol::Resp3;
    match frame {
        Frame::Simple(s) => put_line(out, b'+', s),
        Frame::Error(s) => put_line(out, b'-', s),
        Frame::Integer(n) => put_int(out, b':', *n),
        Frame::Bulk(b) => put_bulk(out, b),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => put_items(out, b'*', items, proto),
        Frame::Set(items) => put_items(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Frame::Push(items) => put_items(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Frame::Map(pairs) => {
            if resp3 {
                put_len(out, b'%', pairs.len());
            } else {
                put_len(out, b'*', pairs.len().saturating_mul(2));
            }
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Frame::Double(d) => {
            let text = format_double(*d);
            if resp3 {
                out.reserve(text.len() + 3);
                out.put_u8(b',');
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            } else {
                put_bulk(out, text.as_bytes());
            }
        }
        Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Frame::Verbatim { format, text } => {
            if resp3 {
                put_len(out, b'=', text.len().saturating_add(4));
                out.reserve(text.len() + 6);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(b"\r\n");
            } else {
                put_bulk(out, text);
            }
        }
        Frame::BigNumber(digits) if resp3 => put_line(out, b'(', digits),
        Frame::BigNumber(digits) => put_bulk(out, digits),
    }
}

/// Formats a double as the text of a RESP3 double or a RESP2 bulk: Rust's shortest round-trip
/// form (`1.5`, `-0`, `100`), and `inf`, `-inf`, `nan` as Redis spells them.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d}")
    }
}

fn put_items(out: &mut BytesMut, prefix: u8, items: &[Frame], proto: Protocol) {
    put_len(out, prefix, items.len());
    for item in items {
        encode(item, proto, out);
    }
}

/// `<prefix><text>\r\n`, with CR and LF in `text` turned into spaces.
fn put_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn put_int(out: &mut BytesMut, prefix: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

fn put_len(out: &mut BytesMut, prefix: u8, len: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(len).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

/// Encodes the header of an array of `len` elements (`*n`, the same in RESP2 and RESP3), for a
/// caller that encodes the elements itself (an EXEC under CLIENT REPLY, which may send fewer).
pub fn encode_array_header(len: usize, out: &mut BytesMut) {
    put_len(out, b'*', len);
}

/// Encodes a bulk string of `data` (the same bytes in RESP2 and RESP3): what
/// `encode(&Frame::Bulk(..))` writes, for a caller whose bytes are borrowed (a value read in
/// place from the pool).
pub fn encode_bulk(data: &[u8], out: &mut BytesMut) {
    put_bulk(out, data);
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_len(out, b'$', data.len());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn enc(frame: &Frame, proto: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(frame, proto, &mut out);
        out.to_vec()
    }

    fn both(frame: &Frame) -> (Vec<u8>, Vec<u8>) {
        (enc(frame, Protocol::Resp2), enc(frame, Protocol::Resp3))
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn scalar_types_in_both_protocols() {
        let cases: Vec<(Frame, &str, &str)> = vec![
            (Frame::ok(), "+OK\r\n", "+OK\r\n"),
            (Frame::error("ERR x"), "-ERR x\r\n", "-ERR x\r\n"),
            (Frame::integer(0), ":0\r\n", ":0\r\n"),
            (
                Frame::integer(i64::MIN),
                ":-9223372036854775808\r\n",
                ":-9223372036854775808\r\n",
            ),
            (
                Frame::bulk("a\r\nb"),
                "$4\r\na\r\nb\r\n",
                "$4\r\na\r\nb\r\n",
            ),
            (Frame::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Frame::Null, "$-1\r\n", "_\r\n"),
            (Frame::NullArray, "*-1\r\n", "_\r\n"),
            (Frame::boolean(true), ":1\r\n", "#t\r\n"),
            (Frame::boolean(false), ":0\r\n", "#f\r\n"),
            (Frame::double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (Frame::double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n"),
            (
                Frame::double(f64::NEG_INFINITY),
                "$4\r\n-inf\r\n",
                ",-inf\r\n",
            ),
            (Frame::double(f64::NAN), "$3\r\nnan\r\n", ",nan\r\n"),
            (Frame::double(-0.0), "$2\r\n-0\r\n", ",-0\r\n"),
            (Frame::double(100.0), "$3\r\n100\r\n", ",100\r\n"),
            (
                Frame::verbatim_txt("Some string"),
                "$11\r\nSome string\r\n",
                "=15\r\ntxt:Some string\r\n",
            ),
            (
                Frame::BigNumber(b("3492890328409238509324850943850943825024385")),
                "$43\r\n3492890328409238509324850943850943825024385\r\n",
                "(3492890328409238509324850943850943825024385\r\n",
            ),
        ];
        for (frame, resp2, resp3) in cases {
            let (got2, got3) = both(&frame);
            assert_eq!(got2, resp2.as_bytes(), "RESP2 of {frame:?}");
            assert_eq!(got3, resp3.as_bytes(), "RESP3 of {frame:?}");
        }
    }

    #[test]
    fn map_is_a_flat_array_in_resp2() {
        let map = Frame::map(vec![
            (Frame::simple("first"), Frame::integer(1)),
            (Frame::bulk("second"), Frame::boolean(true)),
        ]);
        let (resp2, resp3) = both(&map);
        assert_eq!(resp2, b"*4\r\n+first\r\n:1\r\n$6\r\nsecond\r\n:1\r\n");
        assert_eq!(resp3, b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#t\r\n");
        let (empty2, empty3) = both(&Frame::map(vec![]));
        assert_eq!(empty2, b"*0\r\n");
        assert_eq!(empty3, b"%0\r\n");
    }

    #[test]
    fn sets_and_pushes_are_arrays_in_resp2() {
        let items = vec![Frame::bulk("a"), Frame::Null];
        let (set2, set3) = both(&Frame::Set(items.clone()));
        assert_eq!(set2, b"*2\r\n$1\r\na\r\n$-1\r\n");
        assert_eq!(set3, b"~2\r\n$1\r\na\r\n_\r\n");
        let (push2, push3) = both(&Frame::Push(items));
        assert_eq!(push2, b"*2\r\n$1\r\na\r\n$-1\r\n");
        assert_eq!(push3, b">2\r\n$1\r\na\r\n_\r\n");
    }

    #[test]
    fn nested_arrays() {
        let frame = Frame::array(vec![
            Frame::array(vec![Frame::integer(1), Frame::integer(2)]),
            Frame::array(vec![]),
            Frame::NullArray,
        ]);
        assert_eq!(
            enc(&frame, Protocol::Resp2),
            b"*3\r\n*2\r\n:1\r\n:2\r\n*0\r\n*-1\r\n"
        );
    }

    #[test]
    fn line_types_never_carry_cr_or_lf() {
        let (r2, r3) = both(&Frame::error("ERR bad\r\nthing\n"));
        assert_eq!(r2, b"-ERR bad  thing \r\n");
        assert_eq!(r3, r2);
        assert_eq!(enc(&Frame::simple("a\rb"), Protocol::Resp2), b"+a b\r\n");
        assert_eq!(
            enc(&Frame::BigNumber(b("1\n2")), Protocol::Resp3),
            b"(1 2\r\n"
        );
    }

    #[test]
    fn doubles_round_trip_through_their_text() {
        for d in [
            0.1,
            1.0 / 3.0,
            1e300,
            -2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456789.0,
        ] {
            let text = format_double(d);
            assert_eq!(text.parse::<f64>().ok(), Some(d), "{text}");
        }
    }
}
