/**
 * `gammaray up`: the whole pipeline on one machine, one command. Starts (unless `--nats` names a server) an
 * embedded `nats-server -js` with its store in the data dir, then `gammaray capture`, `gammaray inferencer` and
 * `gammaray view` as child processes of this same CLI, each logging JSON lines into `<data-dir>/logs/`. Prints
 * what to give QEMU and where to look; Ctrl-C (SIGINT), SIGTERM or a closed terminal (SIGHUP) stops them in the
 * order that loses nothing: the view, the inferencer (final checkpoint), the capture (drains in-flight writes, every acknowledged one is
 * already in JetStream), then NATS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, createWriteStream, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync, writeFileSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { basename, delimiter, join, resolve } from 'node:path';
import { ExitCode, RuntimeFailure, UserError } from '../errors.js';
import { openImage, withVolume } from '../image.js';
import { NoVolumeError, locateVolume } from '@gammaray/inferencer';
import { isPartitionNumber } from '@gammaray/wire';
import { PidLock, holderAlive, readHolder, startTime } from '@gammaray/ops/pid-lock';
import { natsUrlProblem } from '@gammaray/ops/nats-url';
import type { Terminal } from '../output.js';

/** Options of `gammaray up`. */
export interface UpOptions {
  readonly image: readonly string[];
  readonly disk: readonly string[];
  /** `--partition ID=N`: the partition of disk ID the inferencer follows (0: the whole disk). */
  readonly partition?: readonly string[];
  /** `--volume VOL=ID:N`: partition N of disk ID followed as a disk of its own named VOL. */
  readonly volume?: readonly string[];
  readonly mount?: string;
  readonly dataDir?: string;
  readonly nats?: string;
  readonly listen?: string;
  readonly grpc?: string;
  readonly metrics?: boolean;
}

const DISK_ID = /^[a-z0-9_-]{1,64}$/;
const DEFAULT_LISTEN = '127.0.0.1:10809';
const DEFAULT_GRPC = '127.0.0.1:50051';
/** How long a child may take to say it is ready. */
const START_TIMEOUT_MS = 60_000;
/**
 * The services' environment: `up`'s, without GAMMARAY_METRICS (one address for three services: all but the first
 * would fail to start) or other per-service settings, which `up` does not hand out.
 */
const CHILD_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !['GAMMARAY_METRICS', 'GAMMARAY_LISTEN', 'GAMMARAY_GRPC', 'GAMMARAY_DISK', 'GAMMARAY_MOUNT', 'GAMMARAY_TRACE', 'GAMMARAY_PARTITION', 'GAMMARAY_VOLUME'].includes(k)),
);

/** How long a child may take to stop after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 30_000;
const LOG_TAIL_CHARS = 2_000;
/** How long after a child's exit its last output may take to come out of the pipes. */
const PIPE_DRAIN_MS = 500;

/** A disk id from an image's file name: lowercase, other characters as '-', at most 64. */
export function diskIdFromImage(image: string): string {
  const stem = basename(image).replace(/\.(img|raw|ext[234])$/i, '');
  const id = stem.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  return id || 'disk';
}

/** The disks `up` attaches: ids from `--disk` in order, else from the image names; validated and unique. */
export function planDisks(images: readonly string[], ids: readonly string[]): { id: string; image: string }[] {
  if (images.length === 0) throw new UserError('no disk image given: pass --image FILE (a raw ext2/3/4 disk image; repeat for more disks)');
  if (ids.length > images.length) throw new UserError(`${ids.length} --disk ids for ${images.length} --image files: give at most one id per image, in the same order`);
  const out = images.map((image, i) => ({ id: ids[i] ?? diskIdFromImage(image), image: resolve(image) }));
  const seen = new Set<string>();
  const files = new Map<string, string>();
  for (const d of out) {
    if (!DISK_ID.test(d.id)) throw new UserError(`disk id ${JSON.stringify(d.id)} is not valid: use 1-64 of a-z, 0-9, - and _ (--disk ID)`);
    if (seen.has(d.id)) throw new UserError(`disk id ${d.id} is used twice: give each --image its own --disk ID`);
    seen.add(d.id);
    let st;
    try {
      st = statSync(d.image);
    } catch {
      throw new UserError(`image ${d.image} does not exist: pass an existing raw disk image with --image`);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw new UserError(`image ${d.image} is not a regular file or block device: pass --image FILE, a raw disk image (create one with: truncate -s 10G FILE)`);
    // Through a symlink or a hard link, two names may be one file: two writers on one disk.
    const file = `${st.dev}:${st.ino}`;
    const other = files.get(file);
    if (other !== undefined) throw new UserError(`images ${other} and ${d.image} are the same file: serve each disk image once`);
    files.set(file, d.image);
    try {
      accessSync(d.image, constants.R_OK | constants.W_OK);
    } catch {
      throw new UserError(`image ${d.image} is not readable and writable by this user: the capture serves it to the VM read-write`);
    }
  }
  return out;
}

/** A disk `up` attaches, with the partition it follows (when chosen) and its other partitions followed as volumes. */
export interface PlannedDisk {
  readonly id: string;
  readonly image: string;
  readonly partition?: number;
  readonly volumes: readonly { readonly id: string; readonly partition: number }[];
}

const PARTITION_SPEC = /^([a-z0-9_-]{1,64})=(\d{1,4})$/;
const VOLUME_SPEC = /^([a-z0-9_-]{1,64})=([a-z0-9_-]{1,64}):(\d{1,4})$/;

/**
 * Adds `--partition ID=N` and `--volume VOL=ID:N` (the capture's flags, passed on to it) to the planned disks:
 * each names a disk of `disks`, a partition number, and for a volume an id no disk or other volume has.
 */
export function planVolumes(disks: readonly { id: string; image: string }[], partitions: readonly string[] = [], volumes: readonly string[] = []): PlannedDisk[] {
  const out: { id: string; image: string; partition?: number; volumes: { id: string; partition: number }[] }[] = disks.map((d) => ({ ...d, volumes: [] }));
  const named = (spec: string, flag: string, id: string) => {
    const d = out.find((x) => x.id === id);
    if (!d) throw new UserError(`${flag} ${spec} names disk ${id}, which is not one of this up's disks (${out.map((x) => x.id).join(', ')}): use the id of an --image (its --disk, or its file name)`);
    return d;
  };
  for (const spec of partitions) {
    const m = PARTITION_SPEC.exec(spec);
    if (!m || !isPartitionNumber(Number(m[2]))) {
      throw new UserError(`--partition must be ID=N with N a partition number (1, 2, ...; 0 = the whole disk; e.g. --partition vm1=2), got ${JSON.stringify(spec)}`);
    }
    const d = named(spec, '--partition', m[1]!); // ok: matched
    if (d.partition !== undefined) throw new UserError(`--partition ${d.id} is given twice: give one partition per disk`);
    d.partition = Number(m[2]);
  }
  const taken = new Set(out.map((d) => d.id));
  for (const spec of volumes) {
    const m = VOLUME_SPEC.exec(spec);
    const n = m ? Number(m[3]) : NaN;
    if (!m || !isPartitionNumber(n) || n === 0) {
      throw new UserError(`--volume must be VOLUME=ID:N: partition N (1, 2, ...) of disk ID followed as a disk of its own named VOLUME (e.g. --volume vm1-boot=vm1:2), got ${JSON.stringify(spec)}`);
    }
    const [, vol, id] = m;
    const d = named(spec, '--volume', id!); // ok: matched
    if (taken.has(vol!)) throw new UserError(`--volume ${spec}: ${vol} is already a disk or volume id; ids must be unique`);
    taken.add(vol!);
    d.volumes.push({ id: vol!, partition: n }); // ok: matched
  }
  return out;
}

/** The capture's `--partition` and `--volume` arguments for the planned disks. */
export function captureVolumeArgs(disks: readonly PlannedDisk[]): string[] {
  return disks.flatMap((d) => [...(d.partition !== undefined ? ['--partition', `${d.id}=${d.partition}`] : []), ...d.volumes.flatMap((v) => ['--volume', `${v.id}=${d.id}:${v.partition}`])]);
}

/** The nats-server binary: $GAMMARAY_NATS_SERVER, else `nats-server` on PATH or in /usr/sbin. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = env['GAMMARAY_NATS_SERVER'];
  if (given) {
    try {
      accessSync(given, constants.X_OK);
      return given;
    } catch {
      return undefined;
    }
  }
  const dirs = [...(env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin'];
  for (const d of dirs) {
    const p = join(d, 'nats-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws a UserError when `hostPort` cannot be listened on now (in use, or not an address of this host). */
async function portFree(hostPort: string, flag: string, what: string): Promise<void> {
  const at = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(hostPort.slice(at + 1));
  if (at <= 0 || !/^\d{1,5}$/.test(hostPort.slice(at + 1)) || port < 1 || port > 65535) {
    throw new UserError(`${flag} must be HOST:PORT, the port 1 to 65535 (e.g. ${flag === '--grpc' ? DEFAULT_GRPC : DEFAULT_LISTEN}), got ${JSON.stringify(hostPort)}`);
  }
  const { code } = await tryListen(port, host);
  if (code === 'EADDRINUSE') throw new UserError(`${hostPort} (${what}) is already in use: stop what listens there, or pass another ${flag} HOST:PORT`);
  if (code !== undefined) throw new UserError(`cannot listen on ${hostPort} (${what}): ${code}; pass another ${flag} HOST:PORT`);
}

/**
 * Refuses images another capture on this machine serves (it holds the image's lock, see ImageLock): this `up`'s
 * capture would be refused after NATS and the disks' registry were set up. `env` gives GAMMARAY_LOCK_DIR.
 */
export async function checkImagesFree(disks: readonly { id: string; image: string }[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // Loaded on demand, like the services (main.ts).
  const { imageLockDir, imageLockHolder } = await import('@gammaray/service-capture');
  for (const d of disks) {
    let holder;
    try {
      holder = imageLockHolder(statSync(d.image), imageLockDir(env));
    } catch {
      continue; // planDisks checked the image; an unreadable lock is the capture's to judge
    }
    if (holder === undefined) continue;
    const as = typeof holder['disk'] === 'string' ? ` as disk ${holder['disk']}` : '';
    throw new UserError(`image ${d.image} is already served on this machine by process ${holder.pid}${as} (a gammaray capture or up): two writers would corrupt it; stop that one first, or serve a copy of the image`);
  }
}

/** The file system type and source mounted at `dir` (per /proc/self/mountinfo), or undefined when none is. */
function mountedAt(dir: string): string | undefined {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined; // not Linux: the view's mount says what is wrong
  }
  // "36 35 98:0 /mnt1 /mnt/x rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount point, octal-escaped.
  const unescape = (f: string): string => f.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let found: string | undefined;
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f.length < 5 || unescape(f[4]!) !== dir) continue; // ok: length checked
    found = dash > 0 ? `${unescape(f[dash + 1] ?? '?')} ${unescape(f[dash + 2] ?? '?')}` : 'a file system';
  }
  return found; // the last one listed is the one on top
}

/**
 * Refuses a `--mount DIR` the view's FUSE mount would fail on after the other services started: not a directory,
 * already a mount point (a view of another `up`, or any file system), or not empty (libfuse refuses it). A
 * missing DIR is fine (created later), and so is a dead FUSE mount a killed view left (ENOTCONN): the view
 * unmounts it first.
 */
export function checkMountPoint(mount: string): void {
  const dir = resolve(mount);
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTCONN') return;
    throw new UserError(`cannot use ${dir} as the mount point (${code ?? (err as Error).message}): pass --mount DIR, an empty directory this user can use`);
  }
  if (!st.isDirectory()) throw new UserError(`mount point ${dir} is not a directory: pass --mount DIR, an empty directory (or a new path, created for you)`);
  const real = realpathSync(dir);
  const mounted = mountedAt(real);
  if (mounted !== undefined) {
    throw new UserError(`mount point ${dir} is already in use: ${mounted} is mounted there; unmount it first (fusermount -u ${real}, or umount ${real}), or pass another --mount DIR`);
  }
  if (readdirSync(dir).length > 0) throw new UserError(`mount point ${dir} is not empty (FUSE mounts only on an empty directory): pass --mount DIR, an empty directory (or a new path, created for you)`);
}

/** A TCP port free on 127.0.0.1: `preferred` when it is, else `fallback` when it is, else one the kernel picks. */
async function freePort(preferred: number, fallback?: number): Promise<number> {
  const got = (await tryListen(preferred, '127.0.0.1')).port ?? (fallback !== undefined ? (await tryListen(fallback, '127.0.0.1')).port : undefined);
  return got ?? (await tryListen(0, '127.0.0.1')).port ?? preferred;
}

/** Listens on host:port for a moment: the port it got (port 0: the kernel's pick), or the error code. */
function tryListen(port: number, host: string): Promise<{ port?: number; code?: string }> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => res({ code: err.code ?? err.message }));
    srv.listen(port, host, () => {
      const a = srv.address();
      srv.close(() => res({ port: typeof a === 'object' && a ? a.port : undefined }));
    });
  });
}

/**
 * The end of `output` for a message: its last `max` characters, from the start of a line (a cut line is left
 * out; a last line longer than `max` is cut at its start and marked with "...").
 */
export function outputTail(output: string, max: number): string {
  const text = output.trimEnd();
  if (text.length <= max) return text.trim();
  const cut = text.slice(-max);
  const nl = cut.indexOf('\n');
  return nl >= 0 && cut.slice(nl + 1).trim() !== '' ? cut.slice(nl + 1).trim() : `...${cut.trim()}`;
}

/** How a process ended, for a message: `exit code 1`, `killed by signal SIGKILL`. */
export function howEnded(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal !== null) return `killed by signal ${signal}`;
  return code !== null ? `exit code ${code}` : 'for an unknown reason';
}

/** One managed child process: its output goes to `log`, the last of it is kept for messages. */
export class Child {
  readonly proc: ChildProcess;
  #tail = '';
  readonly exited: Promise<number | null>;
  #expectedExit = false;
  #ended: string | undefined;

  constructor(
    readonly name: string,
    cmd: string,
    args: readonly string[],
    log: WriteStream,
  ) {
    // A process group of its own: a terminal's Ctrl-C reaches `up` alone, which stops the children in the order
    // that loses nothing (NATS last), instead of all of them at once.
    // GAMMARAY_PARENT_PID: the gammaray services stop when this process is gone (see exitWithParent in main.ts).
    this.proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...CHILD_ENV, GAMMARAY_PARENT_PID: String(process.pid) }, detached: true });
    const onData = (b: Buffer) => {
      log.write(b);
      this.#tail = (this.#tail + b.toString()).slice(-64 * 1024);
    };
    this.proc.stdout!.on('data', onData); // ok: piped
    this.proc.stderr!.on('data', onData); // ok: piped
    this.exited = new Promise((r) =>
      this.proc.once('exit', (code, signal) => {
        this.#ended = howEnded(code, signal);
        // Its last words (often the error) may still be in the pipes: wait for them to end, briefly (a process
        // it started may hold them open).
        const ended = [this.proc.stdout, this.proc.stderr].map((s) => (s && !s.readableEnded && !s.destroyed ? new Promise((e) => s.once('end', e).once('close', e)) : undefined));
        let timer: NodeJS.Timeout | undefined;
        void Promise.race([Promise.all(ended), new Promise((t) => (timer = setTimeout(t, PIPE_DRAIN_MS)))]).then(() => {
          clearTimeout(timer);
          r(code ?? (signal ? 128 : null));
        });
      }),
    );
  }

  /** How it ended (`exit code 1`, `killed by signal SIGKILL`); undefined while it runs. */
  get ended(): string | undefined {
    return this.#ended;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get expectedExit(): boolean {
    return this.#expectedExit;
  }

  /** The last lines it printed (for an error message), whole lines only. */
  tail(): string {
    return outputTail(this.#tail, LOG_TAIL_CHARS);
  }

  /** Resolves when its output matches `re`; rejects if it exits first or takes too long. */
  waitFor(re: RegExp, what: string): Promise<void> {
    return new Promise((res, rej) => {
      let settled = false;
      const timer = setTimeout(() => done(new StartFailure(this, `${this.name} did not report ${what} within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      const check = () => {
        if (re.test(this.#tail)) done(undefined);
      };
      const done = (err: Error | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.proc.stdout?.off('data', check);
        this.proc.stderr?.off('data', check);
        if (err) rej(err);
        else res();
      };
      this.proc.stdout?.on('data', check);
      this.proc.stderr?.on('data', check);
      void this.exited.then(() => done(new StartFailure(this, `${this.name} exited while starting (${this.#ended})`)));
      check();
    });
  }

  /** SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; resolves with the exit status. */
  async stop(): Promise<number | null> {
    this.#expectedExit = true;
    if (!this.running) return this.exited;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * File of the data directory naming what `up` has followed from it: disk or volume id -> the image's real path,
 * with `#N` when a partition was named (--partition, --volume).
 */
const SERVED_FILE = 'disks.json';

/** What {@link SERVED_FILE} records for an id: the image, and the partition the user named for it. */
function servedAs(image: string, partition: number | undefined): string {
  const real = realpathSync(image);
  return partition === undefined ? real : `${real}#${partition}`;
}

/** The disks this data directory has served (empty when none or unreadable). */
function readServed(dataDir: string): Record<string, string> {
  try {
    const v = JSON.parse(readFileSync(join(dataDir, SERVED_FILE), 'utf8')) as { disks?: Record<string, string> };
    return v.disks && typeof v.disks === 'object' ? v.disks : {};
  } catch {
    return {};
  }
}

/** Adds `disks` and their volumes to the data directory's record (best effort: it only widens a later check). */
function writeServed(dataDir: string, served: Record<string, string>, disks: readonly PlannedDisk[]): void {
  const next = { ...served };
  for (const d of disks) {
    next[d.id] = servedAs(d.image, d.partition);
    for (const v of d.volumes) next[v.id] = servedAs(d.image, v.partition);
  }
  try {
    writeFileSync(join(dataDir, SERVED_FILE), `${JSON.stringify({ disks: next }, null, 2)}\n`);
  } catch {
    // not worth failing `up` for
  }
}

/** Whether the image's first MiB (all of it, when smaller) is zeros: a new disk for the guest to format. */
function isBlank(image: string): boolean {
  let fd: number;
  try {
    fd = openSync(image, 'r');
  } catch {
    return false; // withVolume says what is wrong with it
  }
  try {
    const buf = Buffer.alloc(1024 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n === 0) return false;
    for (let i = 0; i < n; i++) if (buf[i] !== 0) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * The volume of `image` the inferencer follows (partition 0: the whole image; see locateVolume), given partition
 * `prefer` when the user chose one, or why it finds none (the image reader then says what the image holds).
 */
async function followedVolume(image: string, prefer?: number): Promise<{ partition: number; lv?: string } | NoVolumeError> {
  const src = await openImage(image);
  try {
    const fetcher = { size: src.size, read: async (offset: number, length: number) => ({ data: await src.read(offset, length), seq: 0 }) };
    const w = await locateVolume(fetcher, prefer);
    return w.lv !== undefined ? { partition: w.partition, lv: w.lv } : { partition: w.partition };
  } catch (err) {
    if (err instanceof NoVolumeError) return err;
    throw err;
  } finally {
    await src.close();
  }
}

/**
 * Runs `gammaray up` until SIGINT/SIGTERM (or until a child dies). `self` is how to start this CLI again
 * (node and the script) for the service children.
 */
/**
 * Node flags the inferencer runs with (as its image's ENTRYPOINT): V8's default 16 MiB young generation adds ~35 MB
 * to its peak for no speed (docs/benchmarks.md, 2026-11-28).
 */
export const INFERENCER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

export async function runUp(term: Terminal, o: UpOptions, self: readonly string[] = [process.execPath, process.argv[1] ?? 'gammaray']): Promise<ExitCode> {
  const disks = planVolumes(planDisks(o.image, o.disk), o.partition, o.volume);
  const natsProblem = o.nats !== undefined ? natsUrlProblem(o.nats) : undefined;
  if (natsProblem !== undefined) throw new UserError(`--nats must be the URL of a running NATS server with JetStream, such as nats://127.0.0.1:4222 (${natsProblem}), got ${JSON.stringify(o.nats)}; or leave it out to start one`);
  // Ports first: a capture that cannot listen would fail after registering its disks, its log on the terminal.
  await portFree(o.listen ?? DEFAULT_LISTEN, '--listen', 'the NBD port');
  await portFree(o.grpc ?? DEFAULT_GRPC, '--grpc', 'the gRPC port');
  const dataDir = resolve(o.dataDir ?? 'gammaray-data');
  const dataDirBusy = (h: { pid: number }): UserError =>
    new UserError(h.pid === 0 ? `data directory ${dataDir} keeps changing hands: is another gammaray up starting on it?` : `data directory ${dataDir} is in use by another gammaray up (process ${h.pid}): stop it (Ctrl-C in its terminal), or pass another --data-dir`);
  // Then what would be refused only after NATS and some services had started: another up on this data directory
  // (said first: its capture holds the images too), an image another capture serves, a mount point in use.
  const upHolder = readHolder(join(dataDir, UP_LOCK_FILE));
  if (upHolder !== undefined && holderAlive(upHolder)) throw dataDirBusy(upHolder);
  await checkImagesFree(disks);
  if (o.mount !== undefined) checkMountPoint(o.mount);
  // A --nats its services cannot use: said in one line now, not by the capture's log lines after it failed.
  if (o.nats !== undefined) await checkGivenNats(o.nats);
  const served = readServed(dataDir);
  // What the inferencer will follow on each image: say it now, not in its log.
  for (const d of disks) {
    if (isBlank(d.image)) {
      term.note(`${d.image} is blank (its first MiB is zeros): it is followed once the guest makes a file system on it`);
      continue;
    }
    const follows = [
      { id: d.id, partition: d.partition, flag: d.partition !== undefined ? `--partition ${d.id}=${d.partition}` : undefined },
      ...d.volumes.map((v) => ({ id: v.id, partition: v.partition as number | undefined, flag: `--volume ${v.id}=${d.id}:${v.partition}` as string | undefined })),
    ];
    for (const f of follows) {
      try {
        // The file system the inferencer will follow (the whole image, the partition chosen, or the largest ext
        // partition or logical volume), opened here so that a damaged one is reported now.
        const followed = await followedVolume(d.image, f.partition);
        if (followed instanceof NoVolumeError && f.flag !== undefined) {
          throw new UserError(`${f.flag}: ${d.image}: ${followed.message.replace(/; looking again later$/, '')}: name a partition holding an ext2/3/4 file system (or an LVM PV with one)`);
        }
        const chosen = followed instanceof NoVolumeError ? undefined : followed;
        await withVolume(
          d.image,
          chosen?.partition,
          async (v) => {
            const what = v.lv !== undefined ? `LVM logical volume ${v.lv}${v.index !== 0 ? ` (partition ${v.index})` : ''}` : `partition ${v.index}`;
            if (f.id !== d.id) term.note(`${d.image}: volume ${f.id} follows the file system in its ${what} (${v.fs.kind})`);
            else if (v.index !== 0 || v.lv !== undefined) term.note(`${d.image}: following the file system in its ${what} (${v.fs.kind})`);
          },
          chosen?.lv !== undefined ? { lv: chosen.lv } : {},
        );
      } catch (err) {
        // A disk (or volume) this data directory has followed, damaged since (its guest may have done it on
        // purpose): refusing it would let a guest keep its own monitoring from starting again. Its inferencer
        // restores the last valid state and reports the damage as corrupt events. Only the same id on the same
        // image and partition: a --volume or --partition never followed (a typo) is still refused.
        if (!(err instanceof UserError) || served[f.id] !== servedAs(d.image, f.partition)) throw err;
        term.note(`${err.message}; serving ${f.id === d.id ? 'disk' : 'volume'} ${f.id} anyway: ${dataDir} followed it before, and its last valid state is kept (the damage comes out as corrupt events)`);
      }
    }
  }
  const logDir = join(dataDir, 'logs');
  try {
    mkdirSync(logDir, { recursive: true });
  } catch (err) {
    throw new UserError(`cannot use ${dataDir} as the data directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pass --data-dir DIR, a directory this user can write`);
  }
  if (o.mount !== undefined) {
    try {
      mkdirSync(o.mount, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A dead FUSE mount (ENOTCONN) is there: the view clears it.
      if (code !== 'EEXIST' && code !== 'ENOTCONN') throw new UserError(`cannot create the mount point ${resolve(o.mount)} (${code ?? (err as Error).message}): pass --mount DIR, an empty directory this user can use`);
    }
  }
  // One `up` per data directory: a second would start a second nats-server on the same store.
  const lock = PidLock.acquire(join(dataDir, UP_LOCK_FILE), { what: 'gammaray up' }, dataDirBusy);
  const children: Child[] = [];
  const start = (name: string, cmd: string, args: readonly string[]): Child => {
    const c = new Child(name, cmd, args, createWriteStream(join(logDir, `${name}.log`), { flags: 'a' }));
    children.push(c);
    return c;
  };
  const stopAll = async (): Promise<void> => {
    for (const c of [...children].reverse()) {
      if (!c.running) continue;
      term.note(`stopping ${c.name}`);
      await c.stop();
    }
  };

  let stopRequested: (reason: string) => void = () => {};
  const stopping = new Promise<string>((r) => (stopRequested = r));
  const onSignal = (sig: NodeJS.Signals) => stopRequested(sig);
  // SIGHUP: the terminal was closed. The services run in process groups of their own (so that a Ctrl-C reaches
  // only `up`, which stops them in order); without this they would outlive it, holding the ports and the store.
  // Its notes then go nowhere: a closed pipe is not a reason to leave them running either.
  const onPipeError = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE') throw err;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.stdout.on('error', onPipeError);
  process.stderr.on('error', onPipeError);
  try {
    let nats = o.nats;
    if (nats === undefined) {
      const bin = findNatsServer();
      if (!bin) {
        const given = process.env['GAMMARAY_NATS_SERVER'];
        throw new UserError(
          `${given ? `GAMMARAY_NATS_SERVER=${given} is not an executable nats-server` : 'nats-server is not installed'}: install it (Debian/Ubuntu: apt-get install nats-server; or see https://docs.nats.io) or pass --nats URL of a running NATS server with JetStream`,
        );
      }
      const store = join(dataDir, 'nats');
      mkdirSync(store, { recursive: true });
      const lastPort = lastNatsPort(store);
      await stopOrphanNats(term, store);
      // 4222, else the port this data dir's NATS had (where `follow --nats URL` and other clients still retry:
      // a new port each start left them retrying a dead URL), else any free one.
      const port = await freePort(4222, lastPort);
      term.note(`starting nats-server (JetStream, store ${store}) on 127.0.0.1:${port}`);
      const n = start('nats-server', bin, ['-js', '-sd', store, '-a', '127.0.0.1', '-p', String(port)]);
      writeFileSync(join(store, NATS_PID_FILE), JSON.stringify({ pid: n.proc.pid, started: n.proc.pid !== undefined ? startTime(n.proc.pid) : undefined, port }));
      await n.waitFor(/Server is ready/, 'readiness');
      nats = `nats://127.0.0.1:${port}`;
    }
    const listen = o.listen ?? DEFAULT_LISTEN;
    const grpc = o.grpc ?? DEFAULT_GRPC;
    term.note(`starting capture on ${listen} (${disks.flatMap((d) => [d.id, ...d.volumes.map((v) => v.id)]).join(', ')})`);
    const capture = start('capture', self[0]!, [...self.slice(1), 'capture', '--nats', nats, '--listen', listen, ...disks.flatMap((d) => ['--disk', `${d.id}=${d.image}`]), ...captureVolumeArgs(disks)]); // ok: self has node
    await capture.waitFor(/serving NBD/, 'serving NBD');
    term.note('starting inferencer');
    // Node's flags as the inferencer image runs it (services/inferencer/Dockerfile): a small young generation.
    const nodeFlags = self[0] === process.execPath ? INFERENCER_NODE_FLAGS : [];
    const inferencer = start('inferencer', self[0]!, [...nodeFlags, ...self.slice(1), 'inferencer', '--nats', nats]); // ok: as above
    await inferencer.waitFor(/inferencer started/, 'readiness');
    term.note(`starting view (gRPC ${grpc}${o.mount ? `, FUSE ${o.mount}` : ''})`);
    const view = start('view', self[0]!, [...self.slice(1), 'view', '--nats', nats, '--grpc', grpc, ...(o.mount ? ['--mount', resolve(o.mount)] : [])]); // ok: as above
    await view.waitFor(/view started/, 'readiness');

    const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), listen.slice(listen.lastIndexOf(':') + 1)];
    const lines = ['gammaray is up.', `  NATS:   ${nats}${o.nats ? '' : ` (embedded; store in ${join(dataDir, 'nats')})`}`];
    for (const d of disks) {
      lines.push(`  disk ${d.id}: ${d.image}`);
      lines.push(`    QEMU:   qemu-system-x86_64 ... -drive file=nbd://${host}:${port}/${d.id},format=raw,if=virtio`);
      lines.push(`    events: gammaray.${d.id}.fs.>   (gammaray follow ${d.id} --nats ${nats})`);
      if (o.mount) lines.push(`    files:  ${join(resolve(o.mount), d.id)}`);
      for (const v of d.volumes) {
        lines.push(`  volume ${v.id}: partition ${v.partition} of disk ${d.id}`);
        lines.push(`    events: gammaray.${v.id}.fs.>   (gammaray follow ${v.id} --nats ${nats})`);
        if (o.mount) lines.push(`    files:  ${join(resolve(o.mount), v.id)}`);
      }
    }
    lines.push(`  gRPC:   ${grpc}   (gammaray tree DISK --grpc ${grpc})`);
    lines.push(`  logs:   ${logDir}`);
    lines.push('Press Ctrl-C to stop everything.');
    writeServed(dataDir, served, disks);
    term.stdoutRaw(`${lines.join('\n')}\n`);

    const died = Promise.race(children.map((c) => c.exited.then(() => c)));
    const outcome = await Promise.race([stopping.then((sig) => ({ sig })), died.then((c) => ({ c }))]);
    if ('c' in outcome && !outcome.c.expectedExit) {
      term.fail(`${outcome.c.name} stopped unexpectedly (${outcome.c.ended ?? 'for an unknown reason'}); stopping the others (its log: ${join(logDir, `${outcome.c.name}.log`)}); its last output:`);
      term.stderrRaw(`${outcome.c.tail()}\n`);
      await stopAll();
      return ExitCode.failure;
    }
    await stopAll();
    term.note('stopped cleanly');
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof StartFailure) {
      // The child's own words, line by line (its error is in them), then one line of what to do.
      term.stderrRaw(`${err.child.tail()}\n`);
      await stopAll();
      throw new RuntimeFailure(`${err.message} (its output is above; its log: ${join(logDir, `${err.child.name}.log`)})`);
    }
    await stopAll();
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    lock.release();
  }
}

/** How long `up --nats URL` waits for that server to answer before saying it cannot be reached. */
const NATS_CHECK_MS = 5_000;

/**
 * Throws when the NATS server of `--nats` cannot serve the services (the credentials are theirs: GAMMARAY_NATS_*
 * in the environment): unreachable within NATS_CHECK_MS is a runtime failure; credentials refused or no JetStream
 * are the user's to fix.
 */
async function checkGivenNats(url: string): Promise<void> {
  // Loaded on demand, like the services (main.ts).
  const view = await import('@gammaray/service-view');
  const natsAuth = view.readNatsAuth({}, process.env, (m) => new UserError(m));
  try {
    await view.checkNats({ nats: url, natsAuth, timeoutMs: NATS_CHECK_MS });
  } catch (err) {
    if (!(err instanceof view.NatsProblemError)) throw err;
    const instead = 'or leave out --nats to let up start its own';
    switch (err.kind) {
      case view.NatsProblemKind.Auth:
        throw new UserError(`NATS at ${url} refused the connection's credentials (${err.reason}): set GAMMARAY_NATS_USER and GAMMARAY_NATS_PASSWORD (or GAMMARAY_NATS_CREDS, GAMMARAY_NATS_NKEY, GAMMARAY_NATS_TOKEN) for a user that may use JetStream there, ${instead}`);
      case view.NatsProblemKind.NoJetStream:
        throw new UserError(`NATS at ${url} answers but JetStream does not (${err.reason}): start that server with JetStream (nats-server -js, or jetstream {} in its config), ${instead}`);
      default:
        throw new RuntimeFailure(`cannot reach NATS at ${url} (${err.reason}): check the address and that nats-server runs there with JetStream (nats-server -js), ${instead}`, { cause: err });
    }
  }
}

/** `up`'s lock in its data directory (see PidLock). */
const UP_LOCK_FILE = 'up.lock';
/** The embedded nats-server's pid and start time, in its store directory. */
const NATS_PID_FILE = 'gammaray-nats-server.json';

/**
 * Stops the nats-server an earlier `up` on this data directory started and left running (that `up` was killed:
 * SIGKILL gives it no chance to stop its children). Its gammaray services stop by themselves, but nats-server
 * cannot watch its parent; a second one on the same store would corrupt it. Only a process that is still the
 * one recorded (same start time) and still serves this store is stopped.
 */
/** The port the nats-server of this store was last started on (undefined when unknown). */
function lastNatsPort(store: string): number | undefined {
  try {
    const port = (JSON.parse(readFileSync(join(store, NATS_PID_FILE), 'utf8')) as { port?: unknown }).port;
    return typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
  } catch {
    return undefined;
  }
}

async function stopOrphanNats(term: Terminal, store: string): Promise<void> {
  const holder = readHolder(join(store, NATS_PID_FILE));
  if (!holder || !holderAlive(holder)) return;
  let args = '';
  try {
    args = readFileSync(`/proc/${holder.pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!args.split('\0').includes(store)) return;
  term.note(`stopping the nats-server (process ${holder.pid}) a killed gammaray up left running on ${store}`);
  const gone = async (ms: number): Promise<boolean> => {
    for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) if (!holderAlive(holder)) return true;
    return !holderAlive(holder);
  };
  try {
    process.kill(holder.pid, 'SIGTERM');
    if (await gone(10_000)) return;
    process.kill(holder.pid, 'SIGKILL');
    if (await gone(5_000)) return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw new RuntimeFailure(`cannot stop the nats-server (process ${holder.pid}) left running on ${store}: ${(err as Error).message}; stop it yourself and start again`);
  }
  throw new RuntimeFailure(`the nats-server (process ${holder.pid}) left running on ${store} does not stop; stop it yourself and start again`);
}

/** A child that did not start; its output is printed as it is (see runUp). */
class StartFailure extends Error {
  constructor(
    readonly child: Child,
    message: string,
  ) {
    super(message);
  }
}
