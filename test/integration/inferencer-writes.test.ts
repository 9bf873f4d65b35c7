/**
 * Data written over a file's mapped blocks in one large write (the guest's page cache writes back a run of blocks
 * in one request) becomes one `write` event for the run of contiguous bytes (up to MAX_WRITE_RUN_BYTES), with its
 * bytes when the run fits the inline limit, as for data resolved at a commit; not one event per block.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskInferencer } from '@gammaray/inferencer';
import { EditedDisk } from '../support/edited-disk.js';

const exec = promisify(execFile);
const BS = 4096;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-infer-writes-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('write events of a large overwrite', () => {
  it.each([
    { blocks: 12, inlineLimit: 64 * 1024, want: [[0, 12 * BS, true]] },
    { blocks: 40, inlineLimit: 64 * 1024, want: [[0, 40 * BS, false]] },
    { blocks: 12, inlineLimit: 0, want: [[0, 12 * BS, false]] },
  ])('$blocks blocks, inline limit $inlineLimit: one event for the run, with its bytes when it fits the limit', async ({ blocks, inlineLimit, want }) => {
    const src = join(work, `src-${blocks}-${inlineLimit}`);
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'big.bin'), Buffer.alloc(blocks * BS, 'a'));
    const img = join(work, `writes-${blocks}-${inlineLimit}.img`);
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
    const disk = new EditedDisk(img);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'writes', inlineLimit }, 0, new Date());
    const node = inf.nodes.get(inf.tree().find((e) => e.path === '/big.bin')!.ino)!; // ok: made above
    const content = Buffer.alloc(blocks * BS);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7 + 3) & 0xff;
    // mkfs may cut the file into several extents; they lie in file order on the disk, so the disk-ordered block
    // writes of the change are one run of the file's bytes.
    const runs = [...(node.runs ?? [])].sort((a, b) => a.physical - b.physical);
    expect(runs.map((r) => r.logical)).toEqual([...runs].sort((a, b) => a.logical - b.logical).map((r) => r.logical));
    const events = await disk.change(inf, () => {
      const b = readFileSync(img);
      for (const r of runs) content.copy(b, r.physical * BS, r.logical * BS, (r.logical + r.length) * BS);
      writeFileSync(img, b);
    });
    const writes = events.filter((e) => e.kind === 'write');
    expect(writes.map((e) => [e.offset, e.length, e.data !== undefined])).toEqual(want);
    for (const e of writes) {
      if (e.data) expect(Buffer.from(e.data)).toEqual(content.subarray(e.offset!, e.offset! + e.length!)); // ok: writes carry offsets
      else expect(e.dataOmitted).toBe(true);
    }
  });
});
