//! Tests of the request parser: Redis's error replies, inline requests, pipelines, and
//! properties over split and random input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::{Limits, ProtocolError, RequestParser};

/// Feeds `input` whole and returns the commands parsed and the error that stopped parsing.
fn parse_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    drive(Limits::default(), &[input])
}

/// Feeds `chunks` one after the other, parsing all it can after each; stops at the first error.
fn drive(limits: Limits, chunks: &[&[u8]]) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let (commands, error, _) = drive_to_rest(limits, chunks);
    (commands, error)
}

/// [`drive`], also giving how many bytes were left in the buffer (not consumed) at the end:
/// without an error, what a partial command has not yet used up, which must not depend on
/// how the input was split. (After an error the connection closes and what is left does.)
fn drive_to_rest(
    limits: Limits,
    chunks: &[&[u8]],
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>, Option<usize>) {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match parser.parse(&mut buf) {
                Ok(Some(args)) => {
                    assert!(!args.is_empty(), "empty commands are skipped");
                    assert!(buf.len() < before, "a command must consume input");
                    commands.push(args);
                }
                Ok(None) => break,
                Err(e) => return (commands, Some(e), None),
            }
        }
    }
    (commands, None, Some(buf.len()))
}

fn cmd(args: &[&str]) -> Vec<Bytes> {
    args.iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

fn err_of(input: &[u8]) -> String {
    match parse_all(input) {
        (_, Some(e)) => e.to_string(),
        (cmds, None) => panic!("no error for {input:?}, parsed {cmds:?}"),
    }
}

/// Multibulk encoding of one command.
fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn invalid_multibulk_length() {
    let text = "ERR Protocol error: invalid multibulk length";
    for input in [
        &b"*abc\r\n"[..],
        b"*20000000\r\n",
        b"*1048577\r\n",
        b"*01\r\n",
        b"*+1\r\n",
        b"* 1\r\n",
        b"*-0\r\n",
        b"*\r\n",
        b"*99999999999999999999\r\n",
    ] {
        assert_eq!(err_of(input), text, "{input:?}");
    }
    // The largest count allowed is accepted (and waits for its elements).
    assert_eq!(parse_all(b"*1048576\r\n"), (vec![], None));
}

#[test]
fn zero_and_negative_counts_are_skipped() {
    let (cmds, err) = parse_all(b"*0\r\n*-10\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!((cmds, err), (vec![cmd(&["PING"])], None));
}

#[test]
fn invalid_bulk_length() {
    let text = "ERR Protocol error: invalid bulk length";
    for input in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n"[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n",
        b"*1\r\n$536870913\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$\r\n",
        b"*1\r\n$03\r\n",
    ] {
        assert_eq!(err_of(input), text, "{input:?}");
    }
    // 512 MiB itself is allowed: the parser waits for the payload.
    assert_eq!(parse_all(b"*1\r\n$536870912\r\n"), (vec![], None));
}

#[test]
fn expected_dollar() {
    assert_eq!(
        err_of(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
        "ERR Protocol error: expected '$', got 'f'"
    );
    assert_eq!(
        err_of(b"*1\r\nfoo\r\n"),
        "ERR Protocol error: expected '$', got 'f'"
    );
    assert_eq!(
        err_of(b"*1\r\n:1\r\n"),
        "ERR Protocol error: expected '$', got ':'"
    );
    assert_eq!(
        err_of(b"*1\r\n\r\n"),
        "ERR Protocol error: expected '$', got ' '"
    );
    // Redis checks the '$' only once the element's line is complete.
    assert_eq!(parse_all(b"*1\r\nfoo"), (vec![], None));
}

#[test]
fn too_big_mbulk_count_string() {
    let mut input = b"*".to_vec();
    input.extend(std::iter::repeat_n(b'1', 64 * 1024 - 1));
    assert_eq!(parse_all(&input), (vec![], None));
    input.push(b'1');
    assert_eq!(
        err_of(&input),
        "ERR Protocol error: too big mbulk count string"
    );
    // A NUL hides any CR after it, as with strchr.
    let mut nul = b"*\0\r\n".to_vec();
    assert_eq!(parse_all(&nul), (vec![], None));
    nul.extend(std::iter::repeat_n(b'A', 70_000));
    assert_eq!(
        err_of(&nul),
        "ERR Protocol error: too big mbulk count string"
    );
}

#[test]
fn too_big_bulk_count_string() {
    let mut input = b"*2\r\n$4\r\nECHO\r\n$".to_vec();
    input.extend(std::iter::repeat_n(b'1', 64 * 1024 - 1));
    assert_eq!(parse_all(&input), (vec![], None));
    input.push(b'1');
    assert_eq!(
        err_of(&input),
        "ERR Protocol error: too big bulk count string"
    );
    // The limit applies before the element's first byte is checked.
    let mut junk = b"*1\r\n".to_vec();
    junk.extend(std::iter::repeat_n(b'X', 70_000));
    assert_eq!(
        err_of(&junk),
        "ERR Protocol error: too big bulk count string"
    );
}

#[test]
fn too_big_inline_request() {
    let mut input = vec![b'A'; 64 * 1024];
    assert_eq!(parse_all(&input), (vec![], None));
    input.push(b'A');
    assert_eq!(err_of(&input), "ERR Protocol error: too big inline request");
    // Redis's desync regression inputs: a NUL hides the newline.
    for start in [&b"\0"[..], b"$\0"] {
        let mut desync = start.to_vec();
        desync.extend(std::iter::repeat_n(b'A', 70_000));
        desync.push(b'\n');
        assert_eq!(
            err_of(&desync),
            "ERR Protocol error: too big inline request"
        );
    }
}

#[test]
fn a_line_end_beyond_the_limit_is_refused_however_the_bytes_arrive() {
    let mut line = vec![b'A'; 64 * 1024 + 1];
    line.extend_from_slice(b"\r\n");
    assert_eq!(err_of(&line), "ERR Protocol error: too big inline request");
    let mut at_limit = vec![b'A'; 64 * 1024 - 1];
    at_limit.extend_from_slice(b"\r\n");
    let (cmds, err) = parse_all(&at_limit);
    assert_eq!((cmds.len(), err), (1, None));
}

#[test]
fn unbalanced_quotes_in_request() {
    for input in [&b"ECHO \"abc\r\n"[..], b"ECHO \"a\"b\r\n", b"SET k 'v\n"] {
        assert_eq!(
            err_of(input),
            "ERR Protocol error: unbalanced quotes in request"
        );
    }
}

#[test]
fn inline_requests() {
    let input = b"PING\r\n\r\n\n   \r\nSET k \"a b\\x41\" ''\nGET 'it\\'s'\r\n  echo\t x \r\r\n";
    let (cmds, err) = parse_all(input);
    assert_eq!(err, None);
    assert_eq!(
        cmds,
        vec![
            cmd(&["PING"]),
            cmd(&["SET", "k", "a bA", ""]),
            cmd(&["GET", "it's"]),
            cmd(&["echo", "x"]),
        ]
    );
}

#[test]
fn pipeline_in_one_buffer_parses_in_order() {
    let mut input = multibulk(&[b"SET".to_vec(), b"k".to_vec(), b"v\r\n\0".to_vec()]);
    input.extend_from_slice(b"GET k\r\n");
    input.extend_from_slice(&multibulk(&[b"DEL".to_vec(), b"k".to_vec()]));
    input.extend_from_slice(b"*0\r\n");
    input.extend_from_slice(&multibulk(&[b"ECHO".to_vec(), Vec::new()]));
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(&input[..]);
    let mut got = Vec::new();
    while let Some(args) = parser.parse(&mut buf).expect("valid pipeline") {
        got.push(args);
    }
    assert!(buf.is_empty());
    assert_eq!(
        got,
        vec![
            cmd(&["SET", "k", "v\r\n\0"]),
            cmd(&["GET", "k"]),
            cmd(&["DEL", "k"]),
            cmd(&["ECHO", ""]),
        ]
    );
}

#[test]
fn a_partial_command_is_taken_in_as_it_arrives() {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nfoo\r\n$3\r\nba"[..]);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert!(parser.in_progress());
    // Only the unfinished payload is left for the caller to append to.
    assert_eq!(&buf[..], b"ba");
    buf.extend_from_slice(b"r\r\n");
    assert_eq!(parser.parse(&mut buf), Ok(Some(cmd(&["foo", "bar"]))));
    assert!(!parser.in_progress());
    assert!(buf.is_empty());
}

#[test]
fn multibulk_arguments_share_the_read_buffer() {
    let input = multibulk(&[b"SET".to_vec(), b"key".to_vec(), vec![7u8; 1000]]);
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&input);
    let start = buf.as_ptr() as usize;
    let range = start..start + input.len();
    let args = RequestParser::default()
        .parse(&mut buf)
        .expect("valid")
        .expect("complete");
    for arg in &args {
        assert!(
            range.contains(&(arg.as_ptr() as usize)),
            "argument was copied"
        );
    }
}

#[test]
fn the_bytes_after_a_payload_are_skipped_unchecked_like_redis() {
    assert_eq!(parse_all(b"*1\r\n$3\r\nfooXY"), (vec![cmd(&["foo"])], None));
    assert_eq!(parse_all(b"*1\rX$3\rYfoo\r\n"), (vec![cmd(&["foo"])], None));
}

/// Whole commands take the one-pass path (`whole.rs`); fed a byte at a time they take the
/// incremental one. Odd header numbers must get the same answer from both.
#[test]
fn odd_header_numbers_get_the_same_answer_whole_and_byte_by_byte() {
    let numbers = [
        "0",
        "1",
        "3",
        "03",
        "00",
        "-0",
        "-1",
        "+3",
        " 3",
        "3 ",
        "",
        "3\0",
        "1a",
        "9999999999",
        "123456789012345678",
        "1234567890123456789",
        "99999999999999999999",
    ];
    let small = Limits {
        max_bulk_len: 5,
        max_multibulk_len: 2,
        max_inline_len: 4,
    };
    for n in numbers {
        let inputs = [
            format!("*{n}\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*1\r\n$1\r\nz\r\n"),
            format!("*1\r\n${n}\r\nabc\r\n*1\r\n$1\r\nz\r\n"),
            format!("*2\r\n$1\r\na\r\n${n}\r\n\r\n*1\r\n$1\r\nz\r\n"),
            // Ends inside a payload: what is left over must not depend on the split.
            format!("*1\r\n$1\r\nz\r\n*2\r\n$1\r\na\r\n${n}\r\nab"),
        ];
        for input in inputs {
            let input = input.as_bytes();
            let one_by_one: Vec<&[u8]> = input.chunks(1).collect();
            let short_lines = Limits {
                max_inline_len: 1,
                ..Limits::default()
            };
            for limits in [Limits::default(), small, short_lines] {
                assert_eq!(
                    drive_to_rest(limits, &[input]),
                    drive_to_rest(limits, &one_by_one),
                    "{:?} with {limits:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }
}

#[test]
fn a_huge_command_fed_byte_by_byte_is_linear() {
    let args: Vec<Vec<u8>> = (0..100_000)
        .map(|i| (i % 10).to_string().into_bytes())
        .collect();
    let input = multibulk(&args);
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let (cmds, err) = drive(Limits::default(), &chunks);
    assert_eq!(err, None);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].len(), 100_000);
    // A 4 MiB argument arriving in 1 KiB reads.
    let big = multibulk(&[vec![b'z'; 4 << 20]]);
    let (cmds, err) = drive(Limits::default(), &big.chunks(1024).collect::<Vec<_>>());
    assert_eq!((cmds.len(), err), (1, None));
}

/// Splits `input` at the given (unsorted, possibly out of range) points.
fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .filter_map(|w| input.get(w[0]..w[1]))
        .collect()
}

fn arg_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![any::<u8>(), prop::sample::select(b"\r\n\0$*".to_vec())];
    prop::collection::vec(byte, 0..40)
}

/// Bytes that look like requests often enough to reach every parser state.
fn protocol_noise() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"*$\r\n0123456789-\"' \\x\0aF".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..400)
}

proptest! {
    #[test]
    fn split_multibulk_parses_like_whole(
        commands in prop::collection::vec(prop::collection::vec(arg_bytes(), 1..6), 1..5),
        points in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let input: Vec<u8> = commands.iter().flat_map(|c| multibulk(c)).collect();
        let want: Vec<Vec<Bytes>> = commands
            .iter()
            .map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .collect();
        let whole = drive(Limits::default(), &[&input]);
        prop_assert_eq!(&whole, &(want, None));
        let split = drive(Limits::default(), &split_at_points(&input, &points));
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn random_bytes_in_random_chunks_never_panic_and_do_not_depend_on_the_split(
        input in protocol_noise(),
        points in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        // Small limits so that every error is reachable with short inputs.
        let limits = Limits { max_bulk_len: 20, max_multibulk_len: 5, max_inline_len: 16 };
        let whole = drive(limits, &[&input]);
        let split = drive(limits, &split_at_points(&input, &points));
        let bytes_one_by_one: Vec<&[u8]> = input.chunks(1).collect();
        let single = drive(limits, &bytes_one_by_one);
        prop_assert!(whole.0.len() <= input.len());
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(&single, &whole);
    }
}

#[test]
fn a_client_that_has_not_authenticated_sends_small_requests_only() {
    let mut parser = RequestParser::new(Limits::default());
    parser.set_authenticated(false);
    let parse = |parser: &mut RequestParser, input: &[u8]| {
        let mut buf = BytesMut::from(input);
        parser.parse(&mut buf)
    };
    // Ten arguments of 16 KiB pass; one more argument, or one more byte, does not.
    let big = format!("*2\r\n$4\r\nAUTH\r\n$16384\r\n{}\r\n", "p".repeat(16384));
    assert_eq!(
        parse(&mut parser, big.as_bytes()).unwrap().unwrap().len(),
        2
    );
    assert_eq!(
        parse(&mut parser, b"*11\r\n"),
        Err(ProtocolError::UnauthenticatedMultibulkLength)
    );
    let mut parser = RequestParser::new(Limits::default());
    parser.set_authenticated(false);
    assert_eq!(
        parse(&mut parser, b"*2\r\n$4\r\nAUTH\r\n$16385\r\n"),
        Err(ProtocolError::UnauthenticatedBulkLength)
    );
    assert_eq!(
        ProtocolError::UnauthenticatedBulkLength.message_bytes(),
        b"ERR Protocol error: unauthenticated bulk length"
    );
    // Authenticated, the usual limits.
    let mut parser = RequestParser::new(Limits::default());
    parser.set_authenticated(false);
    parser.set_authenticated(true);
    assert_eq!(parse(&mut parser, b"*11\r\n"), Ok(None));
}

#[test]
fn an_empty_command_skipped_is_reported_once_before_the_command_after_it() {
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(&b"PING\r\n\r\n*0\r\n*-1\r\nECHO a\r\nPING\r\n\r\n"[..]);
    let mut seen = Vec::new();
    while let Ok(Some(args)) = parser.parse(&mut buf) {
        seen.push((args[0].clone(), parser.take_skipped_empty()));
    }
    // The empties at the end, after the last command, are reported once it returned none.
    let after = parser.take_skipped_empty();
    assert_eq!(
        seen,
        vec![
            (Bytes::from("PING"), false),
            (Bytes::from("ECHO"), true),
            (Bytes::from("PING"), false),
        ]
    );
    assert!(after);
    assert!(!parser.take_skipped_empty());
}
