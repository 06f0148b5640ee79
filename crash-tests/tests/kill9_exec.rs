//! `kill -9` while EXEC runs: a transaction of many SETs is sent, the server is killed at a
//! moment chosen to land inside it, and after a restart the keys must hold either every value
//! the transaction wrote or every value from before it, never a mix. INFO's
//! `rolled_back_undo_records` tells the rounds whose kill interrupted the EXEC (the restart rolled
//! it back) from those that came before it began or after it ended; the test needs at least one.
//!
//! Prints `exec kills: N rounds, R rolled back mid-EXEC, C committed whole, B before EXEC`.
//! `EAGLE_CRASH_LONG=1`: 200 rounds (default 12).

use std::time::{Duration, Instant};

use bytes::Bytes;
use crash_tests::Scratch;
use crash_tests::server::{Conn, free_port, server_binary, start};
use eagle_core::resp::Frame;

const KEYS: usize = 2000;

fn key(i: usize) -> Vec<u8> {
    format!("tx:{i:05}").into_bytes()
}

/// MULTI, a SET of every key to `value`, EXEC.
fn transaction(value: &str) -> Vec<Vec<Vec<u8>>> {
    let mut cmds = vec![vec![b"MULTI".to_vec()]];
    cmds.extend((0..KEYS).map(|i| vec![b"SET".to_vec(), key(i), value.as_bytes().to_vec()]));
    cmds.push(vec![b"EXEC".to_vec()]);
    cmds
}

/// The one value every key holds, or a description of the mix.
fn uniform_value(c: &mut Conn) -> Result<Option<Vec<u8>>, String> {
    let mut mget = vec![b"MGET".to_vec()];
    mget.extend((0..KEYS).map(key));
    let Frame::Array(values) = c.call(mget).map_err(|e| e.to_string())? else {
        return Err("MGET did not answer an array".into());
    };
    let value = |f: &Frame| match f {
        Frame::Bulk(b) => Some(b.to_vec()),
        _ => None,
    };
    let first = value(&values[0]);
    match values.iter().position(|f| value(f) != first) {
        None => Ok(first),
        Some(at) => Err(format!(
            "key {at} holds {:?}, key 0 holds {:?}",
            value(&values[at]).map(|v| String::from_utf8_lossy(&v).into_owned()),
            first.map(|v| String::from_utf8_lossy(&v).into_owned()),
        )),
    }
}

fn rolled_back(c: &mut Conn) -> u64 {
    let Ok(Frame::Bulk(info)) = c.call(vec![b"INFO".to_vec(), b"eagle".to_vec()]) else {
        panic!("INFO eagle failed");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("rolled_back_undo_records:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO eagle has rolled_back_undo_records")
}

#[test]
fn exec_interrupted_by_kill_9_is_rolled_back_whole() {
    let rounds = if crash_tests::long_mode() { 200 } else { 12 };
    let bin = server_binary();
    let scratch = Scratch::new("kill9-exec");
    let pool = scratch.path("eagle.pool");
    // Round 0 runs its transaction to the end and times it; later rounds kill inside that time,
    // moving the kill later after a kill that came too early and earlier after one too late.
    let mut delay = Duration::ZERO;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut mid, mut whole, mut early) = (0, 0, 0);
    let mut current = b"none".to_vec();
    for round in 0..rounds {
        let port = free_port();
        let mut server = start(&bin, &pool, port);
        let mut c = Conn::new(port).unwrap();
        let value = format!("round-{round}");
        let started = Instant::now();
        c.send(&transaction(&value)).unwrap();
        if round == 0 {
            for _ in 0..KEYS + 2 {
                c.reply().unwrap();
            }
            delay = started.elapsed();
            current = value.into_bytes();
            let _ = c.call(vec![b"SHUTDOWN".to_vec()]);
            let _ = server.wait();
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter = 0.5 + (rng % 1000) as f64 / 1000.0;
        std::thread::sleep(delay.mul_f64(jitter));
        server.kill().expect("kill -9");
        let _ = server.wait();

        let port = free_port();
        let mut server = start(&bin, &pool, port);
        let mut c = Conn::new(port).unwrap();
        let got = match uniform_value(&mut c) {
            Ok(v) => v.unwrap_or_default(),
            Err(mix) => panic!("round {round}: a transaction was split by kill -9: {mix}"),
        };
        let undone = rolled_back(&mut c);
        if got == value.as_bytes() {
            assert_eq!(
                undone, 0,
                "round {round}: rolled back, yet every write is there"
            );
            whole += 1;
            delay = delay.mul_f64(0.7);
        } else if got == current {
            if undone > 0 {
                mid += 1;
            } else {
                early += 1;
                delay = delay.mul_f64(1.4);
            }
        } else {
            panic!(
                "round {round}: keys hold {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        current = got;
        let _ = c.call(vec![b"SHUTDOWN".to_vec()]);
        let _ = server.wait();
    }
    println!(
        "exec kills: {} rounds, {mid} rolled back mid-EXEC, {whole} committed whole, {early} before EXEC",
        rounds - 1
    );
    assert!(
        mid > 0,
        "no kill landed inside an EXEC, so nothing was tested ({whole} too late, {early} too early)"
    );
}

#[test]
fn the_uniformity_check_reports_a_mix() {
    // The checker must be able to fail: a pool where half the keys were written.
    let bin = server_binary();
    let scratch = Scratch::new("kill9-exec-mix");
    let pool = scratch.path("eagle.pool");
    let port = free_port();
    let mut server = start(&bin, &pool, port);
    let mut c = Conn::new(port).unwrap();
    let sets: Vec<_> = (0..KEYS)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                key(i),
                if i < KEYS / 2 {
                    b"a".to_vec()
                } else {
                    b"b".to_vec()
                },
            ]
        })
        .collect();
    c.send(&sets).unwrap();
    for _ in 0..KEYS {
        assert_eq!(c.reply().unwrap(), Frame::Simple(Bytes::from_static(b"OK")));
    }
    assert!(uniform_value(&mut c).is_err());
    let _ = c.call(vec![b"SHUTDOWN".to_vec()]);
    let _ = server.wait();
}
