//! The calibration peer: one std `HashMap` on one thread, as in the Dash issue's reference
//! figures for this machine ("Rust's std HashMap, same keys, 1 thread"). Run in the same
//! session as eagle, it tells how fast the machine is now against when those figures were
//! taken, so eagle's figures can be read against Dash's reference ones on equal terms.
//!
//! It is driven by plain loops on the benchmark thread ([`LocalStore`]), not through the
//! shared [`Store`](crate::workload::Store) harness the other engines use: behind a lock, or
//! called through the harness's per-operation machinery, the map's searches ran at about 0.6x
//! of a plain loop (a locked instruction per operation, and more instructions between two
//! lookups, leave less room for one lookup's cache miss to overlap the next one's).

use std::collections::HashMap;
use std::hash::Hash;

use crate::workload::LocalStore;

/// Fixed keys as `u64`, variable ones as 16 zero-padded bytes; std's default hasher (SipHash).
/// A key longer than 16 bytes is never stored (inserts and deletes of it answer `false`, a
/// search `None`): the benchmark's keys are 8 or 16 bytes, and a longer one would fail the
/// checks of every phase but the negative searches.
#[derive(Default)]
pub struct StdMap {
    fixed: HashMap<u64, u64>,
    var: HashMap<[u8; 16], u64>,
}

enum Key {
    Fixed(u64),
    Var([u8; 16]),
    TooLong,
}

#[inline(always)]
fn key_of(key: &[u8]) -> Key {
    if let Ok(k) = <[u8; 8]>::try_from(key) {
        return Key::Fixed(u64::from_le_bytes(k));
    }
    if key.len() > 16 {
        return Key::TooLong;
    }
    let mut k = [0u8; 16];
    k[..key.len()].copy_from_slice(key);
    Key::Var(k)
}

/// Inserts `k` unless present (a present key keeps its value, as in the other engines).
fn insert_new<K: Hash + Eq>(map: &mut HashMap<K, u64>, k: K, value: u64) -> bool {
    match map.entry(k) {
        std::collections::hash_map::Entry::Occupied(_) => false,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(value);
            true
        }
    }
}

impl LocalStore for StdMap {
    fn insert(&mut self, key: &[u8], value: u64) -> bool {
        match key_of(key) {
            Key::Fixed(k) => insert_new(&mut self.fixed, k, value),
            Key::Var(k) => insert_new(&mut self.var, k, value),
            Key::TooLong => false,
        }
    }

    fn get(&mut self, key: &[u8]) -> Option<u64> {
        match key_of(key) {
            Key::Fixed(k) => self.fixed.get(&k).copied(),
            Key::Var(k) => self.var.get(&k).copied(),
            Key::TooLong => None,
        }
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        match key_of(key) {
            Key::Fixed(k) => self.fixed.remove(&k).is_some(),
            Key::Var(k) => self.var.remove(&k).is_some(),
            Key::TooLong => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_a_map() {
        let mut m = StdMap::default();
        assert!(m.insert(b"12345678", 1));
        assert!(!m.insert(b"12345678", 2));
        assert!(m.insert(b"0123456789abcdef", 3));
        assert_eq!(m.get(b"12345678"), Some(1));
        assert_eq!(m.get(b"0123456789abcdef"), Some(3));
        assert_eq!(m.get(b"87654321"), None);
        assert!(m.delete(b"12345678"));
        assert!(!m.delete(b"12345678"));
        assert!(!m.insert(&[0u8; 17], 1));
        assert_eq!(m.get(&[0u8; 17]), None);
    }
}
