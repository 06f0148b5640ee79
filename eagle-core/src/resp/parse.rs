//! The server's request parser: multibulk (`*n` of `$len` bulks) and inline requests, checked
//! the way Redis 7's `processMultibulkBuffer` and `processInlineBuffer` check them.
//!
//! Behaviour taken from Redis (src/networking.c, src/util.c `string2ll`), kept on purpose:
//! - A request starting with `*` is multibulk, anything else inline.
//! - A `*` count of zero or less is an empty command: its line is consumed and skipped.
//! - Counts and lengths are parsed like `string2ll`: an optional `-`, then digits with no
//!   leading zero (`0` itself excepted), nothing else, at most 20 characters.
//! - A header line ends at the first CR; the byte after the CR is skipped without being checked,
//!   and so are the two bytes after a bulk's payload.
//! - Line searches stop at a NUL byte as C's `strchr` does, so a NUL in a header or an inline
//!   line means "no line end yet" until the inline limit is exceeded.
//! - The `$` of an element is checked only once its line's CR has arrived.
//!
//! One deliberate difference: Redis applies the 64 KiB header/inline limit only when a read
//! leaves the buffer without a line end, so whether a longer line is accepted depends on how the
//! bytes arrived. Here a line end further than the limit is refused as well, which is what Redis
//! does when the bytes arrive one at a time; the outcome never depends on how input is split.

use bytes::{Buf, Bytes, BytesMut};

use super::error::ProtocolError;
use super::inline::split_args;
use super::whole;

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument accepted, in bytes (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: u64,
    /// Largest multibulk element count accepted (1,048,576, Redis 6's fixed limit; Redis 7
    /// raised its own to `INT_MAX`).
    pub max_multibulk_len: u64,
    /// Longest inline request line, or `*` / `$` header line, in bytes (64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Most arguments a request of a client that has not authenticated may have (Redis's limit):
/// nothing it sends before AUTH can make the server hold much.
pub const UNAUTHENTICATED_ARGS: u64 = 10;
/// Largest argument of a client that has not authenticated, in bytes (Redis's limit).
pub const UNAUTHENTICATED_BULK: u64 = 16384;

/// Parses requests out of one connection's read buffer, resuming where it stopped.
///
/// Use one parser per connection, with the same buffer every call: the caller only ever appends
/// to the buffer, and the parser only ever removes bytes from its front. A multibulk command
/// that arrives in pieces is taken in as it comes (whole arguments are split off the buffer,
/// headers are consumed, and a header line is not rescanned), so the work per byte is constant
/// however the command is split.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    /// The client has not authenticated (a password is set): commands of at most
    /// [`UNAUTHENTICATED_ARGS`] arguments of at most [`UNAUTHENTICATED_BULK`] bytes, as Redis.
    unauthenticated: bool,
    /// Elements still to read of the multibulk command in progress; 0 between commands.
    pending: u64,
    /// Length of the bulk whose header has been consumed but whose payload has not.
    bulk_len: Option<usize>,
    /// Arguments of the command in progress read so far.
    args: Vec<Bytes>,
    /// Leading bytes of the buffer already searched for the current line end.
    scanned: usize,
    /// An empty command was skipped since [`take_skipped_empty`](Self::take_skipped_empty)
    /// last asked.
    skipped_empty: bool,
}

/// What a line search found.
enum Line {
    /// The line end is at this index.
    Found(usize),
    /// No line end yet, within the limit.
    Incomplete,
    /// No line end within the limit.
    TooLong,
}

/// What one step at a command boundary did.
enum Step {
    NeedMore,
    Continue,
    Command(Vec<Bytes>),
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            ..RequestParser::default()
        }
    }

    /// Whether an empty command (skipped by [`parse`](Self::parse)) came since the last call:
    /// before the command `parse` last returned, or after it if it returned none. Redis ends a
    /// command at an empty one as at any other (`resetClient`: a CLIENT REPLY SKIP before it
    /// skips nothing more).
    pub fn take_skipped_empty(&mut self) -> bool {
        std::mem::take(&mut self.skipped_empty)
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sets the longest bulk argument for the requests parsed from now on (a server's
    /// `proto-max-bulk-len`, which may change while a connection is open).
    pub fn set_max_bulk_len(&mut self, max: u64) {
        self.limits.max_bulk_len = max;
    }

    /// Tells the parser whether the client has authenticated (or needs not): until it has, a
    /// request of more than [`UNAUTHENTICATED_ARGS`] arguments, or an argument over
    /// [`UNAUTHENTICATED_BULK`] bytes, is a protocol error. The caller must tell it before it
    /// parses the request after an AUTH.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.unauthenticated = !authenticated;
    }

    /// The limits for the next request: tighter until the client has authenticated.
    fn active_limits(&self) -> Limits {
        let mut limits = self.limits;
        if self.unauthenticated {
            limits.max_multibulk_len = limits.max_multibulk_len.min(UNAUTHENTICATED_ARGS);
            limits.max_bulk_len = limits.max_bulk_len.min(UNAUTHENTICATED_BULK);
        }
        limits
    }

    /// Whether part of a multibulk command has been consumed but the command is not complete.
    pub fn in_progress(&self) -> bool {
        self.pending > 0
    }

    /// Takes the next complete command's arguments off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` ends before a command does; the parser may have consumed
    /// some of it, which the caller must not resend: it appends what it reads next and calls
    /// again. Empty commands (an empty inline line, a `*` count of 0 or less) are skipped.
    /// Multibulk arguments share `buf`'s allocation (no copy); inline ones are copied, being
    /// unescaped. After an `Err` the connection is to be closed: the parser's state is
    /// unspecified.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.pending > 0 {
                return self.read_bulks(buf);
            }
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            let step = if first == b'*' {
                if let Some(args) = self.take_whole(buf) {
                    return Ok(Some(args));
                }
                self.read_count(buf)?
            } else {
                self.read_inline(buf)?
            };
            match step {
                Step::NeedMore => return Ok(None),
                Step::Continue => {}
                Step::Command(args) => return Ok(Some(args)),
            }
        }
    }

    /// The multibulk command at the front of `buf` if it is whole there and valid (see
    /// `whole.rs`): split off with one cut, its arguments sharing the cut's allocation. `None`
    /// leaves `buf` and the parser untouched.
    fn take_whole(&mut self, buf: &mut BytesMut) -> Option<Vec<Bytes>> {
        let mut ranges = [(0, 0); whole::MAX_ARGS];
        let (end, count) = whole::scan(buf, &self.active_limits(), &mut ranges)?;
        let (&(last_start, last_end), before) = ranges.get(..count)?.split_last()?;
        let mut command = buf.split_to(end).freeze();
        self.scanned = 0;
        let mut args = Vec::with_capacity(count);
        args.extend(
            before
                .iter()
                .map(|&(start, end)| command.slice(start as usize..end as usize)),
        );
        // The last argument keeps the cut itself: one reference count less to take and drop.
        command.advance(last_start as usize);
        command.truncate((last_end - last_start) as usize);
        args.push(command);
        Some(args)
    }

    /// Reads a `*count` line.
    fn read_count(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let i = match self.find_line(buf, b'\r') {
            Line::Found(i) => i,
            Line::Incomplete => return Ok(Step::NeedMore),
            Line::TooLong => return Err(ProtocolError::TooBigMbulkCount),
        };
        if i + 2 > buf.len() {
            return Ok(Step::NeedMore);
        }
        let max = self.limits.max_multibulk_len;
        let count = buf
            .get(1..i)
            .and_then(string2ll)
            .filter(|&n| u64::try_from(n).map_or(true, |n| n <= max))
            .ok_or(ProtocolError::InvalidMultibulkLength)?;
        if self.unauthenticated && count > UNAUTHENTICATED_ARGS as i64 {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        self.consume(buf, i + 2);
        if let Ok(count) = u64::try_from(count)
            && count > 0
        {
            self.pending = count;
            self.args = Vec::with_capacity(count.min(1024) as usize);
        } else {
            self.skipped_empty = true;
        }
        Ok(Step::Continue)
    }

    /// Reads the `$len` headers and payloads of the multibulk command in progress.
    fn read_bulks(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        while self.pending > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let i = match self.find_line(buf, b'\r') {
                        Line::Found(i) => i,
                        Line::Incomplete => return Ok(None),
                        Line::TooLong => return Err(ProtocolError::TooBigBulkCount),
                    };
                    if i + 2 > buf.len() {
                        return Ok(None);
                    }
                    match buf.first() {
                        Some(b'$') => {}
                        Some(&other) => return Err(ProtocolError::ExpectedDollar(other)),
                        None => return Ok(None),
                    }
                    let max = self.limits.max_bulk_len;
                    let len = buf
                        .get(1..i)
                        .and_then(string2ll)
                        .and_then(|n| u64::try_from(n).ok())
                        .filter(|&n| n <= max)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if self.unauthenticated && len as u64 > UNAUTHENTICATED_BULK {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.consume(buf, i + 2);
                    self.bulk_len = Some(len);
                    len
                }
            };
            // Payload and the two bytes after it, which Redis skips unchecked.
            if buf.len() < len.saturating_add(2) {
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            self.consume(buf, 2);
            self.args.push(arg);
            self.bulk_len = None;
            self.pending -= 1;
        }
        Ok(Some(std::mem::take(&mut self.args)))
    }

    /// Reads one inline request line.
    fn read_inline(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        let i = match self.find_line(buf, b'\n') {
            Line::Found(i) => i,
            Line::Incomplete => return Ok(Step::NeedMore),
            Line::TooLong => return Err(ProtocolError::TooBigInline),
        };
        let end = if i > 0 && buf.get(i - 1) == Some(&b'\r') {
            i - 1
        } else {
            i
        };
        let args = buf
            .get(..end)
            .and_then(split_args)
            .ok_or(ProtocolError::UnbalancedQuotes)?;
        self.consume(buf, i + 1);
        if args.is_empty() {
            self.skipped_empty = true;
            return Ok(Step::Continue);
        }
        Ok(Step::Command(args.into_iter().map(Bytes::from).collect()))
    }

    /// Looks for `target` from the front of `buf` as `strchr` would (stopping at a NUL), no
    /// further than the inline limit, resuming after the bytes searched by the previous call.
    fn find_line(&mut self, buf: &[u8], target: u8) -> Line {
        let limit = self.limits.max_inline_len;
        // Redis errs once more than `limit` bytes are buffered with no line end among them, so
        // a line end at index `limit` is the last one accepted.
        let end = buf.len().min(limit.saturating_add(1));
        let start = self.scanned.min(end);
        let window = buf.get(start..end).unwrap_or_default();
        match window.iter().position(|&b| b == target || b == 0) {
            Some(offset) => {
                let i = start + offset;
                self.scanned = i;
                if buf.get(i) == Some(&target) {
                    return Line::Found(i);
                }
                // A NUL: strchr never looks past it, so this line never ends.
            }
            None => self.scanned = end,
        }
        if buf.len() > limit {
            Line::TooLong
        } else {
            Line::Incomplete
        }
    }

    fn consume(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n.min(buf.len()));
        self.scanned = 0;
    }
}

/// Parses a decimal integer exactly as Redis's `string2ll` does.
pub(super) fn string2ll(s: &[u8]) -> Option<i64> {
    // LONG_STR_SIZE is 21: longer strings are never numbers.
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut v = u64::from(first - b'0');
    for &d in rest {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}
