//! A key-value model of acknowledged operations, and the durable-linearizability check of a
//! recovered engine against it: every acknowledged operation is present with its value, the one
//! in flight is wholly present or wholly absent, nothing else appears, and `check` is clean.

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

/// Acknowledged state plus at most one operation in flight.
#[derive(Clone, Debug, Default)]
pub struct KvModel {
    /// Every acknowledged write applied.
    pub acked: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The write being executed, not yet acknowledged.
    pub in_flight: Option<KvOp>,
}

impl KvModel {
    /// Marks `op` as started.
    pub fn begin(&mut self, op: KvOp) {
        self.in_flight = Some(op);
    }

    /// Marks the operation in flight as acknowledged.
    pub fn ack(&mut self) {
        match self.in_flight.take() {
            Some(KvOp::Put(k, v)) => {
                self.acked.insert(k, v);
            }
            Some(KvOp::Delete(k)) => {
                self.acked.remove(&k);
            }
            None => {}
        }
    }

    /// Checks a recovered engine against the model; `Err` says the first difference.
    pub fn verify(&self, e: &Engine) -> Result<(), String> {
        let get = |k: &[u8]| {
            e.index()
                .get(k, |r| r.value().to_vec())
                .map_err(|err| format!("get {k:?}: {err}"))
        };
        let flight_key = self.in_flight.as_ref().map(KvOp::key);
        for (k, v) in &self.acked {
            if Some(&k[..]) == flight_key {
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
        let mut len_ok = vec![self.acked.len() as u64];
        if let Some(op) = &self.in_flight {
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
            let n = self.acked.len() as u64;
            len_ok.push(match (before.is_some(), after.is_some()) {
                (false, true) => n + 1,
                (true, false) => n - 1,
                _ => n,
            });
        }
        if !len_ok.contains(&e.index().len()) {
            return Err(format!(
                "{} keys recovered, expected {len_ok:?}",
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
