//! The server's side of a run of pipelined SETs that fails part way (injected after each run's
//! first group, as a full pool would make it): every SET still gets its reply, in order, the
//! SET a run stopped at runs alone, and the keys hold what the SETs one by one would leave.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use crash_tests::Scratch;
use eagle_core::Db;
use eagle_core::fault::{self, Fault};
use eagle_core::resp::{Frame, Protocol, encode, parse_frame};
use eagle_server::cmd::{Ctx, Request, Session, Shared, execute, execute_sets};

fn argv(words: &[&[u8]]) -> Vec<Bytes> {
    words.iter().map(|w| Bytes::copy_from_slice(w)).collect()
}

#[test]
fn pipelined_sets_whose_runs_fail_part_way_all_reply_and_apply_in_order() {
    let scratch = Scratch::new("failed-server-run");
    let path = scratch.path("eagle.pool");
    let shared = Shared {
        db: Arc::new(Db::open(&path, crash_tests::small_unflushed()).unwrap()),
        server: Default::default(),
    };
    let mut session = Session::new(1);
    let mut ctx = Ctx {
        shared: &shared,
        session: &mut session,
    };
    // 40 SETs over 12 keys: repeats close groups, so each run has a first group and more.
    let sets: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
        .map(|i| {
            let k = format!("key-{}", (i * 7) % 12).into_bytes();
            (k, format!("value-{i}").into_bytes())
        })
        .collect();
    let mut requests: Vec<Request> = sets
        .iter()
        .map(|(k, v)| Request::new(argv(&[b"SET", k, v])))
        .collect();
    let mut replies = Vec::new();
    fault::with(Fault::FailRunAfterGroup, || {
        execute_sets(&mut ctx, &mut requests, |_, frame| replies.push(frame));
    });
    assert_eq!(replies.len(), sets.len(), "one reply per SET");
    assert!(replies.iter().all(|f| *f == Frame::ok()), "{replies:?}");
    let mut expect = BTreeMap::new();
    for (k, v) in &sets {
        expect.insert(k.clone(), v.clone());
    }
    for (k, v) in &expect {
        assert_eq!(
            shared.db.get(k).unwrap().as_deref(),
            Some(&v[..]),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(shared.db.dbsize(), expect.len() as u64);
    // Every SET counted once, whether it ran in a group or alone.
    let reply = execute(&mut ctx, argv(&[b"INFO", b"commandstats"]));
    let mut wire = bytes::BytesMut::new();
    encode(&reply, Protocol::Resp2, &mut wire);
    let Some((Frame::Bulk(info), _)) = parse_frame(&wire).unwrap() else {
        panic!("INFO replied {reply:?}");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(
        info.contains(&format!("cmdstat_set:calls={},", sets.len())),
        "{info}"
    );
    assert!(shared.db.engine().writable());
    assert!(shared.db.engine().check().is_clean());
}
