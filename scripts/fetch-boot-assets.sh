#!/usr/bin/env bash
# Fetches, once, what test/rootfs/boot.test.ts boots: Debian's current amd64
# kernel (linux-image-amd64's dependency) and busybox-static, from Debian's
# archive with apt-get download. Cached in ${XDG_CACHE_HOME:-~/.cache}/lapin-test
# (or $LAPIN_TEST_CACHE). Prints KERNEL=<vmlinuz>, BUSYBOX=<busybox> and
# MODULES=<lib/modules/VERSION> lines. Debian builds virtio_blk and ext4 as
# modules; test/rootfs/block-boot.test.ts loads them from MODULES.
# With the argument arm64: Debian's arm64 kernel and busybox-static:arm64
# (dpkg --add-architecture arm64 first, as root), no modules; KERNEL is the
# uncompressed arm64 Image (Debian 12 ships it gzipped as vmlinuz; qemu takes
# either, lapin's kernel header check reads the Image's).
set -euo pipefail
arch="${1:-amd64}"
case "$arch" in amd64) suffix='' ;; arm64) suffix=':arm64' ;; *) echo "usage: $0 [amd64|arm64]" >&2; exit 2 ;; esac
cache="${LAPIN_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lapin-test}"
mkdir -p "$cache"
# Test files run in parallel and share the cache: one fetch at a time.
exec 9>"$cache/.lock"
flock 9

# The package lists may be missing in a fresh container; root can fetch them.
depends() {
  apt-cache depends "$1" 2>/dev/null | awk -v want="$2" '$1 == "Depends:" && $2 ~ want { print $2; exit }'
}
if [ "$arch" = arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  if [ "$(id -u)" != 0 ]; then
    echo "arm64 packages need dpkg --add-architecture arm64 (as root), then apt-get update" >&2
    exit 1
  fi
  dpkg --add-architecture arm64
  apt-get update -qq >&2
fi
kernel_pkg=$(depends "linux-image-$arch$suffix" '^linux-image-[0-9]' || true)
if [ -z "$kernel_pkg" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >&2
  kernel_pkg=$(depends "linux-image-$arch$suffix" '^linux-image-[0-9]' || true)
fi
if [ -z "$kernel_pkg" ]; then
  echo "cannot find Debian's kernel package (apt-cache depends linux-image-amd64); run apt-get update" >&2
  exit 1
fi
busybox_version=$(apt-cache policy "busybox-static$suffix" | awk '/Candidate:/ { print $2; exit }')
if [ -z "$busybox_version" ] || [ "$busybox_version" = "(none)" ]; then
  echo "busybox-static is not in the package lists; run apt-get update" >&2
  exit 1
fi

# Downloads package $1 (=version $2 when given) and unpacks paths $3... into directory $4 once.
fetch() {
  local pkg=$1 dir=$2; shift 2
  # .complete lists the paths unpacked, so asking for more paths fetches again.
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$*" ]; then return 0; fi
  rm -rf "$dir" "$dir.tmp"
  mkdir -p "$dir.tmp"
  local sandbox=(); if [ "$(id -u)" = 0 ]; then sandbox=(-o APT::Sandbox::User=root); fi
  (cd "$dir.tmp" && apt-get download -qq "${sandbox[@]}" "$pkg" >&2)
  local deb
  deb=$(ls "$dir.tmp"/*.deb)
  # Only the files the test needs: a kernel package's modules are hundreds of megabytes.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" --wildcards "$@"
  rm -f "$deb"
  printf '%s' "$*" >"$dir.tmp/.complete"
  mv "$dir.tmp" "$dir"
}

if [ "$arch" = arm64 ]; then
  kernel_dir="$cache/${kernel_pkg//:/_}"
  fetch "$kernel_pkg" "$kernel_dir" './boot/vmlinuz-*'
  busybox_dir="$cache/busybox-static_${busybox_version//:/%3a}_arm64"
  fetch "busybox-static$suffix=$busybox_version" "$busybox_dir" './bin/busybox'
  compressed=$(ls "$kernel_dir"/boot/vmlinuz-* | head -n 1)
  image="$kernel_dir/Image"
  if [ ! -f "$image" ]; then
    if gzip -t "$compressed" 2>/dev/null; then gzip -dc "$compressed" >"$image.tmp"; else cp "$compressed" "$image.tmp"; fi
    mv "$image.tmp" "$image"
  fi
  echo "KERNEL=$image"
  echo "BUSYBOX=$busybox_dir/bin/busybox"
  exit 0
fi

kernel_dir="$cache/$kernel_pkg"
# The kernel, and the modules a virtio disk holding ext4 needs (with their dependencies).
modules='./lib/modules/*/kernel'
fetch "$kernel_pkg" "$kernel_dir" './boot/vmlinuz-*' \
  "$modules/drivers/virtio/*" "$modules/drivers/block/virtio_blk.ko*" \
  "$modules/fs/ext4/*" "$modules/fs/jbd2/*" "$modules/fs/mbcache.ko*" \
  "$modules/lib/crc16.ko*" "$modules/lib/libcrc32c.ko*" "$modules/crypto/crc32c_generic.ko*"
# LAPIN_BOOT_9P=1: also the 9p modules (test/run/existing-container-boot.test.ts shares a rootfs
# over virtio-9p, as urunc's mountRootfs does), in a directory of their own so the one above stays.
if [ "${LAPIN_BOOT_9P:-}" = 1 ]; then
  fetch "$kernel_pkg" "$kernel_dir-9p" "$modules/net/9p/*" "$modules/fs/9p/*" "$modules/fs/netfs/*" "$modules/fs/fscache/*"
fi
busybox_dir="$cache/busybox-static_${busybox_version//:/%3a}"
fetch "busybox-static=$busybox_version" "$busybox_dir" './bin/busybox'

kernel=$(ls "$kernel_dir"/boot/vmlinuz-* | head -n 1)
echo "KERNEL=$kernel"
echo "BUSYBOX=$busybox_dir/bin/busybox"
echo "MODULES=$(ls -d "$kernel_dir"/lib/modules/* | head -n 1)"
if [ "${LAPIN_BOOT_9P:-}" = 1 ]; then echo "MODULES_9P=$(ls -d "$kernel_dir-9p"/lib/modules/* | head -n 1)"; fi
