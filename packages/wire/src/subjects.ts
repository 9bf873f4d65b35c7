import { InvalidNameError } from './errors.js';

/** JetStream stream holding every disk's write records (subjects {@link WRITES_WILDCARD}). */
export const STREAM_WRITES = 'GAMMARAY_WRITES';
/** JetStream stream holding file-system events (subjects `gammaray.<disk>.fs.<kind>`). */
export const STREAM_EVENTS = 'GAMMARAY_EVENTS';
/** KV bucket of the disk registry; keys are disk ids, values {@link DiskRegistryEntry} JSON. */
export const KV_DISKS = 'gammaray-disks';
/**
 * JetStream Object Store bucket of the inferencer's checkpoints: per disk a full checkpoint (object name = disk id)
 * and the deltas after it (`<disk>.delta.<n>`), the engine's state as BSON. An object store rather than KV because
 * a state is chunked and may exceed 1 MiB.
 */
export const OBJ_STATE = 'gammaray-state';
/**
 * KV bucket of live inferencer instances: key = instance id, value JSON `{id, startedAt, heartbeatAt}` put every
 * heartbeat. An entry whose revision has not moved for a lease TTL belongs to a dead instance.
 */
export const KV_WORKERS = 'gammaray-workers';
/**
 * KV bucket of disk ownership leases: key = disk id, value JSON `{owner, epoch, renewedAt}` (owner "" = released).
 * Acquired and renewed only with compare-and-set on the revision; a takeover bumps `epoch`.
 */
export const KV_LEASES = 'gammaray-leases';
/** Subject filter matching every disk's write records. */
export const WRITES_WILDCARD = 'gammaray.*.writes';
/** Subject filter matching every disk's file-system events. */
export const EVENTS_WILDCARD = 'gammaray.*.fs.>';
/** Subject filter matching every disk's block-read endpoint. */
export const BLOCKS_WILDCARD = 'gammaray.*.blocks';
/** Queue group of block-read responders. */
export const BLOCKS_QUEUE = 'gammaray-blocks';
/** Header carrying an event's path (CLI.md). */
export const HEADER_PATH = 'Gammaray-Path';
/** Header naming the inferencer instance that published an event (for audits of ownership and fencing). */
export const HEADER_WORKER = 'Gammaray-Worker';
/** Header carrying the epoch of the disk lease an event was published under (see KV_LEASES). */
export const HEADER_EPOCH = 'Gammaray-Epoch';

/** The rule a disk id must match. */
export const DISK_ID_PATTERN = /^[a-z0-9_-]{1,64}$/;
/** The rule an event kind (a subject token) must match. */
export const EVENT_KIND_PATTERN = /^[a-z0-9_-]{1,64}$/;

/** Whether `s` is a valid disk id (`[a-z0-9_-]{1,64}`), so it is safe as a subject token and KV key. */
export function isDiskId(s: unknown): s is string {
  return typeof s === 'string' && DISK_ID_PATTERN.test(s);
}

/** Returns `s` if it is a valid disk id, else throws {@link InvalidNameError} naming the rule. */
export function parseDiskId(s: string): string {
  if (!isDiskId(s)) throw new InvalidNameError('disk id', String(s), '[a-z0-9_-]{1,64}');
  return s;
}

/** `gammaray.<disk>.writes`: the subject of a disk's write records. */
export function writesSubject(disk: string): string {
  return `gammaray.${parseDiskId(disk)}.writes`;
}

/** `gammaray.<disk>.blocks`: the request/reply subject of a disk's block reads. */
export function blocksSubject(disk: string): string {
  return `gammaray.${parseDiskId(disk)}.blocks`;
}

/** `gammaray.<disk>.fs.<kind>`: the subject of a disk's file-system events of one kind. */
export function eventsSubject(disk: string, kind: string): string {
  if (!EVENT_KIND_PATTERN.test(kind)) throw new InvalidNameError('event kind', kind, '[a-z0-9_-]{1,64}');
  return `gammaray.${parseDiskId(disk)}.fs.${kind}`;
}

/** `gammaray.<disk>.fs.>`: every event subject of one disk. */
export function diskEventsFilter(disk: string): string {
  return `gammaray.${parseDiskId(disk)}.fs.>`;
}

/** The disk id of a `gammaray.<disk>.writes|blocks|fs.*` subject, or undefined if the subject is not one. */
export function diskOfSubject(subject: string): string | undefined {
  const parts = subject.split('.');
  if (parts.length < 3 || parts[0] !== 'gammaray') return undefined;
  const disk = parts[1];
  return isDiskId(disk) ? disk : undefined;
}
