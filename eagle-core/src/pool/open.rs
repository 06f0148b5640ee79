//! Opening, creating and closing a pool.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::header::{CREATING_MAGIC, IDENTITY_LEN, Probe};
use super::state::{
    self, CLEAN_MARKER_AT, LAST_RECOVERY_MS_AT, LAST_RECOVERY_NS_AT, RECOVERY_EPOCH_AT,
};
use super::{
    FORMAT_VERSION, HEADER_BLOCK, Header, Layout, MAGIC, MIN_POOL_SIZE, PoolError, ShutdownState,
};
use crate::fault::{self, Fault};
use crate::pmem::{FenceHook, FlushMode, Mapping, PoolKind, Region};

/// How to open a pool.
pub struct PoolOptions {
    /// Create the pool if the path does not exist, or holds an empty file, an all-zero device or
    /// a pool whose creation did not finish. Never overwrites anything else.
    pub create: bool,
    /// Size of a new pool file in bytes (rounded up to 4 KiB). Ignored for devices, which use
    /// their whole size, and for existing pools.
    pub size: u64,
    /// WAL size of a new pool; default 1/32 of the pool, 256 KiB to 64 MiB.
    pub wal_size: Option<u64>,
    /// Refuse to fall back to emulation when the path is not on DAX.
    pub require_dax: bool,
    /// Flush mode; `None` means `EAGLE_FLUSH`, else the best the CPU has.
    pub flush: Option<FlushMode>,
    /// With `flush: Some(FlushMode::Simulated)`: called at every fence, before it takes effect,
    /// from the first write of the open on (pool creation included). See [`PoolOptions::simulated`].
    pub fence_hook: Option<FenceHook>,
    /// Open the pool copy-on-write (`MAP_PRIVATE` over a read-only descriptor): the file is never
    /// written. Recovery and every later write stay in this process's memory and are gone when
    /// the pool is dropped. For inspecting a crashed pool without repairing it, and for the crash
    /// harnesses, which open one image file thousands of times. Refused for device-dax devices
    /// (they only map shared); `create` is ignored (a private new pool would be lost).
    pub private: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            create: true,
            size: 1 << 30,
            wal_size: None,
            require_dax: false,
            flush: None,
            fence_hook: None,
            private: false,
        }
    }
}

impl PoolOptions {
    /// Runs the pool under the power-failure simulator, calling `hook` at every fence (before it
    /// takes effect) from the very first write on, pool creation included.
    pub fn simulated(mut self, hook: Option<FenceHook>) -> Self {
        self.flush = Some(FlushMode::Simulated);
        self.fence_hook = hook;
        self
    }
}

/// An open pool: the mapped region and its validated header. Dropping it without
/// [`close`](Pool::close) is the same as a crash: the next open recovers.
pub struct Pool {
    region: Region,
    header: Header,
    path: PathBuf,
    created: bool,
    was_clean: bool,
    recovery_epoch: u64,
}

impl Pool {
    /// Opens (or, with `opts.create`, creates) the pool at `path`.
    pub fn open(path: impl AsRef<Path>, opts: PoolOptions) -> Result<Pool, PoolError> {
        let path = path.as_ref();
        let io = |op: &'static str| {
            let path = path.to_path_buf();
            move |source: io::Error| PoolError::Io { path, op, source }
        };
        let create = opts.create && !opts.private;
        let file = match OpenOptions::new()
            .read(true)
            .write(!opts.private)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io("create"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PoolError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io("open")(e)),
        };
        lock_exclusive(&file, path)?;
        let meta = file.metadata().map_err(io("stat"))?;
        let is_file = meta.file_type().is_file();
        if is_file && meta.len() == 0 {
            if !create {
                return Err(PoolError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            file.set_len(new_pool_size(path, opts.size)?)
                .map_err(io("set_len"))?;
        }
        let new_file = is_file && meta.len() == 0;
        let mapping = if opts.private {
            Mapping::map_private(file, path)?
        } else {
            Mapping::map(file, path, opts.require_dax)?
        };
        if new_file && mapping.kind() == PoolKind::FsDax {
            mapping.preallocate().map_err(io("posix_fallocate"))?;
        }
        let region = Region::with_hook(mapping, opts.flush, opts.fence_hook)?;

        let mut block = vec![0u8; region.len().min(HEADER_BLOCK as usize)];
        region.read(0, &mut block);
        let (header, created) = match Header::probe(path, &block, region.len() as u64)? {
            Probe::Pool(h) => (h, false),
            Probe::Blank | Probe::Creating if create => {
                (initialize(&region, path, opts.wal_size)?, true)
            }
            Probe::Blank | Probe::Creating => {
                return Err(PoolError::NotFound {
                    path: path.to_path_buf(),
                });
            }
        };
        if created && is_file {
            // The file's size and existence are file-system metadata: make them durable once.
            region.mapping().file().sync_all().map_err(io("fsync"))?;
            sync_parent_dir(path);
        }

        let corrupted = |what: String| PoolError::Corrupted {
            path: path.to_path_buf(),
            what,
        };
        let marker = state::load(&region, CLEAN_MARKER_AT);
        let was_clean = match ShutdownState::from_word(marker) {
            Some(ShutdownState::Clean) => true,
            Some(ShutdownState::Running) => false,
            None => return Err(corrupted(format!("clean-shutdown marker {marker:#018x}"))),
        };
        let mut recovery_epoch = state::load(&region, RECOVERY_EPOCH_AT);
        if recovery_epoch == 0 {
            return Err(corrupted("recovery epoch 0".into()));
        }
        if !was_clean {
            // Ordering: the new epoch is durable before any structure is repaired and tagged with
            // it, so a crash during recovery never finds a structure tagged with an epoch that the
            // header does not hold (which would make it look already repaired).
            recovery_epoch += 1;
            state::store_durable(&region, RECOVERY_EPOCH_AT, recovery_epoch);
        }
        // Ordering: "running" is durable before the first modification of any structure: a crash
        // after this point is recovered; a crash before it finds the pool as cleanly closed, which
        // it still is, since nothing else has been written.
        state::store_durable(&region, CLEAN_MARKER_AT, ShutdownState::Running.word());

        log::info!(
            "pool {}: {} pool of {} bytes, flush mode {} ({:?}), {}",
            path.display(),
            region.kind(),
            header.pool_size,
            region.flush_mode(),
            region.flush_source(),
            if created {
                "created"
            } else if was_clean {
                "clean shutdown"
            } else {
                "recovering after a crash"
            }
        );
        Ok(Pool {
            region,
            header,
            path: path.to_path_buf(),
            created,
            was_clean,
            recovery_epoch,
        })
    }

    /// Marks the pool cleanly shut down. Every structure above must already be durable.
    pub fn close(self) -> Result<(), PoolError> {
        if self.region.persister().has_failed() {
            return Err(PoolError::FlushFailed { path: self.path });
        }
        let page_cache = self.kind() == PoolKind::Emulated && !self.region.mapping().on_tmpfs();
        if page_cache && self.flush_mode() != FlushMode::Msync {
            // A clean shutdown of a pool in the page cache also reaches the disk, so it survives a
            // power loss after exit (what Redis's SHUTDOWN SAVE gives).
            self.sync_to_storage()?;
        }
        // Ordering: everything else is durable (above, and by the layers' own persists) before
        // the marker says "clean"; if the power fails before this persist, the pool is recovered.
        state::store_durable(&self.region, CLEAN_MARKER_AT, ShutdownState::Clean.word());
        if page_cache {
            self.sync_to_storage()?;
        }
        Ok(())
    }

    fn sync_to_storage(&self) -> Result<(), PoolError> {
        let m = self.region.mapping();
        // SAFETY: msync over exactly the mapping, which is alive; it only writes pages back.
        let rc = unsafe { libc::msync(m.base().cast(), m.len(), libc::MS_SYNC) };
        if rc != 0 {
            return Err(PoolError::Io {
                path: self.path.clone(),
                op: "msync",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Records that a recovery finished at `unix_ms` after `nanos` ns (shown by `eagle-admin info`).
    pub fn record_recovery(&self, unix_ms: u64, nanos: u64) {
        // Two independent words: a crash between them leaves a time without its duration, which
        // is only informational.
        state::store_durable(&self.region, LAST_RECOVERY_MS_AT, unix_ms);
        state::store_durable(&self.region, LAST_RECOVERY_NS_AT, nanos);
    }

    /// The last recovery's time (Unix ms) and duration (ns), if any.
    pub fn last_recovery(&self) -> Option<(u64, u64)> {
        let at = state::load(&self.region, LAST_RECOVERY_MS_AT);
        (at != 0).then(|| (at, state::load(&self.region, LAST_RECOVERY_NS_AT)))
    }

    /// The mapped region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Whether slots tag the records that own heap blocks (`INCOMPAT_OWNER_TAGS`).
    pub fn owner_tags(&self) -> bool {
        self.header().incompat_features & super::header::INCOMPAT_OWNER_TAGS != 0
    }

    /// Whether the heap uses the fine size classes (`INCOMPAT_FINE_CLASSES`).
    pub fn fine_classes(&self) -> bool {
        self.header().incompat_features & super::header::INCOMPAT_FINE_CLASSES != 0
    }

    /// Whether a large hash's parts are runs that grow in place (`INCOMPAT_APPEND_PARTS`).
    pub fn append_parts(&self) -> bool {
        self.header().incompat_features & super::header::INCOMPAT_APPEND_PARTS != 0
    }

    /// Whether a large hash's table doubles without rewriting its parts
    /// (`INCOMPAT_SHARED_PARTS`).
    pub fn shared_parts(&self) -> bool {
        self.header().incompat_features & super::header::INCOMPAT_SHARED_PARTS != 0
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the regions are.
    pub fn layout(&self) -> &Layout {
        &self.header.layout
    }

    /// The pool's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What backs the pool.
    pub fn kind(&self) -> PoolKind {
        self.region.kind()
    }

    /// The flush mode in use.
    pub fn flush_mode(&self) -> FlushMode {
        self.region.flush_mode()
    }

    /// Whether this open created the pool.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the previous user closed the pool cleanly (true for a new pool).
    pub fn was_clean(&self) -> bool {
        self.was_clean
    }

    /// The recovery epoch of this open (incremented on each open after a crash).
    pub fn recovery_epoch(&self) -> u64 {
        self.recovery_epoch
    }
}

fn new_pool_size(path: &Path, size: u64) -> Result<u64, PoolError> {
    let rounded = size.checked_next_multiple_of(4096).unwrap_or(u64::MAX);
    if rounded < MIN_POOL_SIZE || rounded > isize::MAX as u64 {
        return Err(PoolError::InvalidSize {
            path: path.to_path_buf(),
            size,
            why: format!("the size must be between {MIN_POOL_SIZE} bytes and the address space"),
        });
    }
    Ok(rounded)
}

/// Writes a new pool's header in place. The protocol leaves, after a crash at any point, either
/// a file that [`Header::probe`] reports as blank or still-creating (so creation is redone) or a
/// complete pool; never a half-written pool under the real magic.
fn initialize(region: &Region, path: &Path, wal_size: Option<u64>) -> Result<Header, PoolError> {
    let pool_size = region.len() as u64;
    let layout = Layout::for_size(pool_size, wal_size).map_err(|why| PoolError::InvalidSize {
        path: path.to_path_buf(),
        size: pool_size,
        why,
    })?;
    let header = Header {
        version: FORMAT_VERSION,
        uuid: random_uuid(),
        pool_size,
        layout,
        created_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        incompat_features: super::header::INCOMPAT_OWNER_TAGS
            | super::header::INCOMPAT_FINE_CLASSES
            | super::header::INCOMPAT_APPEND_PARTS
            | super::header::INCOMPAT_SHARED_PARTS,
        compat_features: 0,
    };
    let word0 = region.atomic_u64(0).expect("the header block is mapped");

    // Step 0: claim the file. Ordering: CREATING_MAGIC is durable before any other header byte is
    // written, so from here on a crash leaves a file probe() recognises as ours-in-creation; before
    // this persist the header block is still all zero (blank), since nothing else was written.
    word0.store(
        u64::from_le_bytes(CREATING_MAGIC),
        std::sync::atomic::Ordering::Release,
    );
    region.persist(0, 8);

    // Step 1: the identity (after its magic word), the shutdown state and a zeroed metadata
    // region. They may reach the media in any order and torn at 8 bytes; word 0 still says
    // "creating", so none of it is trusted until step 2.
    let identity = header.encode(CREATING_MAGIC);
    let mut rest = vec![0u8; (layout.meta.end() - 8) as usize];
    rest[..IDENTITY_LEN - 8].copy_from_slice(&identity[8..]);
    let state_at = (CLEAN_MARKER_AT - 8) as usize;
    rest[state_at..state_at + 8].copy_from_slice(&ShutdownState::Clean.word().to_le_bytes());
    let epoch_at = (RECOVERY_EPOCH_AT - 8) as usize;
    rest[epoch_at..epoch_at + 8].copy_from_slice(&1u64.to_le_bytes());
    // SAFETY: this thread has the pool file locked exclusively and no structure above exists
    // yet, so nothing else reads or writes these bytes; the range is inside the mapped pool.
    unsafe { region.write(8, &rest) };
    if !fault::armed(Fault::SkipHeaderBodyPersist) {
        region.persist(8, rest.len());
    }

    // Step 2: publish. Ordering: one 8-byte store of MAGIC, after the fence of step 1 made every
    // other header byte durable; a crash before its own persist leaves word 0 as either
    // CREATING_MAGIC (redo) or MAGIC (complete), never a torn mix.
    word0.store(
        u64::from_le_bytes(MAGIC),
        std::sync::atomic::Ordering::Release,
    );
    region.persist(0, 8);
    Ok(header)
}

fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    // SAFETY: getrandom writes at most `uuid.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(uuid.as_mut_ptr().cast(), uuid.len(), 0) };
    if n != uuid.len() as isize {
        // No entropy source: fall back to time and pid, still unique enough per machine.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        uuid[..12].copy_from_slice(&t.to_le_bytes()[..12]);
        uuid[12..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // RFC 4122 version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), PoolError> {
    // SAFETY: flock on an open descriptor; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(PoolError::Locked {
            path: path.to_path_buf(),
        })
    } else {
        Err(PoolError::Io {
            path: path.to_path_buf(),
            op: "flock",
            source: e,
        })
    }
}

fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        // Best effort: some file systems refuse fsync on directories.
        let _ = dir.sync_all();
    }
}
