import { NbdExportBusyError, type NbdExport, type NbdExportInfo, type NbdExportProvider } from '@gammaray/nbd';
import type { CaptureDisk } from '@gammaray/capture';

/** How long a connection waits for the previous writer of its export to be released. */
const RELEASE_WAIT_MS = 3000;
const RELEASE_POLL_MS = 20;

/**
 * Serves attached disks as NBD exports, one writer connection per disk at a time (no multi-conn), so the
 * stream's order is the order one client sent its writes. A connection gets a view of the disk whose
 * close() releases the slot; the disk itself stays open for the next connection.
 */
export class DiskProvider implements NbdExportProvider {
  private readonly disks = new Map<string, CaptureDisk>();
  private readonly busy = new Set<string>();

  /** Adds a disk under its id. */
  add(disk: CaptureDisk): void {
    this.disks.set(disk.name, disk);
  }

  list(): readonly { name: string; description?: string }[] {
    return [...this.disks.keys()].map((name) => ({ name, description: `gammaray capture disk ${name}` }));
  }

  describe(name: string): NbdExportInfo | undefined {
    const d = this.disks.get(name);
    if (!d) return undefined;
    return { size: d.size, minBlockSize: d.minBlockSize, preferredBlockSize: d.preferredBlockSize, maxBlockSize: d.maxBlockSize, readOnly: d.readOnly };
  }

  async open(name: string): Promise<NbdExport | undefined> {
    const d = this.disks.get(name);
    if (!d) return undefined;
    // A client that reconnects at once can arrive before the server has finished the previous
    // connection; wait briefly for that release rather than refusing a legitimate reconnect.
    for (let waited = 0; this.busy.has(name); waited += RELEASE_POLL_MS) {
      if (waited >= RELEASE_WAIT_MS) throw new NbdExportBusyError(`disk ${name} is in use by another NBD connection`);
      await new Promise((r) => setTimeout(r, RELEASE_POLL_MS));
    }
    this.busy.add(name);
    let released = false;
    return {
      name: d.name,
      size: d.size,
      minBlockSize: d.minBlockSize,
      preferredBlockSize: d.preferredBlockSize,
      maxBlockSize: d.maxBlockSize,
      readOnly: d.readOnly,
      read: (offset, length) => d.read(offset, length),
      receiveBuffer: (length) => d.receiveBuffer(length),
      write: (offset, data, flags) => d.write(offset, data, flags),
      writeZeroes: (offset, length, flags) => d.writeZeroes(offset, length, flags),
      trim: (offset, length, flags) => d.trim(offset, length, flags),
      flush: () => d.flush(),
      close: async () => {
        if (released) return;
        released = true;
        this.busy.delete(name);
      },
    };
  }
}
