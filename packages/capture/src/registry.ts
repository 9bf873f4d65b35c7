import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { DiskState, KV_DISKS, decodeDiskEntry, encodeDiskEntry, parseDiskId, type DiskRegistryEntry } from '@gammaray/wire';

/** Opens (creating if needed) KV bucket `gammaray-disks`, keeping a short history of each disk's entries. */
export async function openDiskRegistry(nc: NatsConnection, opts: { replicas?: number } = {}): Promise<KV> {
  return new Kvm(nc).create(KV_DISKS, { replicas: opts.replicas ?? 1, history: 5 });
}

/** Writes a disk's registry entry (key: the disk id). Returns the KV revision. */
export async function putDiskEntry(kv: KV, entry: DiskRegistryEntry): Promise<number> {
  return kv.put(parseDiskId(entry.disk), encodeDiskEntry(entry));
}

/** Reads a disk's registry entry, or undefined if there is none (or it was deleted). Throws CorruptError if bad. */
export async function getDiskEntry(kv: KV, disk: string): Promise<DiskRegistryEntry | undefined> {
  const e = await kv.get(parseDiskId(disk));
  if (!e || e.operation !== 'PUT') return undefined;
  return decodeDiskEntry(e.value);
}

/** Marks a disk detached, keeping the rest of its entry. */
export async function markDiskDetached(kv: KV, entry: DiskRegistryEntry): Promise<number> {
  return putDiskEntry(kv, { ...entry, state: DiskState.Detached });
}
