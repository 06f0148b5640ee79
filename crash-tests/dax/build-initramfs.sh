#!/usr/bin/env bash
# build-initramfs.sh OUT_DIR: the guest's base initramfs for crash-tests/dax/run.sh, from the
# host's Debian packages (linux-image-amd64, busybox-static, ndctl, daxctl, e2fsprogs, cpio):
# busybox, the nvdimm/dax/ext4 modules, ndctl/daxctl/mke2fs with their libraries, and ./init.
# Writes OUT_DIR/base.cpio.gz and OUT_DIR/vmlinuz. Adapted from shared/dax-vm/build-initramfs.sh;
# here it fails with a clear message when something is missing, and picks the newest kernel
# that has its modules installed (KERNEL=version overrides).
set -euo pipefail
OUT=${1:?usage: build-initramfs.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
die() { echo "build-initramfs: $*" >&2; exit 1; }

K=${KERNEL:-}
if [ -z "$K" ]; then
    for v in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V); do
        [ -d "/lib/modules/$v/kernel" ] && K=$v
    done
fi
[ -n "$K" ] && [ -r "/boot/vmlinuz-$K" ] || die "no readable /boot/vmlinuz-* with modules (install linux-image-amd64)"
for tool in /usr/bin/busybox /usr/bin/ndctl /usr/bin/daxctl /sbin/mke2fs /etc/mke2fs.conf; do
    [ -e "$tool" ] || die "$tool missing (install busybox-static ndctl daxctl e2fsprogs)"
done
command -v cpio >/dev/null || die "cpio missing"
# Debian's busybox-static is a static binary; the dynamic `busybox` package's is not.
(ldd /usr/bin/busybox 2>&1 || true) | grep -q -E 'statically linked|not a dynamic executable' ||
    die "/usr/bin/busybox is not static (install busybox-static)"

R=$OUT/rootfs
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,mnt/pmem,tmp,run,payload,lib/modules} "$OUT"
cp /usr/bin/busybox "$R/bin/busybox"
M=/lib/modules/$K/kernel
# Load order matters: insmod has no dependency resolution.
for m in drivers/nvdimm/libnvdimm drivers/acpi/nfit/nfit drivers/nvdimm/nd_btt drivers/nvdimm/nd_pmem \
         drivers/dax/device_dax drivers/dax/dax_pmem lib/crc16 crypto/crc32c_generic fs/mbcache \
         fs/jbd2/jbd2 fs/ext4/ext4; do
    [ -f "$M/$m.ko" ] || die "$M/$m.ko missing (compressed modules are not supported)"
    cp "$M/$m.ko" "$R/lib/modules/"
    echo "$(basename "$m").ko" >> "$R/lib/modules/order"
done
for b in /usr/bin/ndctl /usr/bin/daxctl /sbin/mke2fs; do
    cp "$b" "$R/sbin/"
    for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
done
cp /etc/mke2fs.conf "$R/etc/"
cp "$HERE/init" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/base.cpio.gz.tmp"
mv "$OUT/base.cpio.gz.tmp" "$OUT/base.cpio.gz"
cp "/boot/vmlinuz-$K" "$OUT/vmlinuz"
rm -rf "$R"
echo "build-initramfs: kernel $K, $(du -h "$OUT/base.cpio.gz" | cut -f1) initramfs in $OUT"
