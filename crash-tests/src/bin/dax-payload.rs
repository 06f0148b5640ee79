//! Guest payload of the DAX harness (`crash-tests/dax/run.sh`): runs inside a qemu guest whose
//! emulated NVDIMMs are a DAX-mounted ext4 (fsdax, `MAP_SYNC`) and a device-dax device. Built as
//! a static binary; std and eagle-core only.
//!
//! - `probe PATH [KIND]`: opens (creating if needed) a pool with `require_dax`, prints
//!   `probe PATH kind KIND flush MODE`, fails if the kind is emulated or not `KIND`.
//! - `load PATH N`: opens a keyspace and runs the first `N` operations of a deterministic
//!   sequence (SET, MSET of 3 keys, HSET of 3 fields, INCRBY on one counter), printing
//!   `KIND acked I` (flushed) after operation `I` returned, i.e. was acknowledged durable. The
//!   host kills the guest (power loss) part way.
//! - `verify PATH ACKED`: reopens after the crash and checks that the operations applied are
//!   exactly a prefix of the sequence at least `ACKED` long (every acknowledged write present
//!   with its value, the one in flight all or nothing, nothing after it), that no other key
//!   exists, and that `Engine::check` is clean; then that the recovered keyspace takes a write and
//!   a clean close. Prints `verified N` and `check clean`; exits non-zero otherwise.

use std::io::Write;
use std::process::ExitCode;

use eagle_core::db::SetOptions;
use eagle_core::{Db, DbOptions, Pool, PoolKind, PoolOptions};

/// Size of a pool created in a file (fsdax); a device uses its whole size.
const FILE_POOL_SIZE: u64 = 64 << 20;
/// The counter every INCRBY operation adds to.
const COUNTER: &[u8] = b"dax:counter";
const INCR_DELTA: i64 = 7;
/// The key the verification writes after recovery.
const AFTER_KEY: &[u8] = b"dax:after-recovery";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match strs[..] {
        ["probe", path] => probe(path, None),
        ["probe", path, kind] => probe(path, Some(kind)),
        ["load", path, n] => parse(n).and_then(|n| load(path, n)),
        ["verify", path, acked] => parse(acked).and_then(|a| verify(path, a)),
        _ => {
            eprintln!(
                "usage: dax-payload probe PATH [fsdax|devdax] | load PATH N | verify PATH ACKED"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL {}: {e}", strs.join(" "));
            ExitCode::FAILURE
        }
    }
}

fn parse(s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("not a count: {s:?}"))
}

fn pool_options(create: bool) -> PoolOptions {
    PoolOptions {
        create,
        size: FILE_POOL_SIZE,
        require_dax: true,
        ..PoolOptions::default()
    }
}

fn dax_kind(kind: PoolKind) -> Result<PoolKind, String> {
    if kind == PoolKind::Emulated {
        // require_dax already refuses this; checked again so a change there cannot hide here.
        return Err("the pool fell back to emulation".into());
    }
    Ok(kind)
}

fn probe(path: &str, want: Option<&str>) -> Result<(), String> {
    let pool = Pool::open(path, pool_options(true)).map_err(|e| e.to_string())?;
    let kind = dax_kind(pool.kind())?;
    println!(
        "probe {path} kind {kind} flush {} size {} {}",
        pool.flush_mode(),
        pool.header().pool_size,
        if pool.created() { "created" } else { "opened" }
    );
    pool.close().map_err(|e| e.to_string())?;
    match want {
        Some(w) if w != kind.to_string() => Err(format!("expected a {w} pool, got {kind}")),
        _ => Ok(()),
    }
}

/// One operation of the workload. Every operation but INCRBY writes keys no other one writes,
/// so the state after a crash tells exactly which operations were applied.
enum Op {
    Set(Vec<u8>, Vec<u8>),
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    HSet(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>),
    Incr,
}

impl Op {
    /// Keys this operation adds to the keyspace (INCRBY's counter is counted apart).
    fn new_keys(&self) -> u64 {
        match self {
            Op::Set(..) | Op::HSet(..) => 1,
            Op::MSet(pairs) => pairs.len() as u64,
            Op::Incr => 0,
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic value: its name, then 0 to 292 pseudo-random bytes.
fn value(i: u64, part: u64) -> Vec<u8> {
    let seed = splitmix(i.wrapping_mul(16) + part);
    let mut v = format!("v{i}.{part}:").into_bytes();
    let len = v.len() + (seed % 293) as usize;
    let mut x = seed;
    while v.len() < len {
        x = splitmix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn op(i: u64) -> Op {
    match i % 4 {
        0 => Op::Set(format!("dax:s:{i}").into_bytes(), value(i, 0)),
        1 => Op::MSet(
            (0..3)
                .map(|p| (format!("dax:m:{i}:{p}").into_bytes(), value(i, p)))
                .collect(),
        ),
        2 => Op::HSet(
            format!("dax:h:{i}").into_bytes(),
            (0..3)
                .map(|p| (format!("f{p}").into_bytes(), value(i, p)))
                .collect(),
        ),
        _ => Op::Incr,
    }
}

fn pairs(v: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    v.iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect()
}

fn open_db(path: &str, create: bool) -> Result<Db, String> {
    let db = Db::open(
        path,
        DbOptions {
            pool: pool_options(create),
            ..DbOptions::default()
        },
    )
    .map_err(|e| format!("open: {e}"))?;
    dax_kind(db.engine().pool().kind())?;
    Ok(db)
}

fn load(path: &str, n: u64) -> Result<(), String> {
    let db = open_db(path, true)?;
    let kind = db.engine().pool().kind();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{kind} load start {path} flush {}",
        db.engine().pool().flush_mode()
    )
    .and_then(|()| out.flush())
    .map_err(|e| e.to_string())?;
    for i in 0..n {
        let r = match op(i) {
            Op::Set(k, v) => db.set(&k, &v, SetOptions::default()).map(drop),
            Op::MSet(kv) => db.mset(&pairs(&kv)),
            Op::HSet(k, fv) => db.hset(&k, &pairs(&fv)).map(drop),
            Op::Incr => db.incr_by(COUNTER, INCR_DELTA).map(drop),
        };
        r.map_err(|e| format!("operation {i}: {e}"))?;
        // Acknowledged: the call returned, so the write is durable. Flushed line by line so the
        // console shows no acknowledgement the guest had not yet received.
        writeln!(out, "{kind} acked {i}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    db.close().map_err(|e| format!("close: {e}"))?;
    writeln!(out, "{kind} load done {n}").map_err(|e| e.to_string())?;
    Ok(())
}

/// Whether operation `i` (not INCRBY) is in the keyspace: Some(true) wholly, Some(false) not at
/// all; an error if partly or with a wrong value.
fn applied(db: &Db, i: u64, o: &Op) -> Result<bool, String> {
    let err = |e: eagle_core::DbError| format!("operation {i}: {e}");
    let mut found = Vec::new();
    match o {
        Op::Set(k, v) => found.push((db.get(k).map_err(err)?, v.clone())),
        Op::MSet(kv) => {
            for (k, v) in kv {
                found.push((db.get(k).map_err(err)?, v.clone()));
            }
        }
        Op::HSet(k, fv) => {
            let all = db.hgetall(k).map_err(err)?;
            if !all.is_empty() && all.len() != fv.len() {
                return Err(format!("operation {i}: hash has {} fields", all.len()));
            }
            for (f, v) in fv {
                let got = all.iter().find(|(g, _)| g == f).map(|(_, v)| v.clone());
                found.push((got, v.clone()));
            }
        }
        Op::Incr => unreachable!("INCRBY is checked through the counter"),
    }
    let present = found.iter().filter(|(got, _)| got.is_some()).count();
    if present == 0 {
        return Ok(false);
    }
    if present != found.len() {
        return Err(format!(
            "operation {i} partly applied: {present} of {} keys/fields",
            found.len()
        ));
    }
    for (part, (got, want)) in found.iter().enumerate() {
        if got.as_deref() != Some(want.as_slice()) {
            return Err(format!(
                "operation {i} part {part}: value differs ({} bytes, want {})",
                got.as_ref().map_or(0, Vec::len),
                want.len()
            ));
        }
    }
    Ok(true)
}

fn verify(path: &str, acked: u64) -> Result<(), String> {
    let db = open_db(path, false)?;
    let pool = db.engine().pool();
    let kind = pool.kind();
    println!(
        "{kind} reopened {path}: {}, recovery epoch {}, {} logged batches redone",
        if pool.was_clean() {
            "was closed cleanly"
        } else {
            "recovering after a crash"
        },
        pool.recovery_epoch(),
        db.engine().replayed_batches()
    );
    // Walk the sequence to the first operation with keys that is absent: the one in flight or
    // not started. All before it must be wholly present.
    let mut first_absent = 0u64;
    let mut keys = 0u64;
    let mut incrs_before = 0u64;
    let mut incrs_since_last_present = 0u64;
    loop {
        let o = op(first_absent);
        if let Op::Incr = o {
            incrs_before += 1;
            incrs_since_last_present += 1;
        } else if applied(&db, first_absent, &o)? {
            keys += o.new_keys();
            incrs_since_last_present = 0;
        } else {
            break;
        }
        first_absent += 1;
    }
    // INCRBYs are not separable by key: the counter must hold every one before the last present
    // operation, plus any prefix of those between it and the first absent one (at most one of
    // them, the one in flight, can be missing since the operations run one after another).
    let counter = match db.get(COUNTER).map_err(|e| format!("counter: {e}"))? {
        None => 0,
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("counter holds {:?}", String::from_utf8_lossy(&v)))?,
    };
    if counter % INCR_DELTA != 0 || counter < 0 {
        return Err(format!(
            "counter {counter} is not a multiple of {INCR_DELTA}"
        ));
    }
    let incrs = (counter / INCR_DELTA) as u64;
    if incrs > incrs_before || incrs + incrs_since_last_present.min(1) < incrs_before {
        return Err(format!(
            "counter counts {incrs} INCRBYs, expected {incrs_before} (or one less if in flight)"
        ));
    }
    // Operations applied: the prefix before `first_absent`, less an INCRBY in flight right
    // before it.
    let applied_ops = first_absent - (incrs_before - incrs);
    if applied_ops < acked {
        return Err(format!(
            "only the first {applied_ops} operations survived, {acked} were acknowledged \
             (operation {applied_ops} lost)"
        ));
    }
    // Nothing after the first absent operation, nor anything else, is in the keyspace.
    let want_keys = keys + u64::from(counter != 0);
    if db.dbsize() != want_keys {
        return Err(format!(
            "{} keys in the keyspace, the first {applied_ops} operations make {want_keys}",
            db.dbsize()
        ));
    }
    println!(
        "{kind} applied: the first {applied_ops} operations, {acked} acknowledged, {want_keys} keys"
    );
    let report = db.engine().check();
    if !report.is_clean() {
        return Err(format!("check: {report:?}"));
    }
    println!(
        "{kind} check: {} records, {} segments, {} bytes reachable",
        report.records, report.segments, report.reachable_bytes
    );

    // The recovered keyspace takes writes and closes cleanly; the next open finds both.
    db.set(AFTER_KEY, b"ok", SetOptions::default())
        .map_err(|e| format!("write after recovery: {e}"))?;
    db.close()
        .map_err(|e| format!("close after recovery: {e}"))?;
    let db = open_db(path, false)?;
    if !db.engine().pool().was_clean() {
        return Err("the clean close after recovery was not recorded".into());
    }
    if db.get(AFTER_KEY).ok().flatten().as_deref() != Some(b"ok".as_slice()) {
        return Err("the write after recovery is gone after a clean close".into());
    }
    if db.dbsize() != want_keys + 1 || !db.engine().check().is_clean() {
        return Err("the keyspace changed across a clean close".into());
    }
    db.close().map_err(|e| format!("close: {e}"))?;
    println!("{kind} verified {applied_ops}");
    println!("{kind} check clean");
    Ok(())
}
