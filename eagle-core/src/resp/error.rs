//! The request parser's protocol errors, worded exactly as Redis 7 replies them.

use std::fmt;

use bytes::Bytes;

use super::frame::Frame;

/// A malformed request. The server replies with [`ProtocolError::to_frame`] (its text is
/// Redis 7's, from `processMultibulkBuffer` / `processInlineBuffer` in `networking.c`) and then
/// closes the connection; the parser is not meant to go on after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A `*` count that is not an integer, or is above the multibulk limit.
    InvalidMultibulkLength,
    /// A `$` length that is not an integer, is negative, or is above the bulk limit.
    InvalidBulkLength,
    /// A multibulk element that does not start with `$`; holds the byte found instead.
    ExpectedDollar(u8),
    /// No CR within the inline limit after a `*`.
    TooBigMbulkCount,
    /// No CR within the inline limit after a multibulk element's start.
    TooBigBulkCount,
    /// An inline request line with no newline within the inline limit.
    TooBigInline,
    /// A `*` count above 10 from a client that has not authenticated.
    UnauthenticatedMultibulkLength,
    /// A `$` length above 16 KiB from a client that has not authenticated.
    UnauthenticatedBulkLength,
    /// An inline request with an unterminated quote, or a closing quote followed by neither a
    /// space nor the end of the line.
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The reply's exact bytes, without the leading `-` and trailing CRLF:
    /// `ERR Protocol error: ...`.
    ///
    /// For [`ProtocolError::ExpectedDollar`] the byte found is sent raw, as Redis's `%c` does,
    /// except that CR and LF become spaces (Redis maps them in every formatted error).
    pub fn message_bytes(&self) -> Vec<u8> {
        let mut msg = b"ERR Protocol error: ".to_vec();
        match self {
            ProtocolError::ExpectedDollar(got) => {
                msg.extend_from_slice(b"expected '$', got '");
                msg.push(sanitize(*got));
                msg.push(b'\'');
            }
            other => msg.extend_from_slice(other.reason().as_bytes()),
        }
        msg
    }

    /// The error reply to send before closing the connection.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(Bytes::from(self.message_bytes()))
    }

    fn reason(&self) -> &'static str {
        match self {
            ProtocolError::InvalidMultibulkLength => "invalid multibulk length",
            ProtocolError::InvalidBulkLength => "invalid bulk length",
            ProtocolError::ExpectedDollar(_) => "expected '$'",
            ProtocolError::TooBigMbulkCount => "too big mbulk count string",
            ProtocolError::TooBigBulkCount => "too big bulk count string",
            ProtocolError::TooBigInline => "too big inline request",
            ProtocolError::UnauthenticatedMultibulkLength => "unauthenticated multibulk length",
            ProtocolError::UnauthenticatedBulkLength => "unauthenticated bulk length",
            ProtocolError::UnbalancedQuotes => "unbalanced quotes in request",
        }
    }
}

fn sanitize(byte: u8) -> u8 {
    if byte == b'\r' || byte == b'\n' {
        b' '
    } else {
        byte
    }
}

/// The reply text. It equals [`ProtocolError::message_bytes`] except for an
/// [`ProtocolError::ExpectedDollar`] byte of 0x80 or above, which a `String` cannot hold raw and
/// is shown as the character of the same number (U+0080..U+00FF).
impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ExpectedDollar(got) => write!(
                f,
                "ERR Protocol error: expected '$', got '{}'",
                char::from(sanitize(*got))
            ),
            other => write!(f, "ERR Protocol error: {}", other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_redis_7s() {
        let cases = [
            (
                ProtocolError::InvalidMultibulkLength,
                "ERR Protocol error: invalid multibulk length",
            ),
            (
                ProtocolError::InvalidBulkLength,
                "ERR Protocol error: invalid bulk length",
            ),
            (
                ProtocolError::ExpectedDollar(b'f'),
                "ERR Protocol error: expected '$', got 'f'",
            ),
            (
                ProtocolError::TooBigMbulkCount,
                "ERR Protocol error: too big mbulk count string",
            ),
            (
                ProtocolError::TooBigBulkCount,
                "ERR Protocol error: too big bulk count string",
            ),
            (
                ProtocolError::TooBigInline,
                "ERR Protocol error: too big inline request",
            ),
            (
                ProtocolError::UnbalancedQuotes,
                "ERR Protocol error: unbalanced quotes in request",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.message_bytes(), text.as_bytes());
            assert_eq!(err.to_frame(), Frame::Error(Bytes::from(text)));
        }
    }

    #[test]
    fn expected_dollar_keeps_the_raw_byte_but_never_cr_or_lf() {
        let err = ProtocolError::ExpectedDollar(0xff);
        assert_eq!(
            err.message_bytes(),
            b"ERR Protocol error: expected '$', got '\xff'"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\r').to_string(),
            "ERR Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b'\n').message_bytes(),
            b"ERR Protocol error: expected '$', got ' '"
        );
    }
}
