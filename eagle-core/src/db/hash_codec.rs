//! Compact field lists: the value of a small hash's record (after its format byte 0) and the
//! body of a large hash's part (see `hashtab`):
//!
//! ```text
//! counted: | count u32 | field_len u32 | field | value_len u32 | value | ... (count times)
//! run:     | field_len u32 | field | value_len u32 | value | ... (to the end of the bytes)
//! ```
//! little-endian, fields in insertion order (as Redis's listpack encoding keeps them). A
//! compact record's value and the parts of pools without `INCOMPAT_APPEND_PARTS` are counted;
//! the parts of pools with it are runs, so a new field is appended without touching the bytes
//! before it.

use super::error::DbError;

/// A decoded hash.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A decoded hash borrowing the encoded bytes (no allocation per field: a field operation on a
/// large hash decodes and re-encodes one part of up to ~32 fields).
pub(crate) type FieldsRef<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Bytes of the encoding of `fields`, with or without the count prefix.
pub(crate) fn encoded_len<F: AsRef<[u8]>, V: AsRef<[u8]>>(
    fields: &[(F, V)],
    counted: bool,
) -> usize {
    let pairs = fields
        .iter()
        .map(|(f, v)| 8 + f.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    if counted { 4 + pairs } else { pairs }
}

/// Appends the encoding of `fields` to `out`: counted (with the `count u32` prefix) or a run.
pub(crate) fn encode_into<F: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    fields: &[(F, V)],
    counted: bool,
) {
    out.reserve(encoded_len(fields, counted));
    if counted {
        out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    }
    for (f, v) in fields {
        let (f, v) = (f.as_ref(), v.as_ref());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
}

/// Encodes owned or borrowed pairs, counted.
pub(crate) fn encode<F: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(F, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, fields, true);
    out
}

fn corrupt(what: &str) -> DbError {
    DbError::Corrupted {
        what: format!("hash value: {what}"),
    }
}

/// Decodes into owned pairs.
pub(crate) fn decode(p: &[u8]) -> Result<Fields, DbError> {
    Ok(decode_ref(p)?
        .into_iter()
        .map(|(f, v)| (f.to_vec(), v.to_vec()))
        .collect())
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], DbError> {
    if p.len() < n {
        return Err(corrupt("truncated"));
    }
    let (a, b) = p.split_at(n);
    *p = b;
    Ok(a)
}

fn len(p: &mut &[u8]) -> Result<usize, DbError> {
    Ok(u32::from_le_bytes(take(p, 4)?.try_into().expect("4 bytes")) as usize)
}

fn pair<'a>(p: &mut &'a [u8]) -> Result<(&'a [u8], &'a [u8]), DbError> {
    let n = len(p)?;
    let f = take(p, n)?;
    let n = len(p)?;
    Ok((f, take(p, n)?))
}

/// Decodes counted pairs borrowing `p`; the whole list is validated.
pub(crate) fn decode_ref(mut p: &[u8]) -> Result<FieldsRef<'_>, DbError> {
    let count = len(&mut p)?;
    let mut fields = Vec::with_capacity(count.min(p.len() / 8));
    for _ in 0..count {
        fields.push(pair(&mut p)?);
    }
    if !p.is_empty() {
        return Err(corrupt("bytes after the last field"));
    }
    Ok(fields)
}

/// Decodes a run of pairs borrowing `p` (no count prefix: pairs to the end of `p`).
pub(crate) fn decode_run(mut p: &[u8]) -> Result<FieldsRef<'_>, DbError> {
    let mut fields = Vec::with_capacity(p.len() / 16);
    while !p.is_empty() {
        fields.push(pair(&mut p)?);
    }
    Ok(fields)
}

/// Whether a run of pairs (as [`decode_run`] reads it) holds `field`; without collecting the
/// pairs. A run without it is validated to its end, as `decode_run` validates it.
pub(crate) fn run_contains(mut p: &[u8], field: &[u8]) -> Result<bool, DbError> {
    while !p.is_empty() {
        if same_name(pair(&mut p)?.0, field) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `a == b`, the last 8 bytes compared first, as one word: names in one hash often share a
/// prefix (`user:1`, `element:000000123456`) and differ at the end.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.len() < 8 || a.last_chunk::<8>() == b.last_chunk::<8>()) && a == b
}

/// Number of fields, read from the header alone.
pub(crate) fn count(p: &[u8]) -> Result<u64, DbError> {
    let head: [u8; 4] = p
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| corrupt("truncated"))?;
    Ok(u32::from_le_bytes(head) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_encoding_round_trips_and_rejects_damage() {
        let fields: Fields = vec![
            (b"f\0\r\n".to_vec(), b"".to_vec()),
            (Vec::new(), vec![9; 100]),
        ];
        let buf = encode(&fields);
        assert_eq!(decode(&buf).unwrap(), fields);
        assert_eq!(count(&buf).unwrap(), 2);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err());
        }
        let mut huge = buf.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn a_run_decodes_what_was_appended_to_it_and_rejects_damage() {
        let first = [(&b"a"[..], &b"1"[..]), (&b""[..], &b"\0\r\n"[..])];
        let more = [(&b"c"[..], &[7u8; 300][..])];
        let mut run = Vec::new();
        encode_into(&mut run, &first, false);
        assert_eq!(run.len(), encoded_len(&first, false));
        encode_into(&mut run, &more, false);
        let all: Vec<_> = first.iter().chain(&more).copied().collect();
        assert_eq!(decode_run(&run).unwrap(), all);
        assert_eq!(decode_run(&[]).unwrap(), Vec::new());
        for cut in 1..run.len() {
            // Every cut but those at a pair's end leaves a truncated pair.
            let whole = [10, 21].contains(&cut);
            assert_eq!(decode_run(&run[..cut]).is_ok(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_run_is_searched_as_it_decodes_and_damage_before_a_miss_is_an_error() {
        let pairs = [
            (&b"a"[..], &b"c"[..]),
            (&b""[..], &b"b"[..]),
            (&b"b"[..], &b"x"[..]),
        ];
        let mut run = Vec::new();
        encode_into(&mut run, &pairs, false);
        for name in [&b"a"[..], b"", b"b"] {
            assert!(run_contains(&run, name).unwrap());
        }
        // Values are not names.
        assert!(!run_contains(&run, b"c").unwrap());
        assert!(!run_contains(&[], b"").unwrap());
        // A truncated last pair: found before the damage, else the damage is reported.
        let cut = &run[..run.len() - 1];
        assert!(run_contains(cut, b"a").unwrap());
        assert!(run_contains(cut, b"z").is_err());
    }

    #[test]
    fn names_that_share_their_last_eight_bytes_are_told_apart() {
        let pairs = [(&b"user:00000001"[..], &b"v"[..]), (b"item:00000002", b"w")];
        let mut run = Vec::new();
        encode_into(&mut run, &pairs, false);
        assert!(run_contains(&run, b"user:00000001").unwrap());
        assert!(run_contains(&run, b"item:00000002").unwrap());
        // Same length, same tail, a different start; and a tail alone.
        assert!(!run_contains(&run, b"item:00000001").unwrap());
        assert!(!run_contains(&run, b"00000001").unwrap());
        assert!(!run_contains(&run, b"xuser:00000001").unwrap());
    }
}
