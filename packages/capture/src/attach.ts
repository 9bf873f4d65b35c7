import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { DiskState, blocksSubject, encodeBlockReadRequest, type DiskRegistryEntry } from '@gammaray/wire';
import { CaptureDisk, type CaptureDiskOptions } from './capture-disk.js';
import { DiskBusyError, ImageFormatError } from './errors.js';
import { probeSourceFormat } from '@gammaray/disk';
import { getDiskEntry, markDiskDetached, openDiskRegistry, putDiskEntry } from './registry.js';

/** How long a capture that holds a disk has to answer a block read before the disk is taken over. */
export const LIVENESS_TIMEOUT_MS = 2_000;
import { ensureWritesStream, type WritesStreamOptions } from './stream.js';

/** Options of {@link attachDisk}. */
export interface AttachOptions extends Omit<CaptureDiskOptions, 'js' | 'baseSeq'> {
  /** Connection; should reconnect forever (`maxReconnectAttempts: -1`). */
  readonly nc: NatsConnection;
  /** This capture instance's id, recorded in the registry. */
  readonly instanceId: string;
  /** Stream settings (replicas also apply to the KV bucket when it is created here). */
  readonly stream?: WritesStreamOptions;
  readonly jsm?: JetStreamManager;
  readonly kv?: KV;
  /** The partition the inferencer is to follow (registry `partition`); default: its own choice. */
  readonly partition?: number;
  /** Other partitions of the disk followed as volumes of their own (registry entries with `source`). */
  readonly volumes?: readonly { readonly id: string; readonly partition: number }[];
  /**
   * Serve the image as raw even if it starts like a container format (see {@link attachDisk}): for a raw disk
   * whose guest wrote such bytes, attached anew (under another path or disk id, or with the registry lost).
   */
  readonly assumeRaw?: boolean;
}

/** A disk attached to capture; `detach()` closes it and marks its registry entry detached. */
export interface AttachedDisk {
  readonly disk: CaptureDisk;
  readonly entry: DiskRegistryEntry;
  /** The entries of its volumes (see AttachOptions.volumes). */
  readonly volumes: readonly DiskRegistryEntry[];
  detach(): Promise<void>;
}

/**
 * Attaches a disk: ensures stream GAMMARAY_WRITES, opens the image, and writes the registry entry `{state:
 * 'attached', firstSeq}` where firstSeq is the stream's last sequence + 1 now, so every record of this attach has
 * a sequence >= firstSeq. Throws DiskBusyError when another capture holds the disk id and still serves it: two
 * writers of one disk id would interleave two disks' writes in one stream (a capture that died is taken over).
 *
 * An image attached for the first time (the registry has no entry of this disk id with this image) that starts
 * like a container format (qcow2, VMDK, VDI, VHD, VHDX, QED) is refused with ImageFormatError unless
 * `assumeRaw`: the capture serves raw bytes. An image the registry already knows is served whatever its first
 * bytes became: its guest may write anything there, and must not be able to stop its disk from being served.
 */
export async function attachDisk(opts: AttachOptions): Promise<AttachedDisk> {
  const jsm = opts.jsm ?? (await jetstreamManager(opts.nc));
  const info = await ensureWritesStream(jsm, opts.stream);
  const firstSeq = info.state.last_seq + 1;
  const kv = opts.kv ?? (await openDiskRegistry(opts.nc, { replicas: opts.stream?.replicas ?? 1 }));
  const held = await getDiskEntry(kv, opts.disk).catch(() => undefined);
  if (held?.state === DiskState.Attached && held.capture !== opts.instanceId && (await answersBlockReads(opts.nc, opts.disk))) {
    throw new DiskBusyError(
      `disk ${opts.disk} is attached by capture ${held.capture} (image ${held.image}), which is serving it: stop that capture first, or attach this image under another disk id`,
    );
  }
  for (const v of opts.volumes ?? []) {
    const heldV = await getDiskEntry(kv, v.id).catch(() => undefined);
    if (heldV?.state === DiskState.Attached && heldV.capture !== opts.instanceId && (await answersBlockReads(opts.nc, heldV.source ?? heldV.disk))) {
      throw new DiskBusyError(`volume ${v.id} is registered by capture ${heldV.capture} (disk ${heldV.source ?? heldV.disk}), which is serving it: stop that capture first, or name the volume otherwise`);
    }
  }
  const disk = await CaptureDisk.open({ ...opts, js: jetstream(opts.nc), baseSeq: firstSeq - 1 });
  if (!opts.assumeRaw && held?.image !== disk.image) {
    try {
      await refuseContainer(disk);
    } catch (err) {
      await disk.close();
      throw err;
    }
  }
  const entry: DiskRegistryEntry = {
    disk: disk.name,
    size: disk.size,
    blockSize: disk.minBlockSize,
    image: disk.image,
    capture: opts.instanceId,
    firstSeq,
    state: DiskState.Attached,
    ...(opts.partition !== undefined ? { partition: opts.partition } : {}),
  };
  const volumes: DiskRegistryEntry[] = (opts.volumes ?? []).map((v) => ({ ...entry, disk: v.id, partition: v.partition, source: entry.disk }));
  try {
    await putDiskEntry(kv, entry);
    for (const v of volumes) await putDiskEntry(kv, v);
  } catch (err) {
    await disk.close();
    throw err;
  }
  let detached: Promise<void> | undefined;
  return {
    disk,
    entry,
    volumes,
    detach: () => {
      detached ??= (async () => {
        await disk.close();
        await markDiskDetached(kv, entry);
        for (const v of volumes) await markDiskDetached(kv, v);
      })();
      return detached;
    },
  };
}

/** Throws ImageFormatError when the disk's image starts (or, a fixed VHD, ends) like a container format. */
async function refuseContainer(disk: CaptureDisk): Promise<void> {
  const found = await probeSourceFormat(disk);
  if (!found) return;
  throw new ImageFormatError(
    `${disk.image} is a ${found.format} image (${found.evidence}), not a raw disk: the capture serves raw images only. ` +
      `Convert it (qemu-img convert -f ${found.format} -O raw ${disk.image} DISK.raw), or keep it and serve its raw view through ` +
      `qemu-storage-daemon's FUSE export (README, "Other image formats"). If it is a raw disk whose guest wrote these bytes, pass --assume-raw ${disk.name}.`,
    found.format,
  );
}

/** Whether some capture answers block reads of `disk` (any reply counts; no responders or silence: none). */
async function answersBlockReads(nc: NatsConnection, disk: string): Promise<boolean> {
  try {
    await nc.request(blocksSubject(disk), encodeBlockReadRequest({ offset: 0, length: 0 }), { timeout: LIVENESS_TIMEOUT_MS });
    return true;
  } catch {
    return false;
  }
}
