//! Reading a log record's payload (batches and undo records): little-endian fields, every read
//! bounds-checked, damage reported as `BatchError::Corrupted`, never a panic.

use super::batch::BatchError;

/// A cursor over a payload; `what` names the record kind in errors.
pub(super) struct Reader<'a> {
    p: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(p: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { p, what }
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.p.len() < n {
            return Err(BatchError::Corrupted {
                what: format!("truncated {}", self.what),
            });
        }
        let (a, b) = self.p.split_at(n);
        self.p = b;
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(self.bytes(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, BatchError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(super) fn u64(&mut self) -> Result<u64, BatchError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Bytes left (a capacity hint).
    pub(super) fn left(&self) -> usize {
        self.p.len()
    }

    /// Fails if anything follows the last field.
    pub(super) fn finish(self) -> Result<(), BatchError> {
        if self.p.is_empty() {
            Ok(())
        } else {
            Err(BatchError::Corrupted {
                what: format!("{} bytes after the end of a {}", self.p.len(), self.what),
            })
        }
    }

    /// An error for an unknown entry code.
    pub(super) fn unknown(&self, code: u8) -> BatchError {
        BatchError::Corrupted {
            what: format!("unknown entry {code} in a {}", self.what),
        }
    }
}

/// Test helper: `decode` accepts `buf` and rejects every truncation, a trailing byte, and an
/// unknown first entry code (at byte 4, after the count).
#[cfg(test)]
pub(super) fn assert_rejects_damage<T: std::fmt::Debug>(
    buf: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, BatchError>,
) {
    decode(buf).unwrap();
    for cut in 0..buf.len() {
        assert!(decode(&buf[..cut]).is_err(), "cut at {cut} decoded");
    }
    let mut extra = buf.to_vec();
    extra.push(0);
    assert!(decode(&extra).is_err());
    let mut bad = buf.to_vec();
    bad[4] = 9;
    assert!(decode(&bad).is_err());
}
