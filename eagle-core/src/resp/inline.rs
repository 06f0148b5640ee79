//! Splitting an inline request line into arguments, as Redis's `sdssplitargs` (src/sds.c) does.
//!
//! Arguments are separated by blanks. Double quotes take the escapes `\n \r \t \b \a`, `\xHH`
//! and backslash before any other character (that character itself); single quotes take only
//! `\'`. A closing quote must be followed by a blank or the end of the line. A quote may open in
//! the middle of an argument (`foo"bar"` is `foobar`). Outside quotes an argument ends at a
//! space, tab, CR or LF (not at a vertical tab or form feed, which C's `isspace` skips only
//! between arguments). The C code stops at a NUL byte; so does this. Empty arguments (`""`) are
//! kept, as Redis 7 keeps them.

/// Splits `line` (without its line ending) into arguments; `None` for unbalanced quotes.
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // The C code reads a NUL-terminated string; past the end (or at an embedded NUL) it sees 0.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0usize;
    let mut args = Vec::new();
    loop {
        while at(p) != 0 && is_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(args);
        }
        let mut in_double = false;
        let mut in_single = false;
        let mut done = false;
        let mut current = Vec::new();
        while !done {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' && is_hex(at(p + 2)) && is_hex(at(p + 3)) {
                    current.push(hex_value(at(p + 2)) * 16 + hex_value(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(current);
    }
}

/// C's `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<Vec<String>> {
        split_args(line.as_bytes()).map(|args| {
            args.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    fn ok(line: &str, want: &[&str]) {
        assert_eq!(
            split(line),
            Some(want.iter().map(|s| s.to_string()).collect()),
            "{line:?}"
        );
    }

    #[test]
    fn blanks_separate_arguments() {
        ok("set a b", &["set", "a", "b"]);
        ok("  \t set   a\tb  ", &["set", "a", "b"]);
        ok("", &[]);
        ok("   ", &[]);
        ok("a\rb", &["a", "b"]);
        // A vertical tab or form feed is skipped between arguments but is part of one.
        ok("\x0ba\x0bb\x0c", &["a\x0bb\x0c"]);
    }

    #[test]
    fn double_quotes_and_their_escapes() {
        ok(r#"set "hello world""#, &["set", "hello world"]);
        ok(r#""a\nb\r\t\b\a\\\"c""#, &["a\nb\r\t\x08\x07\\\"c"]);
        ok(r#""\x41\x4a\x4B""#, &["AJK"]);
        ok(r#""\x4""#, &["x4"]);
        ok(r#""\q""#, &["q"]);
        ok(r#""'""#, &["'"]);
        ok(r#""" x"#, &["", "x"]);
        ok("\"a\"\tb", &["a", "b"]);
        ok(r#"foo"bar baz" q"#, &["foobar baz", "q"]);
        assert_eq!(split_args(br#""\x00\xff""#), Some(vec![vec![0u8, 0xff]]));
    }

    #[test]
    fn single_quotes_take_only_escaped_quotes() {
        ok(r"'it\'s'", &["it's"]);
        ok(r"'a\nb'", &[r"a\nb"]);
        ok(r#"'say "hi"'"#, &[r#"say "hi""#]);
        ok("''", &[""]);
    }

    #[test]
    fn unbalanced_quotes() {
        for line in [
            r#""foo"#,
            r#"'foo"#,
            r#""foo"bar"#,
            r#"'foo'bar"#,
            r#"a "b\""#,
            r#""foo\"#,
            r#"x "a"'b'"#,
        ] {
            assert_eq!(split(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_nul_ends_the_line_like_in_c() {
        assert_eq!(split_args(b"a\0b c"), Some(vec![b"a".to_vec()]));
        assert_eq!(split_args(b"\"a\0\""), None);
    }
}
