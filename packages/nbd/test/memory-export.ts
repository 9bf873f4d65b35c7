import { NbdExportBusyError } from '../src/index.js';
import type { NbdExport, NbdExportProvider } from '../src/index.js';

/** One backend call as the export saw it, in call order. */
export interface OpRecord {
  op: 'read' | 'write' | 'writeZeroes' | 'trim' | 'flush';
  offset?: number;
  length?: number;
  fua?: boolean;
  noHole?: boolean;
}

/** A disk in memory, shared by every connection that opens it. */
export class MemoryDisk {
  readonly data: Buffer;
  readonly ops: OpRecord[] = [];
  holder = false;
  opens = 0;
  concurrent = 0;
  maxConcurrent = 0;
  closes = 0;
  constructor(
    readonly name: string,
    size: number,
    readonly opts: { exclusive?: boolean; readOnly?: boolean; description?: string; delayMs?: () => number } = {},
  ) {
    this.data = Buffer.alloc(size);
  }
}

const geometry = { minBlockSize: 512, preferredBlockSize: 4096, maxBlockSize: 32 << 20 };

/** Provider over MemoryDisks; an exclusive disk admits one open connection at a time. */
export class MemoryProvider implements NbdExportProvider {
  readonly disks = new Map<string, MemoryDisk>();
  constructor(disks: MemoryDisk[]) {
    for (const d of disks) this.disks.set(d.name, d);
  }
  list(): { name: string; description?: string }[] {
    return [...this.disks.values()].map((d) => ({ name: d.name, description: d.opts.description }));
  }
  describe(name: string) {
    const d = this.disks.get(name);
    return d ? { size: d.data.length, readOnly: d.opts.readOnly ?? false, ...geometry } : undefined;
  }
  async open(name: string): Promise<NbdExport | undefined> {
    const d = this.disks.get(name);
    if (!d) return undefined;
    if (d.opts.exclusive) {
      if (d.holder) throw new NbdExportBusyError();
      d.holder = true;
    }
    d.opens++;
    let closed = false;
    const delay = async (): Promise<void> => {
      d.concurrent++;
      d.maxConcurrent = Math.max(d.maxConcurrent, d.concurrent);
      const ms = d.opts.delayMs?.() ?? 0;
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      d.concurrent--;
    };
    return {
      name,
      size: d.data.length,
      readOnly: d.opts.readOnly ?? false,
      ...geometry,
      async read(offset, length) {
        d.ops.push({ op: 'read', offset, length });
        const out = Buffer.from(d.data.subarray(offset, offset + length));
        await delay();
        return out;
      },
      async write(offset, data, flags) {
        d.ops.push({ op: 'write', offset, length: data.length, fua: flags.fua });
        d.data.set(data, offset);
        await delay();
      },
      async writeZeroes(offset, length, flags) {
        d.ops.push({ op: 'writeZeroes', offset, length, fua: flags.fua, noHole: flags.noHole });
        d.data.fill(0, offset, offset + length);
        await delay();
      },
      async trim(offset, length, flags) {
        d.ops.push({ op: 'trim', offset, length, fua: flags.fua });
        d.data.fill(0, offset, offset + length);
        await delay();
      },
      async flush() {
        d.ops.push({ op: 'flush' });
        await delay();
      },
      async close() {
        if (closed) throw new Error('close called twice');
        closed = true;
        d.closes++;
        if (d.opts.exclusive) d.holder = false;
      },
    };
  }
}
