/**
 * `gammaray capture` configuration: flags, then `GAMMARAY_<FLAG>` environment variables, validated into one
 * object. Every problem names the setting and says what to do (CLI.md).
 */
import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { hostPortMessage, natsUrlProblem, readNatsAuth, readServerTls, splitHostPort, type NatsAuth, type NatsAuthFlags, type ServerTlsFiles } from '@gammaray/ops';
import { isPartitionNumber } from '@gammaray/wire';

/** A setting was missing or malformed; the message names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** One disk to serve. */
export interface DiskConfig {
  /** Disk id: `[a-z0-9_-]{1,64}`; also the NBD export name. */
  readonly id: string;
  /** Raw image file backing the disk. */
  readonly image: string;
  /** `--partition ID=N`: the partition the inferencer follows (0: the whole disk); default its own choice. */
  readonly partition?: number;
  /** `--volume VOL=ID:N`: other partitions of the disk, followed as volumes of their own. */
  readonly volumes?: readonly { readonly id: string; readonly partition: number }[];
  /** `--assume-raw ID`: serve the image as raw even if it starts like a qcow2, VMDK... (see attachDisk). */
  readonly assumeRaw?: boolean;
}

/** The validated configuration of a capture instance. */
export interface CaptureConfig {
  readonly nats: string;
  /** NATS credentials and TLS. */
  readonly natsAuth: NatsAuth;
  readonly listen: { readonly host: string; readonly port: number };
  /** `--listen-unix PATH`: serve NBD on this unix socket (absolute path) instead of `listen`. */
  readonly listenUnix: string | undefined;
  readonly disks: readonly DiskConfig[];
  readonly replicas: number;
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /** `--trace FILE|-`: read the legacy binary trace instead of serving NBD. */
  readonly trace: string | undefined;
  /**
   * `--nbd-tls-cert/--nbd-tls-key [--nbd-tls-client-ca]`: NBD clients must negotiate TLS (NBD_OPT_STARTTLS), and
   * with a client CA present a certificate it signed. Plaintext NBD when undefined.
   */
  readonly nbdTls: ServerTlsFiles | undefined;
}

/** Raw option values as commander (or a test) hands them over. */
export interface CaptureFlags extends NatsAuthFlags {
  readonly nats?: string;
  readonly listen?: string;
  readonly listenUnix?: string;
  readonly disk?: readonly string[];
  readonly partition?: readonly string[];
  readonly volume?: readonly string[];
  readonly assumeRaw?: readonly string[];
  readonly replicas?: string;
  readonly metrics?: string;
  readonly trace?: string;
  readonly nbdTlsCert?: string;
  readonly nbdTlsKey?: string;
  readonly nbdTlsClientCa?: string;
}

const DISK_ID = /^[a-z0-9_-]{1,64}$/;
export const DEFAULT_NATS = 'nats://127.0.0.1:4222';
export const DEFAULT_LISTEN = '127.0.0.1:10809';

/** Parses `HOST:PORT` (IPv6 as `[::1]:10809`); `what` names the setting in errors. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const hp = splitHostPort(value);
  if (!hp) throw new ConfigError(hostPortMessage(what, value, what.startsWith('--metrics') ? 9100 : 10809));
  return hp;
}

/**
 * Builds the configuration from flags and the environment. Flags win; `GAMMARAY_DISK` may hold several
 * `ID=IMAGE` pairs separated by commas.
 */
export function readConfig(flags: CaptureFlags, env: NodeJS.ProcessEnv = process.env): CaptureConfig {
  const nats = flags.nats ?? env.GAMMARAY_NATS ?? DEFAULT_NATS;
  const natsProblem = natsUrlProblem(nats);
  if (natsProblem !== undefined) {
    throw new ConfigError(`--nats (GAMMARAY_NATS) must be a NATS URL such as nats://127.0.0.1:4222 (${natsProblem}), got ${JSON.stringify(nats)}`);
  }
  const listen = parseHostPort(flags.listen ?? env.GAMMARAY_LISTEN ?? DEFAULT_LISTEN, '--listen (GAMMARAY_LISTEN)');
  const unixText = flags.listenUnix ?? env.GAMMARAY_LISTEN_UNIX;
  const listenUnix = unixText !== undefined && unixText !== '' ? resolvePath(unixText) : undefined;
  if (listenUnix !== undefined && (flags.listen ?? env.GAMMARAY_LISTEN) !== undefined) {
    throw new ConfigError('--listen (GAMMARAY_LISTEN) and --listen-unix (GAMMARAY_LISTEN_UNIX) are two places to serve NBD: give one of them');
  }
  const diskSpecs = flags.disk && flags.disk.length > 0 ? flags.disk : (env.GAMMARAY_DISK ?? '').split(',').filter((s) => s !== '');
  if (diskSpecs.length === 0) throw new ConfigError('no disk to serve: give --disk ID=IMAGE (or GAMMARAY_DISK=ID=IMAGE[,ID=IMAGE...])');
  const disks: DiskConfig[] = [];
  for (const spec of diskSpecs) {
    const eq = spec.indexOf('=');
    const id = eq > 0 ? spec.slice(0, eq) : '';
    const image = eq > 0 ? spec.slice(eq + 1) : '';
    if (!DISK_ID.test(id) || image === '') {
      throw new ConfigError(`--disk must be ID=IMAGE with ID of 1-64 characters from a-z 0-9 _ - (e.g. --disk vm1=/var/lib/vm1.img), got ${JSON.stringify(spec)}`);
    }
    if (disks.some((d) => d.id === id)) throw new ConfigError(`--disk ${id} is given twice; disk ids must be unique`);
    const same = disks.find((d) => sameFile(d.image, image));
    if (same) throw new ConfigError(`image ${image} is given for disks ${same.id} and ${id}: one image backs one disk (two writers would corrupt it)`);
    disks.push({ id, image });
  }
  const partSpecs = flags.partition && flags.partition.length > 0 ? flags.partition : (env.GAMMARAY_PARTITION ?? '').split(',').filter((s) => s !== '');
  for (const spec of partSpecs) {
    const m = /^([a-z0-9_-]{1,64})=(\d{1,4})$/.exec(spec);
    const n = m ? Number(m[2]) : NaN;
    if (!m || !isPartitionNumber(n)) {
      throw new ConfigError(`--partition must be ID=N with N a partition number (1, 2, ...; 0 = the whole disk; e.g. --partition vm1=2), got ${JSON.stringify(spec)}`);
    }
    const i = disks.findIndex((d) => d.id === m[1]);
    if (i < 0) throw new ConfigError(`--partition ${spec} names disk ${m[1]}, which no --disk serves`);
    if (disks[i]!.partition !== undefined) throw new ConfigError(`--partition ${m[1]} is given twice`); // ok: index found
    disks[i] = { ...disks[i]!, partition: n }; // ok: index found
  }
  const volSpecs = flags.volume && flags.volume.length > 0 ? flags.volume : (env.GAMMARAY_VOLUME ?? '').split(',').filter((s) => s !== '');
  const taken = new Set(disks.map((d) => d.id));
  for (const spec of volSpecs) {
    const m = /^([a-z0-9_-]{1,64})=([a-z0-9_-]{1,64}):(\d{1,4})$/.exec(spec);
    const n = m ? Number(m[3]) : NaN;
    if (!m || !isPartitionNumber(n) || n === 0) {
      throw new ConfigError(`--volume must be VOLUME=ID:N: partition N (1, 2, ...) of disk ID followed as a disk of its own named VOLUME (e.g. --volume vm1-boot=vm1:2), got ${JSON.stringify(spec)}`);
    }
    const [, vol, id] = m;
    const i = disks.findIndex((d) => d.id === id);
    if (i < 0) throw new ConfigError(`--volume ${spec} names disk ${id}, which no --disk serves`);
    if (taken.has(vol!)) throw new ConfigError(`--volume ${spec}: ${vol} is already a disk or volume id; ids must be unique`);
    taken.add(vol!);
    const d = disks[i]!; // ok: index found
    disks[i] = { ...d, volumes: [...(d.volumes ?? []), { id: vol!, partition: n }] }; // ok: matched
  }
  const rawSpecs = flags.assumeRaw && flags.assumeRaw.length > 0 ? flags.assumeRaw : (env.GAMMARAY_ASSUME_RAW ?? '').split(',').filter((s) => s !== '');
  for (const id of rawSpecs) {
    const i = disks.findIndex((d) => d.id === id);
    if (i < 0) throw new ConfigError(`--assume-raw ${JSON.stringify(id)} names no disk that --disk serves (give the disk id, e.g. --assume-raw vm1)`);
    disks[i] = { ...disks[i]!, assumeRaw: true }; // ok: index found
  }
  const replicasText = flags.replicas ?? env.GAMMARAY_REPLICAS ?? '1';
  const replicas = Number(replicasText);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new ConfigError(`--replicas (GAMMARAY_REPLICAS) must be 1 to 5 (1 on one machine, 3 in a cluster), got ${JSON.stringify(replicasText)}`);
  }
  const metricsText = flags.metrics ?? env.GAMMARAY_METRICS;
  const metrics = metricsText ? parseHostPort(metricsText, '--metrics (GAMMARAY_METRICS)') : undefined;
  const trace = flags.trace ?? env.GAMMARAY_TRACE;
  if (trace !== undefined && disks.length !== 1) throw new ConfigError('--trace applies to exactly one --disk ID=IMAGE');
  // Checked before the disk is attached; a missing trace was reported as a missing disk image, after attaching.
  if (trace !== undefined && trace !== '-') {
    let isFile: boolean;
    try {
      isFile = !statSync(trace).isDirectory();
    } catch (err) {
      throw new ConfigError(`--trace (GAMMARAY_TRACE): cannot read ${trace} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the trace file QEMU wrote, or - to read it from stdin`);
    }
    if (!isFile) throw new ConfigError(`--trace (GAMMARAY_TRACE): ${trace} is a directory; give the trace file QEMU wrote, or - to read it from stdin`);
  }
  const natsAuth = readNatsAuth(flags, env, (m) => new ConfigError(m));
  const nbdTls = readServerTls(
    { flag: '--nbd-tls-cert', env: 'GAMMARAY_NBD_TLS_CERT', value: flags.nbdTlsCert ?? env.GAMMARAY_NBD_TLS_CERT },
    { flag: '--nbd-tls-key', env: 'GAMMARAY_NBD_TLS_KEY', value: flags.nbdTlsKey ?? env.GAMMARAY_NBD_TLS_KEY },
    { flag: '--nbd-tls-client-ca', env: 'GAMMARAY_NBD_TLS_CLIENT_CA', value: flags.nbdTlsClientCa ?? env.GAMMARAY_NBD_TLS_CLIENT_CA },
    (m) => new ConfigError(m),
  );
  if (nbdTls && trace !== undefined) throw new ConfigError('--nbd-tls-cert applies to NBD clients, and --trace serves none: drop one of them');
  if (listenUnix !== undefined && trace !== undefined) throw new ConfigError('--listen-unix serves NBD clients, and --trace serves none: drop one of them');
  return Object.freeze({ nats, natsAuth, listen, listenUnix, disks: Object.freeze(disks), replicas, metrics, trace, nbdTls });
}

/** Whether two paths name one file: the same path, or through a symlink or a hard link the same inode. */
function sameFile(a: string, b: string): boolean {
  if (resolvePath(a) === resolvePath(b)) return true;
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false; // a missing image is reported when it is opened
  }
}
