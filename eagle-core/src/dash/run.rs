//! Runs: a sequence of upserts made in groups (`group.rs`), in order: what the same upserts one
//! by one would leave. A key that closes a group starts the next one; a key no group can take
//! even as its first is put alone. The server's pipelined SETs run as runs of values; an MSET's
//! publications, after its log record, as a run of prepared records.

use super::error::IndexError;
use super::group::Item;
use super::index::Dash;
use super::write::PutMode;
use crate::pmem::FlushMode;
use crate::record::RecordKind;

/// What a run did: how many leading items it applied, durably, how many of those shared their
/// fences with another item, and why it stopped short (`Err`) if it did: the item at
/// `applied` met the error.
#[must_use]
#[derive(Debug)]
pub struct RunDone<E> {
    pub applied: usize,
    pub grouped: usize,
    pub result: Result<(), E>,
}

impl<E> RunDone<E> {
    /// Nothing applied yet.
    pub fn new() -> Self {
        RunDone {
            applied: 0,
            grouped: 0,
            result: Ok(()),
        }
    }

    /// Nothing applied: the run failed before its first item.
    pub fn failed(e: E) -> Self {
        RunDone {
            result: Err(e),
            ..Self::new()
        }
    }

    /// The same counts, with the error converted.
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> RunDone<F> {
        RunDone {
            applied: self.applied,
            grouped: self.grouped,
            result: self.result.map_err(f),
        }
    }
}

impl<E> Default for RunDone<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl Dash {
    /// Upserts string records for `items` (key, value, expiry in ms since the Unix epoch or 0
    /// for none), in order, as a run. Keys may repeat (a repeat closes a group; the later value
    /// wins). Stops at the first error; every item before it is durable.
    pub fn put_run(&self, items: &[(&[u8], &[u8], u64)]) -> RunDone<IndexError> {
        self.run(items, |&(key, value, expire_at)| {
            self.put(key, value, RecordKind::String, expire_at, PutMode::Upsert)
                .map(drop)
        })
    }

    /// Publishes prepared records (key, record; see [`publish`](Self::publish)) in order, as a
    /// run of upserts. Every record must be durable already (the caller fenced after preparing
    /// them). Stops at the first error; every item before it is durable.
    pub fn publish_run(&self, items: &[(&[u8], u64)]) -> RunDone<IndexError> {
        self.run(items, |&(key, record)| {
            self.publish(key, record, PutMode::Upsert).map(drop)
        })
    }

    /// Whether a group can save a round trip: not where a flush is an msync and a fence
    /// nothing (`FlushMode::Msync`; a run then puts every item alone).
    pub fn groups_pay(&self) -> bool {
        self.region().flush_mode() != FlushMode::Msync
    }

    /// `items` in groups where they go, `alone` for each item a group cannot take.
    fn run<I: Item>(
        &self,
        items: &[I],
        mut alone: impl FnMut(&I) -> Result<(), IndexError>,
    ) -> RunDone<IndexError> {
        let mut done = RunDone::new();
        let pays = self.groups_pay();
        while done.applied < items.len() {
            if done.grouped > 0 && crate::fault::armed(crate::fault::Fault::FailRunAfterGroup) {
                done.result = Err(IndexError::Corrupted {
                    what: "fault injected: a run failed after its first group".into(),
                });
                return done;
            }
            let rest = &items[done.applied..];
            let n = if pays && rest.len() >= 2 {
                match self.group(rest) {
                    Ok(n) => n,
                    Err(e) => {
                        done.result = Err(e);
                        return done;
                    }
                }
            } else {
                0
            };
            if n == 0 {
                if let Err(e) = alone(&rest[0]) {
                    done.result = Err(e);
                    return done;
                }
                done.applied += 1;
                continue;
            }
            done.applied += n;
            if n >= 2 {
                done.grouped += n;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use crate::dash::PutMode;
    use crate::engine::temp_engine;
    use crate::record::RecordKind;

    #[test]
    fn a_run_of_prepared_records_leaves_what_publishing_each_would_with_its_expiry_counts() {
        let e = temp_engine("publish-run", 4 << 20);
        let index = e.index();
        // Keys 0..10 exist first; even ones with an expiry.
        for i in 0..10u64 {
            let key = format!("k{i}").into_bytes();
            let at = if i % 2 == 0 { 4_000_000_000_000 } else { 0 };
            index
                .put(&key, b"old", RecordKind::String, at, PutMode::Upsert)
                .unwrap();
        }
        assert_eq!(index.stats().expires, 5);
        // A run over keys 5..25: every third new record with an expiry.
        let keys: Vec<Vec<u8>> = (5..25u64).map(|i| format!("k{i}").into_bytes()).collect();
        let records: Vec<u64> = keys
            .iter()
            .enumerate()
            .map(|(j, k)| {
                let at = if j % 3 == 0 { 4_000_000_000_000 } else { 0 };
                index.prepare(k, b"new", RecordKind::String, at).unwrap()
            })
            .collect();
        index.region().fence();
        let items: Vec<(&[u8], u64)> = keys.iter().map(|k| &k[..]).zip(records).collect();
        let done = index.publish_run(&items);
        done.result.unwrap();
        assert_eq!(done.applied, items.len());
        assert!(done.grouped >= 2, "nothing went in a group");
        // Keys 0..5 keep theirs (k0, k2, k4 expire); of 5..25, j = 0, 3, ..., 18 (7 keys).
        assert_eq!(index.stats().expires, 3 + 7);
        assert_eq!(index.len(), 25);
        for (i, k) in keys.iter().enumerate() {
            let (value, at) = index
                .get(k, |r| (r.value().to_vec(), r.expire_at_ms()))
                .unwrap()
                .unwrap();
            assert_eq!(value, b"new");
            assert_eq!(at != 0, i % 3 == 0, "key {i}");
        }
        assert!(e.check().is_clean());
    }
}
