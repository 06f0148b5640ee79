//! The Redis protocol (RESP2 and RESP3): reply frames and their encoding, the server's request
//! parser with Redis 7's protocol errors, and a reply parser for clients, tests and fuzzing.

mod encode;
mod error;
mod frame;
mod inline;
mod parse;
#[cfg(test)]
mod parse_tests;
mod reply;
#[cfg(test)]
mod roundtrip_tests;
mod whole;

pub use encode::{Protocol, encode, encode_array_header, encode_bulk, format_double};
pub use error::ProtocolError;
pub use frame::Frame;
pub use parse::{Limits, RequestParser};
pub use reply::{FrameError, MAX_DEPTH, parse_frame};
