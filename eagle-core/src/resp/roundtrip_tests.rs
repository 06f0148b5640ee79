//! Properties joining the encoder and the reply parser: what is encoded parses back.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::{Frame, Protocol, encode, parse_frame};

fn encoded(frame: &Frame, proto: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(frame, proto, &mut out);
    out.to_vec()
}

fn no_crlf(b: &Bytes) -> Bytes {
    b.iter()
        .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
        .collect()
}

/// What a RESP3 encoding of `frame` parses back as: line types lose CR and LF, and the RESP2
/// nil array is RESP3's single null.
fn as_resp3(frame: &Frame) -> Frame {
    let all = |items: &[Frame]| items.iter().map(as_resp3).collect();
    match frame {
        Frame::Simple(s) => Frame::Simple(no_crlf(s)),
        Frame::Error(s) => Frame::Error(no_crlf(s)),
        Frame::BigNumber(s) => Frame::BigNumber(no_crlf(s)),
        Frame::NullArray => Frame::Null,
        Frame::Array(items) => Frame::Array(all(items)),
        Frame::Set(items) => Frame::Set(all(items)),
        Frame::Push(items) => Frame::Push(all(items)),
        Frame::Map(pairs) => Frame::Map(
            pairs
                .iter()
                .map(|(k, v)| (as_resp3(k), as_resp3(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a RESP2 encoding of `frame` parses back as.
fn as_resp2(frame: &Frame) -> Frame {
    let all = |items: &[Frame]| items.iter().map(as_resp2).collect();
    match frame {
        Frame::Simple(s) => Frame::Simple(no_crlf(s)),
        Frame::Error(s) => Frame::Error(no_crlf(s)),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => Frame::Array(all(items)),
        Frame::Map(pairs) => Frame::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [as_resp2(k), as_resp2(v)])
                .collect(),
        ),
        Frame::Double(d) => Frame::Bulk(Bytes::from(super::format_double(*d))),
        Frame::Boolean(b) => Frame::Integer(i64::from(*b)),
        Frame::Verbatim { text, .. } => Frame::Bulk(text.clone()),
        Frame::BigNumber(digits) => Frame::Bulk(digits.clone()),
        other => other.clone(),
    }
}

/// Equality in which NaN equals NaN and doubles compare bit for bit otherwise (so -0 is kept).
fn same(a: &Frame, b: &Frame) -> bool {
    let all =
        |x: &[Frame], y: &[Frame]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q));
    match (a, b) {
        (Frame::Double(x), Frame::Double(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Frame::Array(x), Frame::Array(y))
        | (Frame::Set(x), Frame::Set(y))
        | (Frame::Push(x), Frame::Push(y)) => all(x, y),
        (Frame::Map(x), Frame::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        _ => a == b,
    }
}

fn bytes_with_crlf() -> impl Strategy<Value = Bytes> {
    let byte = prop_oneof![any::<u8>(), prop::sample::select(b"\r\n".to_vec())];
    prop::collection::vec(byte, 0..24).prop_map(Bytes::from)
}

fn leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        bytes_with_crlf().prop_map(Frame::Simple),
        bytes_with_crlf().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes_with_crlf().prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
        any::<f64>().prop_map(Frame::Double),
        Just(Frame::Double(f64::NAN)),
        Just(Frame::Double(f64::INFINITY)),
        Just(Frame::Double(f64::NEG_INFINITY)),
        any::<bool>().prop_map(Frame::Boolean),
        (any::<[u8; 3]>(), bytes_with_crlf())
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
        "-?[1-9][0-9]{0,60}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

fn check_round_trip(frame: &Frame, proto: Protocol, want: &Frame) -> Result<(), TestCaseError> {
    let bytes = encoded(frame, proto);
    match parse_frame(&bytes) {
        Ok(Some((got, used))) => {
            prop_assert_eq!(used, bytes.len());
            prop_assert!(same(&got, want), "{:?} parsed back as {:?}", want, got);
        }
        other => prop_assert!(
            false,
            "{:?} from {:?}",
            other,
            String::from_utf8_lossy(&bytes)
        ),
    }
    // Every proper prefix is incomplete, never an error.
    for cut in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        prop_assert_eq!(parse_frame(&bytes[..cut]), Ok(None));
    }
    Ok(())
}

proptest! {
    #[test]
    fn resp3_encoding_parses_back(frame in frame()) {
        check_round_trip(&frame, Protocol::Resp3, &as_resp3(&frame))?;
    }

    #[test]
    fn resp2_encoding_parses_back_lowered(frame in frame()) {
        check_round_trip(&frame, Protocol::Resp2, &as_resp2(&frame))?;
    }

    #[test]
    fn parse_frame_never_panics(input in prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(b"+-:$*%~,#_=(>!\r\n0123456789-tf.:".to_vec()),
            1 => any::<u8>(),
        ],
        0..300,
    )) {
        if let Ok(Some((_, used))) = parse_frame(&input) {
            prop_assert!(used > 0 && used <= input.len());
        }
    }
}

#[test]
fn resp2_map_is_the_flat_array() {
    let map = Frame::Map(vec![
        (Frame::bulk("a"), Frame::Integer(1)),
        (
            Frame::bulk("b"),
            Frame::Map(vec![(Frame::bulk("c"), Frame::Double(0.5))]),
        ),
    ]);
    let bytes = encoded(&map, Protocol::Resp2);
    let flat = Frame::Array(vec![
        Frame::bulk("a"),
        Frame::Integer(1),
        Frame::bulk("b"),
        Frame::Array(vec![Frame::bulk("c"), Frame::bulk("0.5")]),
    ]);
    assert_eq!(bytes, encoded(&flat, Protocol::Resp2));
    assert_eq!(parse_frame(&bytes), Ok(Some((flat, bytes.len()))));
}
