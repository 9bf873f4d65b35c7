#!/usr/bin/env bash
# Installs everything gammaray needs on a fresh Debian/Ubuntu machine, as root,
# idempotently: apt packages, pnpm, the workspace's dependencies, and a build.
set -euo pipefail
cd "$(dirname "$0")/.."

# e2fsprogs/sleuthkit/fdisk/gdisk/attr: images and oracles; nats-server: JetStream; qemu-*, libnbd-bin, fio:
# NBD clients and benchmarks; linux-image-amd64, busybox-static, cpio, kmod: the real guest (test/guest);
# lvm2: LVM test images (pvcreate/vgcreate/lvcreate on a loop device, no device-mapper needed);
# openssl: certificates for the TLS tests; libfuse2 (fuse-native's prebuilt addon links libfuse.so.2) and fuse3 (fusermount, which unmounts): the view's FUSE mount.
APT_PACKAGES=(e2fsprogs sleuthkit fdisk gdisk attr util-linux python3 python3-bson ca-certificates
  nats-server qemu-utils qemu-system-x86 libnbd-bin fio linux-image-amd64 busybox-static cpio kmod libfuse2 fuse3 openssl lvm2)

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# kubectl: test/deploy builds the Kubernetes overlays with `kubectl kustomize`. Debian's kubernetes-client only
# when no kubectl is installed at all (another package's kubectl owns the same path and is left alone).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing apt packages: ${missing[*]}; run this script as root or install them with apt-get" >&2
    exit 2
  fi
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js 20 or newer is required (https://nodejs.org or your distribution's nodejs package)" >&2
  exit 2
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "setup: Node.js $(node -v) is too old; gammaray needs Node.js 20 or newer" >&2
  exit 2
fi

PNPM_VERSION=$(node -p 'require("./package.json").packageManager.split("@")[1]')
if ! command -v pnpm >/dev/null 2>&1 || [[ $(pnpm -v 2>/dev/null) != "$PNPM_VERSION" ]]; then
  log "installing pnpm $PNPM_VERSION"
  npm install -g --silent "pnpm@$PNPM_VERSION" >/dev/null
fi

log "installing dependencies"
pnpm install --frozen-lockfile --reporter=silent
log "building"
pnpm -s build
log "ready"
