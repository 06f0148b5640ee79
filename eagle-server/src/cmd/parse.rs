//! Reading a command's arguments: typed accessors with Redis's error texts, and `finish`, which
//! rejects arguments left over.

use bytes::Bytes;
use eagle_core::db::{parse_f64, parse_i64};
use eagle_core::resp::Frame;

/// An error reply produced while parsing or applying a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdError(pub String);

impl CmdError {
    /// `ERR syntax error`.
    pub fn syntax() -> CmdError {
        CmdError("ERR syntax error".into())
    }

    /// `ERR value is not an integer or out of range`.
    pub fn not_integer() -> CmdError {
        CmdError("ERR value is not an integer or out of range".into())
    }

    /// Any text (it must start with an error code such as `ERR`).
    pub fn new(text: impl Into<String>) -> CmdError {
        CmdError(text.into())
    }

    /// The reply.
    pub fn frame(self) -> Frame {
        Frame::Error(Bytes::from(self.0))
    }
}

impl From<eagle_core::DbError> for CmdError {
    fn from(e: eagle_core::DbError) -> Self {
        CmdError(e.to_string())
    }
}

/// The arguments after the command name.
pub struct Parse {
    args: std::vec::IntoIter<Bytes>,
    /// The command's name as its table spells it, lower case (for error texts, and for the
    /// commands that share a type between names).
    pub name: &'static str,
}

impl Parse {
    /// Wraps a command's arguments (`argv[0]`, the name as the client sent it, is skipped):
    /// `name` is the command's table name, so nothing is allocated for it.
    pub fn new(name: &'static str, argv: Vec<Bytes>) -> Parse {
        let mut args = argv.into_iter();
        args.next();
        Parse { args, name }
    }

    /// Arguments not yet read.
    pub fn remaining(&self) -> usize {
        self.args.len()
    }

    /// The next argument; `ERR syntax error` if there is none.
    pub fn bytes(&mut self) -> Result<Bytes, CmdError> {
        self.args.next().ok_or_else(CmdError::syntax)
    }

    /// The next argument if any.
    pub fn maybe_bytes(&mut self) -> Option<Bytes> {
        self.args.next()
    }

    /// Every argument left.
    pub fn rest(&mut self) -> Vec<Bytes> {
        self.args.by_ref().collect()
    }

    /// The next argument as an integer (Redis's `string2ll` rules).
    pub fn i64(&mut self) -> Result<i64, CmdError> {
        parse_i64(&self.bytes()?).ok_or_else(CmdError::not_integer)
    }

    /// The next argument as a float.
    pub fn f64(&mut self) -> Result<f64, CmdError> {
        parse_f64(&self.bytes()?).ok_or_else(|| CmdError::new("ERR value is not a valid float"))
    }

    /// The next argument upper-cased (an option keyword).
    pub fn keyword(&mut self) -> Result<String, CmdError> {
        Ok(String::from_utf8_lossy(&self.bytes()?).to_ascii_uppercase())
    }

    /// Rejects arguments left over.
    pub fn finish(&mut self) -> Result<(), CmdError> {
        if self.args.len() == 0 {
            Ok(())
        } else {
            Err(CmdError::syntax())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_rejects_extra_arguments_and_numbers_use_redis_rules() {
        let argv = [&b"GET"[..], b"k", b"extra"]
            .map(Bytes::from_static)
            .to_vec();
        let mut p = Parse::new("get", argv);
        assert_eq!(p.name, "get");
        p.bytes().unwrap();
        assert_eq!(p.finish(), Err(CmdError::syntax()));
        let mut p = Parse::new(
            "x",
            [&b"X"[..], b"01", b"1.5x"].map(Bytes::from_static).to_vec(),
        );
        assert_eq!(p.i64(), Err(CmdError::not_integer()));
        assert!(p.f64().is_err());
    }
}
