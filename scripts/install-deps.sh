#!/usr/bin/env bash
# Installs the Debian packages the consumer tests drive, when they are missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have skopeo || need+=(skopeo)
# The registry tests run distribution 2.8 and make htpasswd files and certificates.
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
have htpasswd || need+=(apache2-utils)
have openssl || need+=(openssl)
# test/registry/push.test.ts reads the max RSS of a push from GNU time.
[ -x /usr/bin/time ] || need+=(time)
have umoci || need+=(umoci)
have containerd || need+=(containerd)
have ctr || need+=(containerd)
have dockerd || need+=(docker.io)
have podman || need+=(podman)
have bsdcpio || need+=(libarchive-tools)
have cpio || need+=(cpio)
have e2fsck || need+=(e2fsprogs)
have mke2fs || need+=(e2fsprogs)
have debugfs || need+=(e2fsprogs)
# test/rootfs/boot.test.ts and block-boot.test.ts boot Debian's kernel (fetched by
# scripts/fetch-boot-assets.sh) in qemu; block-boot packs its helper initrd with cpio.
have qemu-system-x86_64 || need+=(qemu-system-x86)
# test/run/multiarch-boot.test.ts boots the arm64 image of an index under TCG.
have qemu-system-aarch64 || need+=(qemu-system-arm)
have zstd || need+=(zstd)
# test/consumers/engines.test.ts: the recording OCI runtime reads config.json with jq.
have jq || need+=(jq)
# test/inspect/buildah.test.ts judges images another tool (buildah) wrote.
have buildah || need+=(buildah)
# test/export/fsync.test.ts reads the fsync and rename calls of a build with strace.
have strace || need+=(strace)
# test/cli: terminal behaviour through tmux; the man page rendered by man -l (groff);
# the zsh and fish completion scripts run by their shells.
have tmux || need+=(tmux)
have zsh || need+=(zsh)
have fish || need+=(fish)
have groff || need+=(groff-base)
have man || need+=(man-db)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${need[*]}; install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
