//! Many commands and many clients: a 10,000-command pipeline sent in one write, a QUIT inside
//! a pipeline, 1,000 connections open at once, maxclients, malformed requests that close
//! only their own connection, and a client that stops reading its replies.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use eagle_core::resp::Frame;

#[test]
fn a_pipeline_of_10000_commands_in_one_write_gets_every_reply_in_order() {
    let s = Server::start("pipeline", &[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000u32 {
        let args: Vec<Vec<u8>> = match i % 4 {
            0 => vec![b"INCR".to_vec(), b"counter".to_vec()],
            1 => vec![
                b"SET".to_vec(),
                format!("key:{i}").into_bytes(),
                format!("value:{i}").into_bytes(),
            ],
            2 => vec![b"GET".to_vec(), format!("key:{}", i - 1).into_bytes()],
            _ => vec![b"ECHO".to_vec(), format!("echo:{i}").into_bytes()],
        };
        expected.push(match i % 4 {
            0 => Frame::Integer((i / 4 + 1) as i64),
            1 => ok(),
            2 => bulk(&format!("value:{}", i - 1)),
            _ => bulk(&format!("echo:{i}")),
        });
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        batch.extend(encode_cmd(&refs));
    }
    c.send(&batch);
    for (i, want) in expected.iter().enumerate() {
        let got = c
            .read()
            .unwrap_or_else(|| panic!("connection closed at reply {i}"));
        assert_eq!(&got, want, "reply {i}");
    }
    assert_eq!(c.cmd(&["GET", "counter"]), bulk("2500"));

    // The same through the redis crate's pipeline.
    let mut conn = s.redis();
    let replies: Vec<i64> = {
        let mut p = redis::pipe();
        for _ in 0..10_000 {
            p.cmd("INCR").arg("crate-counter");
        }
        p.query(&mut conn).unwrap()
    };
    assert_eq!(replies, (1..=10_000).collect::<Vec<i64>>());
}

/// A connection takes in up to 16 requests of a pipeline before it runs them (to prefetch their
/// keys): a QUIT among them still ends the connection at once, the rest unrun, and a malformed
/// request after it is neither answered nor counted.
#[test]
fn a_quit_in_a_pipeline_runs_nothing_sent_after_it() {
    let s = Server::start("pipeline-quit", &[]);
    let mut c = s.raw();
    let mut batch = encode_pipeline(&[&["SET", "before", "1"], &["QUIT"], &["SET", "after", "2"]]);
    batch.extend_from_slice(b"*1\r\nfoo\r\n");
    c.send(&batch);
    assert_eq!(c.read(), Some(ok()));
    assert_eq!(c.read(), Some(ok()));
    assert!(c.closed(), "the connection stays open after QUIT");
    let mut other = s.raw();
    assert_eq!(other.cmd(&["GET", "before"]), bulk("1"));
    assert_eq!(other.cmd(&["EXISTS", "after"]), Frame::Integer(0));
    assert_eq!(s.info_field("stats", "total_protocol_errors"), "0");
    // A malformed request in a later window than the first: every request before it answered.
    let mut bad = s.raw();
    let mut batch = b"PING\r\n".repeat(40);
    batch.extend_from_slice(b"*1\r\nfoo\r\n");
    bad.send(&batch);
    for i in 0..40 {
        assert_eq!(bad.read(), Some(simple("PONG")), "reply {i}");
    }
    assert_eq!(
        bad.read(),
        Some(error("ERR Protocol error: expected '$', got 'f'"))
    );
    assert!(bad.closed());
}

#[test]
fn a_thousand_concurrent_connections_each_run_their_commands() {
    raise_fd_limit(4096);
    let s = Server::start("concurrent", &[]);
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125;
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let url = s.url();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let client = redis::Client::open(url).unwrap();
                // Open every connection first: all 1,000 are open at once.
                let mut conns: Vec<redis::Connection> = (0..PER_THREAD)
                    .map(|_| client.get_connection().unwrap())
                    .collect();
                barrier.wait(); // all open
                barrier.wait(); // counted
                for (i, c) in conns.iter_mut().enumerate() {
                    let key = format!("conn:{t}:{i}");
                    let _: () = redis::cmd("SET").arg(&key).arg(i).query(c).unwrap();
                    let n: i64 = redis::cmd("INCR").arg("total").query(c).unwrap();
                    assert!(n >= 1);
                    let v: usize = redis::cmd("GET").arg(&key).query(c).unwrap();
                    assert_eq!(v, i);
                    let id: i64 = redis::cmd("CLIENT").arg("ID").query(c).unwrap();
                    assert!(id > 0);
                }
                conns.len()
            })
        })
        .collect();
    barrier.wait();
    let mut probe = s.raw();
    let Frame::Bulk(info) = probe.cmd(&["INFO", "clients"]) else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    let connected: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(connected, THREADS * PER_THREAD + 1, "{info}");
    barrier.wait();
    let opened: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(opened, 1000);
    assert_eq!(probe.cmd(&["GET", "total"]), bulk("1000"));
    assert_eq!(probe.cmd(&["DBSIZE"]), Frame::Integer(1001));
}

#[test]
fn maxclients_refuses_with_redis_error_and_frees_slots_on_close() {
    let s = Server::start("maxclients", &["--maxclients", "3"]);
    let mut held: Vec<Raw> = (0..3).map(|_| s.raw()).collect();
    for c in &mut held {
        assert_eq!(c.cmd(&["PING"]), simple("PONG"));
    }
    let mut extra = s.raw();
    assert_eq!(
        extra.read(),
        Some(error("ERR max number of clients reached"))
    );
    assert!(extra.closed());
    // The redis crate cannot get in either.
    let refused = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "{refused:?}");
    // Closing one frees its slot.
    held.pop().unwrap().shutdown();
    eventually(10, "a free slot", || {
        let mut c = s.raw();
        c.cmd(&["PING"]) == simple("PONG")
    });
    // Raised at run time.
    assert_eq!(held[0].cmd(&["CONFIG", "SET", "maxclients", "10"]), ok());
    let mut more: Vec<Raw> = (0..5).map(|_| s.raw()).collect();
    for c in &mut more {
        assert_eq!(c.cmd(&["PING"]), simple("PONG"));
    }
}

#[test]
fn malformed_requests_get_the_protocol_error_and_only_that_connection_closes() {
    let s = Server::start("protoerr", &[]);
    let mut bystander = s.raw();
    assert_eq!(bystander.cmd(&["SET", "alive", "yes"]), ok());
    let cases: [(&[u8], &str); 5] = [
        (
            b"*1\r\nfoo\r\n",
            "ERR Protocol error: expected '$', got 'f'",
        ),
        (b"*abc\r\n", "ERR Protocol error: invalid multibulk length"),
        (
            b"*1\r\n$536870913\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n$-5\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"SET \"unterminated\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ];
    for (bytes, text) in cases {
        let mut bad = s.raw();
        // Commands before the bad one in the same write are answered first.
        let mut batch = b"PING\r\n".to_vec();
        batch.extend_from_slice(bytes);
        bad.send(&batch);
        assert_eq!(bad.read(), Some(simple("PONG")));
        assert_eq!(
            bad.read(),
            Some(error(text)),
            "for {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(bad.closed(), "connection stays open after {text}");
        assert_eq!(bystander.cmd(&["GET", "alive"]), bulk("yes"));
    }
    // A bulk over a lowered proto-max-bulk-len is refused the same way, on a connection opened
    // before the change too.
    let mut big = s.raw();
    assert_eq!(big.cmd(&["PING"]), simple("PONG"));
    assert_eq!(
        bystander.cmd(&["CONFIG", "SET", "proto-max-bulk-len", "2mb"]),
        ok()
    );
    big.send(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 3 << 20).as_bytes());
    assert_eq!(
        big.read(),
        Some(error("ERR Protocol error: invalid bulk length"))
    );
    assert!(big.closed());
    // Lowered in the same pipeline: the request after the CONFIG SET is parsed under the new
    // limit (redis-server 7.0.15 answers +OK, then the protocol error).
    let mut piped = s.raw();
    let mut batch = encode_cmd(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"1mb"]);
    batch.extend(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", 3 << 19).as_bytes());
    piped.send(&batch);
    assert_eq!(piped.read(), Some(ok()));
    assert_eq!(
        piped.read(),
        Some(error("ERR Protocol error: invalid bulk length"))
    );
    assert!(piped.closed());
    // The same, the CONFIG SET queued in a transaction: it runs at EXEC.
    assert_eq!(
        bystander.cmd(&["CONFIG", "SET", "proto-max-bulk-len", "512mb"]),
        ok()
    );
    let mut queued = s.raw();
    let mut batch = encode_cmd(&[b"MULTI"]);
    batch.extend(encode_cmd(&[
        b"CONFIG",
        b"SET",
        b"proto-max-bulk-len",
        b"1mb",
    ]));
    batch.extend(encode_cmd(&[b"EXEC"]));
    // The whole SET this time: with the window not cut after EXEC, it would be parsed (and
    // stored) before the EXEC ran.
    batch.extend(encode_cmd(&[b"SET", b"k", &vec![b'v'; 3 << 19]]));
    queued.send(&batch);
    assert_eq!(queued.read(), Some(ok()));
    assert_eq!(queued.read(), Some(simple("QUEUED")));
    assert_eq!(queued.read(), Some(Frame::Array(vec![ok()])));
    assert_eq!(
        queued.read(),
        Some(error("ERR Protocol error: invalid bulk length"))
    );
    assert!(queued.closed());
    assert_eq!(bystander.cmd(&["PING"]), simple("PONG"));
    let Frame::Bulk(info) = bystander.cmd(&["INFO", "stats"]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&info).contains("total_protocol_errors:8\r\n"));
}

/// Whether the connection `id` still shows in CLIENT LIST within `secs` seconds of polling.
fn still_listed(ctl: &mut Raw, id: i64, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        let Frame::Bulk(list) = ctl.cmd(&["CLIENT", "LIST"]) else {
            panic!("CLIENT LIST");
        };
        if !String::from_utf8_lossy(&list).contains(&format!("id={id} ")) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// A connection that sends 200 GETs of a 1 MB value and never reads: the server is left
/// waiting to write its replies. Its client id.
fn stuck_reader(s: &Server) -> (Raw, i64) {
    let mut stuck = s.raw();
    let Frame::Integer(id) = stuck.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID");
    };
    let gets: Vec<Vec<u8>> = (0..200).map(|_| encode_cmd(&[b"GET", b"big"])).collect();
    stuck.send(&gets.concat());
    (stuck, id)
}

#[test]
fn a_client_that_stops_reading_its_replies_can_be_killed_and_times_out() {
    let s = Server::start("stuck-reader", &["--timeout", "2"]);
    let mut ctl = s.raw();
    let big = "b".repeat(1 << 20);
    assert_eq!(ctl.cmd(&["SET", "big", &big]), ok());
    let (_stuck, id) = stuck_reader(&s);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        ctl.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        Frame::Integer(1)
    );
    assert!(
        !still_listed(&mut ctl, id, 5),
        "CLIENT KILL left it connected"
    );
    // Nothing written for the idle timeout (2 s): closed too.
    let (_stuck, id) = stuck_reader(&s);
    assert!(
        !still_listed(&mut ctl, id, 8),
        "the idle timeout left it connected"
    );
}
