//! Compact field lists: the value of a small hash's record (after its format byte 0) and the
//! body of a large hash's part (see `hashtab`):
//!
//! ```text
//! | count u32 | field_len u32 | field | value_len u32 | value | ... (count times)
//! ```
//! little-endian, fields in insertion order (as Redis's listpack encoding keeps them). A write
//! builds a new record or part and publishes it with one 8-byte store.

use super::error::DbError;

/// A decoded hash.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A decoded hash borrowing the encoded bytes (no allocation per field: a field operation on a
/// large hash decodes and re-encodes one part of up to ~32 fields).
pub(crate) type FieldsRef<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Encodes owned or borrowed pairs.
pub(crate) fn encode<F: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(F, V)]) -> Vec<u8> {
    let size = 4 + fields
        .iter()
        .map(|(f, v)| 8 + f.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (f, v) in fields {
        let (f, v) = (f.as_ref(), v.as_ref());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
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

/// Decodes into pairs borrowing `p`; the whole list is validated.
pub(crate) fn decode_ref(mut p: &[u8]) -> Result<FieldsRef<'_>, DbError> {
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
    let count = len(&mut p)?;
    let mut fields = Vec::with_capacity(count.min(p.len() / 8));
    for _ in 0..count {
        let n = len(&mut p)?;
        let f = take(&mut p, n)?;
        let n = len(&mut p)?;
        let v = take(&mut p, n)?;
        fields.push((f, v));
    }
    if !p.is_empty() {
        return Err(corrupt("bytes after the last field"));
    }
    Ok(fields)
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
}
