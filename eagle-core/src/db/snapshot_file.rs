//! Snapshot files, byte by byte in docs/format.md ("Snapshot files"): a logical dump of a
//! keyspace, independent of the pool's physical format, little-endian throughout.
//!
//! ```text
//! header (64 bytes)  | magic "EAGLSNAP" | version u32 | flags u32 | created_ms u64 | 0 x 36 | crc32c u32 |
//! entry (per key)    | key_len u32 | type u8 | expire_at_ms u64 | value_len u64 | key | value | crc32c u32 |
//! trailer (24 bytes) | magic "EAGLSEND" | entries u64 | chain crc32c u32 | crc32c u32 |
//! ```
//! `Writer` streams a file to `FILE.tmp` and renames it into place once it is durable, so a
//! crash never leaves a partial file under the final name. `Reader` is the only way entries
//! come out of a file, and it checks every byte before handing anything on: no input makes it
//! panic or allocate more than the file's own size.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::hash_codec::{Fields, decode, encode};
use super::snapshot_error::SnapshotError;

const MAGIC: &[u8; 8] = b"EAGLSNAP";
const END_MAGIC: &[u8; 8] = b"EAGLSEND";
/// The snapshot format version this build writes and the newest it reads.
pub const SNAPSHOT_VERSION: u32 = 1;
const HEADER: usize = 64;
const ENTRY_HEAD: usize = 21;
const TRAILER: usize = 24;
const TYPE_STRING: u8 = 1;
const TYPE_HASH: u8 = 2;

/// One entry's value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Value {
    String(Vec<u8>),
    Hash(Fields),
}

/// One key, as a snapshot holds it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: Vec<u8>,
    /// Absolute, ms since the Unix epoch; 0: none.
    pub expire_at: u64,
    pub value: Value,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// `FILE.tmp`, where a snapshot is written before it is renamed to `FILE`.
pub(crate) fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes a snapshot file.
pub(crate) struct Writer {
    out: BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    entries: u64,
    /// crc32c over the entries' checksums, in order.
    chain: u32,
    bytes: u64,
    done: bool,
}

impl Writer {
    /// Creates `dest.tmp` (replacing a stale one) and writes the header.
    pub fn create(dest: &Path, created_ms: u64) -> Result<Writer, SnapshotError> {
        let tmp = temp_path(dest);
        let file = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            tmp,
            dest: dest.to_path_buf(),
            entries: 0,
            chain: 0,
            bytes: 0,
            done: false,
        };
        let mut head = [0u8; HEADER];
        head[0..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        head[16..24].copy_from_slice(&created_ms.to_le_bytes());
        let crc = crc32c::crc32c(&head[..HEADER - 4]);
        head[HEADER - 4..].copy_from_slice(&crc.to_le_bytes());
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(io_err(&self.tmp, "write"))
    }

    fn entry(
        &mut self,
        ty: u8,
        key: &[u8],
        expire_at: u64,
        value: &[u8],
    ) -> Result<(), SnapshotError> {
        let mut head = [0u8; ENTRY_HEAD];
        head[0..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
        head[4] = ty;
        head[5..13].copy_from_slice(&expire_at.to_le_bytes());
        head[13..21].copy_from_slice(&(value.len() as u64).to_le_bytes());
        let mut crc = crc32c::crc32c(&head);
        crc = crc32c::crc32c_append(crc, key);
        crc = crc32c::crc32c_append(crc, value);
        self.put(&head)?;
        self.put(key)?;
        self.put(value)?;
        self.put(&crc.to_le_bytes())?;
        self.chain = crc32c::crc32c_append(self.chain, &crc.to_le_bytes());
        self.entries += 1;
        Ok(())
    }

    /// A string.
    pub fn string(
        &mut self,
        key: &[u8],
        expire_at: u64,
        value: &[u8],
    ) -> Result<(), SnapshotError> {
        self.entry(TYPE_STRING, key, expire_at, value)
    }

    /// A hash (`count u32 | (field_len u32 | field | value_len u32 | value) x count`).
    pub fn hash(
        &mut self,
        key: &[u8],
        expire_at: u64,
        fields: &Fields,
    ) -> Result<(), SnapshotError> {
        self.entry(TYPE_HASH, key, expire_at, &encode(fields))
    }

    /// Writes the trailer, makes the file durable and renames it into place (then makes the
    /// rename durable); the file's size.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        let mut trailer = [0u8; TRAILER];
        trailer[0..8].copy_from_slice(END_MAGIC);
        trailer[8..16].copy_from_slice(&self.entries.to_le_bytes());
        trailer[16..20].copy_from_slice(&self.chain.to_le_bytes());
        let crc = crc32c::crc32c(&trailer[..TRAILER - 4]);
        trailer[TRAILER - 4..].copy_from_slice(&crc.to_le_bytes());
        self.put(&trailer)?;
        self.out.flush().map_err(io_err(&self.tmp, "write"))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(io_err(&self.tmp, "fsync"))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest, "rename"))?;
        self.done = true;
        let parent = match self.dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent, "fsync of the directory"))?;
        Ok(self.bytes)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What a snapshot's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Format version.
    pub version: u32,
    /// When it was taken (ms since the Unix epoch, by the keyspace's clock).
    pub created_ms: u64,
}

/// Reads a snapshot file, verifying as it goes.
pub(crate) struct Reader<R> {
    input: R,
    path: PathBuf,
    /// Offset of the next byte.
    pos: u64,
    /// The file's length.
    len: u64,
    entries: u64,
    chain: u32,
    done: bool,
    pub header: SnapshotHeader,
}

impl Reader<BufReader<File>> {
    /// Opens `path` and verifies its header.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let file = File::open(path).map_err(io_err(path, "open"))?;
        let len = file.metadata().map_err(io_err(path, "stat"))?.len();
        Reader::new(BufReader::with_capacity(1 << 20, file), len, path)
    }
}

impl<R: Read> Reader<R> {
    /// Reads the header of `len` bytes of snapshot from `input` (`path` names it in errors).
    pub fn new(input: R, len: u64, path: &Path) -> Result<Self, SnapshotError> {
        let mut r = Reader {
            input,
            path: path.to_path_buf(),
            pos: 0,
            len,
            entries: 0,
            chain: 0,
            done: false,
            header: SnapshotHeader {
                version: 0,
                created_ms: 0,
            },
        };
        if len < (HEADER + TRAILER) as u64 {
            if len >= 8 && r.read_vec(8)? != MAGIC {
                return Err(SnapshotError::NotASnapshot { path: r.path });
            }
            return Err(r.corrupt(format!(
                "the file has {len} bytes, fewer than a header and a trailer ({})",
                HEADER + TRAILER
            )));
        }
        let head = r.read_vec(HEADER)?;
        if &head[0..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot { path: r.path });
        }
        let stored = u32_at(&head, HEADER - 4);
        if crc32c::crc32c(&head[..HEADER - 4]) != stored {
            return Err(r.corrupt("the header fails its checksum".into()));
        }
        let version = u32_at(&head, 8);
        if version > SNAPSHOT_VERSION {
            return Err(SnapshotError::FutureVersion {
                path: r.path,
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        if version == 0 || u32_at(&head, 12) != 0 || head[24..HEADER - 4].iter().any(|&b| b != 0) {
            return Err(r.corrupt(format!(
                "the header has version {version}, or flags or reserved bytes this version does not define"
            )));
        }
        r.header = SnapshotHeader {
            version,
            created_ms: u64_at(&head, 16),
        };
        Ok(r)
    }

    fn corrupt(&self, what: String) -> SnapshotError {
        SnapshotError::Corrupted {
            path: self.path.clone(),
            what,
        }
    }

    /// The next `n` bytes (`n` is never more than the file has left).
    fn read_vec(&mut self, n: usize) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = vec![0u8; n];
        match self.input.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.corrupt(format!(
                    "the file ends at byte {} or before: it shrank while being read",
                    self.pos + n as u64
                )));
            }
            Err(e) => return Err(io_err(&self.path, "read")(e)),
        }
        self.pos += n as u64;
        Ok(buf)
    }

    /// Entries read so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The next entry; `None` once the trailer has been read and verified (and the file is
    /// known to end there).
    pub fn next(&mut self) -> Result<Option<Entry>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let (n, at) = (self.entries, self.pos);
        let left = self.len - self.pos;
        let bad = |what: &str| format!("entry {n} at byte {at}: {what}");
        // An entry cannot start with the trailer's magic (its fifth byte, 'S', is no type).
        if left < 8 {
            return Err(self.corrupt(bad("the file ends inside it (no trailer)")));
        }
        let mut head = self.read_vec(8)?;
        if head == END_MAGIC {
            self.trailer(at, left)?;
            self.done = true;
            return Ok(None);
        }
        // The entry, then at least the trailer.
        if left < (ENTRY_HEAD + 4 + TRAILER) as u64 {
            return Err(self.corrupt(bad("the file ends inside it (no trailer)")));
        }
        head.extend_from_slice(&self.read_vec(ENTRY_HEAD - 8)?);
        let key_len = u32_at(&head, 0) as u64;
        let ty = head[4];
        let expire_at = u64_at(&head, 5);
        let value_len = u64_at(&head, 13);
        let room = left - (ENTRY_HEAD + 4 + TRAILER) as u64;
        let Some(body) = key_len.checked_add(value_len).filter(|&b| b <= room) else {
            return Err(self.corrupt(bad(&format!(
                "its key and value lengths ({key_len} + {value_len}) run past the end of the file"
            ))));
        };
        let mut key = self.read_vec(body as usize + 4)?;
        let mut value = key.split_off(key_len as usize);
        let stored = u32_at(&value.split_off(value_len as usize), 0);
        let mut computed = crc32c::crc32c(&head);
        computed = crc32c::crc32c_append(computed, &key);
        computed = crc32c::crc32c_append(computed, &value);
        if computed != stored {
            return Err(self.corrupt(bad("checksum mismatch")));
        }
        let value = match ty {
            TYPE_STRING => Value::String(value),
            TYPE_HASH => Value::Hash(check_hash(&value).map_err(|why| self.corrupt(bad(&why)))?),
            _ => return Err(self.corrupt(bad(&format!("unknown type {ty}")))),
        };
        self.chain = crc32c::crc32c_append(self.chain, &stored.to_le_bytes());
        self.entries += 1;
        Ok(Some(Entry {
            key,
            expire_at,
            value,
        }))
    }

    /// The trailer at `at` (its magic read), `left` bytes from the end of the file.
    fn trailer(&mut self, at: u64, left: u64) -> Result<(), SnapshotError> {
        let bad = |what: &str| format!("trailer at byte {at}: {what}");
        if left < TRAILER as u64 {
            return Err(self.corrupt(bad("the file ends inside it")));
        }
        if left > TRAILER as u64 {
            return Err(self.corrupt(bad(&format!("{} bytes after it", left - TRAILER as u64))));
        }
        let mut t = END_MAGIC.to_vec();
        t.extend_from_slice(&self.read_vec(TRAILER - 8)?);
        if crc32c::crc32c(&t[..TRAILER - 4]) != u32_at(&t, TRAILER - 4) {
            return Err(self.corrupt(bad("checksum mismatch")));
        }
        let count = u64_at(&t, 8);
        if count != self.entries {
            return Err(self.corrupt(bad(&format!(
                "{count} entries announced, {} found",
                self.entries
            ))));
        }
        if u32_at(&t, 16) != self.chain {
            return Err(self.corrupt(bad(
                "the entries' checksums do not chain up (an entry was dropped, repeated or moved)",
            )));
        }
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.corrupt(bad("the file grew while being read"))),
            Err(e) => Err(io_err(&self.path, "read")(e)),
        }
    }
}

/// A hash entry's fields: well formed, at least one, no field twice.
fn check_hash(value: &[u8]) -> Result<Fields, String> {
    let fields = decode(value).map_err(|e| match e {
        super::DbError::Corrupted { what } => what,
        other => other.to_string(),
    })?;
    if fields.is_empty() {
        return Err("a hash with no fields".into());
    }
    let mut seen = HashSet::with_capacity(fields.len());
    if let Some((f, _)) = fields.iter().find(|(f, _)| !seen.insert(&f[..])) {
        return Err(format!(
            "hash field {:?} appears twice",
            String::from_utf8_lossy(f)
        ));
    }
    Ok(fields)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
