import { CorruptError, EncodeError, WireCorruptKind } from './errors.js';
import { describe, toSafeUint } from './int64.js';
import { MAX_IMAGE_PATH_CHARS, MAX_REGISTRY_ENTRY_BYTES } from './limits.js';
import { isDiskId } from './subjects.js';

/** Whether a capture instance currently serves the disk. */
export const DiskState = { Attached: 'attached', Detached: 'detached' } as const;
/** See {@link DiskState}. */
export type DiskState = (typeof DiskState)[keyof typeof DiskState];

/**
 * A disk's entry in KV bucket `gammaray-disks` (key: the disk id), JSON.
 * - `size`: bytes; `blockSize`: the smallest block capture accepts (512; 1 for an image whose size is not a multiple of 512);
 * - `image`: the image path on the capture host (informational only: never opened by other services);
 * - `capture`: the id of the capture instance that attached it;
 * - `firstSeq`: GAMMARAY_WRITES's last sequence + 1 when it attached; this attach's records all come at or after it;
 * - `partition` (optional): the partition whose file system the inferencer follows on a partitioned disk (Linux
 *   numbering, 0 the whole disk); absent: the whole disk when it holds a file system, else its largest ext partition;
 * - `source` (optional): this entry is a volume, another partition of the captured disk `source` followed as a
 *   disk of its own (its writes are `gammaray.<source>.writes`, its block reads `gammaray.<source>.blocks`; its
 *   events and state are under this entry's id). `size` is the source disk's.
 */
export interface DiskRegistryEntry {
  readonly disk: string;
  readonly size: number;
  readonly blockSize: number;
  readonly image: string;
  readonly capture: string;
  readonly firstSeq: number;
  readonly state: DiskState;
  readonly partition?: number;
  readonly source?: string;
}

/** Highest partition number a registry entry may name (GPT tables list at most 4096 here, MBR fewer). */
export const MAX_PARTITION_NUMBER = 4096;

/** Whether `n` is a partition number (0: the whole disk). */
export function isPartitionNumber(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_PARTITION_NUMBER;
}

/** Encodes a registry entry as JSON bytes. */
export function encodeDiskEntry(e: DiskRegistryEntry): Uint8Array {
  if (!isDiskId(e.disk)) throw new EncodeError('disk is not a valid disk id', { field: 'disk' });
  for (const k of ['size', 'blockSize', 'firstSeq'] as const) {
    if (!Number.isSafeInteger(e[k]) || e[k] < 0) throw new EncodeError(`${k} is not a non-negative safe integer`, { field: k });
  }
  if (e.partition !== undefined && !isPartitionNumber(e.partition)) throw new EncodeError(`partition is not 0 to ${MAX_PARTITION_NUMBER}`, { field: 'partition' });
  if (e.source !== undefined && !isDiskId(e.source)) throw new EncodeError('source is not a valid disk id', { field: 'source' });
  const json = JSON.stringify({
    disk: e.disk,
    size: e.size,
    blockSize: e.blockSize,
    image: e.image,
    capture: e.capture,
    firstSeq: e.firstSeq,
    state: e.state,
    ...(e.partition !== undefined ? { partition: e.partition } : {}),
    ...(e.source !== undefined ? { source: e.source } : {}),
  });
  return new TextEncoder().encode(json);
}

/** Decodes a registry entry from untrusted bytes; throws CorruptError. */
export function decodeDiskEntry(bytes: Uint8Array): DiskRegistryEntry {
  if (bytes.length > MAX_REGISTRY_ENTRY_BYTES) throw new CorruptError(WireCorruptKind.TooLarge, `entry is ${bytes.length} bytes, more than ${MAX_REGISTRY_ENTRY_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (cause) {
    throw new CorruptError(WireCorruptKind.NotJson, 'registry entry is not UTF-8 JSON', { cause });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new CorruptError(WireCorruptKind.NotJson, `registry entry is ${describe(raw)}`);
  const d = raw as Record<string, unknown>;
  const disk = d['disk'];
  if (!isDiskId(disk)) throw new CorruptError(WireCorruptKind.DiskId, 'disk is not a valid disk id', { field: 'disk' });
  const str = (k: string): string => {
    const v = d[k];
    if (typeof v !== 'string' || v.length > MAX_IMAGE_PATH_CHARS) throw new CorruptError(WireCorruptKind.Field, `${k} is not a string of at most ${MAX_IMAGE_PATH_CHARS} chars`, { field: k });
    return v;
  };
  const state = d['state'];
  if (state !== DiskState.Attached && state !== DiskState.Detached) throw new CorruptError(WireCorruptKind.Field, 'state is not attached or detached', { field: 'state' });
  const partition = d['partition'];
  if (partition !== undefined && !isPartitionNumber(partition)) throw new CorruptError(WireCorruptKind.Field, `partition is not 0 to ${MAX_PARTITION_NUMBER}`, { field: 'partition' });
  const source = d['source'];
  if (source !== undefined && (!isDiskId(source) || source === disk)) throw new CorruptError(WireCorruptKind.DiskId, 'source is not another valid disk id', { field: 'source' });
  return Object.freeze({
    disk,
    size: toSafeUint(d['size'], WireCorruptKind.Field, 'size'),
    blockSize: toSafeUint(d['blockSize'], WireCorruptKind.Field, 'blockSize'),
    image: str('image'),
    capture: str('capture'),
    firstSeq: toSafeUint(d['firstSeq'], WireCorruptKind.Field, 'firstSeq'),
    state,
    ...(partition !== undefined ? { partition } : {}),
    ...(source !== undefined ? { source } : {}),
  });
}
