//! The one-pass path of the request parser: a multibulk command that is already whole in the
//! buffer (the usual case in a pipeline) is checked in one scan over the bytes and split off
//! with one cut, instead of being consumed header by header.
//!
//! It decides nothing on its own: whatever is not a complete, valid command of at most
//! [`MAX_ARGS`] arguments (a partial command, any protocol error, an empty or a long command)
//! is left to the incremental path, which sees the buffer untouched and gives the answer it
//! always gave. It makes the incremental path's checks (in its own order: any failure falls
//! through, so the order does not matter). The tests compare the two on the same input, whole
//! and split byte by byte.

use super::parse::Limits;

/// The most arguments a command may have to take this path (MSET of 10 keys has 21).
pub(super) const MAX_ARGS: usize = 32;

/// Where the complete multibulk command at the front of `buf` lies: the length it spans and
/// how many arguments it has, their ranges (start, end) written to `ranges`. `None` when it is
/// not whole in `buf`, fails a check, has no arguments or more than [`MAX_ARGS`].
pub(super) fn scan(
    buf: &[u8],
    limits: &Limits,
    ranges: &mut [(u32, u32); MAX_ARGS],
) -> Option<(usize, usize)> {
    if buf.first() != Some(&b'*') || buf.len() > u32::MAX as usize {
        return None;
    }
    let (count, i) = header(buf, 0, limits)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| (1..=MAX_ARGS).contains(&n) && n as u64 <= limits.max_multibulk_len)?;
    let mut at = i + 2;
    for range in ranges.iter_mut().take(count) {
        if buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, i) = header(buf, at, limits)?;
        if len > limits.max_bulk_len {
            return None;
        }
        let start = i + 2;
        // The payload and the two bytes after it (skipped unchecked, as Redis does).
        let next = start
            .checked_add(usize::try_from(len).ok()?)?
            .checked_add(2)?;
        if next > buf.len() {
            return None;
        }
        // Both below `buf.len()`, which fits in a u32.
        *range = (start as u32, (next - 2) as u32);
        at = next;
    }
    Some((at, count))
}

/// The number of the header line that starts at `at` (its `*` or `$` already checked) and the
/// index of the CR ending it, if the line is whole (the byte after its CR has arrived too) and
/// is what `string2ll` reads as a non-negative number: digits, no leading zero but in `0`
/// itself. At most 18 digits are taken (no overflow to check): a longer line, like any other
/// odd one (a sign, a NUL, a line end past the inline limit), is the incremental path's.
fn header(buf: &[u8], at: usize, limits: &Limits) -> Option<(u64, usize)> {
    let digits = buf.get(at + 1..)?;
    let mut value = 0u64;
    for (n, &b) in digits.iter().enumerate().take(19) {
        if b == b'\r' {
            let i = at + 1 + n;
            // The line (marker, digits) is no longer than the inline limit, and the byte
            // after the CR is there.
            let ok = n > 0 && n < limits.max_inline_len && i + 2 <= buf.len();
            return ok.then_some((value, i));
        }
        if !b.is_ascii_digit() || (n == 1 && value == 0) {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_of(input: &[u8]) -> Option<(usize, Vec<&[u8]>)> {
        let mut ranges = [(0, 0); MAX_ARGS];
        let (end, n) = scan(input, &Limits::default(), &mut ranges)?;
        let arg = |&(s, e): &(u32, u32)| &input[s as usize..e as usize];
        Some((end, ranges[..n].iter().map(arg).collect()))
    }

    #[test]
    fn a_whole_command_is_found_in_one_scan_and_anything_else_is_left_alone() {
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(scan_of(get), Some((get.len(), vec![&b"GET"[..], b"k"])));
        // Followed by the next command: only the first is spanned.
        let two = [&get[..], b"*1\r\n$4\r\nPING\r\n"].concat();
        assert_eq!(scan_of(&two).map(|s| s.0), Some(get.len()));
        // Every proper prefix is partial.
        for n in 0..get.len() {
            assert_eq!(scan_of(&get[..n]), None, "prefix of {n} bytes");
        }
        // Empty and negative counts, errors, a NUL in a header: the incremental path's.
        for bad in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"*x\r\n",
            b"*1\r\n+3\r\nGET\r\n",
            b"*1\r\n$-1\r\nGET\r\n",
            b"*1\r\n$3\0\r\nGET\r\n",
            b"PING\r\n",
        ] {
            assert_eq!(scan_of(bad), None, "{bad:?}");
        }
        // More arguments than MAX_ARGS: left to the incremental path.
        let many: Vec<u8> = std::iter::once(format!("*{}\r\n", MAX_ARGS + 1))
            .chain((0..=MAX_ARGS).map(|_| "$1\r\na\r\n".to_string()))
            .collect::<String>()
            .into_bytes();
        assert_eq!(scan_of(&many), None);
    }

    #[test]
    fn the_limits_bound_the_one_pass_path_as_they_bound_the_other() {
        let limits = Limits {
            max_bulk_len: 3,
            max_multibulk_len: 2,
            max_inline_len: 4,
        };
        let mut ranges = [(0, 0); MAX_ARGS];
        assert!(scan(b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n", &limits, &mut ranges).is_some());
        assert!(scan(b"*1\r\n$4\r\nabcd\r\n", &limits, &mut ranges).is_none());
        assert!(
            scan(
                b"*3\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n",
                &limits,
                &mut ranges
            )
            .is_none()
        );
        // A header line is searched no further than the inline limit from its start.
        let ten = b"*1\r\n$10\r\n0123456789\r\n";
        let inline = |max_inline_len| Limits {
            max_inline_len,
            ..Limits::default()
        };
        assert!(scan(ten, &inline(3), &mut ranges).is_some());
        assert!(scan(ten, &inline(2), &mut ranges).is_none());
    }
}
