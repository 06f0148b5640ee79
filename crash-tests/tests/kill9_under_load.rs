//! Process crash under load: start `eagle-server`, drive pipelined writes (SET, INCR, HSET,
//! MSET, DEL, EXPIRE) from several clients, `kill -9` it at a random moment, restart it on the
//! same pool and check every client's keys. Each client works on keys of its own, in order, so
//! after the restart its keys must equal the state after all its acknowledged commands plus a
//! prefix of the ones it had sent without a reply yet (pipelining keeps them in order): no
//! acknowledged write lost, no value that was never written.
//!
//! Prints `kills: N survived, 0 acknowledged writes lost`. `EAGLE_CRASH_LONG=1`: 1,000 kills
//! (default 50).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crash_tests::Scratch;
use crash_tests::server::{Conn, free_port, server_binary, start};
use eagle_core::resp::Frame;
use parking_lot::Mutex;

const CLIENTS: usize = 4;
const PIPELINE: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}
type State = BTreeMap<Vec<u8>, (Val, bool)>; // value, has an expiry

fn b(s: impl AsRef<[u8]>) -> Vec<u8> {
    s.as_ref().to_vec()
}

/// A client's next command and what it does to its state.
fn next_op(prefix: &str, i: u64, r: &mut u64) -> Vec<Vec<u8>> {
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    let k = |j: u64| b(format!("{prefix}:s{}", j % 12));
    let x = *r;
    match x % 8 {
        0 | 1 => vec![
            b("SET"),
            k(x >> 8),
            b(format!("v{i}-{}", "x".repeat((x >> 20) as usize % 50))),
        ],
        2 => vec![b("INCR"), b(format!("{prefix}:n"))],
        3 => vec![
            b("HSET"),
            b(format!("{prefix}:h")),
            b(format!("f{}", (x >> 8) % 6)),
            b(format!("{i}")),
        ],
        4 => vec![
            b("MSET"),
            k(x >> 8),
            b(format!("m{i}")),
            k(x >> 16),
            b(format!("m{i}b")),
        ],
        5 => vec![b("DEL"), k(x >> 8), k(x >> 16)],
        6 => vec![b("EXPIRE"), k(x >> 8), b("100000")],
        _ => vec![b("SET"), k(x >> 8), b(format!("w{i}"))],
    }
}

fn model(s: &mut State, cmd: &[Vec<u8>]) {
    match &cmd[0][..] {
        b"SET" => {
            s.insert(cmd[1].clone(), (Val::Str(cmd[2].clone()), false));
        }
        b"INCR" => {
            let n = match s.get(&cmd[1]) {
                Some((Val::Str(v), _)) => String::from_utf8_lossy(v).parse::<i64>().unwrap_or(0),
                _ => 0,
            };
            let ttl = s.get(&cmd[1]).is_some_and(|e| e.1);
            s.insert(cmd[1].clone(), (Val::Str(b((n + 1).to_string())), ttl));
        }
        b"HSET" => {
            let ttl = s.get(&cmd[1]).is_some_and(|e| e.1);
            let mut h = match s.remove(&cmd[1]) {
                Some((Val::Hash(h), _)) => h,
                _ => BTreeMap::new(),
            };
            h.insert(cmd[2].clone(), cmd[3].clone());
            s.insert(cmd[1].clone(), (Val::Hash(h), ttl));
        }
        b"MSET" => {
            s.insert(cmd[1].clone(), (Val::Str(cmd[2].clone()), false));
            s.insert(cmd[3].clone(), (Val::Str(cmd[4].clone()), false));
        }
        b"DEL" => {
            s.remove(&cmd[1]);
            s.remove(&cmd[2]);
        }
        b"EXPIRE" => {
            if let Some(e) = s.get_mut(&cmd[1]) {
                e.1 = true;
            }
        }
        _ => unreachable!(),
    }
}

/// A client's log: every command sent, and how many were acknowledged.
#[derive(Default, Clone)]
struct Log {
    sent: Vec<Vec<Vec<u8>>>,
    acked: usize,
}

fn drive(port: u16, prefix: String, seed: u64, log: Arc<Mutex<Log>>, stop: Arc<AtomicBool>) {
    let Ok(mut c) = Conn::new(port) else { return };
    let mut r = seed | 1;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<_> = (0..PIPELINE)
            .map(|_| {
                i += 1;
                next_op(&prefix, i, &mut r)
            })
            .collect();
        log.lock().sent.extend(batch.iter().cloned());
        if c.send(&batch).is_err() {
            return;
        }
        for _ in 0..batch.len() {
            match c.reply() {
                Ok(Frame::Error(e)) => {
                    panic!("{prefix}: error reply {:?}", String::from_utf8_lossy(&e))
                }
                Ok(_) => log.lock().acked += 1,
                Err(_) => return, // killed
            }
        }
    }
}

/// Reads a client's keys back.
fn read_state(c: &mut Conn, keys: &[Vec<u8>]) -> State {
    let mut s = State::new();
    for k in keys {
        let ty = c.call(vec![b("TYPE"), k.clone()]).unwrap();
        let v = match ty {
            Frame::Simple(t) if &t[..] == b"string" => {
                match c.call(vec![b("GET"), k.clone()]).unwrap() {
                    Frame::Bulk(v) => Val::Str(v.to_vec()),
                    other => panic!("GET {k:?}: {other:?}"),
                }
            }
            Frame::Simple(t) if &t[..] == b"hash" => {
                let Frame::Array(items) = c.call(vec![b("HGETALL"), k.clone()]).unwrap() else {
                    panic!("HGETALL")
                };
                let mut h = BTreeMap::new();
                for pair in items.chunks(2) {
                    if let [Frame::Bulk(f), Frame::Bulk(v)] = pair {
                        h.insert(f.to_vec(), v.to_vec());
                    }
                }
                Val::Hash(h)
            }
            _ => continue,
        };
        let ttl = matches!(c.call(vec![b("TTL"), k.clone()]).unwrap(), Frame::Integer(t) if t > 0);
        s.insert(k.clone(), (v, ttl));
    }
    s
}

/// Checks a client's recovered state against every prefix from acked to sent; the length of
/// the matching prefix, or an error.
fn check_client(recovered: &State, log: &Log) -> Result<usize, String> {
    let mut s = State::new();
    for cmd in &log.sent[..log.acked] {
        model(&mut s, cmd);
    }
    for l in log.acked..=log.sent.len() {
        if &s == recovered {
            return Ok(l);
        }
        if l < log.sent.len() {
            model(&mut s, &log.sent[l]);
        }
    }
    Err(format!(
        "state matches no prefix between {} acknowledged and {} sent commands",
        log.acked,
        log.sent.len()
    ))
}

fn keys_of(prefix: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = (0..12).map(|j| b(format!("{prefix}:s{j}"))).collect();
    v.push(b(format!("{prefix}:n")));
    v.push(b(format!("{prefix}:h")));
    v
}

#[test]
fn acknowledged_writes_survive_kill_9_under_load() {
    let kills = if std::env::var_os("EAGLE_CRASH_LONG").is_some() {
        1000
    } else {
        50
    };
    let bin = server_binary();
    let scratch = Scratch::new("kill9");
    let pool = scratch.path("eagle.pool");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    // Every finished round's clients and their verified final states, rechecked at the end.
    let mut history: Vec<(String, State)> = Vec::new();
    let mut acked_total = 0;
    for round in 0..kills {
        let port = free_port();
        let mut server = start(&bin, &pool, port);
        let stop = Arc::new(AtomicBool::new(false));
        let logs: Vec<_> = (0..CLIENTS)
            .map(|_| Arc::new(Mutex::new(Log::default())))
            .collect();
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (log, stop) = (logs[c].clone(), stop.clone());
                let prefix = format!("r{round}c{c}");
                std::thread::spawn(move || {
                    drive(port, prefix, (round * 31 + c) as u64 + 7, log, stop)
                })
            })
            .collect();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(30 + rng % 200));
        server.kill().expect("kill -9"); // SIGKILL
        let _ = server.wait();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("client thread");
        }
        // Restart on the same pool and verify every client of this round.
        let port = free_port();
        let mut server = start(&bin, &pool, port);
        let mut c = Conn::new(port).unwrap();
        for (ci, log) in logs.iter().enumerate() {
            let prefix = format!("r{round}c{ci}");
            let log = log.lock().clone();
            acked_total += log.acked;
            let got = read_state(&mut c, &keys_of(&prefix));
            if let Err(e) = check_client(&got, &log) {
                panic!("round {round}, client {ci}: {e}");
            }
            history.push((prefix, got));
        }
        if round + 1 == kills {
            // The last restart also rechecks every earlier round: kills never hurt old data.
            for (prefix, want) in &history {
                assert_eq!(
                    &read_state(&mut c, &keys_of(prefix)),
                    want,
                    "{prefix} changed"
                );
            }
        }
        let _ = c.call(vec![b("SHUTDOWN")]);
        let _ = server.wait();
    }
    println!(
        "kills: {kills} survived, 0 acknowledged writes lost ({acked_total} acknowledged commands checked)"
    );
}

#[test]
fn the_checker_rejects_a_lost_acknowledged_write_and_a_phantom_value() {
    let set = |k: &str, v: &str| vec![b("SET"), b(k), b(v)];
    let log = Log {
        sent: vec![set("a", "1"), set("b", "2"), set("a", "3")],
        acked: 2,
    };
    let state = |pairs: &[(&str, &str)]| -> State {
        pairs
            .iter()
            .map(|(k, v)| (b(k), (Val::Str(b(v)), false)))
            .collect()
    };
    assert_eq!(check_client(&state(&[("a", "1"), ("b", "2")]), &log), Ok(2));
    assert_eq!(check_client(&state(&[("a", "3"), ("b", "2")]), &log), Ok(3));
    assert!(
        check_client(&state(&[("a", "1")]), &log).is_err(),
        "lost acknowledged SET b"
    );
    assert!(
        check_client(&state(&[("a", "9"), ("b", "2")]), &log).is_err(),
        "phantom value"
    );
}
