//! Harness 4: EagleDB on real DAX in a qemu guest with emulated NVDIMMs (fsdax with MAP_SYNC
//! and devdax), a power loss (qemu killed) in the middle of a keyspace workload, and recovery.
//! The work is done by `crash-tests/dax/run.sh` (see its header); this test runs it and checks
//! its summary line.
//!
//! It needs qemu-system-x86, linux-image-amd64, busybox-static, ndctl, daxctl, cpio and
//! e2fsprogs (`.ci/run` installs them). Without qemu it fails, so a machine that lost them
//! cannot pass silently; `EAGLE_SKIP_DAX=1` skips it on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[test]
fn power_loss_on_fsdax_and_devdax_in_a_qemu_guest() {
    if std::env::var_os("EAGLE_SKIP_DAX").is_some_and(|v| v == "1") {
        eprintln!("dax: skipped (EAGLE_SKIP_DAX=1)");
        return;
    }
    assert!(
        on_path("qemu-system-x86_64"),
        "qemu-system-x86_64 is not installed: install qemu-system-x86 linux-image-amd64 \
         busybox-static ndctl daxctl cpio e2fsprogs (as .ci/run does), or set EAGLE_SKIP_DAX=1"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dax/run.sh");
    // The script builds the static payload with cargo into the same target directory (under the
    // target triple, so the host build is untouched) and keeps the guest there.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("CARGO_TARGET_TMPDIR has a parent")
                .to_path_buf()
        });
    let out = Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run crash-tests/dax/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(out.status.success(), "dax/run.sh failed: {}", out.status);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("dax: "))
        .expect("a summary line");
    assert!(
        summary.starts_with("dax: fsdax+devdax used, power-loss kill at ")
            && summary.ends_with(", check clean"),
        "unexpected summary: {summary}"
    );
}
