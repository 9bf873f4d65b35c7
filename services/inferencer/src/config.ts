import { hostPortMessage, natsUrlProblem, readNatsAuth, splitHostPort, type NatsAuth, type NatsAuthFlags } from '@gammaray/ops';
/**
 * `gammaray inferencer` configuration: flags, then `GAMMARAY_<FLAG>` environment variables, validated into one
 * object. Every problem names the setting and says what to do (CLI.md).
 */
import { MAX_WRITE_CHUNK_BYTES, isDiskId } from '@gammaray/wire';

/** A setting was missing or malformed; the message names it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The validated configuration of an inferencer instance. */
export interface InferencerConfig {
  /** One NATS URL, or several separated by commas (members of one cluster). */
  readonly nats: string;
  /** NATS credentials and TLS. */
  readonly natsAuth: NatsAuth;
  readonly replicas: number;
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  /** Largest write whose bytes travel inside a `write` event; larger writes say `dataOmitted`. */
  readonly inlineLimit: number;
  /** How often a disk's state is checkpointed (when it changed), in milliseconds. */
  readonly checkpointIntervalMs: number;
  /** Only these disks; undefined: every disk of the registry. */
  readonly disks: readonly string[] | undefined;
  /**
   * How long a disk lease (and an instance's registration) stays valid without a renewal, in milliseconds: after
   * that the others may take the disk over.
   */
  readonly leaseTtlMs: number;
  /** How often the instance renews its registration and its leases and rebalances, in milliseconds. */
  readonly heartbeatMs: number;
}

/** Raw option values as commander (or a test) hands them over. */
export interface InferencerFlags extends NatsAuthFlags {
  readonly nats?: string;
  readonly replicas?: string;
  readonly metrics?: string;
  readonly inlineLimit?: string;
  readonly checkpointInterval?: string;
  readonly disk?: readonly string[];
  readonly leaseTtl?: string;
  readonly heartbeat?: string;
}

export const DEFAULT_NATS = 'nats://127.0.0.1:4222';
/** Default inline limit of write events, in bytes. */
export const DEFAULT_INLINE_LIMIT = 65_536;
/** Largest inline limit: an event holding that much data still fits in one NATS message (MAX_EVENT_BYTES). */
export const MAX_INLINE_LIMIT = MAX_WRITE_CHUNK_BYTES;
/** Default checkpoint interval, in seconds. */
export const DEFAULT_CHECKPOINT_INTERVAL_S = 2;
/** Longest checkpoint interval, in seconds (the writes stream must keep what a restart replays). */
export const MAX_CHECKPOINT_INTERVAL_S = 3600;

/** Default lease TTL, in seconds. */
export const DEFAULT_LEASE_TTL_S = 5;
/** Default heartbeat, in seconds. */
export const DEFAULT_HEARTBEAT_S = 1;

/** Parses `HOST:PORT` (IPv6 as `[::1]:9100`); `what` names the setting in errors. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const hp = splitHostPort(value);
  if (!hp) throw new ConfigError(hostPortMessage(what, value, 9100));
  return hp;
}

/**
 * Builds the configuration from flags and the environment; flags win. `GAMMARAY_DISK` holds disk ids separated
 * by commas (unlike capture's `ID=IMAGE` pairs: the inferencer never opens an image).
 */
export function readConfig(flags: InferencerFlags, env: NodeJS.ProcessEnv = process.env): InferencerConfig {
  const nats = flags.nats ?? env.GAMMARAY_NATS ?? DEFAULT_NATS;
  const natsProblem = natsUrlProblem(nats);
  if (natsProblem !== undefined) {
    throw new ConfigError(`--nats (GAMMARAY_NATS) must be a NATS URL such as nats://127.0.0.1:4222 (${natsProblem}), got ${JSON.stringify(nats)}`);
  }
  const replicasText = flags.replicas ?? env.GAMMARAY_REPLICAS ?? '1';
  const replicas = /^\d+$/.test(replicasText) ? Number(replicasText) : NaN;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new ConfigError(`--replicas (GAMMARAY_REPLICAS) must be 1 to 5 (1 on one machine, 3 in a cluster), got ${JSON.stringify(replicasText)}`);
  }
  const metricsText = flags.metrics ?? env.GAMMARAY_METRICS;
  const metrics = metricsText ? parseHostPort(metricsText, '--metrics (GAMMARAY_METRICS)') : undefined;

  const inlineText = flags.inlineLimit ?? env.GAMMARAY_INLINE_LIMIT ?? String(DEFAULT_INLINE_LIMIT);
  const inlineLimit = /^\d{1,9}$/.test(inlineText) ? Number(inlineText) : NaN;
  if (!(inlineLimit >= 0 && inlineLimit <= MAX_INLINE_LIMIT)) {
    throw new ConfigError(`--inline-limit (GAMMARAY_INLINE_LIMIT) must be a byte count from 0 to ${MAX_INLINE_LIMIT}, got ${JSON.stringify(inlineText)}`);
  }

  const intervalText = flags.checkpointInterval ?? env.GAMMARAY_CHECKPOINT_INTERVAL ?? String(DEFAULT_CHECKPOINT_INTERVAL_S);
  const interval = /^\d+(\.\d+)?$/.test(intervalText) ? Number(intervalText) : NaN;
  if (!(interval >= 0.1 && interval <= MAX_CHECKPOINT_INTERVAL_S)) {
    throw new ConfigError(`--checkpoint-interval (GAMMARAY_CHECKPOINT_INTERVAL) must be seconds from 0.1 to ${MAX_CHECKPOINT_INTERVAL_S}, got ${JSON.stringify(intervalText)}`);
  }

  const diskList = flags.disk && flags.disk.length > 0 ? flags.disk : (env.GAMMARAY_DISK ?? '').split(',').filter((s) => s !== '');
  let disks: string[] | undefined;
  if (diskList.length > 0) {
    disks = [];
    for (const id of diskList) {
      if (!isDiskId(id)) {
        throw new ConfigError(`--disk (GAMMARAY_DISK) must be a disk id of 1-64 characters from a-z 0-9 _ - (e.g. --disk vm1), got ${JSON.stringify(id)}`);
      }
      if (!disks.includes(id)) disks.push(id);
    }
  }
  const seconds = (text: string, what: string, min: number, max: number): number => {
    const v = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
    if (!(v >= min && v <= max)) throw new ConfigError(`${what} must be seconds from ${min} to ${max}, got ${JSON.stringify(text)}`);
    return Math.round(v * 1000);
  };
  const leaseTtlMs = seconds(flags.leaseTtl ?? env.GAMMARAY_LEASE_TTL ?? String(DEFAULT_LEASE_TTL_S), '--lease-ttl (GAMMARAY_LEASE_TTL)', 0.5, 300);
  const heartbeatMs = seconds(flags.heartbeat ?? env.GAMMARAY_HEARTBEAT ?? String(DEFAULT_HEARTBEAT_S), '--heartbeat (GAMMARAY_HEARTBEAT)', 0.1, 60);
  if (heartbeatMs * 3 > leaseTtlMs) {
    throw new ConfigError(`--heartbeat (GAMMARAY_HEARTBEAT) must be at most a third of --lease-ttl (GAMMARAY_LEASE_TTL) so a lease survives a lost renewal, got ${heartbeatMs / 1000} s and ${leaseTtlMs / 1000} s`);
  }
  return Object.freeze({
    nats,
    natsAuth: readNatsAuth(flags, env, (m) => new ConfigError(m)),
    replicas,
    metrics,
    inlineLimit,
    checkpointIntervalMs: Math.round(interval * 1000),
    disks: disks ? Object.freeze(disks) : undefined,
    leaseTtlMs,
    heartbeatMs,
  });
}
