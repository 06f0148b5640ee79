//! Key locks: a fixed table of reader-writer locks, a key's lock chosen by its hash. Every
//! keyspace command holds the locks of its keys for its whole duration (shared to read,
//! exclusive to write), so each command is atomic and isolated as in Redis, and a read-modify-
//! write (INCR, APPEND, HSET) needs no retry. Several keys are locked in table order, so two
//! commands never wait for each other in a cycle.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const STRIPES: usize = 1024;

/// The lock table.
pub(crate) struct Stripes {
    locks: Box<[RwLock<()>]>,
}

/// Locks held by one command, released on drop.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the guards are held for their Drop")
)]
pub(crate) enum Held<'a> {
    Read(Guards<RwLockReadGuard<'a, ()>>),
    Write(Guards<RwLockWriteGuard<'a, ()>>),
}

/// One guard (most commands name one key: no allocation), or several in table order.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the guards are held for their Drop")
)]
pub(crate) enum Guards<G> {
    One(G),
    Many(Vec<G>),
}

/// The stripes a command's keys map to.
enum Indices {
    One(usize),
    /// Sorted, without duplicates.
    Many(Vec<usize>),
}

impl Indices {
    fn map<G>(self, lock: impl Fn(usize) -> G) -> Guards<G> {
        match self {
            Indices::One(i) => Guards::One(lock(i)),
            Indices::Many(v) => Guards::Many(v.into_iter().map(lock).collect()),
        }
    }
}

impl Stripes {
    pub fn new() -> Stripes {
        Stripes {
            locks: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }

    fn indices(mut hashes: impl Iterator<Item = u64>) -> Indices {
        let stripe = |h: u64| (h as usize) & (STRIPES - 1);
        let Some(first) = hashes.next().map(stripe) else {
            return Indices::Many(Vec::new());
        };
        let Some(second) = hashes.next() else {
            return Indices::One(first);
        };
        let mut v: Vec<usize> = [first, stripe(second)]
            .into_iter()
            .chain(hashes.map(stripe))
            .collect();
        v.sort_unstable();
        v.dedup();
        match v[..] {
            [one] => Indices::One(one),
            _ => Indices::Many(v),
        }
    }

    /// Shared locks for the keys with these hashes.
    pub fn read(&self, hashes: impl Iterator<Item = u64>) -> Held<'_> {
        Held::Read(Self::indices(hashes).map(|i| self.locks[i].read()))
    }

    /// Exclusive locks for the keys with these hashes.
    pub fn write(&self, hashes: impl Iterator<Item = u64>) -> Held<'_> {
        Held::Write(Self::indices(hashes).map(|i| self.locks[i].write()))
    }

    /// Every lock, exclusively (FLUSHALL).
    pub fn write_all(&self) -> Held<'_> {
        Held::Write(Guards::Many(self.locks.iter().map(|l| l.write()).collect()))
    }

    /// Every lock, shared (a snapshot: writers wait, readers go on). Taken in table order, as
    /// writers take theirs, so it never waits in a cycle with one.
    pub fn read_all(&self) -> Held<'_> {
        Held::Read(Guards::Many(self.locks.iter().map(|l| l.read()).collect()))
    }
}

impl Held<'_> {
    /// Number of locks held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        fn count<G>(g: &Guards<G>) -> usize {
            match g {
                Guards::One(_) => 1,
                Guards::Many(v) => v.len(),
            }
        }
        match self {
            Held::Read(g) => count(g),
            Held::Write(g) => count(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locking_many_keys_dedups_and_orders_stripes() {
        let s = Stripes::new();
        let held = s.write([5u64, 5 + STRIPES as u64, 3, 1027].into_iter());
        assert_eq!(held.len(), 2); // 5 and 5+1024 share a stripe; 3 and 1027 too
        drop(held);
        let held = s.write([7u64, 7 + STRIPES as u64].into_iter());
        assert!(matches!(held, Held::Write(Guards::One(_)))); // one stripe: no allocation
        drop(held);
        let a = s.read([1u64].into_iter());
        let b = s.read([1u64].into_iter()); // shared
        assert_eq!(a.len() + b.len(), 2);
        let all = s.read_all(); // shares with the readers above
        assert_eq!(all.len(), STRIPES);
    }
}
