import { hostPortMessage, isLoopback, natsUrlProblem, readNatsAuth, readServerTls, splitHostPort, type NatsAuth, type NatsAuthFlags } from '@gammaray/ops';
/**
 * `gammaray view` configuration: flags, then `GAMMARAY_<FLAG>` environment variables, validated into one object.
 * Every problem names the setting and says what to do (CLI.md).
 */
import { isAbsolute, resolve } from 'node:path';
import { isDiskId } from '@gammaray/wire';

export { isLoopback };

/** A setting was missing or malformed; the message names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A host and port to listen on. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** TLS material, read at start-up. */
export interface TlsConfig {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** CA bundle clients' certificates must chain to; when set, clients must present one. */
  readonly clientCa: Buffer | undefined;
}

/** The validated configuration of a view instance. */
export interface ViewConfig {
  /** One NATS URL, or several separated by commas (members of one cluster). */
  readonly nats: string;
  /** NATS credentials and TLS. */
  readonly natsAuth: NatsAuth;
  /** gRPC listen address (port 0: any free port, logged). */
  readonly grpc: ListenAddress;
  /** FUSE mount point (absolute), or undefined for no mount. */
  readonly mount: string | undefined;
  /** Let other users than the one running the view read the mount (FUSE allow_other). */
  readonly allowOther: boolean;
  /** Prometheus/health HTTP address, or undefined. */
  readonly metrics: ListenAddress | undefined;
  readonly tls: TlsConfig | undefined;
  /** Bearer token every gRPC call must carry (except health checks and reflection), or undefined for none. */
  readonly token: string | undefined;
  /** Replicas of the KV bucket and object store when this process is the first to create them. */
  readonly replicas: number;
  /** Only these disks; undefined: every disk of the registry. */
  readonly disks: readonly string[] | undefined;
}

/** Raw option values as commander (or a test) hands them over. */
export interface ViewFlags extends NatsAuthFlags {
  readonly nats?: string;
  readonly grpc?: string;
  readonly mount?: string;
  readonly allowOther?: boolean;
  readonly metrics?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsClientCa?: string;
  readonly token?: string;
  readonly replicas?: string;
  readonly disk?: readonly string[];
}

export const DEFAULT_NATS = 'nats://127.0.0.1:4222';
export const DEFAULT_GRPC = '127.0.0.1:50051';
/** Shortest bearer token accepted: a guessable token is worse than none, because it looks like protection. */
export const MIN_TOKEN_CHARS = 16;

/** Parses `HOST:PORT` (IPv6 as `[::1]:50051`); `what` names the setting in errors. */
export function parseHostPort(value: string, what: string): ListenAddress {
  const hp = splitHostPort(value);
  if (!hp) throw new ConfigError(hostPortMessage(what, value, what.startsWith('--metrics') ? 9100 : 50051));
  return hp;
}


/** A yes/no variable; anything else (`y`, `enabled`) is refused, not read as no. */
function envFlag(name: string, v: string | undefined): boolean {
  if (v === undefined || /^(|0|false|no|off)$/i.test(v.trim())) return false;
  if (/^(1|true|yes|on)$/i.test(v.trim())) return true;
  throw new ConfigError(`${name} must be 1, true, yes or on (or 0, false, no, off), got ${JSON.stringify(v)}`);
}


/** Builds the configuration from flags and the environment; flags win. Reads the TLS files. */
export function readConfig(flags: ViewFlags, env: NodeJS.ProcessEnv = process.env): ViewConfig {
  const nats = flags.nats ?? env.GAMMARAY_NATS ?? DEFAULT_NATS;
  const natsProblem = natsUrlProblem(nats);
  if (natsProblem !== undefined) {
    throw new ConfigError(`--nats (GAMMARAY_NATS) must be a NATS URL such as nats://127.0.0.1:4222 (${natsProblem}), got ${JSON.stringify(nats)}`);
  }
  const grpc = parseHostPort(flags.grpc ?? env.GAMMARAY_GRPC ?? DEFAULT_GRPC, '--grpc (GAMMARAY_GRPC)');
  const metricsText = flags.metrics ?? env.GAMMARAY_METRICS;
  const metrics = metricsText ? parseHostPort(metricsText, '--metrics (GAMMARAY_METRICS)') : undefined;

  const mountText = flags.mount ?? env.GAMMARAY_MOUNT;
  let mount: string | undefined;
  if (mountText !== undefined && mountText !== '') {
    if (mountText.includes('\0')) throw new ConfigError('--mount (GAMMARAY_MOUNT) must be a directory path');
    mount = isAbsolute(mountText) ? mountText : resolve(mountText);
  }
  const allowOther = flags.allowOther ?? envFlag('GAMMARAY_ALLOW_OTHER', env.GAMMARAY_ALLOW_OTHER);
  if (allowOther && !mount) throw new ConfigError('--allow-other (GAMMARAY_ALLOW_OTHER) only applies with --mount DIR; add --mount or drop it');

  const tls: TlsConfig | undefined = readServerTls(
    { flag: '--tls-cert', env: 'GAMMARAY_TLS_CERT', value: flags.tlsCert ?? env.GAMMARAY_TLS_CERT },
    { flag: '--tls-key', env: 'GAMMARAY_TLS_KEY', value: flags.tlsKey ?? env.GAMMARAY_TLS_KEY },
    { flag: '--tls-client-ca', env: 'GAMMARAY_TLS_CLIENT_CA', value: flags.tlsClientCa ?? env.GAMMARAY_TLS_CLIENT_CA },
    (m) => new ConfigError(m),
  );

  const tokenText = flags.token ?? env.GAMMARAY_TOKEN;
  let token: string | undefined;
  if (tokenText !== undefined && tokenText !== '') {
    if (!/^[\x21-\x7e]+$/.test(tokenText)) throw new ConfigError('--token (GAMMARAY_TOKEN) must be printable ASCII without spaces (e.g. the output of: openssl rand -hex 32)');
    if (tokenText.length < MIN_TOKEN_CHARS) throw new ConfigError(`--token (GAMMARAY_TOKEN) must be at least ${MIN_TOKEN_CHARS} characters (e.g. the output of: openssl rand -hex 32)`);
    token = tokenText;
  }

  const replicasText = flags.replicas ?? env.GAMMARAY_REPLICAS ?? '1';
  const replicas = /^\d+$/.test(replicasText) ? Number(replicasText) : NaN;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new ConfigError(`--replicas (GAMMARAY_REPLICAS) must be 1 to 5 (1 on one machine, 3 in a cluster), got ${JSON.stringify(replicasText)}`);
  }

  const diskList = flags.disk && flags.disk.length > 0 ? flags.disk : (env.GAMMARAY_DISK ?? '').split(',').filter((s) => s !== '');
  let disks: string[] | undefined;
  if (diskList.length > 0) {
    disks = [];
    for (const id of diskList) {
      if (!isDiskId(id)) throw new ConfigError(`--disk (GAMMARAY_DISK) must be a disk id of 1-64 characters from a-z 0-9 _ - (e.g. --disk vm1), got ${JSON.stringify(id)}`);
      if (!disks.includes(id)) disks.push(id);
    }
  }
  const natsAuth = readNatsAuth(flags, env, (m) => new ConfigError(m));
  return Object.freeze({ nats, natsAuth, grpc, mount, allowOther, metrics, tls, token, replicas, disks: disks ? Object.freeze(disks) : undefined });
}
