//! MULTI / EXEC / DISCARD / WATCH / UNWATCH against the real server, with Redis's replies, and
//! the isolation of a transaction from other clients' commands.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use eagle_core::resp::Frame;

#[test]
fn queued_commands_run_at_exec_and_errors_follow_redis() {
    let s = Server::start("multi", &[]);
    let mut c = s.raw();
    let queued = simple("QUEUED");
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "1"]), queued);
    assert_eq!(c.cmd(&["INCR", "a"]), queued);
    assert_eq!(c.cmd(&["GET", "a"]), queued);
    // Nothing ran yet.
    assert_eq!(s.raw().cmd(&["GET", "a"]), Frame::Null);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![ok(), Frame::Integer(2), bulk("2")])
    );

    assert_eq!(c.cmd(&["EXEC"]), error("ERR EXEC without MULTI"));
    assert_eq!(c.cmd(&["DISCARD"]), error("ERR DISCARD without MULTI"));

    // Nested MULTI and WATCH inside MULTI are errors that do not doom the transaction.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["MULTI"]),
        error("ERR MULTI calls can not be nested")
    );
    assert_eq!(
        c.cmd(&["WATCH", "a"]),
        error("ERR WATCH inside MULTI is not allowed")
    );
    assert_eq!(c.cmd(&["INCR", "a"]), queued);
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![Frame::Integer(3)]));

    // An unknown command or a wrong arity while queueing aborts EXEC.
    let execabort = error("EXECABORT Transaction discarded because of previous errors.");
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["INCR", "a"]), queued);
    assert!(
        matches!(c.cmd(&["NOSUCH"]), Frame::Error(e) if e.starts_with(b"ERR unknown command 'NOSUCH'"))
    );
    assert_eq!(c.cmd(&["EXEC"]), execabort);
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["GET"]),
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(c.cmd(&["EXEC"]), execabort);
    assert_eq!(c.cmd(&["GET", "a"]), bulk("3"), "aborted transactions ran");
    // Commands not allowed in a transaction doom it too.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["SHUTDOWN"]),
        error("ERR Command not allowed inside a transaction")
    );
    assert_eq!(c.cmd(&["EXEC"]), execabort);

    // A syntax error found at EXEC is one error in the reply; the rest still runs.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "b", "1", "NX", "XX"]), queued);
    assert_eq!(c.cmd(&["INCR", "b2"]), queued);
    assert_eq!(
        c.cmd(&["EXEC"]),
        Frame::Array(vec![error("ERR syntax error"), Frame::Integer(1)])
    );

    // DISCARD drops the queue.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "discarded"]), queued);
    assert_eq!(c.cmd(&["DISCARD"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), bulk("3"));
    assert_eq!(c.cmd(&["EXEC"]), error("ERR EXEC without MULTI"));

    // A refused EXEC discards the transaction and says why.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "never"]), queued);
    assert_eq!(
        c.cmd(&["EXEC", "now"]),
        error(
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command"
        )
    );
    assert_eq!(c.cmd(&["EXEC"]), error("ERR EXEC without MULTI"));
    assert_eq!(c.cmd(&["GET", "a"]), bulk("3"));

    // An empty transaction.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["EXEC"]), Frame::Array(vec![]));

    // The redis crate's atomic pipeline.
    let mut conn = s.redis();
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("p")
        .arg(5)
        .cmd("INCRBY")
        .arg("p")
        .arg(6)
        .query(&mut conn)
        .unwrap();
    assert_eq!((x, y), (5, 11));
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changes() {
    let s = Server::start("watch", &[]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd(&["SET", "k", "0"]), ok());

    // Another client writes the key: EXEC replies a null array and runs nothing.
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "theirs"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["SET", "k", "mine"]), simple("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);
    assert_eq!(a.cmd(&["GET", "k"]), bulk("theirs"));

    // Even when the value written is the same as before (a version, not a comparison).
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "theirs"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["SET", "k", "mine"]), simple("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);

    // Untouched: EXEC runs; the watch ends with EXEC.
    assert_eq!(a.cmd(&["WATCH", "k", "other"]), ok());
    assert_eq!(b.cmd(&["SET", "unrelated", "1"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["SET", "k", "mine"]), simple("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![ok()]));
    assert_eq!(b.cmd(&["SET", "k", "later"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["GET", "k"]), simple("QUEUED"));
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![bulk("later")]));

    // UNWATCH forgets; a key created after WATCH counts as a change; so does FLUSHALL of a
    // watched key that existed, and the client's own write.
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(a.cmd(&["UNWATCH"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "x"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![]));

    assert_eq!(a.cmd(&["WATCH", "fresh"]), ok());
    assert_eq!(b.cmd(&["INCR", "fresh"]), Frame::Integer(1));
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);

    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["FLUSHALL"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);

    assert_eq!(a.cmd(&["WATCH", "own"]), ok());
    assert_eq!(a.cmd(&["SET", "own", "1"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);

    // A watched key that expires before EXEC counts as changed.
    assert_eq!(a.cmd(&["SET", "ttl", "v", "PX", "150"]), ok());
    assert_eq!(a.cmd(&["WATCH", "ttl"]), ok());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::NullArray);

    // DISCARD also ends the watch.
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["DISCARD"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "y"]), ok());
    assert_eq!(a.cmd(&["MULTI"]), ok());
    assert_eq!(a.cmd(&["EXEC"]), Frame::Array(vec![]));
}

#[test]
fn other_clients_never_see_a_transaction_half_done() {
    let s = Server::start("isolation", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let port = s.port;
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Raw::connect(port);
            let mut batch = encode_cmd(&[b"MULTI"]);
            for _ in 0..50 {
                batch.extend(encode_cmd(&[b"INCR", b"c"]));
            }
            batch.extend(encode_cmd(&[b"EXEC"]));
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) && rounds < 400 {
                c.send(&batch);
                for _ in 0..51 {
                    c.read().unwrap();
                }
                let Some(Frame::Array(r)) = c.read() else {
                    panic!("EXEC failed")
                };
                assert_eq!(r.len(), 50);
                rounds += 1;
            }
            rounds
        })
    };
    let mut reader = s.raw();
    let mut seen_mid = 0;
    for _ in 0..3000 {
        match reader.cmd(&["GET", "c"]) {
            Frame::Null => {}
            Frame::Bulk(v) => {
                let n: u64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
                if !n.is_multiple_of(50) {
                    seen_mid += 1;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 0);
    assert_eq!(seen_mid, 0, "a reader saw a transaction half applied");
    let Frame::Bulk(v) = reader.cmd(&["GET", "c"]) else {
        panic!()
    };
    assert_eq!(std::str::from_utf8(&v).unwrap(), (rounds * 50).to_string());
}

/// Sends `wire` on a new connection and reads what comes back until the server closes it or
/// 300 ms pass without a byte.
fn exchange(port: u16, wire: &[u8]) -> Vec<u8> {
    let mut c = Raw::connect(port);
    c.stream
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    c.send(wire);
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.stream, &mut all);
    all
}

/// CLIENT REPLY OFF, ON and SKIP queued in a transaction, or around its EXEC, answer the bytes
/// redis-server 7.0 answers: EXEC's header under the reply state it began with, each reply
/// under the state its command left (OFF and SKIP answer nothing, so the header can count more
/// replies than follow), and a queued SKIP dropping the reply of the command after EXEC.
#[test]
fn client_reply_inside_and_around_exec_answers_as_redis_server_does() {
    let redis = RedisServer::start();
    let eagle = Server::start("multi-reply", &[]);
    let sequences: &[&[&str]] = &[
        &[
            "MULTI",
            "CLIENT REPLY SKIP",
            "SET a 1",
            "EXEC",
            "PING x1",
            "PING x2",
        ],
        &[
            "MULTI",
            "SET a 1",
            "CLIENT REPLY SKIP",
            "EXEC",
            "PING x1",
            "PING x2",
        ],
        &[
            "MULTI",
            "CLIENT REPLY OFF",
            "SET a 1",
            "EXEC",
            "PING x1",
            "CLIENT REPLY ON",
        ],
        &[
            "MULTI",
            "CLIENT REPLY SKIP",
            "CLIENT REPLY ON",
            "EXEC",
            "PING x1",
            "PING x2",
        ],
        &[
            "CLIENT REPLY OFF",
            "MULTI",
            "CLIENT REPLY ON",
            "SET a 2",
            "EXEC",
            "PING x1",
        ],
        &[
            "CLIENT REPLY SKIP",
            "MULTI",
            "CLIENT REPLY ON",
            "EXEC",
            "PING x1",
        ],
        &["CLIENT REPLY SKIP", "MULTI", "SET a 3", "EXEC", "PING x1"],
        &[
            "MULTI",
            "SET a 3",
            "EXEC",
            "CLIENT REPLY SKIP",
            "EXEC",
            "PING x1",
        ],
        &[
            "MULTI",
            "CLIENT REPLY SKIP",
            "GET a",
            "EXEC",
            "GET a",
            "GET a",
        ],
        &["MULTI", "CLIENT REPLY BAD", "EXEC", "PING x1"],
        &["CLIENT REPLY SKIP", "RESET", "PING x1"],
        &["CLIENT REPLY OFF", "RESET", "PING x1"],
        &[
            "CLIENT REPLY SKIP",
            "CLIENT REPLY SKIP",
            "PING x1",
            "PING x2",
        ],
        &[
            "CLIENT REPLY OFF",
            "CLIENT REPLY SKIP",
            "CLIENT REPLY ON",
            "PING x1",
        ],
        &["CLIENT REPLY SKIP", "CLIENT REPLY ON", "PING x1"],
        &["CLIENT REPLY SKIP", "SET b 1", "SET c 2", "GET b"],
    ];
    // Empty requests (an empty line, `*0`, `*-1`) end a command as any other: a SKIP before
    // one skips nothing more, not even a protocol error after it.
    for wire in [
        &b"CLIENT REPLY SKIP\r\n\r\nPING\r\n"[..],
        b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n*0\r\nPING\r\n",
        b"CLIENT REPLY SKIP\r\n*-1\r\nPING\r\nPING\r\n",
        b"CLIENT REPLY SKIP\r\n\r\n\r\nPING a\r\nPING b\r\n",
        b"CLIENT REPLY SKIP\r\n\r\n*abc\r\n",
    ] {
        let read = |port: u16| String::from_utf8_lossy(&exchange(port, wire)).into_owned();
        let ours = read(eagle.port);
        assert_eq!(
            ours,
            read(redis.port),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
        assert!(!ours.is_empty(), "{:?}", String::from_utf8_lossy(wire));
    }
    // A protocol error under OFF or SKIP: no reply. (Redis then leaves the connection open,
    // reading no more of it; eagle closes it. Only the bytes are compared: none.)
    for first in ["CLIENT REPLY OFF", "CLIENT REPLY SKIP"] {
        let mut wire = Vec::new();
        let args: Vec<&[u8]> = first.split(' ').map(str::as_bytes).collect();
        wire.extend(encode_cmd(&args));
        wire.extend(b"*abc\r\n");
        assert_eq!(
            exchange(eagle.port, &wire),
            exchange(redis.port, &wire),
            "{first}, then *abc"
        );
    }
    // Each sequence in one write on a fresh connection, then a PING whose reply ends it.
    let answer = |port: u16, seq: &[&str]| {
        let mut c = Raw::connect(port);
        let mut wire = Vec::new();
        for cmd in seq.iter().chain(&["PING end"]) {
            let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
            wire.extend(encode_cmd(&args));
        }
        c.send(&wire);
        String::from_utf8_lossy(&c.read_until(b"$3\r\nend\r\n")).into_owned()
    };
    for seq in sequences {
        let ours = answer(eagle.port, seq);
        assert_eq!(ours, answer(redis.port, seq), "{seq:?}");
    }
}

/// The replies of an EXEC go out in the protocol of their time: a queued `HELLO 3` turns the
/// replies after it (its own included) into RESP3, and leaves those before it in RESP2, as
/// redis-server 7.0 sends them (HELLO's own map differs between the servers, so each server's
/// bytes are checked around it).
#[test]
fn a_hello_queued_in_a_transaction_changes_the_protocol_of_the_replies_after_it() {
    let redis = RedisServer::start();
    let eagle = Server::start("multi-hello", &[]);
    for port in [eagle.port, redis.port] {
        let mut c = Raw::connect(port);
        assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), Frame::Integer(1));
        let mut wire = Vec::new();
        for cmd in [
            &["MULTI"][..],
            &["HGETALL", "h"],
            &["HELLO", "3"],
            &["HGETALL", "h"],
            &["EXEC"],
        ] {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            wire.extend(encode_cmd(&args));
        }
        c.send(&wire);
        let bytes =
            String::from_utf8_lossy(&c.read_until(b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")).into_owned();
        let before =
            "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n%7\r\n";
        assert!(bytes.starts_with(before), "port {port}: {bytes:?}");
    }
}
