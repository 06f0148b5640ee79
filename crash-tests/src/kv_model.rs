//! A key-value model of acknowledged operations, and the durable-linearizability check of a
//! recovered engine against it: every acknowledged operation is present with its value, each
//! one in flight (one, or a group's, of distinct keys) is wholly present or wholly absent,
//! nothing else appears, and `check` is clean.

use std::collections::BTreeMap;

use eagle_core::Engine;

/// A write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Insert or replace.
    Put(Vec<u8>, Vec<u8>),
    /// Remove.
    Delete(Vec<u8>),
}

impl KvOp {
    /// The key it touches.
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put(k, _) | KvOp::Delete(k) => k,
        }
    }
}

/// Acknowledged state plus the writes in flight.
#[derive(Clone, Debug, Default)]
pub struct KvModel {
    /// Every acknowledged write applied.
    pub acked: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The writes being executed, not yet acknowledged: one, or a group's (distinct keys, each
    /// applied or not independently of the others).
    pub in_flight: Vec<KvOp>,
}

impl KvModel {
    /// Marks `op` as started.
    pub fn begin(&mut self, op: KvOp) {
        self.in_flight = vec![op];
    }

    /// Marks a group of writes to distinct keys as started.
    pub fn begin_group(&mut self, ops: Vec<KvOp>) {
        let mut keys: Vec<&[u8]> = ops.iter().map(KvOp::key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), ops.len(), "a group's keys must be distinct");
        self.in_flight = ops;
    }

    /// Marks the operations in flight as acknowledged.
    pub fn ack(&mut self) {
        for op in self.in_flight.drain(..) {
            match op {
                KvOp::Put(k, v) => {
                    self.acked.insert(k, v);
                }
                KvOp::Delete(k) => {
                    self.acked.remove(&k);
                }
            }
        }
    }

    /// Checks a recovered engine against the model; `Err` says the first difference.
    pub fn verify(&self, e: &Engine) -> Result<(), String> {
        let get = |k: &[u8]| {
            e.index()
                .get(k, |r| r.value().to_vec())
                .map_err(|err| format!("get {k:?}: {err}"))
        };
        let in_flight = |k: &[u8]| self.in_flight.iter().any(|op| op.key() == k);
        for (k, v) in &self.acked {
            if in_flight(k) {
                continue;
            }
            match get(k)? {
                Some(got) if got == *v => {}
                other => {
                    return Err(format!(
                        "acknowledged key {k:?}: expected {v:?}, found {other:?}"
                    ));
                }
            }
        }
        // Each write in flight is applied or not; the key count must match what was found.
        let mut expected = self.acked.len() as i64;
        for op in &self.in_flight {
            let before = self.acked.get(op.key()).cloned();
            let after = match op {
                KvOp::Put(_, v) => Some(v.clone()),
                KvOp::Delete(_) => None,
            };
            let got = get(op.key())?;
            if got != before && got != after {
                return Err(format!(
                    "in-flight {op:?}: found {got:?}, neither {before:?} nor {after:?}"
                ));
            }
            expected += got.is_some() as i64 - before.is_some() as i64;
        }
        if e.index().len() as i64 != expected {
            return Err(format!(
                "{} keys recovered, expected {expected}",
                e.index().len()
            ));
        }
        let report = e.check();
        if !report.is_clean() {
            return Err(format!("check: {:?}", report.problems));
        }
        Ok(())
    }
}
