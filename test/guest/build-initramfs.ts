import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

/**
 * Kernel modules the guest needs to see a virtio disk and mount ext4, in load order once expanded by
 * `modprobe --show-depends`. `crc32c_generic` comes before `ext4` on its own because ext4 asks the crypto API for
 * "crc32c" by name at mount time (metadata_csum), which is not a symbol dependency modules.dep would record.
 */
export const GUEST_ROOT_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4', 'loop'] as const;

/** Path inside the guest where the per-run workload script is placed (see {@link workloadArchive}). */
export const GUEST_WORKLOAD_PATH = '/workload';

/** Console line the guest prints after the workload ran and /mnt was unmounted: `GAMMARAY-WORKLOAD-EXIT=<0-255>`. */
export const EXIT_MARKER = 'GAMMARAY-WORKLOAD-EXIT=';

/** Console line the guest init prints when it cannot run the workload at all (no disk, mount failed, ...). */
export const ERROR_MARKER = 'GAMMARAY-GUEST-ERROR=';

/**
 * The guest's /init. It owns the protocol with the host: the workload runs with cwd /mnt and `MNT=/mnt`, stdin
 * from /dev/null, stdout/stderr on the serial console; then init kills leftovers, syncs, unmounts (so the ext4
 * journal is checkpointed and the superblock marked clean on the NBD export), prints the exit marker and powers
 * off. Any failure before the workload prints the error marker and powers off, so the host sees "never reported"
 * instead of waiting for its timeout. The journal commit interval is left at the kernel default on purpose:
 * capture tests must see the write pattern an ordinary guest produces.
 */
export const INIT_SCRIPT = `#!/bin/sh
export PATH=/bin:/usr/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() {
  echo
  echo "${ERROR_MARKER}$*"
  poweroff -f
  sleep 60
}
while read -r m; do
  # A module that does not fit this CPU (crc32c-intel without SSE4.2 under TCG) may fail; ext4 falls back.
  insmod "/lib/modules/$m" 2>/dev/null || echo "gammaray-init: insmod $m failed"
done < /etc/gammaray-modules
# The device to mount: vda, or a partition of it named on the kernel command line (gammaray.dev=vda2), or a
# window of one from a byte offset on (gammaray.dev=vda2@1048576: an LVM linear logical volume, through a loop
# device, as device-mapper would map it).
dev=vda
for arg in $(cat /proc/cmdline); do
  case "$arg" in gammaray.dev=*) dev="\${arg#gammaray.dev=}" ;; esac
done
offset=
case "$dev" in *@*) offset="\${dev#*@}"; dev="\${dev%@*}" ;; esac
i=0
while [ ! -b /dev/$dev ]; do
  i=$((i + 1))
  [ "$i" -gt 200 ] && fail "no /dev/$dev after 20 s"
  usleep 100000
done
if [ -n "$offset" ]; then
  losetup -o "$offset" /dev/loop0 /dev/$dev || fail "cannot map /dev/$dev from byte $offset on /dev/loop0"
  dev=loop0
fi
mount -t ext4 -o rw /dev/$dev /mnt || fail "cannot mount /dev/$dev as ext4"
[ -f ${GUEST_WORKLOAD_PATH} ] || fail "no ${GUEST_WORKLOAD_PATH} in the initramfs"
cd /mnt
MNT=/mnt sh ${GUEST_WORKLOAD_PATH} </dev/null
status=$?
cd /
kill -KILL -1 2>/dev/null
sync
if ! umount /mnt; then
  echo "gammaray-init: umount /mnt failed, remounting read-only"
  mount -o remount,ro /mnt || echo "gammaray-init: remount ro failed"
fi
sync
echo
echo "${EXIT_MARKER}$status"
poweroff -f
sleep 60
`;

/** One member of a newc cpio archive. */
export type CpioEntry =
  | { readonly type: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly type: 'file'; readonly path: string; readonly data: Buffer; readonly mode?: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string }
  | { readonly type: 'chardev'; readonly path: string; readonly major: number; readonly minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const NEWC_HEADER_SIZE = 110;

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

/**
 * Encodes entries as a newc ("070701") cpio archive, the format the kernel unpacks into its initramfs. Written here
 * rather than with cpio(1) so device nodes (/dev/console) need no mknod privilege and the bytes are reproducible
 * (mtime 0, uid/gid 0). Paths are relative to the archive root, without a leading slash.
 */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, data: Buffer, rdevMajor = 0, rdevMinor = 0): void => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const fields = [ino++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
    parts.push(header, nameBytes, pad4(NEWC_HEADER_SIZE + nameBytes.length), data, pad4(data.length));
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    switch (e.type) {
      case 'dir':
        push(name, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0));
        break;
      case 'file':
        push(name, S_IFREG | (e.mode ?? 0o644), e.data);
        break;
      case 'symlink':
        push(name, S_IFLNK | 0o777, Buffer.from(e.target, 'utf8'));
        break;
      case 'chardev':
        push(name, S_IFCHR | 0o600, Buffer.alloc(0), e.major, e.minor);
        break;
    }
  }
  push('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}

/**
 * A small uncompressed cpio holding only the workload, to append to the cached base initramfs. The kernel unpacks
 * concatenated archives in order, so one cached base serves every run.
 */
export function workloadArchive(script: string): Buffer {
  return cpioNewc([{ type: 'file', path: GUEST_WORKLOAD_PATH, data: Buffer.from(script, 'utf8'), mode: 0o755 }]);
}

/**
 * Base initramfs followed by the workload archive. The base is padded to 4 bytes because the kernel only looks
 * for an uncompressed cpio magic at 4-aligned offsets after a compressed archive.
 */
export function initrdWithWorkload(base: Buffer, script: string): Buffer {
  return Buffer.concat([base, pad4(base.length), workloadArchive(script)]);
}

function capture(command: string, args: readonly string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${Buffer.concat(err).toString().trim()}`));
    });
  });
}

/** Where a guest kernel and its initramfs live on the host. */
export interface GuestImage {
  readonly kernelVersion: string;
  /** `/boot/vmlinuz-<version>`, passed to QEMU `-kernel`. */
  readonly kernel: string;
  /** Cached base initramfs (gzip-compressed newc cpio) without a workload. */
  readonly initramfs: string;
}

/** Options for {@link buildInitramfs}. */
export interface BuildInitramfsOptions {
  /** Kernel version (a `/lib/modules` directory name); default `GAMMARAY_GUEST_KERNEL` or the newest in /boot. */
  readonly kernelVersion?: string;
  /** Cache directory; default `GAMMARAY_GUEST_CACHE` or `<repo>/.cache/guest`. */
  readonly cacheDir?: string;
  /** Static busybox binary; default `/bin/busybox`. */
  readonly busybox?: string;
}

/** `<repo>/.cache/guest` unless `GAMMARAY_GUEST_CACHE` says otherwise. */
export function defaultGuestCacheDir(): string {
  return process.env.GAMMARAY_GUEST_CACHE ?? fileURLToPath(new URL('../../.cache/guest', import.meta.url));
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** The newest kernel that has both `/boot/vmlinuz-<v>` and `/lib/modules/<v>` (the host's `uname -r` may be neither). */
export async function findGuestKernelVersion(): Promise<string> {
  const fromEnv = process.env.GAMMARAY_GUEST_KERNEL;
  if (fromEnv) return fromEnv;
  const boot = await readdir('/boot').catch(() => [] as string[]);
  const modules = new Set(await readdir('/lib/modules').catch(() => [] as string[]));
  const versions = boot
    .filter((f) => f.startsWith('vmlinuz-'))
    .map((f) => f.slice('vmlinuz-'.length))
    .filter((v) => modules.has(v))
    .sort(compareVersions);
  const newest = versions.at(-1);
  if (newest === undefined) {
    throw new Error('no guest kernel: need /boot/vmlinuz-<v> and /lib/modules/<v> (apt-get install linux-image-amd64)');
  }
  return newest;
}

/**
 * Module files in load order for `kernelVersion`, from `modprobe --show-depends` (which also resolves softdeps
 * and reports built-ins, which need no file). Order is kept, duplicates dropped.
 */
export async function resolveModules(kernelVersion: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of GUEST_ROOT_MODULES) {
    const out = (await capture('modprobe', ['-S', kernelVersion, '--show-depends', name])).toString('utf8');
    for (const line of out.split('\n')) {
      const m = /^insmod (\S+)/.exec(line);
      if (m?.[1] !== undefined && !files.includes(m[1])) files.push(m[1]);
    }
  }
  return files;
}

/** Module bytes uncompressed: busybox insmod does not read `.ko.xz`/`.ko.zst` in every build. */
async function readModule(path: string): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFile(path);
  if (path.endsWith('.ko.gz')) return gunzipSync(await readFile(path));
  if (path.endsWith('.ko.xz')) return capture('xz', ['-dc', path]);
  if (path.endsWith('.ko.zst')) return capture('zstd', ['-dc', path]);
  throw new Error(`unknown kernel module compression: ${path}`);
}

/**
 * Host tools the guest gets besides busybox (which has no xattr applets), with the shared libraries `ldd`
 * lists for them: `setfattr`/`getfattr` from Debian's `attr` package, and util-linux's `fallocate` (busybox's
 * has no modes: no `--zero-range`, `--punch-hole`; /bin comes first in PATH, so plain `fallocate` stays busybox's),
 * when installed.
 */
const GUEST_EXTRA_TOOLS = ['/usr/bin/setfattr', '/usr/bin/getfattr', '/usr/bin/fallocate'];

async function extraBinaries(): Promise<{ path: string; data: Buffer }[]> {
  const out = new Map<string, Buffer>();
  for (const tool of GUEST_EXTRA_TOOLS) {
    const data = await readFile(tool).catch(() => undefined);
    if (!data) continue;
    out.set(tool.slice(1), data);
    const deps = (await capture('ldd', [tool])).toString('utf8');
    for (const m of deps.matchAll(/(\/\S+\.so[.\d]*)/g)) {
      const lib = m[1]!; // ok: the group always matches
      if (!out.has(lib.slice(1))) out.set(lib.slice(1), await readFile(lib));
    }
  }
  return [...out].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([path, data]) => ({ path, data }));
}

/** Ensures parent directories of `path` are listed in `entries` before it. */
function addParents(path: string, dirs: Set<string>, entries: CpioEntry[]): void {
  const segments = path.split('/').slice(0, -1);
  for (let i = 1; i <= segments.length; i++) {
    const dir = segments.slice(0, i).join('/');
    if (!dirs.has(dir)) {
      dirs.add(dir);
      entries.push({ type: 'dir', path: dir });
    }
  }
}

/**
 * Builds (or finds in the cache) the base initramfs: static busybox with applet symlinks in /bin, the modules
 * for virtio-blk + ext4 under /lib/modules, the list /etc/gammaray-modules in load order, /dev/console, and
 * {@link INIT_SCRIPT} as /init. The cache key covers the kernel version, the init script, the module list and
 * the busybox binary, so changing any of them rebuilds. Written to a temp name and renamed, so concurrent test
 * workers never see half a file (they may both build; the result is byte-identical).
 */
export async function buildInitramfs(options: BuildInitramfsOptions = {}): Promise<GuestImage> {
  const kernelVersion = options.kernelVersion ?? (await findGuestKernelVersion());
  const kernel = `/boot/vmlinuz-${kernelVersion}`;
  await stat(kernel).catch((e: unknown) => {
    throw new Error(`guest kernel ${kernel} missing (apt-get install linux-image-amd64)`, { cause: e });
  });
  const cacheDir = options.cacheDir ?? defaultGuestCacheDir();
  const busyboxPath = options.busybox ?? '/bin/busybox';
  const busybox = await readFile(busyboxPath).catch((e: unknown) => {
    throw new Error(`static busybox ${busyboxPath} missing (apt-get install busybox-static)`, { cause: e });
  });
  const modules = await resolveModules(kernelVersion);
  const extras = await extraBinaries();
  const key = createHash('sha256')
    .update(JSON.stringify({ v: 2, kernelVersion, init: INIT_SCRIPT, modules, extras: extras.map((e) => [e.path, e.data.length]) }))
    .update(busybox)
    .digest('hex')
    .slice(0, 16);
  const initramfs = join(cacheDir, `initramfs-${kernelVersion}-${key}.cpio.gz`);
  if (await stat(initramfs).then((s) => s.size > 0, () => false)) return { kernelVersion, kernel, initramfs };

  const applets = (await capture(busyboxPath, ['--list'])).toString('utf8').split('\n').filter((a) => /^[\w.[-]+$/.test(a));
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  for (const d of ['bin', 'dev', 'proc', 'sys', 'mnt', 'tmp', 'etc', 'lib/modules']) addParents(`${d}/x`, dirs, entries);
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1 });
  entries.push({ type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 });
  for (const a of applets) if (a !== 'busybox') entries.push({ type: 'symlink', path: `bin/${a}`, target: 'busybox' });
  const order: string[] = [];
  for (const file of modules) {
    const name = basename(file).replace(/\.ko(\.\w+)?$/, '.ko');
    entries.push({ type: 'file', path: `lib/modules/${name}`, data: await readModule(file) });
    order.push(name);
  }
  entries.push({ type: 'file', path: 'etc/gammaray-modules', data: Buffer.from(`${order.join('\n')}\n`) });
  for (const e of extras) {
    addParents(e.path, dirs, entries);
    entries.push({ type: 'file', path: e.path, data: e.data, mode: 0o755 });
  }
  entries.push({ type: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 });

  await mkdir(cacheDir, { recursive: true });
  const tmp = `${initramfs}.${process.pid}.tmp`;
  await writeFile(tmp, gzipSync(cpioNewc(entries), { level: 6 }));
  await rename(tmp, initramfs);
  return { kernelVersion, kernel, initramfs };
}
