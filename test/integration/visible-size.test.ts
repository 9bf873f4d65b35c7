/**
 * The race behind a broken `tail -f`: ext4 in a real guest appending a line a second (`echo >> log`) commits the
 * grown size in one journal transaction and writes the data block afterwards. Replaying the recorded stream, the
 * engine's `visibleSize` must never expose a byte of the log that is still zero on the disk at that point (log
 * lines hold no NUL), must reach the full size once the data is there, and must end equal to the size.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskInferencer } from '@gammaray/inferencer';
import { recordGuestWorkload } from '../support/guest-stream.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

let work: string;
let nats: NatsServer;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-visible-'));
  nats = await startNatsServer({ jetstream: true });
});

afterAll(async () => {
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('visibleSize on a real guest appending a line a second', () => {
  it('never shows bytes of an append whose data has not reached the disk, and catches up with the size', async () => {
    const rec = await recordGuestWorkload({
      nats: nats.url,
      work,
      disk: 'tail',
      files: { 'root/test.txt': 'start\n' },
      // The seed README's check, bounded: the kernel's default 5 s commit interval.
      workload: 'i=0; while [ $i -lt 14 ]; do echo "test $i" >> root/test.txt; sleep 1; i=$((i+1)); done',
      timeoutMs: 180_000,
    });
    const img = Buffer.from(readFileSync(rec.start));
    const { inferencer: inf } = await DiskInferencer.bootstrap({ size: img.length, read: async (o, l) => ({ data: Uint8Array.from(img.subarray(o, o + l)), seq: 0 }) }, { disk: 'tail' }, 0, new Date(0));
    const bs = inf.superblock.blockSize;
    let hidden = 0;
    let checked = 0;
    for (const r of rec.records) {
      await inf.apply(r.seq, r.rec);
      for (const op of r.rec.ops) {
        if (op.op === 'write') img.set(op.data, op.offset);
        else if (op.op === 'zero') img.fill(0, op.offset, op.offset + op.length);
      }
      const root = inf.nodes.get(2)!; // ok: the root is always there
      const dir = inf.nodes.get(root.entries!.get('root')!)!; // ok: built by the test
      const node = inf.nodes.get(dir.entries!.get('test.txt')!)!; // ok: built by the test
      const visible = inf.visibleSize(node);
      if (visible < node.size) hidden++;
      // The visible bytes, read from the disk as it is after this record, hold no zeros.
      const bytes = Buffer.alloc(visible);
      for (const run of node.runs ?? []) {
        for (let i = 0; i < run.length; i++) {
          const at = (run.logical + i) * bs;
          if (at >= visible) break;
          img.copy(bytes, at, (run.physical + i) * bs, (run.physical + i) * bs + Math.min(bs, visible - at));
        }
      }
      expect(bytes.includes(0), `record ${r.seq}: visible ${visible} of ${node.size}: ${JSON.stringify(bytes.toString())}`).toBe(false);
      checked++;
    }
    const final = inf.nodes.get(inf.nodes.get(inf.nodes.get(2)!.entries!.get('root')!)!.entries!.get('test.txt')!)!; // ok: as above
    expect(inf.visibleSize(final)).toBe(final.size);
    expect(final.size).toBe('start\n'.length + Array.from({ length: 14 }, (_, i) => `test ${i}\n`.length).reduce((a, b) => a + b, 0));
    expect(checked).toBeGreaterThan(10);
    // Whether this run hit the race depends on the guest's timing; report it for the log.
    console.log(`visible-size: ${hidden} of ${checked} records had an append's size committed before its data`);
  }, 240_000);
});
