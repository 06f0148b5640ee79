//! Mapping a pool: device-dax character devices, fsdax files (MAP_SYNC) and plain files
//! (emulation). All `mmap`/`munmap` calls of the engine are here.

use std::ffi::c_void;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::PmemError;

/// What kind of memory backs a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// A device-dax character device (`/dev/daxX.Y`): loads and stores go straight to the media.
    DevDax,
    /// A file on a DAX-mounted file system, mapped with `MAP_SYNC`: the file system keeps its
    /// metadata durable, cache-line flushes make data durable.
    FsDax,
    /// Any other file, mapped `MAP_SHARED` through the page cache: survives a process crash; a
    /// power loss only with the `msync` flush mode.
    Emulated,
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolKind::DevDax => "devdax",
            PoolKind::FsDax => "fsdax",
            PoolKind::Emulated => "emulated",
        })
    }
}

/// A writable mapping of a whole pool file or device: shared, or copy-on-write after
/// [`Mapping::map_private`]. Unmapped on drop.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    kind: PoolKind,
    on_tmpfs: bool,
    path: PathBuf,
    file: File,
}

// SAFETY: the mapping is plain shared memory owned by this value; the pointer is only an address.
// Synchronising accesses to the bytes is the job of the layers above (atomics and locks).
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `file` (opened read-write at `path`). Regular files are mapped over their current
    /// length, which must be non-zero; a device-dax device over its sysfs size rounded down to its
    /// alignment. With `require_dax`, a file that cannot be mapped with `MAP_SYNC` is an error
    /// instead of falling back to emulation.
    pub fn map(file: File, path: &Path, require_dax: bool) -> Result<Mapping, PmemError> {
        let io = |op: &'static str, source: std::io::Error| PmemError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        let ft = meta.file_type();
        if ft.is_char_device() {
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            let (size, align) = devdax_geometry(path, major, minor)?;
            let len = size - size % align;
            let mapped = mmap_file(&file, path, len, libc::MAP_SHARED)?;
            return Ok(Mapping::new(
                mapped,
                len,
                PoolKind::DevDax,
                false,
                path,
                file,
            ));
        }
        if ft.is_block_device() {
            return Err(PmemError::DevDax {
                path: path.to_path_buf(),
                what: "block devices cannot be mapped with DAX: make a file system on it and \
                       mount it with -o dax, or reconfigure the namespace as devdax"
                    .into(),
            });
        }
        let len = meta.len();
        let on_tmpfs = is_tmpfs(&file);
        match mmap_file(&file, path, len, libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC) {
            Ok(mapped) => Ok(Mapping::new(
                mapped,
                len,
                PoolKind::FsDax,
                on_tmpfs,
                path,
                file,
            )),
            Err(PmemError::Io { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
            {
                if require_dax {
                    return Err(PmemError::DaxRequired {
                        path: path.to_path_buf(),
                        reason: format!("mmap with MAP_SYNC: {source}"),
                    });
                }
                let mapped = mmap_file(&file, path, len, libc::MAP_SHARED)?;
                if on_tmpfs {
                    advise_huge_pages(mapped, len);
                }
                Ok(Mapping::new(
                    mapped,
                    len,
                    PoolKind::Emulated,
                    on_tmpfs,
                    path,
                    file,
                ))
            }
            Err(e) => Err(e),
        }
        .map_err(|e| match e {
            PmemError::Io { source, op, .. } => io(op, source),
            e => e,
        })
    }

    /// Maps the regular file `file` (opened read-only is enough) copy-on-write, `MAP_PRIVATE`:
    /// stores change this process's copy only, never the file. The kind is `Emulated`.
    pub fn map_private(file: File, path: &Path) -> Result<Mapping, PmemError> {
        let meta = file.metadata().map_err(|source| PmemError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source,
        })?;
        if !meta.file_type().is_file() {
            return Err(PmemError::DevDax {
                path: path.to_path_buf(),
                what: "only a regular pool file can be opened copy-on-write".into(),
            });
        }
        let on_tmpfs = is_tmpfs(&file);
        let mapped = mmap_file(&file, path, meta.len(), libc::MAP_PRIVATE)?;
        Ok(Mapping::new(
            mapped,
            meta.len(),
            PoolKind::Emulated,
            on_tmpfs,
            path,
            file,
        ))
    }

    fn new(
        base: NonNull<u8>,
        len: u64,
        kind: PoolKind,
        on_tmpfs: bool,
        path: &Path,
        file: File,
    ) -> Mapping {
        Mapping {
            base,
            len: len as usize,
            kind,
            on_tmpfs,
            path: path.to_path_buf(),
            file,
        }
    }

    /// First byte of the mapping (page aligned).
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: `map` refuses empty files).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kind detected when mapping.
    pub fn kind(&self) -> PoolKind {
        self.kind
    }

    /// Whether the file lives on tmpfs (DRAM: survives a process crash, not a reboot).
    pub fn on_tmpfs(&self) -> bool {
        self.on_tmpfs
    }

    /// The path it was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file or device behind the mapping.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Allocates the file's blocks for the whole mapping (a new fsdax pool): without it a
    /// write through the `MAP_SYNC` mapping to a hole allocates on the fault, and a full file
    /// system turns that write into SIGBUS instead of an error at creation.
    pub fn preallocate(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; posix_fallocate reads no memory of ours.
        let rc =
            unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, self.len as libc::off_t) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    }

    /// Has the kernel fault in the pages of `offset..offset + len` (clipped to the mapping)
    /// writable, changing no byte (`MADV_POPULATE_WRITE`): the heap calls it for a chunk it
    /// has just handed out, which writers are about to fill, so that one call takes the page
    /// faults (allocating the pages of a pool on tmpfs, the page tables of a DAX one) that the
    /// writers would otherwise take one page at a time, each while serving a command. An error
    /// (a kernel before 5.14, or a mapping that refuses it) changes nothing: the pages are
    /// faulted in as they are written.
    pub fn populate_write(&self, offset: u64, len: u64) -> std::io::Result<()> {
        const PAGE: u64 = 4096;
        let start = offset & !(PAGE - 1);
        let end = offset.saturating_add(len).min(self.len as u64);
        if start >= end {
            return Ok(());
        }
        // SAFETY: `start..end` lies inside the mapping (clipped above; `start` is page
        // aligned, as the mapping's base is); the advice only faults pages in, it reads and
        // writes none of their bytes, so no Rust reference to them is affected.
        let rc = unsafe {
            libc::madvise(
                self.base.as_ptr().add(start as usize).cast::<c_void>(),
                (end - start) as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("len", &self.len)
            .field("on_tmpfs", &self.on_tmpfs)
            .finish()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is exactly the mapping created in `map`, and nothing derived
        // from it outlives `self` (regions and persisters borrow or own the mapping).
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}

fn mmap_file(file: &File, path: &Path, len: u64, flags: i32) -> Result<NonNull<u8>, PmemError> {
    let invalid = |why| PmemError::InvalidLength {
        path: path.to_path_buf(),
        len,
        why,
    };
    if len == 0 {
        return Err(invalid("the file is empty"));
    }
    let len_usize = usize::try_from(len)
        .ok()
        .filter(|&l| l <= isize::MAX as usize)
        .ok_or_else(|| invalid("larger than the address space"))?;
    // SAFETY: a fresh mapping chosen by the kernel (addr = NULL) aliases no Rust object; the fd is
    // open for the duration of the call. The result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len_usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(PmemError::Io {
            path: path.to_path_buf(),
            op: "mmap",
            source: std::io::Error::last_os_error(),
        });
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| invalid("mmap returned a null address"))
}

/// Asks for 2 MiB pages on a pool file on tmpfs, the page size DAX maps a pool with: a lookup's
/// misses then walk no 4 KiB page tables (positive searches 25% faster in eagle-bench, median of
/// 3 rounds, see docs/benchmarks.md). The kernel honours it where the mount allows (`huge=advise`,
/// `within_size` or `always`; Debian mounts /dev/shm with `huge=never`) and ignores it
/// elsewhere; an error (a kernel without transparent huge pages) changes nothing but the page
/// size, so it is not reported.
fn advise_huge_pages(base: NonNull<u8>, len: u64) {
    // SAFETY: `base..base+len` is the mapping `mmap_file` just created (its length checked to
    // fit in a usize there); MADV_HUGEPAGE changes how the kernel backs it, never its contents.
    let _ = unsafe {
        libc::madvise(
            base.as_ptr().cast::<c_void>(),
            len as usize,
            libc::MADV_HUGEPAGE,
        )
    };
}

fn is_tmpfs(file: &File) -> bool {
    // SAFETY: statfs is plain data; zeroed is a valid value for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open and `st` is a valid out-pointer.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// Size and mapping alignment of a device-dax device, from sysfs.
fn devdax_geometry(path: &Path, major: u32, minor: u32) -> Result<(u64, u64), PmemError> {
    let mut dirs = vec![PathBuf::from(format!("/sys/dev/char/{major}:{minor}"))];
    if let Some(name) = path.file_name() {
        dirs.push(Path::new("/sys/bus/dax/devices").join(name));
    }
    let mut last = String::from("no sysfs directory found");
    for dir in &dirs {
        match devdax_geometry_in(dir) {
            Ok(g) => return Ok(g),
            Err(what) => last = format!("{}: {what}", dir.display()),
        }
    }
    Err(PmemError::DevDax {
        path: path.to_path_buf(),
        what: last,
    })
}

/// Reads `size` and `align` from a device-dax sysfs directory. Kernels before 5.1 have no
/// `align` attribute; devdax namespaces are then aligned to 2 MiB.
pub(crate) fn devdax_geometry_in(dir: &Path) -> Result<(u64, u64), String> {
    let read = |name: &str| -> Result<Option<u64>, String> {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => parse_sysfs_number(&s)
                .map(Some)
                .ok_or_else(|| format!("{name}: not a number: {:?}", s.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    let size = read("size")?.ok_or("no size attribute")?;
    let align = read("align")?.unwrap_or(2 << 20);
    if align == 0 || !align.is_power_of_two() {
        return Err(format!("align {align} is not a power of two"));
    }
    if size < align {
        return Err(format!("size {size} is smaller than its alignment {align}"));
    }
    Ok((size, align))
}

fn parse_sysfs_number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("eagle-mapping-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn new_file(path: &Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn devdax_geometry_reads_size_and_align_from_sysfs() {
        let dir = tmp("sysfs");
        std::fs::write(dir.join("size"), "1071644672\n").unwrap();
        std::fs::write(dir.join("align"), "2097152\n").unwrap();
        assert_eq!(devdax_geometry_in(&dir), Ok((1071644672, 2097152)));
        std::fs::remove_file(dir.join("align")).unwrap();
        assert_eq!(devdax_geometry_in(&dir), Ok((1071644672, 2 << 20)));
        std::fs::write(dir.join("align"), "3000\n").unwrap();
        assert!(
            devdax_geometry_in(&dir)
                .unwrap_err()
                .contains("power of two")
        );
        std::fs::write(dir.join("align"), "0x1000\n").unwrap();
        std::fs::write(dir.join("size"), "garbage").unwrap();
        assert!(
            devdax_geometry_in(&dir)
                .unwrap_err()
                .contains("not a number")
        );
        std::fs::remove_file(dir.join("size")).unwrap();
        assert!(devdax_geometry_in(&dir).unwrap_err().contains("no size"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plain_file_falls_back_to_emulation_or_refuses_with_require_dax() {
        let dir = tmp("fallback");
        let path = dir.join("p");
        let f = new_file(&path);
        f.set_len(1 << 20).unwrap();
        let m = Mapping::map(f.try_clone().unwrap(), &path, false).unwrap();
        assert_eq!(m.kind(), PoolKind::Emulated);
        assert_eq!(m.len(), 1 << 20);
        drop(m);
        let e = Mapping::map(f, &path, true).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PmemError::DaxRequired { .. }), "{msg}");
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains("MAP_SYNC"),
            "{msg}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stores_through_a_private_mapping_never_reach_the_file() {
        let dir = tmp("private");
        let path = dir.join("p");
        let f = new_file(&path);
        f.set_len(8192).unwrap();
        drop(f);
        let read_only = File::open(&path).unwrap();
        let m = Mapping::map_private(read_only, &path).unwrap();
        assert_eq!(m.kind(), PoolKind::Emulated);
        // SAFETY: offset 4096 is inside the 8 KiB mapping and nothing else accesses it.
        unsafe { m.base().add(4096).write(0xA5) };
        // SAFETY: as above.
        assert_eq!(unsafe { m.base().add(4096).read() }, 0xA5);
        drop(m);
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The `VmFlags` line of this process's mapping that starts at `base`, if the kernel
    /// reports one.
    fn vm_flags(base: *mut u8) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = format!("{:x}-", base as usize);
        smaps
            .lines()
            .skip_while(|l| !l.starts_with(&start))
            .find(|l| l.starts_with("VmFlags:"))
            .map(str::to_string)
    }

    #[test]
    fn pools_on_tmpfs_ask_for_huge_pages_and_others_do_not() {
        // A kernel without transparent huge pages refuses the advice (and so does the code,
        // silently); nothing to check there.
        if !Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let shm = Path::new("/dev/shm");
        let dirs = [
            tmp("huge"),
            shm.join(format!("eagle-mapping-{}-huge", std::process::id())),
        ];
        let mut saw_tmpfs = false;
        for dir in dirs.iter().filter(|d| std::fs::create_dir_all(d).is_ok()) {
            let path = dir.join("p");
            let f = new_file(&path);
            f.set_len(4 << 20).unwrap();
            let m = Mapping::map(f, &path, false).unwrap();
            saw_tmpfs |= m.on_tmpfs();
            let Some(flags) = vm_flags(m.base()) else {
                drop(m);
                let _ = std::fs::remove_dir_all(dir);
                eprintln!("skipped: /proc/self/smaps reports no VmFlags");
                return;
            };
            // `hg`: the mapping carries MADV_HUGEPAGE.
            let advised = flags.split_whitespace().any(|f| f == "hg");
            assert_eq!(advised, m.on_tmpfs(), "{}: {flags}", path.display());
            drop(m);
            std::fs::remove_dir_all(dir).unwrap();
        }
        if !saw_tmpfs {
            eprintln!("no tmpfs directory (/dev/shm): only the non-tmpfs case was checked");
        }
    }

    #[test]
    fn empty_file_is_refused_with_the_path() {
        let dir = tmp("empty");
        let path = dir.join("p");
        let f = new_file(&path);
        let e = Mapping::map(f, &path, false).err().unwrap();
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stores_through_the_mapping_reach_the_file() {
        let dir = tmp("store");
        let path = dir.join("p");
        let f = new_file(&path);
        f.set_len(8192).unwrap();
        let m = Mapping::map(f, &path, false).unwrap();
        // SAFETY: offset 4096 is inside the 8 KiB mapping and nothing else accesses it.
        unsafe { m.base().add(4096).write(0xA5) };
        drop(m);
        assert_eq!(std::fs::read(&path).unwrap()[4096], 0xA5);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
