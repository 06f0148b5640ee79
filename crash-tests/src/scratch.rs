//! Scratch files for crash images, on /dev/shm when it exists (images are written and reopened
//! thousands of times; DRAM keeps that fast).

use std::path::{Path, PathBuf};

/// A directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory named after `name` and the process.
    pub fn new(name: &str) -> Scratch {
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = root.join(format!("eagle-crash-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch(dir)
    }

    /// A path inside the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// Writes `bytes` to `file` inside the directory, replacing its contents, and returns its
    /// path. The file is overwritten in place, not truncated first: on tmpfs that keeps its
    /// pages, so thousands of images cost copies rather than page frees and allocations.
    pub fn write(&self, file: &str, bytes: &[u8]) -> PathBuf {
        use std::io::Write;
        let p = self.path(file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .expect("open crash image");
        f.write_all(bytes).expect("write crash image");
        f.set_len(bytes.len() as u64).expect("size crash image");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
